#include "softtoken/store/record_format.h"

#include <cstring>
#include <string>

#include "softtoken/store/crc32c.h"

namespace cdcp11::store {
namespace {

constexpr std::uint8_t kMagic[4] = {'c', 'd', 'c', 'R'};

void put_le(std::uint8_t* p, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint64_t get_le(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t(p[i]) << (8 * i);
  return v;
}

std::uint32_t checksum(const std::uint8_t* header16, std::string_view name, ByteView payload) {
  std::uint32_t c = crc32c(ByteView(header16, 16));
  c = crc32c(view(name), c);
  return crc32c(payload, c);
}

}  // namespace

Bytes encode_record(std::string_view name, ByteView payload) {
  Bytes out(kHeaderSize + payload.size());
  std::memcpy(out.data(), kMagic, 4);
  put_le(out.data() + 4, kRecordVersion, 4);
  put_le(out.data() + 8, payload.size(), 8);
  put_le(out.data() + 16, checksum(out.data(), name, payload), 4);
  if (!payload.empty()) std::memcpy(out.data() + kHeaderSize, payload.data(), payload.size());
  return out;
}

Result<Bytes, DecodeError> decode_record(std::string_view name, ByteView file) {
  if (file.size() < kHeaderSize)
    return fail(DecodeError{"truncated header (" + std::to_string(file.size()) + " bytes)"});
  if (std::memcmp(file.data(), kMagic, 4) != 0) return fail(DecodeError{"bad magic"});
  const std::uint64_t version = get_le(file.data() + 4, 4);
  if (version != kRecordVersion)
    return fail(DecodeError{"unsupported record version " + std::to_string(version)});
  const std::uint64_t len = get_le(file.data() + 8, 8);
  if (len != file.size() - kHeaderSize)
    return fail(DecodeError{"length " + std::to_string(len) + " does not match file size " +
                            std::to_string(file.size())});
  ByteView payload = file.subspan(kHeaderSize);
  if (get_le(file.data() + 16, 4) != checksum(file.data(), name, payload))
    return fail(DecodeError{"checksum mismatch"});
  return to_bytes(payload);
}

}  // namespace cdcp11::store
