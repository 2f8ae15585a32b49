// Botan 2 backend: AES-GCM / CBC-PAD / CTR / ECB / CBC and RSA-OAEP / RSAES-PKCS1-v1_5.
// botan/oaep.h is public in 2.19 but flagged "will be made internal"; silence that notice.
#define BOTAN_NO_DEPRECATED_WARNINGS 1
#include <botan/aead.h>
#include <botan/block_cipher.h>
#include <botan/cipher_mode.h>
#include <botan/hash.h>
#include <botan/oaep.h>
#include <botan/pubkey.h>
#include <botan/rsa.h>
#include <botan/stream_cipher.h>

#include "softtoken/crypto/botan/bt.h"

namespace cdcp11::crypto::bt {

namespace {

using Scheme = CipherParams::Scheme;
using SV = Botan::secure_vector<uint8_t>;

// Botan's GCM takes tag lengths 8 and 12..16 bytes; other lengths (4..7, 9..11) are done with a
// full 16-byte tag that is truncated (a GCM tag of length t is the prefix of the full tag).
bool botan_gcm_tag_ok(std::size_t t) { return t == 8 || (t >= 12 && t <= 16); }

class AesCipher final : public Cipher {
 public:
  AesCipher(const CipherParams& p, bool enc) : p_(p), enc_(enc) {}

  R<void> init(const BotanKey& key) {
    CDC_TRY(detail::check_aes_params(p_, key.secret.size()));
    tag_len_ = p_.tag_bits / 8;
    std::string aes = "AES-" + std::to_string(key.secret.size() * 8);
    return guard("AES init", [&]() -> R<void> {
      if (p_.scheme == Scheme::aes_ctr) {
        if (!budget_.init(p_.iv, p_.counter_bits)) return err(Code::bad_param, "AES-CTR counter parameters invalid");
        ctr_ = Botan::StreamCipher::create_or_throw("CTR-BE(" + aes + ")");
        ctr_->set_key(key.secret.data(), key.secret.size());
        ctr_->set_iv(p_.iv.data(), p_.iv.size());
        return {};
      }
      if (p_.scheme == Scheme::aes_gcm) {
        key_ = key.secret;
        // Truncated-tag decryption is verified in finish() by re-encrypting; see below.
        bool native = botan_gcm_tag_ok(tag_len_);
        mode_ = make_gcm(native ? tag_len_ : 16, native ? !enc_ : false);
        return {};
      }
      if (p_.scheme == Scheme::aes_ecb) {  // Debian's Botan 2 is built without the ECB mode
        ecb_ = Botan::BlockCipher::create_or_throw(aes);
        ecb_->set_key(key.secret.data(), key.secret.size());
        return {};
      }
      mode_ = Botan::Cipher_Mode::create_or_throw(aes + (p_.scheme == Scheme::aes_cbc ? "/CBC/NoPadding" : "/CBC/PKCS7"),
                                                  enc_ ? Botan::ENCRYPTION : Botan::DECRYPTION);
      mode_->set_key(key.secret.data(), key.secret.size());
      mode_->start(p_.iv.data(), p_.iv.size());
      return {};
    });
  }

  R<SecureBytes> update(ByteView in) override {
    if (done_) return err(Code::internal, "operation already finished");
    if (p_.scheme == Scheme::aes_ctr) {
      if (!budget_.consume(in.size())) return err(Code::bad_input_length, "AES-CTR counter would wrap");
      SecureBytes out(in.size());
      if (!in.empty()) ctr_->cipher(in.data(), out.data(), in.size());
      return out;
    }
    pending_.insert(pending_.end(), in.begin(), in.end());
    total_ += in.size();
    if (p_.scheme == Scheme::aes_gcm && !enc_) return SecureBytes{};  // released after the tag verifies
    // The unpadded modes release every whole block at once, as OpenSSL does.
    const bool whole_blocks = detail::unpadded_block_mode(p_.scheme);
    std::size_t gran = whole_blocks ? 16 : mode_->update_granularity();
    std::size_t n = pending_.size() / gran * gran;
    // CBC-PAD decryption keeps the final block(s) for the padding check in finish().
    if (!whole_blocks && !enc_ && n == pending_.size() && n > 0) n -= gran;
    if (n == 0) return SecureBytes{};
    return guard("cipher update", [&]() -> R<SecureBytes> {
      SV buf(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
      if (ecb_ && enc_) ecb_->encrypt_n(buf.data(), buf.data(), n / 16);
      else if (ecb_) ecb_->decrypt_n(buf.data(), buf.data(), n / 16);
      else mode_->update(buf);
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
      return SecureBytes(buf.begin(), buf.end());
    });
  }

  R<SecureBytes> finish() override {
    if (done_) return err(Code::internal, "operation already finished");
    done_ = true;
    if (p_.scheme == Scheme::aes_ctr) return SecureBytes{};
    if (p_.scheme == Scheme::aes_gcm && !enc_) return gcm_decrypt();
    if (p_.scheme == Scheme::aes_cbc_pad && !enc_ && (total_ == 0 || total_ % 16))
      return err(Code::bad_encrypted_input, "AES-CBC ciphertext length is not a positive multiple of 16");
    if (detail::unpadded_block_mode(p_.scheme)) {
      if (!pending_.empty()) return detail::partial_block_error(p_.scheme, total_);
      return SecureBytes{};  // update() has released every block
    }
    try {
      SV buf(pending_.begin(), pending_.end());
      mode_->finish(buf);
      if (p_.scheme == Scheme::aes_gcm && !botan_gcm_tag_ok(tag_len_)) buf.resize(buf.size() - 16 + tag_len_);
      return SecureBytes(buf.begin(), buf.end());
    } catch (const std::exception& e) {
      if (!enc_) return err(Code::bad_encrypted_input, "AES-CBC padding is invalid");
      return err(Code::internal, std::string("cipher finish: ") + e.what());
    }
  }

 private:
  std::unique_ptr<Botan::Cipher_Mode> make_gcm(std::size_t tag, bool decrypt) {
    auto m = Botan::Cipher_Mode::create_or_throw(
        "AES-" + std::to_string(key_.size() * 8) + "/GCM(" + std::to_string(tag) + ")",
        decrypt ? Botan::DECRYPTION : Botan::ENCRYPTION);
    m->set_key(key_.data(), key_.size());
    if (auto* aead = dynamic_cast<Botan::AEAD_Mode*>(m.get())) aead->set_associated_data(p_.aad.data(), p_.aad.size());
    m->start(p_.iv.data(), p_.iv.size());
    return m;
  }

  R<SecureBytes> gcm_decrypt() {
    if (pending_.size() < tag_len_) return err(Code::bad_encrypted_input, "AES-GCM input shorter than the tag");
    try {
      if (botan_gcm_tag_ok(tag_len_)) {
        SV buf(pending_.begin(), pending_.end());
        mode_->finish(buf);
        return SecureBytes(buf.begin(), buf.end());
      }
      // GCM encryption and decryption use the same keystream: "encrypting" the ciphertext with
      // mode_ (an encryptor) yields the plaintext; encrypting that plaintext again yields the
      // original ciphertext and its full tag, whose prefix must equal the received tag.
      std::size_t ct_len = pending_.size() - tag_len_;
      SV pt(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(ct_len));
      mode_->finish(pt);
      pt.resize(ct_len);
      SV check(pt.begin(), pt.end());
      make_gcm(16, false)->finish(check);
      if (!ct_equal(ByteView(check.data() + ct_len, tag_len_),
                    ByteView(pending_.data() + ct_len, tag_len_))) {
        secure_zero(pt.data(), pt.size());
        return err(Code::bad_encrypted_input, "AES-GCM tag does not verify");
      }
      return SecureBytes(pt.begin(), pt.end());
    } catch (const Botan::Invalid_Authentication_Tag&) {
      return err(Code::bad_encrypted_input, "AES-GCM tag does not verify");
    } catch (const std::exception& e) {
      return err(Code::internal, std::string("AES-GCM: ") + e.what());
    }
  }

  CipherParams p_;
  bool enc_;
  bool done_ = false;
  std::size_t tag_len_ = 16;
  std::size_t total_ = 0;
  SecureBytes key_;
  SecureBytes pending_;
  std::unique_ptr<Botan::Cipher_Mode> mode_;
  std::unique_ptr<Botan::StreamCipher> ctr_;
  std::unique_ptr<Botan::BlockCipher> ecb_;
  detail::CtrBudget budget_;
};

class RsaCipher final : public Cipher {
 public:
  RsaCipher(const BotanKey& key, KeyPtr hold, const CipherParams& p, bool enc)
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
    if (!enc_ && !oaep) {
      // Botan 2's EME-PKCS1-v1_5 decryption throws on bad padding (decrypt_or_random needs a
      // known length and is not deterministic); the padding is removed by the shared
      // constant-time decoder with implicit rejection instead.
      CDC_ASSIGN(auto em, raw_private(k));
      SecureBytes d(k);
      CDC_TRY(guard("RSA private exponent", [&]() -> R<void> {
        Botan::BigInt::encode_1363(d.data(), k, dynamic_cast<const Botan::RSA_PrivateKey&>(*key_.priv).get_d());
        return {};
      }));
      return detail::pkcs1_decode_implicit(backend(), em, d, buf_);
    }
    try {
      if (!oaep) {
        Botan::PK_Encryptor_EME e(*key_.pub, rng(), "EME-PKCS1-v1_5");
        auto c = e.encrypt(buf_.data(), buf_.size(), rng());
        return SecureBytes(c.begin(), c.end());
      }
      // OAEP through Botan's EME object so that the label can be arbitrary bytes (the EME name
      // string cannot carry them) and MGF1 can use a different hash; RSA itself is raw.
      Botan::OAEP eme(Botan::HashFunction::create_or_throw(detail::hash_name(p_.oaep_hash)).release(),
                      Botan::HashFunction::create_or_throw(detail::hash_name(p_.mgf1)).release(),
                      std::string(p_.label.begin(), p_.label.end()));
      const Botan::EME& base = eme;
      if (enc_) {
        SV em = base.encode(buf_.data(), buf_.size(), key_.bits_ - 1, rng());
        Botan::PK_Encryptor_EME e(*key_.pub, rng(), "Raw");
        auto c = e.encrypt(em, rng());
        SecureBytes out;
        if (!detail::pad_left(ByteView(c.data(), c.size()), k, out)) return err(Code::internal, "RSA output too long");
        return out;
      }
      CDC_ASSIGN(auto em, raw_private(k));
      uint8_t valid = 0;
      SV m = base.unpad(valid, em.data(), em.size());
      if (valid != 0xFF) return err(Code::bad_encrypted_input, "RSA-OAEP decoding failed (padding or label)");
      return SecureBytes(m.begin(), m.end());
    } catch (const std::exception& e) {
      if (!enc_) return err(Code::bad_encrypted_input, "RSA decryption failed (padding or ciphertext invalid)");
      return err(Code::internal, std::string("RSA encryption failed: ") + e.what());
    }
  }

 private:
  // The RSA private-key operation on the ciphertext, all k bytes of its result. Decryption with
  // EME "Raw" strips the leading zero bytes, so the output length would tell whether the top
  // byte is zero (Manger's oracle against OAEP); the "Raw" signature is the same blinded private
  // operation and keeps every byte.
  R<SecureBytes> raw_private(std::size_t k) {
    try {
      Botan::PK_Signer signer(*key_.priv, rng(), "Raw");
      std::vector<uint8_t> x = signer.sign_message(buf_.data(), buf_.size(), rng());
      SecureBytes em(x.begin(), x.end());
      secure_zero(x.data(), x.size());
      if (em.size() != k) return err(Code::internal, "RSA private operation returned a short result");
      return em;
    } catch (const Botan::Invalid_Argument&) {
      return err(Code::bad_encrypted_input, "RSA ciphertext is not below the modulus");
    } catch (const std::exception& e) {
      return err(Code::internal, std::string("RSA private operation: ") + e.what());
    }
  }

  const BotanKey& key_;
  KeyPtr hold_;
  CipherParams p_;
  bool enc_;
  bool done_ = false;
  SecureBytes buf_;
};

R<std::unique_ptr<Cipher>> make_cipher(const KeyPtr& key, const CipherParams& p, bool enc) {
  CDC_ASSIGN(const BotanKey* k, as_botan(key));
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

R<std::unique_ptr<Cipher>> BotanBackend::encryptor(const KeyPtr& key, const CipherParams& p) {
  return make_cipher(key, p, true);
}

R<std::unique_ptr<Cipher>> BotanBackend::decryptor(const KeyPtr& key, const CipherParams& p) {
  return make_cipher(key, p, false);
}

}  // namespace cdcp11::crypto::bt
