// Token object records, format 2: the payload of one object file of the store, sealed and
// authenticated under keys derived from the token key.
//
//   0   "CDCO"
//   4   u8 version (2)
//   5   u8 kind: 0 public (attributes in clear), 1 private (attributes sealed)
//   6   token id (16 bytes)
//   22  u32 n | attributes (n bytes): public: AttrMap::serialize() of the non-secret
//           attributes; private: empty
//       u32 n | sealed (n bytes): nonce (12) || AES-256-GCM ciphertext || tag (16), or empty.
//           public: the secret attributes (serialize_secrets), when there are any;
//           private: u32 n | serialized attributes (n bytes) | the secret attributes
//       HMAC-SHA-256 (32 bytes) under the MAC key over the uid and every byte before it
// Integers little-endian. The GCM additional data is "cdcp11-object-v2|<token id>|<uid>|<kind>",
// so a sealed blob moved to another object, token or kind does not open; the MAC covers the
// uid too, so a whole record copied under another uid fails as well.
//
// Keys (RecordKeys): the encryption key and the MAC key are HMAC-SHA-256 of the token key with
// distinct labels; the token key itself is used only to derive them and in the PIN slots.
#pragma once

#include <string>

#include "common/bytes.h"
#include "core/attributes.h"
#include "core/errors.h"
#include "softtoken/crypto/backend.h"
#include "softtoken/key_material.h"

namespace cdcp11::softtoken {

// The token key and the keys derived from it, in one SecretBuffer: empty when nobody is
// logged in.
class RecordKeys {
 public:
  static constexpr std::size_t kKeyLen = 32;
  // Fills the buffer from a token key; an error when derivation or allocation fails.
  core::R<void> set(crypto::Backend& c, ByteView token_key);
  void wipe() noexcept { buf_.wipe(); }
  bool empty() const noexcept { return buf_.empty(); }
  ByteView token_key() const { return buf_.view().subspan(0, kKeyLen); }
  ByteView enc_key() const { return buf_.view().subspan(kKeyLen, kKeyLen); }
  ByteView mac_key() const { return buf_.view().subspan(2 * kKeyLen, kKeyLen); }

 private:
  SecretBuffer buf_;
};

struct ObjectRecord {
  std::string token_id;  // 32 hex chars
  bool is_private = false;
  core::AttrMap attrs;   // public: the clear attributes; private: empty until opened (open_record)
  Bytes sealed;
  Bytes raw;             // the whole record, as stored
};

struct OpenedRecord {
  core::AttrMap attrs;   // private records only (public ones have theirs in clear)
  Secrets secrets;
};

// AES-256-GCM of a whole buffer (encrypt: ciphertext || tag; decrypt: input ciphertext || tag,
// verified).
core::R<SecureBytes> aes_gcm(crypto::Backend& c, const crypto::KeyPtr& key, bool encrypt, ByteView nonce,
                             Bytes aad, ByteView in);

// Structure only, no keys: magic, version, lengths. Errors are device_error with the reason.
core::R<ObjectRecord> parse_record(Bytes raw);
// Whether raw is a record of the format before this one (format 1: clear attributes, no MAC).
bool is_legacy_record(ByteView raw);

// Checks the MAC of a parsed record stored under uid (device_error when it does not verify).
core::R<void> verify_record(crypto::Backend& c, const RecordKeys& k, const std::string& uid,
                            const ObjectRecord& r);
// Decrypts what a record seals: a private record's attributes and any record's secrets.
// The record must have been verified.
core::R<OpenedRecord> open_record(crypto::Backend& c, const RecordKeys& k, const std::string& uid,
                                  const ObjectRecord& r);
// A new record for uid: kind from attrs' CKA_PRIVATE, fresh nonce, MAC; attrs filled in for
// either kind.
core::R<ObjectRecord> seal_record(crypto::Backend& c, const RecordKeys& k, const std::string& uid,
                                  const std::string& token_id, const core::AttrMap& attrs,
                                  const Secrets& secrets);

}  // namespace cdcp11::softtoken
