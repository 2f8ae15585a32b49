// The authoritative key store behind one slot. core owns PKCS#11 policy (sessions, handles,
// login state, the attribute and mechanism tables); a backend owns the key material and the
// cryptography: the software token (softtoken/) or a token of another PKCS#11 module, an HSM
// (forward/). backends/factory.h makes the one a group's configuration names.
//
// Objects are identified by uid (CKA_UNIQUE_ID). The backend returns each object's non-secret
// attributes; secret attributes (is_secret_attribute) stay inside it and are reached only
// through secret_attribute() (for extractable, non-sensitive keys) and the crypto operations.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/attributes.h"
#include "core/errors.h"
#include "core/mechanisms.h"

namespace cdcp11::core {

struct TokenStatus {
  std::string label;          // as set by C_InitToken (32 chars max)
  std::string serial;         // 16 chars max
  bool initialized = false;   // C_InitToken done
  bool user_pin_initialized = false;
  bool user_pin_count_low = false, user_pin_final_try = false, user_pin_locked = false;
  bool so_pin_count_low = false, so_pin_final_try = false, so_pin_locked = false;
  std::size_t min_pin_len = 4, max_pin_len = 255;
  // C_GetTokenInfo's manufacturerID and model: what serves the slot.
  std::string manufacturer = "cdcp11", model = "soft token";
};

// A mechanism as one slot serves it (C_GetMechanismInfo).
struct SlotMechanism {
  CK_MECHANISM_TYPE type = 0;
  CK_ULONG min_key = 0, max_key = 0;
  CK_FLAGS flags = 0;
};

struct StoredObject {
  std::string uid;
  AttrMap attrs;  // non-secret attributes, CKA_UNIQUE_ID included
};

struct ObjectChanges {
  std::vector<StoredObject> upserted;
  std::vector<std::string> removed;
  bool full_reload = false;
};

// The mechanism a caller asked for: the table entry plus its raw parameter bytes.
struct Mechanism {
  const MechanismEntry* entry = nullptr;
  Bytes param;
};

// A multi-part operation running in the backend. Input and output are plain bytes; core handles
// buffers, length queries and operation state.
class Operation {
 public:
  virtual ~Operation() = default;
  virtual R<SecureBytes> update(ByteView in) = 0;   // sign/verify/digest return empty
  virtual R<SecureBytes> finish() = 0;              // sign/digest: the result; encrypt/decrypt: tail
  virtual R<void> verify(ByteView signature) = 0;   // verify operations only
  // C_Login(CKU_CONTEXT_SPECIFIC) after the init, for a backend whose module checks the
  // re-authentication per session (an HSM): the PIN goes to the session running this operation.
  // nullopt: the token checks the PIN (TokenBackend::check_pin).
  virtual std::optional<R<void>> context_login(ByteView /*pin*/) { return std::nullopt; }
};

enum class OpKind { sign, verify, encrypt, decrypt };

// A key in JSON Web Key terms (RFC 7517/7518): kty "RSA" (n, e, d, p, q, dp, dq, qi), "EC" with
// crv "P-256" | "P-384" | "P-521" | "P-256K" (x, y, d; coordinates padded to the field size), or
// "oct" (k). Values are unsigned big-endian bytes. Ed25519 keys have no representation here.
struct KeyComponents {
  std::string kty;
  std::string crv;
  std::map<std::string, SecureBytes> parts;
};

class TokenBackend {
 public:
  virtual ~TokenBackend() = default;

  virtual TokenStatus status() = 0;
  // The mechanisms this token serves, when it serves fewer than core's table or with other key
  // sizes (a forwarded token: what its HSM reports, intersected with the table); nullopt: the table.
  virtual std::optional<std::vector<SlotMechanism>> mechanisms() { return std::nullopt; }

  // PINs. login/logout apply to this process (PKCS#11 login state is per application).
  virtual R<void> init_token(ByteView so_pin, const std::string& label) = 0;
  virtual R<void> init_pin(ByteView user_pin) = 0;  // requires SO login
  virtual R<void> set_pin(CK_USER_TYPE who, ByteView old_pin, ByteView new_pin) = 0;
  virtual R<void> login(CK_USER_TYPE who, ByteView pin) = 0;
  virtual R<void> check_pin(ByteView pin) = 0;  // context-specific re-authentication
  virtual void logout() = 0;

  // Token objects: what changed since the last call (by this or any other process).
  virtual R<ObjectChanges> refresh() = 0;
  // Whether an operation's key is looked up after a refresh. An HSM checks the key itself when the
  // operation starts (a key destroyed elsewhere is its CKR_KEY_HANDLE_INVALID), and listing its
  // objects costs more than most operations.
  virtual bool refresh_before_operations() const { return true; }

  // Creates an object from full attributes; secret attributes among them are taken into the
  // backend and are not in the returned StoredObject. Session objects (CKA_TOKEN false) live in
  // memory only.
  virtual R<StoredObject> create_object(const AttrMap& attrs) = 0;
  // A private key token object whose key material lives outside this token (an Azure-resident
  // key): attributes only, nothing sealed. The backend refuses crypto with it; core routes its
  // operations elsewhere (CKA_CDC_ORIGIN).
  virtual R<StoredObject> create_key_reference(const AttrMap& attrs) = 0;
  // New object with the secret material of src and the given (non-secret) attributes.
  virtual R<StoredObject> copy_object(const std::string& src_uid, const AttrMap& attrs) = 0;
  // Replaces an object's non-secret attributes.
  virtual R<void> update_object(const std::string& uid, const AttrMap& attrs) = 0;
  virtual R<void> destroy_object(const std::string& uid) = 0;
  virtual R<SecureBytes> secret_attribute(const std::string& uid, CK_ATTRIBUTE_TYPE t) = 0;
  // Size of the object as C_GetObjectSize reports it.
  virtual R<std::size_t> object_size(const std::string& uid) = 0;

  // Key generation: attrs are the complete, policy-checked templates; the backend adds the key
  // material attributes (CKA_MODULUS, CKA_EC_POINT, CKA_VALUE_LEN, ...) and stores the objects.
  virtual R<StoredObject> generate_key(const Mechanism& m, const AttrMap& attrs) = 0;
  virtual R<std::pair<StoredObject, StoredObject>> generate_key_pair(const Mechanism& m,
                                                                     const AttrMap& pub,
                                                                     const AttrMap& priv) = 0;

  virtual R<std::unique_ptr<Operation>> begin(OpKind kind, const Mechanism& m,
                                              const StoredObject& key) = 0;
  virtual R<std::unique_ptr<Operation>> begin_digest(const Mechanism& m) = 0;
  virtual R<SecureBytes> key_value_for_digest(const StoredObject& key) = 0;  // C_DigestKey

  virtual R<Bytes> wrap_key(const Mechanism& m, const StoredObject& wrapping_key,
                            const StoredObject& key) = 0;
  // attrs: the complete, policy-checked template of the new key.
  virtual R<StoredObject> unwrap_key(const Mechanism& m, const StoredObject& unwrapping_key,
                                     ByteView wrapped, const AttrMap& attrs) = 0;
  virtual R<StoredObject> derive_key(const Mechanism& m, const StoredObject& base_key,
                                     const AttrMap& attrs) = 0;

  virtual R<void> random(std::uint8_t* out, std::size_t n) = 0;

  // For the mirror engine. The public half of a private key (derived when the token holds no
  // public key object); the whole key for a plain JWK import (Standard vaults); and the key
  // wrapped for Azure BYOK: CKM_RSA_AES_KEY_WRAP (RSA-OAEP-SHA1/MGF1-SHA1 of a fresh AES-256 key,
  // then AES-KWP of the PKCS#8 private key or the raw secret value) under the KEK (n, e), so the
  // clear key never leaves the backend.
  virtual R<KeyComponents> public_components(const StoredObject& key) = 0;
  virtual R<KeyComponents> private_components(const StoredObject& key) = 0;
  virtual R<Bytes> wrap_for_byok(const StoredObject& key, ByteView kek_n, ByteView kek_e) = 0;
  // Whether the key can leave the backend for the mirror, plainly (private_components) or
  // wrapped (wrap_for_byok): checked before any call to Azure, so a refusal costs nothing remote.
  virtual R<void> can_export(const StoredObject&, bool /*plain*/) { return {}; }
  // The backend can wrap only keys with CKA_EXTRACTABLE true (an HSM): keys generated on a group
  // that mirrors on generate get it unless the application's template says otherwise.
  virtual bool mirror_needs_extractable() const { return false; }
  // What identifies this token to every host that reaches it (an HSM token: its module and its
  // serial and label), so that a key mirrored from one host is linked on another; empty for a
  // token of this host's own (the soft token).
  virtual std::string shared_identity() const { return {}; }
};

}  // namespace cdcp11::core
