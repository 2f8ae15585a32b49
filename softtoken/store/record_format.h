// On-disk encoding of one record file (format version 1), all integers little-endian:
//   0  magic "cdcR"
//   4  u32 format version (1)
//   8  u64 payload length (must equal file size - kHeaderSize)
//   16 u32 CRC-32C over bytes 0..16, the record's file name, then the payload
//   20 payload
// Covering the file name means a record copied or renamed to another uid is reported corrupt.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/bytes.h"
#include "common/result.h"

namespace cdcp11::store {

inline constexpr std::size_t kHeaderSize = 20;
inline constexpr std::uint32_t kRecordVersion = 1;

Bytes encode_record(std::string_view name, ByteView payload);

// Why a file failed its check, for the log and the corrupt error's message.
struct DecodeError {
  std::string reason;
};
// Returns the payload of a whole record file named `name`.
Result<Bytes, DecodeError> decode_record(std::string_view name, ByteView file);

}  // namespace cdcp11::store
