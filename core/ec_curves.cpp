#include "core/ec_curves.h"

#include <algorithm>
#include <array>

namespace cdcp11::core {

namespace {

struct CurveInfo {
  EcCurve curve;
  Bytes params;
  std::size_t bytes;
};

const std::array<CurveInfo, 4>& curves() {
  static const std::array<CurveInfo, 4> c = {{
      {EcCurve::p256, {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}, 32},
      {EcCurve::p384, {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}, 48},
      {EcCurve::p521, {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23}, 66},
      {EcCurve::secp256k1, {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a}, 32},
  }};
  return c;
}

const CurveInfo& info(EcCurve c) {
  return *std::find_if(curves().begin(), curves().end(), [&](const CurveInfo& i) { return i.curve == c; });
}

// The content of a DER OCTET STRING (short or long form length), or nothing.
std::optional<ByteView> octets(ByteView der) {
  if (der.size() < 2 || der[0] != 0x04) return std::nullopt;
  std::size_t len = der[1], off = 2;
  if (len & 0x80) {
    const std::size_t n = len & 0x7f;
    if (n == 0 || n > 2 || der.size() < 2 + n) return std::nullopt;
    len = 0;
    for (std::size_t i = 0; i < n; ++i) len = (len << 8) | der[2 + i];
    off = 2 + n;
  }
  if (der.size() != off + len) return std::nullopt;
  return der.subspan(off);
}

}  // namespace

Bytes ec_params(EcCurve c) { return info(c).params; }

std::optional<EcCurve> ec_curve_of(ByteView p) {
  for (auto& c : curves())
    if (std::equal(p.begin(), p.end(), c.params.begin(), c.params.end())) return c.curve;
  return std::nullopt;
}

std::size_t ec_field_bytes(EcCurve c) { return info(c).bytes; }

Bytes ec_point_der(ByteView x, ByteView y) {
  const std::size_t len = 1 + x.size() + y.size();
  Bytes out{0x04};
  if (len >= 0x80) out.push_back(0x81);
  out.push_back(static_cast<std::uint8_t>(len));
  out.push_back(0x04);
  out.insert(out.end(), x.begin(), x.end());
  out.insert(out.end(), y.begin(), y.end());
  return out;
}

std::optional<EcXY> ec_point_xy(EcCurve c, ByteView point) {
  const std::size_t n = ec_field_bytes(c);
  auto split = [&](ByteView raw) -> std::optional<EcXY> {
    if (raw.size() != 1 + 2 * n || raw[0] != 0x04) return std::nullopt;
    return EcXY{Bytes(raw.begin() + 1, raw.begin() + 1 + static_cast<std::ptrdiff_t>(n)),
                Bytes(raw.begin() + 1 + static_cast<std::ptrdiff_t>(n), raw.end())};
  };
  if (auto inner = octets(point))
    if (auto xy = split(*inner)) return xy;
  return split(point);
}

}  // namespace cdcp11::core
