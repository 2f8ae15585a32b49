// CRC-32C (Castagnoli), the checksum of record files. Chosen over SHA-256 because its job is to
// catch accidental damage (torn or truncated writes, bit rot, stray edits), not tampering: that
// is the soft token's job (it encrypts and authenticates what needs it). It is fast enough that
// a full reload of 10,000 records is dominated by syscalls, and needs no crypto library.
#pragma once

#include <cstdint>

#include "common/bytes.h"

namespace cdcp11::store {

// crc32c(b, crc32c(a)) == crc32c(a ++ b): pass the previous result to continue a checksum.
std::uint32_t crc32c(ByteView data, std::uint32_t prev = 0);

}  // namespace cdcp11::store
