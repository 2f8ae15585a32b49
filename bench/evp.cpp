#include "bench/evp.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <cstring>

namespace cdcp11::bench {
namespace {

struct PkeyFree { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
struct PkeyCtxFree { void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); } };
struct CipherFree { void operator()(EVP_CIPHER* p) const { EVP_CIPHER_free(p); } };
struct CipherCtxFree { void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); } };
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using Cipher = std::unique_ptr<EVP_CIPHER, CipherFree>;
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

std::string ossl_error(const char* what) {
  char buf[256] = "no detail";
  if (unsigned long e = ERR_get_error()) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return std::string(what) + ": " + buf;
}

class AesGcmWorker final : public Worker {
 public:
  AesGcmWorker(const EVP_CIPHER* cipher, ByteView key, std::size_t n)
      : cipher_(cipher), key_(to_secure(key)), ctx_(EVP_CIPHER_CTX_new()), in_(payload(n)),
        out_(n + 16) {
    const std::uint32_t id = iv_prefix();
    std::memcpy(iv_, &id, sizeof id);
  }
  bool call() noexcept override {
    ++counter_;
    std::memcpy(iv_ + 4, &counter_, sizeof counter_);
    int len = 0, fin = 0;
    if (!ctx_ || EVP_EncryptInit_ex2(ctx_.get(), cipher_, key_.data(), iv_, nullptr) != 1 ||
        EVP_EncryptUpdate(ctx_.get(), out_.data(), &len, in_.data(), static_cast<int>(in_.size())) != 1 ||
        EVP_EncryptFinal_ex(ctx_.get(), out_.data() + len, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx_.get(), EVP_CTRL_AEAD_GET_TAG, 16, out_.data() + in_.size()) != 1)
      return failed(ossl_error("AES-256-GCM encrypt"));
    return true;
  }

 private:
  const EVP_CIPHER* cipher_;
  SecureBytes key_;
  CipherCtx ctx_;
  Bytes in_, out_;
  unsigned char iv_[12] = {};
  std::uint64_t counter_ = 0;
};

// RSA keys sign with PKCS#1 v1.5 padding over the DigestInfo (what CKM_RSA_PKCS does), EC keys
// sign the digest (CKM_ECDSA).
bool set_padding(EVP_PKEY_CTX* c, EVP_PKEY* k) {
  return !EVP_PKEY_is_a(k, "RSA") || EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1;
}

class SignWorker final : public Worker {
 public:
  SignWorker(EVP_PKEY* key, ByteView data) : key_(key), data_(to_bytes(data)), sig_(512) {}
  bool call() noexcept override {
    PkeyCtx c(EVP_PKEY_CTX_new_from_pkey(nullptr, key_, nullptr));
    std::size_t len = sig_.size();
    if (!c || EVP_PKEY_sign_init(c.get()) != 1 || !set_padding(c.get(), key_) ||
        EVP_PKEY_sign(c.get(), sig_.data(), &len, data_.data(), data_.size()) != 1)
      return failed(ossl_error("EVP_PKEY_sign"));
    return true;
  }

 private:
  EVP_PKEY* key_;
  Bytes data_, sig_;
};

class VerifyWorker final : public Worker {
 public:
  VerifyWorker(EVP_PKEY* key, ByteView data, ByteView sig)
      : key_(key), data_(to_bytes(data)), sig_(to_bytes(sig)) {}
  bool call() noexcept override {
    PkeyCtx c(EVP_PKEY_CTX_new_from_pkey(nullptr, key_, nullptr));
    if (!c || EVP_PKEY_verify_init(c.get()) != 1 || !set_padding(c.get(), key_) ||
        EVP_PKEY_verify(c.get(), sig_.data(), sig_.size(), data_.data(), data_.size()) != 1)
      return failed(ossl_error("EVP_PKEY_verify"));
    return true;
  }

 private:
  EVP_PKEY* key_;
  Bytes data_, sig_;
};

class KeygenWorker final : public Worker {
 public:
  bool call() noexcept override {
    Pkey k(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
    return k || failed(ossl_error("EVP_PKEY_Q_keygen RSA 2048"));
  }
};

BR<Bytes> sign_once(EVP_PKEY* key, ByteView data) {
  PkeyCtx c(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  Bytes sig(512);
  std::size_t len = sig.size();
  if (!c || EVP_PKEY_sign_init(c.get()) != 1 || !set_padding(c.get(), key) ||
      EVP_PKEY_sign(c.get(), sig.data(), &len, data.data(), data.size()) != 1)
    return fail(ossl_error("EVP_PKEY_sign"));
  sig.resize(len);
  return sig;
}

class EvpColumn final : public Column {
 public:
  const std::string& name() const override { return name_; }

  BR<void> setup() {
    cipher_.reset(EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr));
    if (!cipher_) return fail(ossl_error("EVP_CIPHER_fetch AES-256-GCM"));
    aes_key_ = to_secure(payload(32));
    rsa_.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
    ec_.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    if (!rsa_ || !ec_) return fail(ossl_error("EVP_PKEY_Q_keygen"));
    CDC_ASSIGN(rsa_sig_, sign_once(rsa_.get(), rsa_digest_info()));
    CDC_ASSIGN(ec_sig_, sign_once(ec_.get(), digest32()));
    return {};
  }

  BR<std::unique_ptr<Worker>> worker(Op op) override {
    std::unique_ptr<Worker> w;
    switch (op) {
      case Op::aes_gcm_16: w = std::make_unique<AesGcmWorker>(cipher_.get(), aes_key_, 16); break;
      case Op::aes_gcm_1k: w = std::make_unique<AesGcmWorker>(cipher_.get(), aes_key_, 1024); break;
      case Op::aes_gcm_16k: w = std::make_unique<AesGcmWorker>(cipher_.get(), aes_key_, 16384); break;
      case Op::rsa2048_verify:
        w = std::make_unique<VerifyWorker>(rsa_.get(), rsa_digest_info(), rsa_sig_);
        break;
      case Op::ecdsa_p256_sign: w = std::make_unique<SignWorker>(ec_.get(), digest32()); break;
      case Op::ecdsa_p256_verify:
        w = std::make_unique<VerifyWorker>(ec_.get(), digest32(), ec_sig_);
        break;
      case Op::rsa2048_sign: w = std::make_unique<SignWorker>(rsa_.get(), rsa_digest_info()); break;
      case Op::rsa2048_keygen: w = std::make_unique<KeygenWorker>(); break;
    }
    return w;
  }

 private:
  std::string name_ = "openssl";
  Cipher cipher_;
  SecureBytes aes_key_;
  Pkey rsa_, ec_;
  Bytes rsa_sig_, ec_sig_;
};

}  // namespace

BR<std::unique_ptr<Column>> make_evp_column() {
  auto c = std::make_unique<EvpColumn>();
  CDC_TRY(c->setup());
  return std::unique_ptr<Column>(std::move(c));
}

std::string openssl_version() { return OpenSSL_version(OPENSSL_VERSION); }

}  // namespace cdcp11::bench
