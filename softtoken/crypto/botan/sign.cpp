// Botan 2 backend: signatures (RSA PKCS#1 v1.5 / PSS, ECDSA raw r||s, Ed25519) and HMAC.
#include <botan/mac.h>
#include <botan/pubkey.h>

#include "softtoken/crypto/botan/bt.h"

namespace cdcp11::crypto::bt {

namespace {

using Scheme = SignParams::Scheme;

std::size_t rsa_k(const BotanKey& k) { return (k.bits_ + 7) / 8; }

R<void> check_key(const BotanKey& k, const SignParams& p, bool need_private) {
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
      if (p.hmac_len > hash_size(*p.hash)) return err(Code::bad_param, "HMAC output length exceeds the hash size");
      return {};
  }
  if (need_private && !k.is_private) return err(Code::bad_key, "signing needs a private key");
  if (p.scheme == Scheme::rsa_pss) {
    if (p.hash && *p.hash != p.pss.hash) return err(Code::bad_param, "PSS hash differs from the signature hash");
    if (p.pss.mgf1 != p.pss.hash)
      return err(Code::unsupported, "Botan backend supports PSS only with MGF1 over the message hash");
    std::size_t em_len = (k.bits_ - 1 + 7) / 8;
    if (em_len < hash_size(p.pss.hash) + p.pss.salt_len + 2)
      return err(Code::bad_param, "PSS salt length too large for the key");
  }
  return {};
}

std::string emsa(const SignParams& p) {
  switch (p.scheme) {
    case Scheme::rsa_pkcs1:
      return p.hash ? std::string("EMSA3(") + detail::hash_name(*p.hash) + ")" : "EMSA3(Raw)";
    case Scheme::rsa_pss:
      return std::string(p.hash ? "PSSR(" : "PSSR_Raw(") + detail::hash_name(p.pss.hash) + ",MGF1," +
             std::to_string(p.pss.salt_len) + ")";
    case Scheme::ecdsa:
      return p.hash ? std::string("EMSA1(") + detail::hash_name(*p.hash) + ")" : "Raw";
    case Scheme::eddsa:
      return "Pure";
    default:
      return "";
  }
}

R<void> check_raw_input(const BotanKey& k, const SignParams& p, std::size_t len) {
  if (p.scheme == Scheme::rsa_pkcs1 && len > detail::pkcs1_max_input(rsa_k(k)))
    return err(Code::bad_input_length, "RSA PKCS#1 v1.5 input longer than modulus size - 11");
  if (p.scheme == Scheme::rsa_pss && len != hash_size(p.pss.hash))
    return err(Code::bad_input_length, "PSS digest length must equal the hash size");
  if (p.scheme == Scheme::ecdsa && len == 0) return err(Code::bad_input_length, "ECDSA digest is empty");
  return {};
}

class Op final : public Signer, public Verifier {
 public:
  Op(const BotanKey& key, KeyPtr hold, const SignParams& p) : key_(key), hold_(std::move(hold)), p_(p) {}

  R<void> init(bool sign) {
    return guard("signature init", [&]() -> R<void> {
      if (p_.scheme == Scheme::hmac) {
        mac_ = Botan::MessageAuthenticationCode::create_or_throw(std::string("HMAC(") + detail::hash_name(*p_.hash) + ")");
        mac_->set_key(key_.secret.data(), key_.secret.size());
        return {};
      }
      buffered_ = !p_.hash && p_.scheme != Scheme::eddsa;
      if (sign)
        signer_ = std::make_unique<Botan::PK_Signer>(*key_.priv, rng(), emsa(p_), Botan::IEEE_1363);
      else
        verifier_ = std::make_unique<Botan::PK_Verifier>(*key_.pub, emsa(p_), Botan::IEEE_1363);
      return {};
    });
  }

  R<void> update(ByteView data) override {
    if (done_) return err(Code::internal, "operation already finished");
    return guard("signature update", [&]() -> R<void> {
      if (mac_)
        mac_->update(data.data(), data.size());
      else if (buffered_)
        buf_.insert(buf_.end(), data.begin(), data.end());
      else if (signer_)
        signer_->update(data.data(), data.size());
      else
        verifier_->update(data.data(), data.size());
      return {};
    });
  }

  R<Bytes> finish() override {
    if (done_) return err(Code::internal, "operation already finished");
    done_ = true;
    if (mac_) return mac_final();
    if (buffered_) CDC_TRY(check_raw_input(key_, p_, buf_.size()));
    return guard("sign", [&]() -> R<Bytes> {
      if (buffered_) signer_->update(buf_.data(), buf_.size());
      auto sig = signer_->signature(rng());
      return Bytes(sig.begin(), sig.end());
    });
  }

  R<void> finish(ByteView signature) override {
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
    std::size_t want = p_.scheme == Scheme::ecdsa   ? 2 * curve_size(key_.curve)
                       : p_.scheme == Scheme::eddsa ? 64
                                                    : rsa_k(key_);
    if (signature.size() != want)
      return err(Code::bad_signature_length, "signature must be " + std::to_string(want) + " bytes");
    if (buffered_) CDC_TRY(check_raw_input(key_, p_, buf_.size()));
    bool valid = false;
    try {
      if (buffered_) verifier_->update(buf_.data(), buf_.size());
      valid = verifier_->check_signature(signature.data(), signature.size());
    } catch (const std::exception&) {
      valid = false;
    }
    if (!valid) return err(Code::bad_signature, "signature does not verify");
    return {};
  }

 private:
  R<Bytes> mac_final() {
    return guard("HMAC", [&]() -> R<Bytes> {
      auto m = mac_->final();
      std::size_t len = p_.hmac_len ? p_.hmac_len : m.size();
      return Bytes(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(len));
    });
  }

  const BotanKey& key_;
  KeyPtr hold_;
  SignParams p_;
  bool done_ = false;
  bool buffered_ = false;
  std::unique_ptr<Botan::MessageAuthenticationCode> mac_;
  std::unique_ptr<Botan::PK_Signer> signer_;
  std::unique_ptr<Botan::PK_Verifier> verifier_;
  SecureBytes buf_;
};

R<std::unique_ptr<Op>> make_op(const KeyPtr& key, const SignParams& p, bool sign) {
  CDC_ASSIGN(const BotanKey* k, as_botan(key));
  CDC_TRY(check_key(*k, p, sign));
  auto op = std::make_unique<Op>(*k, key, p);
  CDC_TRY(op->init(sign));
  return op;
}

}  // namespace

R<std::unique_ptr<Signer>> BotanBackend::signer(const KeyPtr& key, const SignParams& p) {
  CDC_ASSIGN(auto op, make_op(key, p, true));
  return std::unique_ptr<Signer>(std::move(op));
}

R<std::unique_ptr<Verifier>> BotanBackend::verifier(const KeyPtr& key, const SignParams& p) {
  CDC_ASSIGN(auto op, make_op(key, p, false));
  return std::unique_ptr<Verifier>(std::move(op));
}

}  // namespace cdcp11::crypto::bt
