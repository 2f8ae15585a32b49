#include "softtoken/der.h"

#include <algorithm>

namespace cdcp11::softtoken {
namespace {

struct CurveOid {
  crypto::Curve curve;
  Bytes der;
};

const std::vector<CurveOid>& oids() {
  static const std::vector<CurveOid> t = {
      {crypto::Curve::p256, {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}},
      {crypto::Curve::p384, {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}},
      {crypto::Curve::p521, {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23}},
      {crypto::Curve::secp256k1, {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a}},
      {crypto::Curve::ed25519, {0x06, 0x03, 0x2b, 0x65, 0x70}},
  };
  return t;
}

}  // namespace

std::optional<crypto::Curve> curve_from_params(ByteView params) {
  for (auto& o : oids())
    if (std::equal(params.begin(), params.end(), o.der.begin(), o.der.end())) return o.curve;
  static const std::string kEd = "edwards25519";
  if (params.size() == kEd.size() + 2 && params[0] == 0x13 && params[1] == kEd.size() &&
      std::equal(params.begin() + 2, params.end(), kEd.begin()))
    return crypto::Curve::ed25519;
  return std::nullopt;
}

Bytes params_for_curve(crypto::Curve c) {
  for (auto& o : oids())
    if (o.curve == c) return o.der;
  return {};
}

Bytes der_octet_string(ByteView content) {
  Bytes out{0x04};
  const auto n = content.size();
  if (n < 0x80) {
    out.push_back(static_cast<std::uint8_t>(n));
  } else if (n < 0x100) {
    out.push_back(0x81);
    out.push_back(static_cast<std::uint8_t>(n));
  } else {
    out.push_back(0x82);
    out.push_back(static_cast<std::uint8_t>(n >> 8));
    out.push_back(static_cast<std::uint8_t>(n));
  }
  out.insert(out.end(), content.begin(), content.end());
  return out;
}

std::optional<Bytes> der_octet_string_content(ByteView der) {
  if (der.size() < 2 || der[0] != 0x04) return std::nullopt;
  std::size_t len = der[1], off = 2;
  if (len == 0x81) {
    if (der.size() < 3) return std::nullopt;
    len = der[2];
    off = 3;
  } else if (len == 0x82) {
    if (der.size() < 4) return std::nullopt;
    len = static_cast<std::size_t>(der[2]) << 8 | der[3];
    off = 4;
  } else if (len > 0x80) {
    return std::nullopt;
  }
  if (der.size() != off + len) return std::nullopt;
  return Bytes(der.begin() + off, der.end());
}

}  // namespace cdcp11::softtoken
