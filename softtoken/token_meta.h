// The token's meta record (JSON, versioned): identity, label, and the token key wrapped under
// each PIN, with the PIN retry counters.
#pragma once

#include <optional>
#include <string>

#include "common/bytes.h"
#include "core/errors.h"

namespace cdcp11::softtoken {

struct PinSlot {
  static constexpr unsigned kMinLog2N = 10, kMaxLog2N = 22;  // the config's range
  Bytes salt;                 // scrypt salt, 16 bytes
  unsigned log2_n = 15;       // scrypt cost; r = 8, p = 1
  Bytes nonce;                // AES-GCM nonce, 12 bytes
  Bytes wrapped;              // AES-256-GCM(token key) || tag, 48 bytes
  unsigned failures = 0;      // consecutive wrong PINs
};

struct TokenMeta {
  // 1: object records with clear attributes and a CRC only (refused: see soft_token.h).
  // 2: object records sealed and authenticated under the token key (object_record.h).
  static constexpr int kLegacyFormat = 1;
  static constexpr int kFormat = 2;
  int format = kFormat;
  std::string token_id;       // 32 lowercase hex chars, new at every C_InitToken
  std::string label;
  PinSlot so;
  std::optional<PinSlot> user;
};

std::string encode_meta(const TokenMeta& m);
// Errors: Errc::device_error with the reason when the record is malformed or a field is out of
// range (a corrupt record); format 1 and 2 records are both decoded (format says which).
core::R<TokenMeta> decode_meta(ByteView json);

}  // namespace cdcp11::softtoken
