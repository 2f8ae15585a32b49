// Multi-part operations on an HSM session. Each object is one active operation (the module
// allows one of each kind per session at a time): create it with Session::sign_init & co., feed
// it, finish it. An operation dropped unfinished is terminated in its destructor (3.0 modules:
// Init with a NULL mechanism; 2.x modules: the final call, its output discarded and wiped), so
// the session is never left with an operation active. An operation that outlives its Session
// fails its calls with CKR_SESSION_CLOSED.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "cdcp11/pkcs11_3_0.h"
#include "common/bytes.h"
#include "hsm/errors.h"

namespace cdcp11::hsm {

namespace detail {
struct SessionState;
}

class Operation {
 public:
  enum class Kind { sign, verify, encrypt, decrypt, digest };

  Operation(Operation&& o) noexcept;
  Operation& operator=(Operation&& o) noexcept;
  Operation(const Operation&) = delete;
  Operation& operator=(const Operation&) = delete;
  ~Operation();

  bool active() const { return active_; }

 protected:
  Operation(std::shared_ptr<detail::SessionState> s, Kind k)
      : s_(std::move(s)), kind_(k), active_(true) {}
  // Records how a call left the operation: per PKCS#11, a call ends it unless it succeeded as an
  // intermediate step or asked for a bigger buffer.
  template <class T>
  R<T> track(R<T> r, bool ends_on_success);
  // For a single-part call into the caller's buffer (nullopt: it was too small).
  R<std::optional<std::size_t>> track_into(R<std::optional<std::size_t>> r);
  void abandon() noexcept;
  // The operation is still active and the module usable in this process.
  R<void> ready(std::string_view fn) const;

  std::shared_ptr<detail::SessionState> s_;
  Kind kind_;
  bool active_ = false;
};

class SignOp : public Operation {
 public:
  R<Bytes> sign(ByteView data);  // single-part: C_Sign
  // The single-part call into out; nullopt when out is too small (the operation goes on).
  R<std::optional<std::size_t>> sign_into(ByteView data, std::span<std::uint8_t> out);
  R<void> update(ByteView part);
  R<Bytes> final();

 private:
  friend class Session;
  explicit SignOp(std::shared_ptr<detail::SessionState> s) : Operation(std::move(s), Kind::sign) {}
};

class VerifyOp : public Operation {
 public:
  // CKR_SIGNATURE_INVALID (or _LEN_RANGE) comes back as an error carrying that CKR.
  R<void> verify(ByteView data, ByteView signature);
  R<void> update(ByteView part);
  R<void> final(ByteView signature);

 private:
  friend class Session;
  explicit VerifyOp(std::shared_ptr<detail::SessionState> s) : Operation(std::move(s), Kind::verify) {}
};

class EncryptOp : public Operation {
 public:
  R<Bytes> encrypt(ByteView data);
  // The single-part call into out; nullopt when out is too small (the operation goes on).
  R<std::optional<std::size_t>> encrypt_into(ByteView data, std::span<std::uint8_t> out);
  R<Bytes> update(ByteView part);
  R<Bytes> final();

 private:
  friend class Session;
  explicit EncryptOp(std::shared_ptr<detail::SessionState> s) : Operation(std::move(s), Kind::encrypt) {}
};

class DecryptOp : public Operation {
 public:
  R<SecureBytes> decrypt(ByteView data);
  // The single-part call into out; nullopt when out is too small (the operation goes on).
  R<std::optional<std::size_t>> decrypt_into(ByteView data, std::span<std::uint8_t> out);
  R<SecureBytes> update(ByteView part);
  R<SecureBytes> final();

 private:
  friend class Session;
  explicit DecryptOp(std::shared_ptr<detail::SessionState> s) : Operation(std::move(s), Kind::decrypt) {}
};

class DigestOp : public Operation {
 public:
  R<Bytes> digest(ByteView data);
  R<void> update(ByteView part);
  R<void> update_key(CK_OBJECT_HANDLE key);  // C_DigestKey
  R<Bytes> final();

 private:
  friend class Session;
  explicit DigestOp(std::shared_ptr<detail::SessionState> s) : Operation(std::move(s), Kind::digest) {}
};

}  // namespace cdcp11::hsm
