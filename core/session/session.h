// A session: one application's view of a token, with at most one operation of each kind
// (PKCS#11 3.0 5.6). The cryptographic functions run here (session/operations.cpp): the key
// comes from the token through Token::open_key, the operation from the key's home.
//
// Locking: Session::mu guards the operation state; it is taken before the token's lock, never
// after it.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "core/backend.h"

namespace cdcp11::core {

class Token;

struct OpState {
  OpKind kind = OpKind::sign;
  const MechanismEntry* mech = nullptr;
  std::unique_ptr<Operation> op;
  bool multipart = false;             // an Update has been called
  bool single = false;                // a single-part call kept it running (a length query)
  bool context_login_needed = false;  // CKA_ALWAYS_AUTHENTICATE key, not yet re-authenticated
  std::optional<SecureBytes> pending;  // result computed for a length query
};

struct FindState {
  std::vector<CK_OBJECT_HANDLE> results;
  std::size_t pos = 0;
};

// The caller's data for an active operation: the bytes, or arguments_bad for a NULL pointer with
// a length (which, like every error but buffer_too_small, ends the operation).
using Input = R<ByteView>;

// 128-byte aligned (and so sized): the threads of an application each use their own session, and
// sessions opened one after the other would otherwise share cache lines (or the pairs of lines a
// CPU may fetch together) that each thread writes on every call (#13).
class alignas(128) Session {
 public:
  Session(CK_SESSION_HANDLE handle, Token& token, CK_FLAGS flags) : handle_(handle), token_(token), flags_(flags) {}

  CK_SESSION_HANDLE handle() const { return handle_; }
  Token& token() const { return token_; }
  CK_FLAGS flags() const { return flags_; }
  bool read_write() const { return flags_ & CKF_RW_SESSION; }

  // Sign, verify, encrypt, decrypt: single- and multi-part with PKCS#11's output-buffer rules.
  R<void> begin(OpKind kind, const CK_MECHANISM* m, CK_OBJECT_HANDLE key);
  R<void> single(OpKind kind, Input in, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
  R<void> update(OpKind kind, Input in, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
  R<void> final(OpKind kind, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
  R<void> verify_single(Input data, Input sig);
  R<void> verify_final(Input sig);
  R<void> digest_begin(const CK_MECHANISM* m);
  R<void> digest_single(Input in, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
  R<void> digest_update(Input in);
  R<void> digest_key(CK_OBJECT_HANDLE key);
  R<void> digest_final(CK_BYTE_PTR out, CK_ULONG_PTR out_len);
  // C_Login(CKU_CONTEXT_SPECIFIC): the operation waiting for it may go on.
  R<void> context_login(ByteView pin);
  // C_SessionCancel: ends the operations named by CKF_ENCRYPT/DECRYPT/DIGEST/SIGN/VERIFY.
  void cancel(CK_FLAGS flags);

  // Object search; the token fills the results (Token::find).
  R<void> find_begin(const AttrMap& tmpl);
  R<CK_ULONG> find_next(CK_OBJECT_HANDLE* out, CK_ULONG max);
  R<void> find_end();

  // Ends every operation (logout, and what the spec says ends them all).
  void reset_ops();

 private:
  std::optional<OpState>& state(OpKind k);

  const CK_SESSION_HANDLE handle_;
  Token& token_;
  const CK_FLAGS flags_;
  std::mutex mu_;
  std::optional<FindState> find_;
  std::optional<OpState> sign_, verify_, encrypt_, decrypt_, digest_;
};

// PKCS#11 output-buffer convention (section 5.2): NULL out -> length only; too small ->
// buffer_too_small with the needed length in *out_len.
R<void> write_output(ByteView data, CK_BYTE_PTR out, CK_ULONG_PTR out_len);

// The mechanism a caller passed, checked against the table for a function needing `needed`.
R<Mechanism> mechanism_for(const CK_MECHANISM* m, CK_FLAGS needed);

}  // namespace cdcp11::core
