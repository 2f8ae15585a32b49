// A backend is the key store behind one slot: it holds the key material and does the
// cryptography, while core owns PKCS#11 policy (sessions, handles, login state, the attribute
// and mechanism tables). Two implement it: the software token (softtoken/) and a token of another
// PKCS#11 module, an HSM (forward/). backends/factory.h makes the one a group's configuration
// names.
//
// A backend never knows of Azure, JWK or BYOK. It speaks PKCS#11 terms only: attributes,
// mechanisms, key generation, wrap and unwrap inside it, the public key. The mirror (core/mirror)
// composes Azure's BYOK blob from those calls and core/cloud/jwk makes JWKs of the attributes.
//
// Objects are identified by uid (CKA_UNIQUE_ID). The backend returns each object's non-secret
// attributes; secret attributes (is_secret_attribute) stay inside it and are reached only
// through secret_attribute() (for extractable, non-sensitive keys), export_plain() and the
// crypto operations.
//
// Vendor state (the CKA_CDC_* attributes: mirror state, Azure key id, origin, last error) is not
// a backend's: core keeps it for every backend in the token's metadata store
// (core/token/metadata_store.h, <dir>/metadata.json), keyed by uid, and the Token reads and writes
// it there (core/token/vendor_state.h). A backend is given token objects without vendor
// attributes and stores none; the one exception is what a soft token of an earlier format still
// holds in its records, which it reports until it has moved it into the store at its first login
// (softtoken/soft_migrate.cpp). Session objects keep theirs in memory with the rest. A backend
// with a token key of its own (the soft token) authenticates the entries, and encrypts those of
// private objects, through vendor_seal(). Besides:
// - soft token: Azure-resident key references are attribute-only records of its store; the
//   mirror journal is core/mirror/journal, beside the store.
// - HSM: the metadata store also holds each object's assigned identity and the key references;
//   the journal is beside it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
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
  // Vendor attributes of objects reported before that changed since (another process wrote the
  // metadata store): uid -> all of the object's vendor attributes now (core's defaults omitted).
  std::map<std::string, AttrMap> vendor;
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
  // nullopt: the token checks the PIN (Backend::check_pin).
  virtual std::optional<R<void>> context_login(ByteView /*pin*/) { return std::nullopt; }
  // The single-part calls (C_Sign, C_Encrypt, C_Digest, C_Verify). A backend whose mechanisms
  // may have no multi-part form (an HSM) runs them single-part; by default they are one update.
  virtual R<SecureBytes> one_shot(ByteView in) {
    CDC_ASSIGN(auto a, update(in));
    CDC_ASSIGN(auto b, finish());
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }
  // A single-part call (not a verify) written straight into the caller's buffer, so that no
  // copy of the result is held and wiped on the way. nullopt: the result may not fit `out`, or
  // this operation cannot; nothing was done, and one_shot is called instead.
  virtual R<std::optional<std::size_t>> one_shot_into(ByteView /*in*/, std::span<std::uint8_t> /*out*/) {
    return std::optional<std::size_t>{};
  }
  virtual R<void> verify_one_shot(ByteView data, ByteView signature) {
    CDC_TRY(update(data));
    return verify(signature);
  }
};

enum class OpKind { sign, verify, encrypt, decrypt };

// Clear key material as PKCS#11 attributes, wiped when dropped.
using SecretAttrs = std::map<CK_ATTRIBUTE_TYPE, SecureBytes>;

// What a backend can do, for the decisions core makes about its keys.
struct Capabilities {
  // Who holds the keys, as sentences for people name it ("the token", "the HSM").
  std::string holder = "the token";
  // Key material may leave the backend in clear (export_plain) whenever core's policy sends it to
  // a destination that takes no wrapped key. False (an HSM): only keys the backend itself lets out
  // (CKA_EXTRACTABLE true, CKA_SENSITIVE false), and only where the group opts in
  // (mirror.allow_plain_export_from_hsm); core checks both before it asks.
  bool plain_export = true;
  // The backend enforces CKA_EXTRACTABLE and CKA_WRAP_WITH_TRUSTED on every wrap_key, core's own
  // calls included (an HSM does; the soft token leaves that policy to core's C_WrapKey).
  bool enforces_wrap_policy = false;
  // The mechanism that does AES key wrap with padding (RFC 5649) here: CKM_AES_KEY_WRAP_KWP, or
  // a vendor form that means the same (SoftHSM2's CKM_AES_KEY_WRAP_PAD, see hsm/README.md).
  // wrap_key with CKM_AES_KEY_WRAP_KWP runs it. 0: none.
  CK_MECHANISM_TYPE rfc5649_wrap = CKM_AES_KEY_WRAP_KWP;
};

// Protection of a token object's vendor state in the metadata store, under keys of a token key
// the backend holds (the soft token's: softtoken/object_record.h derives them). Core decides what
// is protected and keeps the entry format (core/token/vendor_state.h: seal_entry, open_entry); the
// backend only computes over bytes, bound to its token and the object's uid:
// - mac: an authenticator of a public object's entry (its canonical bytes stay readable);
// - seal / open: a private object's entry, encrypted and authenticated.
// Every call but ready() needs the keys: user_not_logged_in without them.
class VendorSeal {
 public:
  virtual ~VendorSeal() = default;
  // Whether the keys are known now (a login).
  virtual bool ready() = 0;
  virtual R<Bytes> mac(const std::string& uid, ByteView canonical) = 0;
  virtual R<Bytes> seal(const std::string& uid, ByteView canonical) = 0;
  // The canonical bytes; device_error when the sealed bytes do not open as uid's.
  virtual R<SecureBytes> open(const std::string& uid, ByteView sealed) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

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
  // Before a call on one token object alone (its attributes read or changed, a copy, a destroy):
  // what changed, of that object at least. The default is a whole refresh(), right where that is
  // cheap. A backend whose listing costs a read of every object (an HSM) reads only that one, so
  // that a client reading n objects' attributes pays n reads, not n listings.
  virtual R<ObjectChanges> refresh_object(const std::string& uid) {
    (void)uid;
    return refresh();
  }
  // Whether an operation's key is looked up after a refresh. An HSM checks the key itself when the
  // operation starts (a key destroyed elsewhere is its CKR_KEY_HANDLE_INVALID), and listing its
  // objects costs more than most operations.
  virtual bool refresh_before_operations() const { return true; }
  // True only when a refresh() now would report nothing (no change here or elsewhere since the
  // last one); false when that cannot be told cheaply. Threads may ask at once, under the token's
  // shared lock (refresh() runs under its exclusive one): an operation on a token key whose
  // backend says so starts without the exclusive lock and the refresh.
  virtual bool unchanged_since_refresh() { return false; }

  // Creates an object from full attributes; secret attributes among them are taken into the
  // backend and are not in the returned StoredObject. Session objects (CKA_TOKEN false) live in
  // memory only.
  virtual R<StoredObject> create_object(const AttrMap& attrs) = 0;
  // A private key token object whose key material lives outside this token (a remote key core
  // reaches by other means): attributes only, nothing sealed. The backend refuses crypto with it;
  // core routes its operations to the key's home (CKA_CDC_ORIGIN).
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
  virtual R<SecureBytes> key_value_for_digest(const StoredObject& key) = 0;
  // C_DigestKey into a digest begun by begin_digest: by default the key's value is fed to it; a
  // backend that will not give out sensitive values (an HSM) digests the key inside itself.
  virtual R<void> digest_key(Operation& digest, const StoredObject& key) {
    CDC_ASSIGN(auto value, key_value_for_digest(key));
    CDC_TRY(digest.update(value));
    return {};
  }

  virtual R<Bytes> wrap_key(const Mechanism& m, const StoredObject& wrapping_key,
                            const StoredObject& key) = 0;
  // attrs: the complete, policy-checked template of the new key.
  virtual R<StoredObject> unwrap_key(const Mechanism& m, const StoredObject& unwrapping_key,
                                     ByteView wrapped, const AttrMap& attrs) = 0;
  virtual R<StoredObject> derive_key(const Mechanism& m, const StoredObject& base_key,
                                     const AttrMap& attrs) = 0;

  virtual R<void> random(std::uint8_t* out, std::size_t n) = 0;

  virtual Capabilities capabilities() { return {}; }

  // The public key of a public or private key object, as PKCS#11 attributes: CKA_KEY_TYPE with
  // CKA_MODULUS and CKA_PUBLIC_EXPONENT (RSA) or CKA_EC_PARAMS and CKA_EC_POINT (EC), derived
  // when the token holds no public key object. key_type_inconsistent for other keys.
  virtual R<AttrMap> public_key(const StoredObject& key) = 0;
  // A key's clear material, for a plain export where core's policy allows one (a destination
  // that takes no wrapped key): RSA CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT,
  // CKA_PRIME_1/2, CKA_EXPONENT_1/2, CKA_COEFFICIENT; EC CKA_EC_PARAMS, CKA_EC_POINT, CKA_VALUE;
  // secret keys CKA_VALUE. Where capabilities().plain_export is false, key_unextractable unless
  // the key is CKA_EXTRACTABLE and not CKA_SENSITIVE.
  virtual R<SecretAttrs> export_plain(const StoredObject& key) = 0;

  // What identifies this token to every host that reaches it (an HSM token: its module and its
  // serial and label), so that a key mirrored from one host is linked on another; empty for a
  // token of this host's own (the soft token).
  virtual std::string shared_identity() const { return {}; }

  // How the vendor state of this backend's token objects is protected in the metadata store
  // (see VendorSeal), owned by the backend; nullptr: it is kept as written. An HSM offers none:
  // no token key of ours exists there to derive keys from, and its own objects are the authority
  // on what it holds (the metadata store only names them).
  virtual VendorSeal* vendor_seal() { return nullptr; }
};

// The mechanisms a backend's slot serves: its own list, or core's whole table (also without a
// backend).
std::vector<SlotMechanism> slot_mechanisms(Backend* backend);

}  // namespace cdcp11::core
