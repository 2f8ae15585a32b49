// SoftToken: what the mirror engine takes out of the token: public halves, JWK components for
// plain imports, and BYOK-wrapped keys.
#include "softtoken/der.h"
#include "softtoken/soft_token.h"

namespace cdcp11::softtoken {

using core::Errc;
using core::err;

namespace {

const char* jwk_curve(crypto::Curve c) {
  switch (c) {
    case crypto::Curve::p256: return "P-256";
    case crypto::Curve::p384: return "P-384";
    case crypto::Curve::p521: return "P-521";
    case crypto::Curve::secp256k1: return "P-256K";
    case crypto::Curve::ed25519: return nullptr;
  }
  return nullptr;
}

SecureBytes secure(ByteView v) { return SecureBytes(v.begin(), v.end()); }

core::R<void> ec_point_parts(crypto::Curve c, ByteView point, core::KeyComponents& out) {
  const std::size_t n = crypto::curve_size(c);
  if (point.size() != 1 + 2 * n || point[0] != 0x04)
    return err(Errc::device_error, "the EC public point is not an uncompressed point of its curve");
  out.parts["x"] = secure(point.subspan(1, n));
  out.parts["y"] = secure(point.subspan(1 + n, n));
  return {};
}

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

core::R<core::KeyComponents> SoftToken::components(const core::StoredObject& key, bool with_private) {
  core::KeyComponents out;
  const auto cls = key.attrs.ulong(CKA_CLASS).value_or(CKO_DATA);
  if (cls == CKO_PUBLIC_KEY) {
    if (with_private) return err(Errc::key_type_inconsistent, "a public key has no private components");
    CDC_ASSIGN(auto pm, public_material(key.attrs));
    if (auto* r = std::get_if<crypto::RsaPublic>(&pm)) {
      out.kty = "RSA";
      out.parts["n"] = secure(r->n);
      out.parts["e"] = secure(r->e);
      return out;
    }
    auto& e = std::get<crypto::EcPublic>(pm);
    const char* crv = jwk_curve(e.curve);
    if (!crv) return err(Errc::key_type_inconsistent, "Ed25519 keys have no JWK form Key Vault accepts");
    out.kty = "EC";
    out.crv = crv;
    CDC_TRY(ec_point_parts(e.curve, e.point, out));
    return out;
  }
  std::lock_guard lk(mu_);
  CDC_ASSIGN(auto sec, secrets_of(key.uid));
  if (cls == CKO_SECRET_KEY) {
    out.kty = "oct";
    if (with_private) out.parts["k"] = sec[CKA_VALUE];
    return out;
  }
  if (cls != CKO_PRIVATE_KEY) return err(Errc::key_handle_invalid, "not a key");
  CDC_ASSIGN(auto pm, private_material(key.attrs, sec));
  if (auto* r = std::get_if<crypto::RsaPrivate>(&pm)) {
    auto full = crypto_.complete_rsa(*r);
    if (!full) return fail(from_crypto(full.error(), CryptoContext::other));
    out.kty = "RSA";
    out.parts["n"] = secure(full->n);
    out.parts["e"] = secure(full->e);
    if (with_private) {
      out.parts["d"] = full->d;
      out.parts["p"] = full->p;
      out.parts["q"] = full->q;
      out.parts["dp"] = full->dp;
      out.parts["dq"] = full->dq;
      out.parts["qi"] = full->qinv;
    }
    return out;
  }
  auto full = crypto_.complete_ec(std::get<crypto::EcPrivate>(pm));
  if (!full) return fail(from_crypto(full.error(), CryptoContext::other));
  const char* crv = jwk_curve(full->curve);
  if (!crv) return err(Errc::key_type_inconsistent, "Ed25519 keys have no JWK form Key Vault accepts");
  out.kty = "EC";
  out.crv = crv;
  CDC_TRY(ec_point_parts(full->curve, full->point, out));
  if (with_private) {
    SecureBytes d = full->d;
    const std::size_t n = crypto::curve_size(full->curve);
    if (d.size() < n) d.insert(d.begin(), n - d.size(), 0);  // RFC 7518: full field length
    out.parts["d"] = std::move(d);
  }
  return out;
}

core::R<core::KeyComponents> SoftToken::public_components(const core::StoredObject& key) {
  return components(key, false);
}

core::R<core::KeyComponents> SoftToken::private_components(const core::StoredObject& key) {
  return components(key, true);
}

core::R<Bytes> SoftToken::wrap_for_byok(const core::StoredObject& key, ByteView kek_n, ByteView kek_e) {
  auto kek = crypto_.load_public(crypto::RsaPublic{Bytes(kek_n.begin(), kek_n.end()), Bytes(kek_e.begin(), kek_e.end())});
  if (!kek) return err(Errc::wrapping_key_type_inconsistent, "the key-exchange key is not a valid RSA public key");
  SecureBytes plain;
  {
    std::lock_guard lk(mu_);
    CDC_ASSIGN(plain, key_to_wrap(key));
  }
  crypto::CipherParams oaep;  // Azure BYOK: OAEP with SHA-1 and MGF1-SHA-1, empty label
  oaep.scheme = crypto::CipherParams::Scheme::rsa_oaep;
  oaep.oaep_hash = crypto::Hash::sha1;
  oaep.mgf1 = crypto::Hash::sha1;
  return rsa_aes_wrap(*kek, 256, oaep, plain);
}

}  // namespace cdcp11::softtoken
