// OpenSSL 3 backend: signatures (RSA PKCS#1 v1.5 / PSS, ECDSA raw r||s, Ed25519) and HMAC.
#include <openssl/ec.h>
#include <openssl/rsa.h>

#include "softtoken/crypto/openssl/ossl.h"

namespace cdcp11::crypto::ossl {

namespace {

using Scheme = SignParams::Scheme;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG_free>>;

std::size_t rsa_k(const OsslKey& k) { return (k.bits_ + 7) / 8; }

R<void> check_key(const OsslKey& k, const SignParams& p, bool need_private) {
  switch (p.scheme) {
    case Scheme::rsa_pkcs1:
    case Scheme::rsa_pss:
      if (k.kind != KeyKind::rsa) return err(Code::bad_key, "RSA signature scheme needs an RSA key");
      break;
    case Scheme::ecdsa:
      if (k.kind != KeyKind::ec) return err(Code::bad_key, "ECDSA needs an EC (non-Ed25519) key");
      break;
    case Scheme::eddsa:
      if (k.kind != KeyKind::ed25519) return err(Code::bad_key, "EdDSA needs an Ed25519 key");
      if (p.hash) return err(Code::bad_param, "EdDSA (pure Ed25519) takes no hash");
      break;
    case Scheme::hmac:
      if (k.kind != KeyKind::secret) return err(Code::bad_key, "HMAC needs a secret key");
      if (!p.hash) return err(Code::bad_param, "HMAC needs a hash");
      if (p.hmac_len > hash_size(*p.hash))
        return err(Code::bad_param, "HMAC output length exceeds the hash size");
      return {};
  }
  if (need_private && !k.is_private) return err(Code::bad_key, "signing needs a private key");
  if (p.scheme == Scheme::rsa_pss) {
    if (p.hash && *p.hash != p.pss.hash) return err(Code::bad_param, "PSS hash differs from the signature hash");
    std::size_t em_len = (k.bits_ - 1 + 7) / 8;
    if (em_len < hash_size(p.pss.hash) + p.pss.salt_len + 2)
      return err(Code::bad_param, "PSS salt length too large for the key");
  }
  return {};
}

// Applies padding / PSS / message digest settings to a signature context.
R<void> configure(EVP_PKEY_CTX* ctx, const SignParams& p, bool set_md) {
  if (p.scheme == Scheme::rsa_pkcs1) {
    if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1) return ossl_err(Code::internal, "RSA padding");
  } else if (p.scheme == Scheme::rsa_pss) {
    if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        (set_md && EVP_PKEY_CTX_set_signature_md(ctx, md(p.pss.hash)) != 1) ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md(p.pss.mgf1)) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, static_cast<int>(p.pss.salt_len)) != 1)
      return ossl_err(Code::bad_param, "PSS parameters rejected");
  }
  return {};
}

// Validates the block handed to a raw (no hash) scheme.
R<void> check_raw_input(const OsslKey& k, const SignParams& p, std::size_t len) {
  if (p.scheme == Scheme::rsa_pkcs1 && len > detail::pkcs1_max_input(rsa_k(k)))
    return err(Code::bad_input_length, "RSA PKCS#1 v1.5 input longer than modulus size - 11");
  if (p.scheme == Scheme::rsa_pss && len != hash_size(p.pss.hash))
    return err(Code::bad_input_length, "PSS digest length must equal the hash size");
  if (p.scheme == Scheme::ecdsa && len == 0) return err(Code::bad_input_length, "ECDSA digest is empty");
  return {};
}

R<Bytes> der_to_raw(ByteView der, std::size_t fs) {
  const unsigned char* q = der.data();
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &q, static_cast<long>(der.size())));
  if (!sig) return ossl_err(Code::internal, "ECDSA signature decoding");
  const BIGNUM *r = nullptr, *s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  Bytes out(2 * fs);
  if (!bn_to_fixed(r, out.data(), fs) || !bn_to_fixed(s, out.data() + fs, fs))
    return err(Code::internal, "ECDSA signature component too long");
  return out;
}

R<Bytes> raw_to_der(ByteView raw, std::size_t fs) {
  EcdsaSigPtr sig(ECDSA_SIG_new());
  BnPtr r = bn_from(raw.first(fs), false), s = bn_from(raw.subspan(fs), false);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1)
    return ossl_err(Code::internal, "ECDSA signature encoding");
  r.release();
  s.release();
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return ossl_err(Code::internal, "ECDSA signature encoding");
  Bytes out(static_cast<std::size_t>(len));
  unsigned char* w = out.data();
  i2d_ECDSA_SIG(sig.get(), &w);
  return out;
}

EVP_MAC* hmac_alg() {
  static EVP_MAC* mac = EVP_MAC_fetch(libctx(), "HMAC", nullptr);  // leaked on purpose
  return mac;
}

// One class for sign and verify: the message is either streamed into a digest-sign context,
// an HMAC, or buffered for schemes that operate on the whole input (raw blocks, Ed25519).
class Op final : public Signer, public Verifier {
 public:
  Op(const OsslKey& key, KeyPtr hold, const SignParams& p) : key_(key), hold_(std::move(hold)), p_(p) {}

  R<void> init(bool sign) {
    sign_ = sign;
    if (p_.scheme == Scheme::hmac) {
      mac_.reset(EVP_MAC_CTX_new(hmac_alg()));
      std::string mdname = detail::hash_name(*p_.hash);
      OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", mdname.data(), 0), OSSL_PARAM_construct_end()};
      static const std::uint8_t empty = 0;
      const std::uint8_t* kp = key_.secret.empty() ? &empty : key_.secret.data();
      if (!mac_ || EVP_MAC_init(mac_.get(), kp, key_.secret.size(), params) != 1)
        return ossl_err(Code::internal, "HMAC init failed");
      return {};
    }
    if (!p_.hash || p_.scheme == Scheme::eddsa) return {};  // buffered
    mdctx_.reset(EVP_MD_CTX_new());
    if (!mdctx_) return ossl_err(Code::internal, "EVP_MD_CTX_new");
    EVP_PKEY_CTX* pctx = nullptr;
    const char* mdname = detail::hash_name(*p_.hash);
    int rc = sign ? EVP_DigestSignInit_ex(mdctx_.get(), &pctx, mdname, libctx(), nullptr, key_.pkey.get(), nullptr)
                  : EVP_DigestVerifyInit_ex(mdctx_.get(), &pctx, mdname, libctx(), nullptr, key_.pkey.get(), nullptr);
    if (rc != 1) return ossl_err(Code::internal, "signature init failed");
    return configure(pctx, p_, false);
  }

  R<void> update(ByteView data) override {
    if (done_) return err(Code::internal, "operation already finished");
    if (mac_) {
      if (EVP_MAC_update(mac_.get(), data.data(), data.size()) != 1) return ossl_err(Code::internal, "HMAC update");
    } else if (mdctx_) {
      int rc = sign_ ? EVP_DigestSignUpdate(mdctx_.get(), data.data(), data.size())
                     : EVP_DigestVerifyUpdate(mdctx_.get(), data.data(), data.size());
      if (rc != 1) return ossl_err(Code::internal, "signature update");
    } else {
      buf_.insert(buf_.end(), data.begin(), data.end());
    }
    return {};
  }

  R<Bytes> finish() override {  // sign
    if (done_) return err(Code::internal, "operation already finished");
    done_ = true;
    if (mac_) return mac_final();
    Bytes sig;
    std::size_t len = 0;
    if (mdctx_) {
      if (EVP_DigestSignFinal(mdctx_.get(), nullptr, &len) != 1) return ossl_err(Code::internal, "sign failed");
      sig.resize(len);
      if (EVP_DigestSignFinal(mdctx_.get(), sig.data(), &len) != 1) return ossl_err(Code::internal, "sign failed");
    } else if (p_.scheme == Scheme::eddsa) {
      MdCtxPtr ctx(EVP_MD_CTX_new());
      sig.resize(64);
      len = sig.size();
      if (!ctx || EVP_DigestSignInit_ex(ctx.get(), nullptr, nullptr, libctx(), nullptr, key_.pkey.get(), nullptr) != 1 ||
          EVP_DigestSign(ctx.get(), sig.data(), &len, buf_.data(), buf_.size()) != 1)
        return ossl_err(Code::internal, "Ed25519 sign failed");
    } else {
      CDC_TRY(check_raw_input(key_, p_, buf_.size()));
      PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(libctx(), key_.pkey.get(), nullptr));
      if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1) return ossl_err(Code::internal, "sign init failed");
      CDC_TRY(configure(ctx.get(), p_, true));
      if (EVP_PKEY_sign(ctx.get(), nullptr, &len, buf_.data(), buf_.size()) != 1)
        return ossl_err(Code::internal, "sign failed");
      sig.resize(len);
      if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, buf_.data(), buf_.size()) != 1)
        return ossl_err(Code::internal, "sign failed");
    }
    sig.resize(len);
    if (p_.scheme == Scheme::ecdsa) return der_to_raw(sig, curve_size(key_.curve));
    return sig;
  }

  R<void> finish(ByteView signature) override {  // verify
    if (done_) return err(Code::internal, "operation already finished");
    done_ = true;
    if (mac_) {
      CDC_ASSIGN(Bytes mac, mac_final());
      if (signature.size() != mac.size())
        return err(Code::bad_signature_length, "HMAC length is " + std::to_string(signature.size()) + ", expected " +
                                                   std::to_string(mac.size()));
      if (!ct_equal(mac, signature)) return err(Code::bad_signature, "HMAC does not match");
      return {};
    }
    Bytes der;
    ByteView sig = signature;
    switch (p_.scheme) {
      case Scheme::rsa_pkcs1:
      case Scheme::rsa_pss:
        if (signature.size() != rsa_k(key_))
          return err(Code::bad_signature_length, "RSA signature must be " + std::to_string(rsa_k(key_)) + " bytes");
        break;
      case Scheme::ecdsa: {
        std::size_t fs = curve_size(key_.curve);
        if (signature.size() != 2 * fs)
          return err(Code::bad_signature_length, "ECDSA signature must be " + std::to_string(2 * fs) + " bytes (r||s)");
        CDC_ASSIGN(der, raw_to_der(signature, fs));
        sig = der;
        break;
      }
      case Scheme::eddsa:
        if (signature.size() != 64) return err(Code::bad_signature_length, "Ed25519 signature must be 64 bytes");
        break;
      default:
        break;
    }
    int rc;
    if (mdctx_) {
      rc = EVP_DigestVerifyFinal(mdctx_.get(), sig.data(), sig.size());
    } else if (p_.scheme == Scheme::eddsa) {
      MdCtxPtr ctx(EVP_MD_CTX_new());
      if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), nullptr, nullptr, libctx(), nullptr, key_.pkey.get(), nullptr) != 1)
        return ossl_err(Code::internal, "Ed25519 verify init failed");
      rc = EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), buf_.data(), buf_.size());
    } else {
      CDC_TRY(check_raw_input(key_, p_, buf_.size()));
      PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(libctx(), key_.pkey.get(), nullptr));
      if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1) return ossl_err(Code::internal, "verify init failed");
      CDC_TRY(configure(ctx.get(), p_, true));
      rc = EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), buf_.data(), buf_.size());
    }
    clear_errors();
    if (rc != 1) return err(Code::bad_signature, "signature does not verify");
    return {};
  }

 private:
  R<Bytes> mac_final() {
    Bytes out(hash_size(*p_.hash));
    std::size_t len = 0;
    if (EVP_MAC_final(mac_.get(), out.data(), &len, out.size()) != 1) return ossl_err(Code::internal, "HMAC final");
    out.resize(p_.hmac_len ? p_.hmac_len : len);
    return out;
  }

  const OsslKey& key_;
  KeyPtr hold_;  // keeps key_ alive
  SignParams p_;
  bool sign_ = true;
  bool done_ = false;
  MdCtxPtr mdctx_;
  MacCtxPtr mac_;
  SecureBytes buf_;
};

R<std::unique_ptr<Op>> make_op(const KeyPtr& key, const SignParams& p, bool sign) {
  CDC_ASSIGN(const OsslKey* k, as_ossl(key));
  CDC_TRY(check_key(*k, p, sign));
  auto op = std::make_unique<Op>(*k, key, p);
  CDC_TRY(op->init(sign));
  return op;
}

}  // namespace

R<std::unique_ptr<Signer>> OpenSslBackend::signer(const KeyPtr& key, const SignParams& p) {
  CDC_ASSIGN(auto op, make_op(key, p, true));
  return std::unique_ptr<Signer>(std::move(op));
}

R<std::unique_ptr<Verifier>> OpenSslBackend::verifier(const KeyPtr& key, const SignParams& p) {
  CDC_ASSIGN(auto op, make_op(key, p, false));
  return std::unique_ptr<Verifier>(std::move(op));
}

}  // namespace cdcp11::crypto::ossl
