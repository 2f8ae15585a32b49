// SoftToken: a key's public half and, for a plain export, its clear material, as PKCS#11
// attributes; and the RSA-AES key wrap (CKM_RSA_AES_KEY_WRAP) wrap_key runs.
#include "softtoken/der.h"
#include "softtoken/soft_token.h"

namespace cdcp11::softtoken {

using core::Errc;
using core::err;

namespace {

SecureBytes secure(ByteView v) { return SecureBytes(v.begin(), v.end()); }

}  // namespace

core::R<Bytes> SoftToken::rsa_aes_wrap(const crypto::KeyPtr& rsa_public, std::size_t aes_bits,
                                       const crypto::CipherParams& oaep, ByteView plain) {
  SecureBytes aes(aes_bits / 8);
  CDC_TRY(random(aes.data(), aes.size()));
  auto enc = crypto_.encryptor(rsa_public, oaep);
  if (!enc) return fail(from_crypto(enc.error(), CryptoContext::wrap));
  auto a = (*enc)->update(aes);
  if (!a) return fail(from_crypto(a.error(), CryptoContext::wrap));
  auto b = (*enc)->finish();
  if (!b) return fail(from_crypto(b.error(), CryptoContext::wrap));
  Bytes out(a->begin(), a->end());
  out.insert(out.end(), b->begin(), b->end());
  auto wrapped = crypto_.aes_key_wrap(aes, plain, true, {});
  if (!wrapped) return fail(from_crypto(wrapped.error(), CryptoContext::wrap));
  out.insert(out.end(), wrapped->begin(), wrapped->end());
  return out;
}

core::R<core::AttrMap> SoftToken::public_key(const core::StoredObject& key) {
  const auto cls = key.attrs.ulong(CKA_CLASS).value_or(CKO_DATA);
  core::AttrMap out;
  auto with = [&](const crypto::PublicMaterial& pm) -> core::AttrMap {
    if (auto* r = std::get_if<crypto::RsaPublic>(&pm)) {
      out.set_ulong(CKA_KEY_TYPE, CKK_RSA);
      out.set(CKA_MODULUS, r->n);
      out.set(CKA_PUBLIC_EXPONENT, r->e);
    } else {
      auto& e = std::get<crypto::EcPublic>(pm);
      out.set_ulong(CKA_KEY_TYPE, e.curve == crypto::Curve::ed25519 ? CKK_EC_EDWARDS : CKK_EC);
      out.set(CKA_EC_PARAMS, params_for_curve(e.curve));
      out.set(CKA_EC_POINT, der_octet_string(e.point));
    }
    return out;
  };
  if (cls == CKO_PUBLIC_KEY) {
    CDC_ASSIGN(auto pm, public_material(key.attrs));
    return with(pm);
  }
  if (cls != CKO_PRIVATE_KEY) return err(Errc::key_type_inconsistent, "only public and private keys have a public key");
  std::lock_guard lk(mu_);
  CDC_ASSIGN(auto sec, secrets_of(key.uid));
  CDC_ASSIGN(auto pm, private_material(key.attrs, sec));
  if (auto* r = std::get_if<crypto::RsaPrivate>(&pm)) {
    auto full = crypto_.complete_rsa(*r);
    if (!full) return fail(from_crypto(full.error(), CryptoContext::other));
    return with(crypto::RsaPublic{full->n, full->e});
  }
  auto full = crypto_.complete_ec(std::get<crypto::EcPrivate>(pm));
  if (!full) return fail(from_crypto(full.error(), CryptoContext::other));
  return with(crypto::EcPublic{full->curve, full->point});
}

core::R<core::SecretAttrs> SoftToken::export_plain(const core::StoredObject& key) {
  const auto cls = key.attrs.ulong(CKA_CLASS).value_or(CKO_DATA);
  if (cls != CKO_PRIVATE_KEY && cls != CKO_SECRET_KEY)
    return err(Errc::key_type_inconsistent, "only private and secret keys have material to export");
  std::lock_guard lk(mu_);
  CDC_ASSIGN(auto sec, secrets_of(key.uid));
  core::SecretAttrs out;
  if (cls == CKO_SECRET_KEY) {
    out[CKA_VALUE] = sec[CKA_VALUE];
    return out;
  }
  CDC_ASSIGN(auto pm, private_material(key.attrs, sec));
  if (auto* r = std::get_if<crypto::RsaPrivate>(&pm)) {
    auto full = crypto_.complete_rsa(*r);
    if (!full) return fail(from_crypto(full.error(), CryptoContext::other));
    out[CKA_MODULUS] = secure(full->n);
    out[CKA_PUBLIC_EXPONENT] = secure(full->e);
    out[CKA_PRIVATE_EXPONENT] = full->d;
    out[CKA_PRIME_1] = full->p;
    out[CKA_PRIME_2] = full->q;
    out[CKA_EXPONENT_1] = full->dp;
    out[CKA_EXPONENT_2] = full->dq;
    out[CKA_COEFFICIENT] = full->qinv;
    return out;
  }
  auto full = crypto_.complete_ec(std::get<crypto::EcPrivate>(pm));
  if (!full) return fail(from_crypto(full.error(), CryptoContext::other));
  out[CKA_EC_PARAMS] = secure(params_for_curve(full->curve));
  out[CKA_EC_POINT] = secure(der_octet_string(full->point));
  out[CKA_VALUE] = full->d;
  return out;
}

}  // namespace cdcp11::softtoken
