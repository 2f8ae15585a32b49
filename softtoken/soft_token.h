// The software token: a TokenBackend over a durable ObjectStore and the crypto seam.
//
// Secrets at rest. A random 256-bit token key seals every private object's secret attributes with
// AES-256-GCM (public objects: see sealing_key); the additional data binds each sealed blob to the token and the object
// (token id || uid), so a blob moved to another object or token does not open. The token key is
// stored twice, each wrapped with AES-256-GCM under a key derived from a PIN (SO and user) with
// scrypt (RFC 7914; N = 2^kdf_scrypt_log2_n, r = 8, p = 1; 32 MiB at the default N = 2^15).
// scrypt because it is memory-hard (it makes PIN guessing on GPUs/ASICs expensive) and both
// crypto libraries of the seam implement it; Argon2id would be preferable but OpenSSL 3.0 lacks it.
//
// PIN retry counters live in the meta record and are updated under the store's cross-process
// lock, so failures from every process count.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "core/config.h"
#include "core/token_backend.h"
#include "softtoken/crypto/backend.h"
#include "softtoken/key_material.h"
#include "softtoken/store/object_store.h"
#include "softtoken/token_meta.h"

namespace cdcp11::softtoken {

class SoftToken final : public core::TokenBackend {
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
  core::R<core::KeyComponents> public_components(const core::StoredObject& key) override;
  core::R<core::KeyComponents> private_components(const core::StoredObject& key) override;
  core::R<Bytes> wrap_for_byok(const core::StoredObject& key, ByteView kek_n, ByteView kek_e) override;

 private:
  SoftToken(core::TokenConfig cfg, std::unique_ptr<store::ObjectStore> st, crypto::Backend& crypto);

  struct TokenRecord {
    std::string token_id;
    core::AttrMap attrs;
    Bytes sealed;  // nonce || AES-GCM(secrets) || tag; empty when the object has no secrets
  };
  struct SessionRecord {
    core::AttrMap attrs;
    Secrets secrets;
  };

  // All under mu_.
  core::R<TokenMeta> read_meta();
  core::R<crypto::KeyPtr> pin_key(ByteView pin, const PinSlot& slot);
  // AES-GCM of a whole buffer (encrypt: ciphertext || tag; decrypt: verifies the tag).
  core::R<SecureBytes> gcm(const crypto::KeyPtr& key, bool encrypt, ByteView nonce, Bytes aad, ByteView in);
  core::R<SecureBytes> open_pin_slot(const PinSlot& slot, ByteView pin, const std::string& who,
                                     const std::string& token_id);
  core::R<PinSlot> make_pin_slot(ByteView pin, ByteView token_key, const std::string& who,
                                 const std::string& token_id);
  // Replaces the SO or user PIN slot in the meta record (under the store's cross-process lock).
  core::R<void> store_pin_slot(CK_USER_TYPE who, ByteView pin, ByteView token_key);
  // Verifies a PIN against the meta record, counting failures across processes.
  core::R<SecureBytes> verify_pin(CK_USER_TYPE who, ByteView pin);
  // Private objects' material is sealed under the token key (a login). Public objects (CKA_PRIVATE
  // false) are usable without one, so theirs is sealed under a key derived from the token id: bound
  // to this token and object and checked, but open to whoever can read the token directory (who
  // can use the object anyway).
  core::R<crypto::KeyPtr> sealing_key(bool private_object, const std::string& token_id);
  core::R<Bytes> seal(const std::string& uid, const Secrets& s, bool private_object);
  core::R<Secrets> unseal(const std::string& uid, const TokenRecord& r);
  core::R<Secrets> secrets_of(const std::string& uid);
  core::R<core::StoredObject> store_new(core::AttrMap attrs, Secrets secrets);
  core::R<crypto::KeyPtr> load_key(const core::StoredObject& obj);
  core::R<core::StoredObject> make_key_object(core::AttrMap attrs, const crypto::PrivateMaterial* priv,
                                              SecureBytes secret_value);
  core::R<SecureBytes> key_to_wrap(const core::StoredObject& key);
  // RSA-OAEP of a fresh AES key of aes_bits, then AES-KWP of plain (CKM_RSA_AES_KEY_WRAP).
  core::R<Bytes> rsa_aes_wrap(const crypto::KeyPtr& rsa_public, std::size_t aes_bits,
                              const crypto::CipherParams& oaep, ByteView plain);
  core::R<core::KeyComponents> components(const core::StoredObject& key, bool with_private);

  static Bytes encode_record(const TokenRecord& r);
  static core::R<TokenRecord> decode_record(ByteView b);

  std::mutex mu_;
  core::TokenConfig cfg_;
  std::unique_ptr<store::ObjectStore> store_;
  crypto::Backend& crypto_;
  std::optional<TokenMeta> meta_;   // last read
  std::string reported_token_id_;   // token id of the objects reported to core
  SecureBytes token_key_;           // empty when nobody is logged in
  std::unordered_map<std::string, TokenRecord> token_objs_;
  std::unordered_map<std::string, SessionRecord> session_objs_;
  std::unordered_map<std::string, crypto::KeyPtr> key_cache_;
};

}  // namespace cdcp11::softtoken
