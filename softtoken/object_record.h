// Token object records, format 2: the payload of one object file of the store.
//
//   0   "CDCO"
//   4   u8 version (2)
//   5   u8 kind: 0 public, 1 private, 2 pending (public, written without a login)
//   6   token id (16 bytes)
//   22  u32 n | attributes (n bytes): public and pending: AttrMap::serialize() of the non-secret
//           attributes; private: empty
//       u32 n | sealed (n bytes): nonce (12) || AES-256-GCM ciphertext || tag (16), or empty.
//           public and pending: the secret attributes (serialize_secrets), when there are any,
//             under the public sealing key;
//           private: u32 n | serialized attributes (n bytes) | the secret attributes, under the
//             encryption key
//   kinds 0, 1: HMAC-SHA-256 (32 bytes) under the MAC key over the uid and every byte before it
//   kind 2: u32 n | base (n bytes): the authenticated (kind 0) record this one changes, or empty
//           for an object made without a login. No MAC: nobody who could compute one was there.
// Integers little-endian. The GCM additional data is "cdcp11-object-v2|<token id>|<uid>|<p>", p 1
// for private and 0 for public material (kinds 0 and 2), so a sealed blob moved to another
// object, token or kind does not open; the MAC covers the uid too, so a whole record copied
// under another uid fails as well.
//
// Keys (RecordKeys): the encryption key and the MAC key are HMAC-SHA-256 of the token key with
// distinct labels, and so are the two keys of vendor state entries (VendorKeysSeal below); the
// token key itself is used only to derive them and in the PIN slots. A
// public object is usable without a login (PKCS#11's public sessions), so its secret attributes
// are sealed under a key derived from the token id alone (public_sealing_key): bound to the token
// and the object and checked, but open to anyone who can read the token directory.
//
// A pending record is served like a public one before a login; at the next login the soft token
// checks it against what a public session can do through the API (core's
// check_public_session_object / check_public_session_change, and the key material as
// C_CreateObject checks it) and either rewrites it as an authenticated record or refuses it.
#pragma once

#include <string>

#include "common/bytes.h"
#include "core/attributes.h"
#include "core/backend.h"
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
  ByteView vendor_enc_key() const { return buf_.view().subspan(3 * kKeyLen, kKeyLen); }
  ByteView vendor_mac_key() const { return buf_.view().subspan(4 * kKeyLen, kKeyLen); }

 private:
  SecretBuffer buf_;
};

struct ObjectRecord {
  std::string token_id;  // 32 hex chars
  bool is_private = false;
  bool pending = false;  // kind 2: public, not authenticated
  core::AttrMap attrs;   // public, pending: the clear attributes; private: empty until opened (open_record)
  Bytes sealed;
  Bytes base;            // pending: the authenticated record it changes, or empty
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

// Checks the MAC of a parsed record stored under uid (device_error when it does not verify, or
// the record is pending).
core::R<void> verify_record(crypto::Backend& c, const RecordKeys& k, const std::string& uid,
                            const ObjectRecord& r);
// Decrypts what a record seals: a private record's attributes (needs k) and any record's
// secrets (a public or pending record's need no key). A private record must have been verified.
core::R<OpenedRecord> open_record(crypto::Backend& c, const RecordKeys& k, const std::string& uid,
                                  const ObjectRecord& r);
// A new authenticated record for uid: kind from attrs' CKA_PRIVATE, fresh nonce, MAC; attrs
// filled in for either kind.
core::R<ObjectRecord> seal_record(crypto::Backend& c, const RecordKeys& k, const std::string& uid,
                                  const std::string& token_id, const core::AttrMap& attrs,
                                  const Secrets& secrets);
// A new pending record for uid (attrs must be public): base is the authenticated record it
// changes, or empty.
core::R<ObjectRecord> seal_pending(crypto::Backend& c, const std::string& uid, const std::string& token_id,
                                   const core::AttrMap& attrs, const Secrets& secrets, Bytes base);

// The vendor state entries of the token's objects in the metadata store (core::VendorSeal),
// under the record keys k (not owned; the caller guards them):
//   mac:    HMAC-SHA-256 under the vendor MAC key over "cdcp11-vendor-v1|<token id>|<uid>|" and
//           the canonical bytes;
//   sealed: nonce (12) || AES-256-GCM ciphertext || tag (16) under the vendor encryption key,
//           additional data "cdcp11-vendor-v1|<token id>|<uid>".
// So an entry copied under another uid or into another token does not verify.
class VendorKeysSeal final : public core::VendorSeal {
 public:
  VendorKeysSeal(crypto::Backend& c, const RecordKeys& k, const std::string& token_id)
      : c_(c), k_(k), token_id_(token_id) {}
  bool ready() override { return !k_.empty(); }
  core::R<Bytes> mac(const std::string& uid, ByteView canonical) override;
  core::R<Bytes> seal(const std::string& uid, ByteView canonical) override;
  core::R<SecureBytes> open(const std::string& uid, ByteView sealed) override;

 private:
  std::string context(const std::string& uid) const { return "cdcp11-vendor-v1|" + token_id_ + "|" + uid; }
  core::R<crypto::KeyPtr> enc_key();

  crypto::Backend& c_;
  const RecordKeys& k_;
  const std::string& token_id_;
};

}  // namespace cdcp11::softtoken
