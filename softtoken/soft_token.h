// The software token: a Backend over a durable ObjectStore and the crypto seam.
//
// Secrets at rest. A random 256-bit token key is stored twice, each wrapped with AES-256-GCM
// under a key derived from a PIN (SO and user) with scrypt (RFC 7914; N = 2^kdf_scrypt_log2_n,
// r = 8, p = 1; 32 MiB at the default N = 2^15). scrypt because it is memory-hard (it makes PIN
// guessing on GPUs/ASICs expensive) and both crypto libraries of the seam implement it; Argon2id
// would be preferable but OpenSSL 3.0 lacks it. Object records are sealed and authenticated
// under keys derived from the token key (object_record.h): a private object's attributes and
// secret attributes are encrypted, and every record carries a MAC. Public objects stay readable
// and usable without a login (their secret attributes are sealed under a key derived from the
// token id), unauthenticated until one: once the token key is known every record is checked (at
// login and at each refresh), and one that fails is refused, never served.
//
// Without a login (a public R/W session) public token objects can still be made, changed and
// destroyed, as PKCS#11 allows: such a record is written pending (no MAC; a change keeps the
// authenticated record it changes as its base). Whoever next logs in checks it against what a
// public session can do through the API and either authenticates it or refuses it
// (soft_pending.cpp). Private objects, and what only a logged-in token writes (mirror state),
// need a login.
//
// PIN retry counters live in the meta record and are updated under the store's cross-process
// lock, so failures from every process count; an attempt is counted durably before the PIN is
// tried, and a login never succeeds while the counter cannot be written.
//
// The meta record is read at every status() and refresh(): one that cannot be read now (EMFILE,
// EIO) is an error of that call and changes nothing; a corrupt one is reported (the token then
// says it is not initialised, and C_InitToken re-initialises it without the unreadable SO PIN);
// a changed token id means another process re-initialised the token (logged out, objects
// reloaded). Tokens of meta format 1 (records before authentication) are refused until
// C_InitToken (with their SO PIN) re-initialises them.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "core/config.h"
#include "core/backend.h"
#include "softtoken/crypto/backend.h"
#include "softtoken/key_cache.h"
#include "softtoken/key_material.h"
#include "softtoken/object_record.h"
#include "softtoken/store/object_store.h"
#include "softtoken/token_meta.h"

namespace cdcp11::softtoken {

core::Error from_store(const store::Error& e);

class SoftToken final : public core::Backend {
 public:
  static core::R<std::unique_ptr<SoftToken>> open(const core::GroupConfig& group, crypto::Backend& crypto);

  core::TokenStatus status() override;
  core::R<void> init_token(ByteView so_pin, const std::string& label) override;
  core::R<void> init_pin(ByteView user_pin) override;
  core::R<void> set_pin(CK_USER_TYPE who, ByteView old_pin, ByteView new_pin) override;
  core::R<void> login(CK_USER_TYPE who, ByteView pin) override;
  core::R<void> check_pin(ByteView pin) override;
  void logout() override;

  core::R<core::ObjectChanges> refresh() override;
  bool unchanged_since_refresh() override {
    return settled_.load(std::memory_order_acquire) && store_->unchanged_since_refresh();
  }
  core::R<core::StoredObject> create_object(const core::AttrMap& attrs) override;
  core::R<core::StoredObject> create_key_reference(const core::AttrMap& attrs) override;
  core::R<core::StoredObject> copy_object(const std::string& src_uid, const core::AttrMap& attrs) override;
  core::R<void> update_object(const std::string& uid, const core::AttrMap& attrs) override;
  core::R<void> destroy_object(const std::string& uid) override;
  core::R<SecureBytes> secret_attribute(const std::string& uid, CK_ATTRIBUTE_TYPE t) override;
  core::R<std::size_t> object_size(const std::string& uid) override;

  core::R<core::StoredObject> generate_key(const core::Mechanism& m, const core::AttrMap& attrs) override;
  core::R<std::pair<core::StoredObject, core::StoredObject>> generate_key_pair(
      const core::Mechanism& m, const core::AttrMap& pub, const core::AttrMap& priv) override;
  core::R<std::unique_ptr<core::Operation>> begin(core::OpKind kind, const core::Mechanism& m,
                                                  const core::StoredObject& key) override;
  core::R<std::unique_ptr<core::Operation>> begin_digest(const core::Mechanism& m) override;
  core::R<SecureBytes> key_value_for_digest(const core::StoredObject& key) override;
  core::R<Bytes> wrap_key(const core::Mechanism& m, const core::StoredObject& wrapping_key,
                          const core::StoredObject& key) override;
  core::R<core::StoredObject> unwrap_key(const core::Mechanism& m, const core::StoredObject& unwrapping_key,
                                         ByteView wrapped, const core::AttrMap& attrs) override;
  core::R<core::StoredObject> derive_key(const core::Mechanism& m, const core::StoredObject& base_key,
                                         const core::AttrMap& attrs) override;
  core::R<void> random(std::uint8_t* out, std::size_t n) override;
  core::R<core::AttrMap> public_key(const core::StoredObject& key) override;
  core::R<core::SecretAttrs> export_plain(const core::StoredObject& key) override;
  // The record keys' VendorKeysSeal (object_record.h): vendor state entries need a login.
  core::VendorSeal* vendor_seal() override { return &vendor_seal_; }

 private:
  // vendor_seal(): VendorKeysSeal over keys_, under mu_.
  class LockedVendorSeal final : public core::VendorSeal {
   public:
    explicit LockedVendorSeal(SoftToken& t) : t_(t) {}
    bool ready() override;
    core::R<Bytes> mac(const std::string& uid, ByteView canonical) override;
    core::R<Bytes> seal(const std::string& uid, ByteView canonical) override;
    core::R<SecureBytes> open(const std::string& uid, ByteView sealed) override;

   private:
    SoftToken& t_;
  };

  SoftToken(core::TokenConfig cfg, std::unique_ptr<store::ObjectStore> st, crypto::Backend& crypto);

  enum class MetaState { unknown, absent, valid, corrupt, legacy };
  enum class Trust { unverified, verified, refused };
  struct TokenRecord {
    ObjectRecord rec;
    Trust trust = Trust::unverified;
    bool opened = false;  // a private record's attributes are unsealed into rec.attrs
  };
  struct SessionRecord {
    core::AttrMap attrs;
    Secrets secrets;
  };

  // All under mu_.
  // Reads the meta record now into meta_state_/meta_. An error only when it cannot be read at
  // this moment (EMFILE, EIO): everything is then left as it was.
  core::R<void> load_meta();
  // Takes a meta record's bytes (or its absence, or why it is corrupt) as the current state.
  void apply_meta(const store::MetaSnapshot& m);
  // The current meta record, or why there is none to use (legacy only when allow_legacy).
  core::R<TokenMeta*> usable_meta(bool allow_legacy = false);
  core::R<crypto::KeyPtr> pin_key(ByteView pin, const PinSlot& slot);
  core::R<SecureBytes> open_pin_slot(const PinSlot& slot, ByteView pin, const std::string& who,
                                     const std::string& token_id);
  core::R<PinSlot> make_pin_slot(ByteView pin, ByteView token_key, const std::string& who,
                                 const std::string& token_id);
  // Replaces the SO or user PIN slot in the meta record (under the store's cross-process lock).
  core::R<void> store_pin_slot(CK_USER_TYPE who, ByteView pin, ByteView token_key);
  // Verifies a PIN against the meta record, counting the attempt across processes first.
  core::R<SecureBytes> verify_pin(CK_USER_TYPE who, ByteView pin, bool allow_legacy = false);
  // Logged in: derives the record keys and checks every record against them.
  core::R<void> take_token_key(ByteView token_key);
  // Logged out (or re-initialised elsewhere): wipes the keys and what they opened.
  void forget_keys();

  // Checks a record of the current token against the keys (when known): verified (and opened,
  // if private; authenticated, if pending) or refused.
  void admit(const std::string& uid, TokenRecord& r);
  // soft_pending.cpp. Whether a pending record's content is what a public session could have
  // written: a new object (base empty) or a change of the authenticated record base. At a login
  // (keys known) the base's MAC and the key material are checked too.
  core::R<void> check_pending(const std::string& uid, const core::AttrMap& attrs, const Secrets& secrets,
                              const Bytes& base);
  // Writes a token object without a login: a pending record, checked as the next login will.
  core::R<void> write_pending(const std::string& uid, const core::AttrMap& attrs, const Secrets& secrets);
  // Rewrites a checked pending record as an authenticated one, unless it changed meanwhile.
  void authenticate(const std::string& uid, TokenRecord& r, const Secrets& secrets);
  // Validates key material as C_CreateObject takes it, completing it (RSA CRT parameters,
  // CKA_VALUE_LEN, public key attributes) in place.
  core::R<void> complete_material(core::AttrMap& attrs, Secrets& secrets);
  bool servable(const TokenRecord& r) const;
  void drop_record(const std::string& uid);
  core::R<Secrets> secrets_of(const std::string& uid);
  // soft_migrate.cpp. With the keys known, on a store of format 1: moves the vendor attributes
  // the records hold into the token's metadata store, then sets format 2.
  core::R<void> move_vendor_state();
  core::R<core::StoredObject> store_new(core::AttrMap attrs, Secrets secrets);
  core::R<void> write_record(const std::string& uid, const core::AttrMap& attrs, const Secrets& secrets);
  core::R<crypto::KeyPtr> load_key(const core::StoredObject& obj);
  // The operation of kind on a loaded key (begin's second half; needs no lock).
  core::R<std::unique_ptr<core::Operation>> start(core::OpKind kind, const core::Mechanism& m,
                                                  const crypto::KeyPtr& k);
  core::R<core::StoredObject> make_key_object(core::AttrMap attrs, const crypto::PrivateMaterial* priv,
                                              SecureBytes secret_value);
  core::R<SecureBytes> key_to_wrap(const core::StoredObject& key);
  // RSA-OAEP of a fresh AES key of aes_bits, then AES-KWP of plain (CKM_RSA_AES_KEY_WRAP).
  core::R<Bytes> rsa_aes_wrap(const crypto::KeyPtr& rsa_public, std::size_t aes_bits,
                              const crypto::CipherParams& oaep, ByteView plain);

  std::mutex mu_;
  core::TokenConfig cfg_;
  std::unique_ptr<store::ObjectStore> store_;
  crypto::Backend& crypto_;
  MetaState meta_state_ = MetaState::unknown;
  std::string meta_problem_;        // corrupt / legacy: why
  std::optional<TokenMeta> meta_;   // last read valid (or legacy) record
  RecordKeys keys_;                 // empty when nobody is logged in
  std::string keys_token_id_;       // the token the keys belong to
  std::unordered_map<std::string, TokenRecord> token_objs_;
  std::unordered_map<std::string, SessionRecord> session_objs_;
  KeyCache key_cache_;
  // What refresh() has reported to core: the token id and the uids it serves.
  std::string reported_token_id_;
  std::set<std::string> reported_;
  std::set<std::string> dirty_;     // records changed since the last report
  bool rescan_ = false;             // login/logout: which records are servable may have changed
  // The last refresh() succeeded and left nothing for the next (dirty_ empty, no rescan_): for
  // unchanged_since_refresh(), which other threads call without mu_.
  std::atomic<bool> settled_{false};
  bool vendor_move_tried_ = false;  // this login: move_vendor_state failed (tried again at the next)
  LockedVendorSeal vendor_seal_{*this};
};

}  // namespace cdcp11::softtoken
