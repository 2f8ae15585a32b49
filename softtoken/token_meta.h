// The token's meta record (JSON, versioned): identity, label, and the token key wrapped under
// each PIN, with the PIN retry counters.
#pragma once

#include <optional>
#include <string>

#include "common/bytes.h"
#include "core/errors.h"

namespace cdcp11::softtoken {

struct PinSlot {
  Bytes salt;                 // scrypt salt, 16 bytes
  unsigned log2_n = 15;       // scrypt cost; r = 8, p = 1
  Bytes nonce;                // AES-GCM nonce, 12 bytes
  Bytes wrapped;              // AES-256-GCM(token key) || tag
  unsigned failures = 0;      // consecutive wrong PINs
};

struct TokenMeta {
  static constexpr int kFormat = 1;
  std::string token_id;       // 32 hex chars, new at every C_InitToken
  std::string label;
  PinSlot so;
  std::optional<PinSlot> user;
};

std::string encode_meta(const TokenMeta& m);
core::R<TokenMeta> decode_meta(ByteView json);

}  // namespace cdcp11::softtoken
