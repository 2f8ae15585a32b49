#include "hsm/operations.h"

#include <algorithm>

#include "common/log.h"
#include "hsm/buffers.h"
#include "hsm/module.h"
#include "hsm/session.h"

namespace cdcp11::hsm {
namespace {

CK_BYTE* in(ByteView v) { return const_cast<CK_BYTE*>(v.data()); }
CK_ULONG len(ByteView v) { return static_cast<CK_ULONG>(v.size()); }

R<void> void_call(std::string_view fn, CK_RV rv) {
  if (rv != CKR_OK) return call_failed(fn, rv);
  return {};
}

// C_*Init for an operation on the session (digests take no key).
template <class Fn, class... Key>
R<void> start(detail::SessionState& s, std::string_view fn, Fn f, const Mechanism& m, Key... key) {
  return guarded([&]() -> R<void> {
    CDC_TRY(s.module->check_usable(fn));
    CK_MECHANISM ck = m.ck();
    if (CK_RV rv = invoke(f, s.handle, &ck, key...); rv != CKR_OK)
      return call_failed(fn, rv, "mechanism " + std::to_string(m.type));
    return {};
  });
}

// A single-part call f(out, &len) straight into the caller's buffer: the result's length, or
// nullopt for CKR_BUFFER_TOO_SMALL.
template <class F>
R<std::optional<std::size_t>> call_into(std::string_view fn, std::span<std::uint8_t> out, F&& f) {
  CK_ULONG n = static_cast<CK_ULONG>(out.size());
  CK_RV rv = f(out.data(), &n);
  if (rv == CKR_BUFFER_TOO_SMALL) return std::optional<std::size_t>{};
  if (rv != CKR_OK) return call_failed(fn, rv);
  if (n > out.size()) return call_failed(fn, CKR_GENERAL_ERROR, "output length beyond the buffer");
  return std::optional<std::size_t>(n);
}

}  // namespace

Operation::Operation(Operation&& o) noexcept
    : s_(std::move(o.s_)), kind_(o.kind_), active_(o.active_) {
  o.active_ = false;
}

Operation& Operation::operator=(Operation&& o) noexcept {
  if (this != &o) {
    abandon();
    s_ = std::move(o.s_);
    kind_ = o.kind_;
    active_ = o.active_;
    o.active_ = false;
  }
  return *this;
}

Operation::~Operation() { abandon(); }

R<void> Operation::ready(std::string_view fn) const {
  if (s_ && s_->handle == CK_INVALID_HANDLE)
    return local_failure(CKR_SESSION_CLOSED, std::string(fn) + ": the session is closed");
  if (!s_ || !active_)
    return local_failure(CKR_OPERATION_NOT_INITIALIZED,
                         std::string(fn) + ": the operation has already ended");
  return s_->module->check_usable(fn);
}

template <class T>
R<T> Operation::track(R<T> r, bool ends_on_success) {
  if (r) {
    if (ends_on_success) active_ = false;
  } else if (r.error().rv != CKR_BUFFER_TOO_SMALL) {
    // PKCS#11 says a failed call ends the operation, but a failure of ours (a bogus length, no
    // memory) may have left it active in the module: make sure.
    abandon();
  }
  return r;
}

R<std::optional<std::size_t>> Operation::track_into(R<std::optional<std::size_t>> r) {
  r = track(std::move(r), false);
  if (r && *r) active_ = false;  // a result ends it; a too-small buffer does not
  return r;
}

void Operation::abandon() noexcept {
  if (!active_ || !s_ || s_->handle == CK_INVALID_HANDLE || !s_->module->usable()) return;
  active_ = false;
  const CK_FUNCTION_LIST* f = s_->f;
  CK_SESSION_HANDLE h = s_->handle;
  if (s_->v3) {
    // PKCS#11 3.0: an Init call with a NULL mechanism terminates the active operation.
    CK_MECHANISM_PTR none = nullptr;
    CK_RV rv = CKR_FUNCTION_FAILED;
    switch (kind_) {
      case Kind::sign: rv = invoke(f->C_SignInit, h, none, CK_OBJECT_HANDLE{0}); break;
      case Kind::verify: rv = invoke(f->C_VerifyInit, h, none, CK_OBJECT_HANDLE{0}); break;
      case Kind::encrypt: rv = invoke(f->C_EncryptInit, h, none, CK_OBJECT_HANDLE{0}); break;
      case Kind::decrypt: rv = invoke(f->C_DecryptInit, h, none, CK_OBJECT_HANDLE{0}); break;
      case Kind::digest: rv = invoke(f->C_DigestInit, h, none); break;
    }
    if (rv == CKR_OK) return;
  }
  // 2.x: finish it, discarding (and wiping) whatever it produces.
  try {
    // Only the ending matters, not the output: a bounded buffer. True when the call ended it
    // (anything but CKR_BUFFER_TOO_SMALL or a successful length query does).
    CK_RV final_rv = CKR_OK;
    auto finish = [&](auto final_fn) {
      CK_ULONG n = 0;
      final_rv = invoke(final_fn, h, static_cast<CK_BYTE_PTR>(nullptr), &n);
      if (final_rv != CKR_OK) return true;
      SecureBytes sink(std::clamp<CK_ULONG>(n, 1, 64 * 1024));
      n = static_cast<CK_ULONG>(sink.size());
      final_rv = invoke(final_fn, h, sink.data(), &n);
      return final_rv != CKR_BUFFER_TOO_SMALL;
    };
    // A single-part mechanism (CKM_RSA_PKCS, CKM_ECDSA) has no final call: SoftHSM2 2.6.1 answers
    // it with CKR_OPERATION_NOT_INITIALIZED and keeps the operation. The single-part call on one
    // zero block ends it, whether it succeeds or fails; its output is discarded and wiped.
    auto single = [&](auto single_fn) {
      if (final_rv != CKR_OPERATION_NOT_INITIALIZED && final_rv != CKR_FUNCTION_NOT_SUPPORTED) return;
      CK_BYTE block[16] = {};
      SecureBytes sink(64 * 1024);
      CK_ULONG n = static_cast<CK_ULONG>(sink.size());
      invoke(single_fn, h, block, CK_ULONG{sizeof block}, sink.data(), &n);
    };
    // A cipher with nothing fed may ask for an impossible final buffer (SoftHSM2 2.6.1 asks
    // for (CK_ULONG)-1 in C_DecryptFinal): feed it one zero block, then finish.
    auto feed = [&](auto update_fn) {
      CK_BYTE block[16] = {};
      SecureBytes sink(64);
      CK_ULONG n = static_cast<CK_ULONG>(sink.size());
      return invoke(update_fn, h, block, CK_ULONG{sizeof block}, sink.data(), &n) != CKR_OK;
    };
    bool done = true;
    switch (kind_) {
      case Kind::sign:
        done = finish(f->C_SignFinal);
        single(f->C_Sign);
        break;
      case Kind::digest: done = finish(f->C_DigestFinal); break;
      case Kind::encrypt:
        done = finish(f->C_EncryptFinal) || feed(f->C_EncryptUpdate) || finish(f->C_EncryptFinal);
        single(f->C_Encrypt);
        break;
      case Kind::decrypt:
        done = finish(f->C_DecryptFinal) || feed(f->C_DecryptUpdate) || finish(f->C_DecryptFinal);
        single(f->C_Decrypt);
        break;
      case Kind::verify: {
        CK_BYTE junk = 0;  // a wrong signature ends the verification
        final_rv = invoke(f->C_VerifyFinal, h, &junk, CK_ULONG{1});
        if (final_rv == CKR_OPERATION_NOT_INITIALIZED || final_rv == CKR_FUNCTION_NOT_SUPPORTED) {
          CK_BYTE block[16] = {};
          invoke(f->C_Verify, h, block, CK_ULONG{sizeof block}, &junk, CK_ULONG{1});
        }
        break;
      }
    }
    if (!done)
      log::warn("hsm", "an abandoned HSM operation could not be ended; the session keeps it");
  } catch (...) {
  }
}

// --- sign ---------------------------------------------------------------------------------

R<Bytes> SignOp::sign(ByteView data) {
  CDC_TRY(ready("C_Sign"));
  return track(guarded([&] {
                 return fetch_output<Bytes>("C_Sign", [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
                   return invoke(s_->f->C_Sign, s_->handle, in(data), len(data), p, n);
                 });
               }),
               true);
}

R<std::optional<std::size_t>> SignOp::sign_into(ByteView data, std::span<std::uint8_t> out) {
  CDC_TRY(ready("C_Sign"));
  return track_into(guarded([&] {
    return call_into("C_Sign", out, [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
      return invoke(s_->f->C_Sign, s_->handle, in(data), len(data), p, n);
    });
  }));
}

R<void> SignOp::update(ByteView part) {
  CDC_TRY(ready("C_SignUpdate"));
  return track(void_call("C_SignUpdate",
                         invoke(s_->f->C_SignUpdate, s_->handle, in(part), len(part))),
               false);
}

R<Bytes> SignOp::final() {
  CDC_TRY(ready("C_SignFinal"));
  return track(guarded([&] {
                 return fetch_output<Bytes>("C_SignFinal", [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
                   return invoke(s_->f->C_SignFinal, s_->handle, p, n);
                 });
               }),
               true);
}

// --- verify -------------------------------------------------------------------------------

R<void> VerifyOp::verify(ByteView data, ByteView signature) {
  CDC_TRY(ready("C_Verify"));
  return track(void_call("C_Verify", invoke(s_->f->C_Verify, s_->handle, in(data), len(data),
                                            in(signature), len(signature))),
               true);
}

R<void> VerifyOp::update(ByteView part) {
  CDC_TRY(ready("C_VerifyUpdate"));
  return track(void_call("C_VerifyUpdate",
                         invoke(s_->f->C_VerifyUpdate, s_->handle, in(part), len(part))),
               false);
}

R<void> VerifyOp::final(ByteView signature) {
  CDC_TRY(ready("C_VerifyFinal"));
  return track(void_call("C_VerifyFinal", invoke(s_->f->C_VerifyFinal, s_->handle,
                                                 in(signature), len(signature))),
               true);
}

// --- encrypt / decrypt --------------------------------------------------------------------

R<Bytes> EncryptOp::encrypt(ByteView data) {
  CDC_TRY(ready("C_Encrypt"));
  return track(guarded([&] {
                 return fetch_output<Bytes>("C_Encrypt", [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
                   return invoke(s_->f->C_Encrypt, s_->handle, in(data), len(data), p, n);
                 });
               }),
               true);
}

R<std::optional<std::size_t>> EncryptOp::encrypt_into(ByteView data, std::span<std::uint8_t> out) {
  CDC_TRY(ready("C_Encrypt"));
  return track_into(guarded([&] {
    return call_into("C_Encrypt", out, [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
      return invoke(s_->f->C_Encrypt, s_->handle, in(data), len(data), p, n);
    });
  }));
}

R<Bytes> EncryptOp::update(ByteView part) {
  CDC_TRY(ready("C_EncryptUpdate"));
  return track(guarded([&] {
                 return fetch_output<Bytes>("C_EncryptUpdate", [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
                   return invoke(s_->f->C_EncryptUpdate, s_->handle, in(part), len(part), p, n);
                 });
               }),
               false);
}

R<Bytes> EncryptOp::final() {
  CDC_TRY(ready("C_EncryptFinal"));
  return track(guarded([&] {
                 return fetch_output<Bytes>("C_EncryptFinal", [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
                   return invoke(s_->f->C_EncryptFinal, s_->handle, p, n);
                 });
               }),
               true);
}

R<SecureBytes> DecryptOp::decrypt(ByteView data) {
  CDC_TRY(ready("C_Decrypt"));
  return track(guarded([&] {
                 return fetch_output<SecureBytes>("C_Decrypt", [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
                   return invoke(s_->f->C_Decrypt, s_->handle, in(data), len(data), p, n);
                 });
               }),
               true);
}

R<std::optional<std::size_t>> DecryptOp::decrypt_into(ByteView data, std::span<std::uint8_t> out) {
  CDC_TRY(ready("C_Decrypt"));
  return track_into(guarded([&] {
    return call_into("C_Decrypt", out, [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
      return invoke(s_->f->C_Decrypt, s_->handle, in(data), len(data), p, n);
    });
  }));
}

R<SecureBytes> DecryptOp::update(ByteView part) {
  CDC_TRY(ready("C_DecryptUpdate"));
  return track(guarded([&] {
                 return fetch_output<SecureBytes>(
                     "C_DecryptUpdate", [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
                       return invoke(s_->f->C_DecryptUpdate, s_->handle, in(part), len(part), p, n);
                     });
               }),
               false);
}

R<SecureBytes> DecryptOp::final() {
  CDC_TRY(ready("C_DecryptFinal"));
  return track(guarded([&] {
                 return fetch_output<SecureBytes>(
                     "C_DecryptFinal", [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
                       return invoke(s_->f->C_DecryptFinal, s_->handle, p, n);
                     });
               }),
               true);
}

// --- digest -------------------------------------------------------------------------------

R<Bytes> DigestOp::digest(ByteView data) {
  CDC_TRY(ready("C_Digest"));
  return track(guarded([&] {
                 return fetch_output<Bytes>("C_Digest", [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
                   return invoke(s_->f->C_Digest, s_->handle, in(data), len(data), p, n);
                 });
               }),
               true);
}

R<void> DigestOp::update(ByteView part) {
  CDC_TRY(ready("C_DigestUpdate"));
  return track(void_call("C_DigestUpdate",
                         invoke(s_->f->C_DigestUpdate, s_->handle, in(part), len(part))),
               false);
}

R<void> DigestOp::update_key(CK_OBJECT_HANDLE key) {
  CDC_TRY(ready("C_DigestKey"));
  return track(void_call("C_DigestKey", invoke(s_->f->C_DigestKey, s_->handle, key)), false);
}

R<Bytes> DigestOp::final() {
  CDC_TRY(ready("C_DigestFinal"));
  return track(guarded([&] {
                 return fetch_output<Bytes>("C_DigestFinal", [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
                   return invoke(s_->f->C_DigestFinal, s_->handle, p, n);
                 });
               }),
               true);
}

// --- Session: starting operations, single-part shortcuts ----------------------------------

R<SignOp> Session::sign_init(const Mechanism& m, CK_OBJECT_HANDLE key) {
  CDC_TRY(start(*s_, "C_SignInit", s_->f->C_SignInit, m, key));
  return SignOp(s_);
}

R<VerifyOp> Session::verify_init(const Mechanism& m, CK_OBJECT_HANDLE key) {
  CDC_TRY(start(*s_, "C_VerifyInit", s_->f->C_VerifyInit, m, key));
  return VerifyOp(s_);
}

R<EncryptOp> Session::encrypt_init(const Mechanism& m, CK_OBJECT_HANDLE key) {
  CDC_TRY(start(*s_, "C_EncryptInit", s_->f->C_EncryptInit, m, key));
  return EncryptOp(s_);
}

R<DecryptOp> Session::decrypt_init(const Mechanism& m, CK_OBJECT_HANDLE key) {
  CDC_TRY(start(*s_, "C_DecryptInit", s_->f->C_DecryptInit, m, key));
  return DecryptOp(s_);
}

R<DigestOp> Session::digest_init(const Mechanism& m) {
  CDC_TRY(start(*s_, "C_DigestInit", s_->f->C_DigestInit, m));
  return DigestOp(s_);
}

R<Bytes> Session::sign(const Mechanism& m, CK_OBJECT_HANDLE key, ByteView data) {
  CDC_ASSIGN(auto op, sign_init(m, key));
  return op.sign(data);
}

R<void> Session::verify(const Mechanism& m, CK_OBJECT_HANDLE key, ByteView data,
                        ByteView signature) {
  CDC_ASSIGN(auto op, verify_init(m, key));
  return op.verify(data, signature);
}

R<Bytes> Session::encrypt(const Mechanism& m, CK_OBJECT_HANDLE key, ByteView data) {
  CDC_ASSIGN(auto op, encrypt_init(m, key));
  return op.encrypt(data);
}

R<SecureBytes> Session::decrypt(const Mechanism& m, CK_OBJECT_HANDLE key, ByteView data) {
  CDC_ASSIGN(auto op, decrypt_init(m, key));
  return op.decrypt(data);
}

R<Bytes> Session::digest(const Mechanism& m, ByteView data) {
  CDC_ASSIGN(auto op, digest_init(m));
  return op.digest(data);
}

}  // namespace cdcp11::hsm
