// OpenSSL 3 backend: AES-GCM / CBC-PAD / CTR / ECB / CBC and RSA-OAEP / RSAES-PKCS1-v1_5.
#include <openssl/rsa.h>

#include "common/read_mostly_mutex.h"
#include "softtoken/crypto/openssl/ossl.h"

namespace cdcp11::crypto::ossl {

namespace {

using Scheme = CipherParams::Scheme;

class AesCipher final : public Cipher {
 public:
  AesCipher(const CipherParams& p, bool enc) : p_(p), enc_(enc) {}
  ~AesCipher() override {
    if (reusable_ && shelf_) shelf_->give(std::move(ctx_));
  }

  R<void> init(const OsslKey& key) {
    CDC_TRY(detail::check_aes_params(p_, key.secret.size()));
    const AesMode mode = p_.scheme == Scheme::aes_gcm                                     ? AesMode::gcm
                         : p_.scheme == Scheme::aes_cbc_pad || p_.scheme == Scheme::aes_cbc ? AesMode::cbc
                         : p_.scheme == Scheme::aes_ecb                                     ? AesMode::ecb
                                                                                            : AesMode::ctr;
    const EVP_CIPHER* cipher = aes_cipher(key.secret.size(), mode);
    // A GCM operation with the default 12-byte IV takes a context of the key's that has its
    // schedule set (GcmCtxPool) and gives only the IV, which resets the message state.
    bool keyed = false;
    if (mode == AesMode::gcm && p_.iv.size() == 12 && key.gcm_pool) {
      shelf_ = key.gcm_pool->shelf();
      ctx_ = key.gcm_pool->take();
      keyed = ctx_ != nullptr;
    }
    if (!ctx_) ctx_.reset(EVP_CIPHER_CTX_new());
    if (!cipher || !ctx_)
      return ossl_err(Code::internal, "cannot fetch AES for a " + std::to_string(key.secret.size()) + "-byte key");
    if (p_.scheme == Scheme::aes_ctr && !budget_.init(p_.iv, p_.counter_bits))
      return err(Code::bad_param, "AES-CTR counter parameters invalid");
    int enc = enc_ ? 1 : 0;
    if (p_.scheme == Scheme::aes_gcm) {
      // The cipher's default IV length is 12; another must be set before the IV is given.
      if (p_.iv.size() != 12) {
        std::size_t ivlen = p_.iv.size();
        OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_CIPHER_PARAM_AEAD_IVLEN, &ivlen),
                               OSSL_PARAM_construct_end()};
        if (EVP_CipherInit_ex2(ctx_.get(), cipher, nullptr, nullptr, enc, params) != 1)
          return ossl_err(Code::bad_param, "AES-GCM IV length rejected");
        cipher = nullptr;
      }
      if (EVP_CipherInit_ex2(ctx_.get(), keyed ? nullptr : cipher, keyed ? nullptr : key.secret.data(), p_.iv.data(),
                             enc, nullptr) != 1)
        return ossl_err(Code::internal, "AES-GCM init failed");
      if (enc_ && !p_.aad.empty()) {
        int outl = 0;
        if (EVP_CipherUpdate(ctx_.get(), nullptr, &outl, p_.aad.data(), static_cast<int>(p_.aad.size())) != 1)
          return ossl_err(Code::internal, "AES-GCM AAD failed");
      }
    } else {
      if (EVP_CipherInit_ex2(ctx_.get(), cipher, key.secret.data(), p_.iv.data(), enc, nullptr) != 1)
        return ossl_err(Code::internal, std::string(EVP_CIPHER_get0_name(cipher)) + " init failed");
      EVP_CIPHER_CTX_set_padding(ctx_.get(), p_.scheme == Scheme::aes_cbc_pad ? 1 : 0);
    }
    return {};
  }

  R<SecureBytes> update(ByteView in) override {
    if (done_) return err(Code::internal, "operation already finished");
    if (p_.scheme == Scheme::aes_gcm && !enc_) {  // released only after the tag verifies
      held_.insert(held_.end(), in.begin(), in.end());
      return SecureBytes{};
    }
    if (p_.scheme == Scheme::aes_ctr && !budget_.consume(in.size()))
      return err(Code::bad_input_length, "AES-CTR counter would wrap");
    total_ += in.size();
    return run(in);
  }

  R<SecureBytes> finish() override {
    if (done_) return err(Code::internal, "operation already finished");
    done_ = true;
    std::size_t tag_len = p_.tag_bits / 8;
    if (p_.scheme == Scheme::aes_gcm && !enc_) {
      if (held_.size() < tag_len) return err(Code::bad_encrypted_input, "AES-GCM input shorter than the tag");
      std::size_t ct_len = held_.size() - tag_len;
      OSSL_PARAM params[] = {
          OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, held_.data() + ct_len, tag_len),
          OSSL_PARAM_construct_end()};
      if (EVP_CIPHER_CTX_set_params(ctx_.get(), params) != 1) return ossl_err(Code::internal, "AES-GCM tag");
      if (!p_.aad.empty()) {
        int outl = 0;
        if (EVP_CipherUpdate(ctx_.get(), nullptr, &outl, p_.aad.data(), static_cast<int>(p_.aad.size())) != 1)
          return ossl_err(Code::internal, "AES-GCM AAD failed");
      }
      CDC_ASSIGN(SecureBytes out, run(ByteView(held_).first(ct_len)));
      int fin = 0;
      if (EVP_CipherFinal_ex(ctx_.get(), nullptr, &fin) != 1) {
        clear_errors();
        return err(Code::bad_encrypted_input, "AES-GCM tag does not verify");
      }
      reusable_ = true;
      return out;
    }
    SecureBytes out(16 + tag_len);
    CDC_ASSIGN(std::size_t n, final_into(out.data()));
    out.resize(n);
    return out;
  }

  // A fresh encryption only: a decryption's output must not reach the caller before it is
  // known good (GCM's tag, CBC's padding).
  R<std::optional<std::size_t>> one_shot_into(ByteView in, std::span<std::uint8_t> out) override {
    if (!enc_ || done_ || total_ != 0 || out.size() < output_size(in.size())) return std::optional<std::size_t>{};
    if (p_.scheme == Scheme::aes_ctr && !budget_.consume(in.size()))
      return err(Code::bad_input_length, "AES-CTR counter would wrap");
    total_ = in.size();
    done_ = true;
    CDC_ASSIGN(std::size_t w, run_into(in, out.data()));
    CDC_ASSIGN(std::size_t f, final_into(out.data() + w));
    return std::optional<std::size_t>(w + f);
  }

 private:
  // An encryption's whole output for n bytes in.
  std::size_t output_size(std::size_t n) const {
    switch (p_.scheme) {
      case Scheme::aes_gcm: return n + p_.tag_bits / 8;
      case Scheme::aes_cbc_pad: return n - n % 16 + 16;
      default: return n;  // CTR; ECB and CBC without padding (a partial block is refused)
    }
  }

  // EVP's final block (at most 16 bytes) and GCM's tag, after the whole input, into out, which
  // has room for them (what output_size leaves after the updates' output).
  R<std::size_t> final_into(std::uint8_t* out) {
    if (p_.scheme == Scheme::aes_cbc_pad && !enc_ && (total_ == 0 || total_ % 16))
      return err(Code::bad_encrypted_input, "AES-CBC ciphertext length is not a positive multiple of 16");
    if (detail::unpadded_block_mode(p_.scheme) && total_ % 16) return detail::partial_block_error(p_.scheme, total_);
    int fin = 0;
    if (EVP_CipherFinal_ex(ctx_.get(), out, &fin) != 1) {
      if (!enc_) {
        clear_errors();
        return err(Code::bad_encrypted_input, "AES-CBC padding is invalid");
      }
      return ossl_err(Code::internal, "cipher final failed");
    }
    std::size_t n = static_cast<std::size_t>(fin);
    if (p_.scheme == Scheme::aes_gcm) {
      const std::size_t tag_len = p_.tag_bits / 8;
      OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, out + n, tag_len),
                             OSSL_PARAM_construct_end()};
      if (EVP_CIPHER_CTX_get_params(ctx_.get(), params) != 1) return ossl_err(Code::internal, "AES-GCM tag");
      n += tag_len;
      reusable_ = true;
    }
    return n;
  }

  R<SecureBytes> run(ByteView in) {
    SecureBytes out(in.size() + 16);
    CDC_ASSIGN(std::size_t w, run_into(in, out.data()));
    out.resize(w);
    return out;
  }

  // EVP_CipherUpdate into out, which holds in.size() + 16 bytes.
  R<std::size_t> run_into(ByteView in, std::uint8_t* out) {
    int outl = 0;
    // EVP takes int lengths; feed large inputs in chunks.
    std::size_t off = 0, w = 0;
    do {
      std::size_t n = std::min<std::size_t>(in.size() - off, 1u << 30);
      if (EVP_CipherUpdate(ctx_.get(), out + w, &outl, in.data() + off, static_cast<int>(n)) != 1)
        return ossl_err(Code::internal, "cipher update failed");
      off += n;
      w += static_cast<std::size_t>(outl);
    } while (off < in.size());
    return w;
  }

  CipherParams p_;
  bool enc_;
  bool done_ = false;
  CipherCtxPtr ctx_;
  // Where ctx_ goes back to when the operation finished well: held, so that it outlives the key
  // object if it must (a weak_ptr's lock() would write a count every thread on the key shares).
  std::shared_ptr<GcmCtxShelf> shelf_;
  bool reusable_ = false;
  SecureBytes held_;
  std::size_t total_ = 0;
  detail::CtrBudget budget_;
};

class RsaCipher final : public Cipher {
 public:
  RsaCipher(const OsslKey& key, KeyPtr hold, const CipherParams& p, bool enc)
      : key_(key), hold_(std::move(hold)), p_(p), enc_(enc) {}

  R<SecureBytes> update(ByteView in) override {
    if (done_) return err(Code::internal, "operation already finished");
    buf_.insert(buf_.end(), in.begin(), in.end());
    return SecureBytes{};
  }

  R<SecureBytes> finish() override {
    if (done_) return err(Code::internal, "operation already finished");
    done_ = true;
    std::size_t k = (key_.bits_ + 7) / 8;
    bool oaep = p_.scheme == Scheme::rsa_oaep;
    if (enc_) {
      std::size_t max = oaep ? detail::oaep_max_input(k, p_.oaep_hash) : detail::pkcs1_max_input(k);
      if (buf_.size() > max)
        return err(Code::bad_input_length, "RSA plaintext longer than " + std::to_string(max) + " bytes");
    } else if (buf_.size() != k) {
      return err(Code::bad_input_length, "RSA ciphertext must be " + std::to_string(k) + " bytes");
    }
    if (!enc_ && !oaep) return pkcs1_decrypt(k);
    PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(libctx(), key_.pkey.get(), nullptr));
    if (!ctx || (enc_ ? EVP_PKEY_encrypt_init(ctx.get()) : EVP_PKEY_decrypt_init(ctx.get())) != 1)
      return ossl_err(Code::internal, "RSA cipher init failed");
    if (EVP_PKEY_CTX_set_rsa_padding(ctx.get(), oaep ? RSA_PKCS1_OAEP_PADDING : RSA_PKCS1_PADDING) != 1)
      return ossl_err(Code::internal, "RSA padding");
    if (oaep) {
      if (EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), md(p_.oaep_hash)) != 1 ||
          EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md(p_.mgf1)) != 1)
        return ossl_err(Code::bad_param, "OAEP hash rejected");
      if (!p_.label.empty()) {
        void* label = OPENSSL_memdup(p_.label.data(), p_.label.size());
        if (label == nullptr || EVP_PKEY_CTX_set0_rsa_oaep_label(ctx.get(), label, static_cast<int>(p_.label.size())) != 1) {
          OPENSSL_free(label);
          return ossl_err(Code::bad_param, "OAEP label rejected");
        }
      }
    }
    SecureBytes out(k);
    std::size_t len = out.size();
    int rc = enc_ ? EVP_PKEY_encrypt(ctx.get(), out.data(), &len, buf_.data(), buf_.size())
                  : EVP_PKEY_decrypt(ctx.get(), out.data(), &len, buf_.data(), buf_.size());
    if (rc != 1) {
      if (!enc_) {
        clear_errors();
        return err(Code::bad_encrypted_input, "RSA decryption failed (padding or ciphertext invalid)");
      }
      return ossl_err(Code::internal, "RSA encryption failed");
    }
    out.resize(len);
    return out;
  }

 private:
  // OpenSSL 3.0's RSA_PKCS1_PADDING reports bad padding (an oracle; implicit rejection arrived in
  // 3.2), so the padding is removed by detail::pkcs1_decode_implicit from the raw RSA output.
  R<SecureBytes> pkcs1_decrypt(std::size_t k) {
    PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(libctx(), key_.pkey.get(), nullptr));
    if (!ctx || EVP_PKEY_decrypt_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_NO_PADDING) != 1)
      return ossl_err(Code::internal, "RSA decryption init failed");
    SecureBytes em(k);
    std::size_t len = em.size();
    if (EVP_PKEY_decrypt(ctx.get(), em.data(), &len, buf_.data(), buf_.size()) != 1 || len != k) {
      clear_errors();  // the only failure left is public: the ciphertext is not below the modulus
      return err(Code::bad_encrypted_input, "RSA ciphertext is not below the modulus");
    }
    CDC_ASSIGN(auto d, get_bn(key_.pkey.get(), OSSL_PKEY_PARAM_RSA_D));
    SecureBytes d_bytes(k);
    if (!bn_to_fixed(d.get(), d_bytes.data(), k)) return err(Code::internal, "RSA private exponent too long");
    return detail::pkcs1_decode_implicit(*openssl_backend(), em, d_bytes, buf_);
  }

  const OsslKey& key_;
  KeyPtr hold_;
  CipherParams p_;
  bool enc_;
  bool done_ = false;
  SecureBytes buf_;
};

R<std::unique_ptr<Cipher>> make_cipher(const KeyPtr& key, const CipherParams& p, bool enc) {
  CDC_ASSIGN(const OsslKey* k, as_ossl(key));
  if (p.scheme == Scheme::rsa_oaep || p.scheme == Scheme::rsa_pkcs1) {
    if (k->kind != KeyKind::rsa) return err(Code::bad_key, "RSA encryption needs an RSA key");
    if (!enc && !k->is_private) return err(Code::bad_key, "RSA decryption needs a private key");
    return std::unique_ptr<Cipher>(std::make_unique<RsaCipher>(*k, key, p, enc));
  }
  if (k->kind != KeyKind::secret) return err(Code::bad_key, "AES needs a secret key");
  auto c = std::make_unique<AesCipher>(p, enc);
  CDC_TRY(c->init(*k));
  return std::unique_ptr<Cipher>(std::move(c));
}

}  // namespace

GcmCtxShelf::~GcmCtxShelf() {
  for (auto& c : ctx_) EVP_CIPHER_CTX_free(c.exchange(nullptr));
}

CipherCtxPtr GcmCtxShelf::take() {
  for (auto& c : ctx_) {
    // A load first: an empty place is passed without taking its line for writing.
    if (c.load(std::memory_order_relaxed) == nullptr) continue;
    if (EVP_CIPHER_CTX* got = c.exchange(nullptr, std::memory_order_acquire)) return CipherCtxPtr(got);
  }
  return nullptr;
}

void GcmCtxShelf::give(CipherCtxPtr ctx) {
  for (auto& c : ctx_) {
    EVP_CIPHER_CTX* empty = nullptr;
    if (c.load(std::memory_order_relaxed) == nullptr &&
        c.compare_exchange_strong(empty, ctx.get(), std::memory_order_release, std::memory_order_relaxed)) {
      (void)ctx.release();
      return;
    }
  }
}

std::size_t GcmCtxShelf::size() const {
  std::size_t n = 0;
  for (auto& c : ctx_) n += c.load() != nullptr;
  return n;
}

GcmCtxPool::GcmCtxPool() {
  for (auto& s : shelves_) s = std::make_shared<GcmCtxShelf>();
}

const std::shared_ptr<GcmCtxShelf>& GcmCtxPool::shelf() const { return shelves_[this_thread_slot() % shelves_.size()]; }

CipherCtxPtr GcmCtxPool::take() const { return shelf()->take(); }

std::size_t GcmCtxPool::size() const {
  std::size_t n = 0;
  for (auto& s : shelves_) n += s->size();
  return n;
}

R<std::unique_ptr<Cipher>> OpenSslBackend::encryptor(const KeyPtr& key, const CipherParams& p) {
  return make_cipher(key, p, true);
}

R<std::unique_ptr<Cipher>> OpenSslBackend::decryptor(const KeyPtr& key, const CipherParams& p) {
  return make_cipher(key, p, false);
}

}  // namespace cdcp11::crypto::ossl
