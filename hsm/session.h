// A session with an HSM token (RAII: C_CloseSession on destruction). One thread at a time uses a
// Session; several threads each use their own. Every failure keeps the HSM's CK_RV (Error::rv),
// so e.g. CKR_PIN_INCORRECT and CKR_PIN_LOCKED reach the layer above as the HSM said them.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "cdcp11/pkcs11_3_0.h"
#include "common/bytes.h"
#include "core/attributes.h"
#include "hsm/attributes.h"
#include "hsm/errors.h"
#include "hsm/mechanism.h"
#include "hsm/operations.h"

namespace cdcp11::hsm {

class Module;

namespace detail {
// Shared by a Session and its operations, so an operation that outlives its Session (or a
// Session that moves) stays safe: a closed session's handle is CK_INVALID_HANDLE.
struct SessionState {
  std::shared_ptr<Module> module;  // keeps the module loaded while the session is open
  const CK_FUNCTION_LIST* f = nullptr;
  CK_SLOT_ID slot = 0;
  CK_SESSION_HANDLE handle = CK_INVALID_HANDLE;
  bool v3 = false;  // the module speaks PKCS#11 3.x (Init with a NULL mechanism cancels)
};
}  // namespace detail

enum class UserType : CK_USER_TYPE {
  so = CKU_SO,
  user = CKU_USER,
  context_specific = CKU_CONTEXT_SPECIFIC,
};

struct KeyPair {
  CK_OBJECT_HANDLE public_key = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE private_key = CK_INVALID_HANDLE;
};

class Session {
 public:
  Session(Session&&) noexcept = default;
  Session& operator=(Session&&) noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  CK_SESSION_HANDLE handle() const { return s_->handle; }
  CK_SLOT_ID slot() const { return s_->slot; }
  Module& module() const { return *s_->module; }
  R<CK_SESSION_INFO> info() const;

  // Login and PINs. The PIN bytes are passed through as they are and never logged.
  R<void> login(UserType who, ByteView pin);
  R<void> logout();
  R<void> init_pin(ByteView pin);  // in an SO session
  R<void> set_pin(ByteView old_pin, ByteView new_pin);

  // Objects. find always ends the search with C_FindObjectsFinal; max_results 0 = all.
  R<std::vector<CK_OBJECT_HANDLE>> find(const core::AttrMap& tmpl, std::size_t max_results = 0);
  // Attributes the object does not have or will not reveal are listed in
  // Attributes::unavailable with the HSM's reason; only other failures are errors.
  // each_reason: an attribute the module does not give is asked alone to learn why (sensitive or
  // not of the object), one call each; false: all take the batch's CK_RV, for a reader that only
  // wants the values there are (a listing reads ~50 types, most not of the object).
  R<Attributes> get_attributes(CK_OBJECT_HANDLE obj, std::span<const CK_ATTRIBUTE_TYPE> types,
                               bool each_reason = true);
  R<void> set_attributes(CK_OBJECT_HANDLE obj, const core::AttrMap& values);
  R<CK_OBJECT_HANDLE> create(const core::AttrMap& tmpl);
  R<CK_OBJECT_HANDLE> copy(CK_OBJECT_HANDLE obj, const core::AttrMap& changes);
  R<void> destroy(CK_OBJECT_HANDLE obj);

  // Keys.
  R<CK_OBJECT_HANDLE> generate_key(const Mechanism& m, const core::AttrMap& tmpl);
  R<KeyPair> generate_key_pair(const Mechanism& m, const core::AttrMap& public_tmpl,
                               const core::AttrMap& private_tmpl);
  R<Bytes> wrap_key(const Mechanism& m, CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key);
  R<CK_OBJECT_HANDLE> unwrap_key(const Mechanism& m, CK_OBJECT_HANDLE unwrapping_key,
                                 ByteView wrapped, const core::AttrMap& tmpl);
  R<CK_OBJECT_HANDLE> derive_key(const Mechanism& m, CK_OBJECT_HANDLE base_key,
                                 const core::AttrMap& tmpl);
  R<SecureBytes> generate_random(std::size_t n);
  R<void> seed_random(ByteView seed);

  // Single-part operations.
  R<Bytes> sign(const Mechanism& m, CK_OBJECT_HANDLE key, ByteView data);
  R<void> verify(const Mechanism& m, CK_OBJECT_HANDLE key, ByteView data, ByteView signature);
  R<Bytes> encrypt(const Mechanism& m, CK_OBJECT_HANDLE key, ByteView data);
  R<SecureBytes> decrypt(const Mechanism& m, CK_OBJECT_HANDLE key, ByteView data);
  R<Bytes> digest(const Mechanism& m, ByteView data);

  // Multi-part operations (see operations.h); also the way to log in with CKU_CONTEXT_SPECIFIC
  // between the Init and the operation.
  R<SignOp> sign_init(const Mechanism& m, CK_OBJECT_HANDLE key);
  R<VerifyOp> verify_init(const Mechanism& m, CK_OBJECT_HANDLE key);
  R<EncryptOp> encrypt_init(const Mechanism& m, CK_OBJECT_HANDLE key);
  R<DecryptOp> decrypt_init(const Mechanism& m, CK_OBJECT_HANDLE key);
  R<DigestOp> digest_init(const Mechanism& m);

 private:
  friend class Module;
  Session(std::shared_ptr<Module> m, CK_SLOT_ID slot, CK_SESSION_HANDLE h);
  R<void> check(std::string_view fn) const;
  void close() noexcept;

  std::shared_ptr<detail::SessionState> s_;
};

// Destroys an object when it goes out of scope (session keys the caller made for one job).
class ScopedObject {
 public:
  ScopedObject(Session& s, CK_OBJECT_HANDLE h) : s_(&s), h_(h) {}
  ScopedObject(const ScopedObject&) = delete;
  ScopedObject& operator=(const ScopedObject&) = delete;
  ~ScopedObject();
  CK_OBJECT_HANDLE get() const { return h_; }

 private:
  Session* s_;
  CK_OBJECT_HANDLE h_;
};

}  // namespace cdcp11::hsm
