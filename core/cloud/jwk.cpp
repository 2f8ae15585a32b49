#include "core/cloud/jwk.h"

#include "core/cloud/key_attrs.h"
#include "core/ec_curves.h"

namespace cdcp11::core::cloud {

namespace {

// Big-endian unsigned integers without leading zero bytes (JWK n, e, d, ...).
template <class V>
V minimal(ByteView v) {
  std::size_t i = 0;
  while (i + 1 < v.size() && v[i] == 0) ++i;
  return V(v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
}

R<ByteView> need(const AttrMap& a, CK_ATTRIBUTE_TYPE t, const char* name) {
  const Bytes* v = a.find(t);
  if (!v || v->empty()) return err(Errc::template_incomplete, std::string("the key has no ") + name);
  return ByteView(*v);
}

R<ByteView> need(const SecretAttrs& s, CK_ATTRIBUTE_TYPE t, const char* name) {
  auto it = s.find(t);
  if (it == s.end() || it->second.empty()) return err(Errc::template_incomplete, std::string("the key has no ") + name);
  return ByteView(it->second.data(), it->second.size());
}

template <class Attrs>
R<azure::PublicKeyMaterial> public_of(const Attrs& a, CK_KEY_TYPE kt) {
  azure::PublicKeyMaterial m;
  if (kt == CKK_RSA) {
    CDC_ASSIGN(auto n, need(a, CKA_MODULUS, "CKA_MODULUS"));
    CDC_ASSIGN(auto e, need(a, CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT"));
    m.n = minimal<Bytes>(n);
    m.e = minimal<Bytes>(e);
    return m;
  }
  if (kt != CKK_EC) return err(Errc::key_type_inconsistent, "the key has no JWK form Key Vault accepts");
  CDC_ASSIGN(auto params, need(a, CKA_EC_PARAMS, "CKA_EC_PARAMS"));
  auto crv = curve_of(params);
  if (!crv) return err(Errc::key_type_inconsistent, "the key's curve has no JWK form Key Vault accepts");
  CDC_ASSIGN(auto point, need(a, CKA_EC_POINT, "CKA_EC_POINT"));
  auto xy = ec_point_xy(*ec_curve_of(params), point);
  if (!xy) return err(Errc::attribute_value_invalid, "CKA_EC_POINT is not an uncompressed point of " + *crv);
  m.crv = *crv;
  m.x = std::move(xy->x);
  m.y = std::move(xy->y);
  return m;
}

}  // namespace

R<azure::PublicKeyMaterial> jwk_public(const AttrMap& a) {
  return public_of(a, a.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION));
}

R<azure::PublicKeyMaterial> public_jwk_of(Backend& backend, const StoredObject& key) {
  CDC_ASSIGN(auto pub, backend.public_key(key));
  return jwk_public(pub);
}

R<azure::PrivateJwk> jwk_private(const AttrMap& key, const SecretAttrs& s) {
  azure::PrivateJwk j;
  if (key.ulong(CKA_CLASS).value_or(0) == CKO_SECRET_KEY) {
    CDC_ASSIGN(auto k, need(s, CKA_VALUE, "CKA_VALUE"));
    j.kty = "oct";
    j.k = SecureBytes(k.begin(), k.end());
    return j;
  }
  const auto kt = key.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  CDC_ASSIGN(auto pub, public_of(s, kt));
  j.n = std::move(pub.n);
  j.e = std::move(pub.e);
  j.crv = std::move(pub.crv);
  j.x = std::move(pub.x);
  j.y = std::move(pub.y);
  if (kt == CKK_RSA) {
    j.kty = "RSA";
    const std::pair<SecureBytes*, std::pair<CK_ATTRIBUTE_TYPE, const char*>> parts[] = {
        {&j.d, {CKA_PRIVATE_EXPONENT, "CKA_PRIVATE_EXPONENT"}}, {&j.p, {CKA_PRIME_1, "CKA_PRIME_1"}},
        {&j.q, {CKA_PRIME_2, "CKA_PRIME_2"}},                   {&j.dp, {CKA_EXPONENT_1, "CKA_EXPONENT_1"}},
        {&j.dq, {CKA_EXPONENT_2, "CKA_EXPONENT_2"}},            {&j.qi, {CKA_COEFFICIENT, "CKA_COEFFICIENT"}}};
    for (auto& [out, attr] : parts) {
      CDC_ASSIGN(auto v, need(s, attr.first, attr.second));
      *out = minimal<SecureBytes>(v);
    }
    return j;
  }
  j.kty = "EC";
  CDC_ASSIGN(auto d, need(s, CKA_VALUE, "CKA_VALUE"));
  const std::size_t n = curve_bytes(j.crv);
  SecureBytes padded = minimal<SecureBytes>(d);
  if (padded.size() > n) return err(Errc::attribute_value_invalid, "the EC private value is longer than its curve");
  padded.insert(padded.begin(), n - padded.size(), 0);  // RFC 7518: the full field length
  j.d = std::move(padded);
  return j;
}

}  // namespace cdcp11::core::cloud
