#include "core/cloud/key_attrs.h"

#include <algorithm>

#include "cdcp11/cdcp11.h"
#include "core/ec_curves.h"

namespace cdcp11::core::cloud {

namespace {

struct Named {
  const char* jwk;
  EcCurve curve;
};

// Key Vault's (JWK's) names of the curves the token has.
constexpr Named kNames[] = {
    {"P-256", EcCurve::p256}, {"P-384", EcCurve::p384}, {"P-521", EcCurve::p521}, {"P-256K", EcCurve::secp256k1}};

std::optional<EcCurve> named(std::string_view crv) {
  for (auto& n : kNames)
    if (crv == n.jwk) return n.curve;
  return std::nullopt;
}

bool has_op(const std::vector<std::string>& ops, std::string_view op) {
  return std::find(ops.begin(), ops.end(), op) != ops.end();
}

// Key Vault may return big integers with a leading zero byte; PKCS#11 wants them minimal.
Bytes minimal(const Bytes& b) {
  std::size_t i = 0;
  while (i + 1 < b.size() && b[i] == 0) ++i;
  return Bytes(b.begin() + static_cast<std::ptrdiff_t>(i), b.end());
}

Bytes left_pad(const Bytes& b, std::size_t n) {
  if (b.size() >= n) return b;
  Bytes out(n - b.size(), 0);
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

}  // namespace

std::optional<Bytes> ec_params_of(std::string_view crv) {
  auto c = named(crv);
  if (!c) return std::nullopt;
  return ec_params(*c);
}

std::optional<std::string> curve_of(ByteView p) {
  auto c = ec_curve_of(p);
  if (!c) return std::nullopt;
  for (auto& n : kNames)
    if (n.curve == *c) return n.jwk;
  return std::nullopt;
}

std::size_t curve_bytes(std::string_view crv) {
  auto c = named(crv);
  return c ? ec_field_bytes(*c) : 0;
}

Bytes ec_point_of(ByteView x, ByteView y) { return ec_point_der(x, y); }

R<AttrMap> material_attrs(const azure::JsonWebKey& k, CK_OBJECT_CLASS cls) {
  AttrMap a;
  if (k.kty == "RSA" || k.kty == "RSA-HSM") {
    if (k.n.empty() || k.e.empty()) return err(Errc::function_failed, "Key Vault returned an RSA key without n or e");
    a.set_ulong(CKA_KEY_TYPE, CKK_RSA);
    a.set(CKA_MODULUS, minimal(k.n));
    a.set(CKA_PUBLIC_EXPONENT, minimal(k.e));
    return a;
  }
  if (k.kty == "EC" || k.kty == "EC-HSM") {
    auto params = ec_params_of(k.crv);
    if (!params)
      return err(Errc::key_type_inconsistent, "Key Vault curve " + k.crv + " has no PKCS#11 counterpart here");
    const std::size_t n = curve_bytes(k.crv);
    if (k.x.empty() || k.y.empty() || k.x.size() > n || k.y.size() > n)
      return err(Errc::function_failed, "Key Vault returned an EC key with a bad point");
    a.set_ulong(CKA_KEY_TYPE, CKK_EC);
    a.set(CKA_EC_PARAMS, *params);
    if (cls == CKO_PUBLIC_KEY) a.set(CKA_EC_POINT, ec_point_of(left_pad(k.x, n), left_pad(k.y, n)));
    return a;
  }
  return err(Errc::key_type_inconsistent,
             k.kty + " keys stay in Key Vault: only RSA and EC keys are brought into the token");
}

void usage_from_ops(const std::vector<std::string>& ops, CK_OBJECT_CLASS cls, AttrMap& a) {
  if (cls == CKO_PRIVATE_KEY) {
    a.set_bool(CKA_SIGN, has_op(ops, "sign"));
    a.set_bool(CKA_DECRYPT, has_op(ops, "decrypt"));
    a.set_bool(CKA_UNWRAP, has_op(ops, "unwrapKey"));
    a.set_bool(CKA_SIGN_RECOVER, false);
    a.set_bool(CKA_DERIVE, false);
  } else if (cls == CKO_PUBLIC_KEY) {
    a.set_bool(CKA_VERIFY, has_op(ops, "verify"));
    a.set_bool(CKA_ENCRYPT, has_op(ops, "encrypt"));
    a.set_bool(CKA_WRAP, has_op(ops, "wrapKey"));
    a.set_bool(CKA_VERIFY_RECOVER, false);
    a.set_bool(CKA_DERIVE, false);
  }
}

std::vector<std::string> ops_from_usage(const AttrMap& pub, const AttrMap& priv) {
  std::vector<std::string> ops;
  const bool rsa = priv.ulong(CKA_KEY_TYPE).value_or(0) == CKK_RSA;
  if (priv.bool_or(CKA_SIGN, false)) ops.emplace_back("sign");
  if (pub.bool_or(CKA_VERIFY, false)) ops.emplace_back("verify");
  if (rsa && priv.bool_or(CKA_DECRYPT, false)) ops.emplace_back("decrypt");
  if (rsa && pub.bool_or(CKA_ENCRYPT, false)) ops.emplace_back("encrypt");
  if (rsa && priv.bool_or(CKA_UNWRAP, false)) ops.emplace_back("unwrapKey");
  if (rsa && pub.bool_or(CKA_WRAP, false)) ops.emplace_back("wrapKey");
  return ops;
}

bool azure_resident(const AttrMap& a) {
  return a.ulong(CKA_CLASS).value_or(CKO_DATA) == CKO_PRIVATE_KEY &&
         a.ulong(CKA_CDC_ORIGIN).value_or(CDC_ORIGIN_LOCAL) == CDC_ORIGIN_AZURE;
}

std::string public_fingerprint_input(const azure::JsonWebKey& k) {
  const bool ec = k.kty.rfind("EC", 0) == 0;
  const std::size_t n = ec ? curve_bytes(k.crv) : 0;
  return std::string(ec ? "EC" : "RSA") + "|" + k.crv + "|" + to_hex(ec ? Bytes{} : minimal(k.n)) + "|" +
         to_hex(ec ? Bytes{} : minimal(k.e)) + "|" + to_hex(ec ? left_pad(k.x, n) : Bytes{}) + "|" +
         to_hex(ec ? left_pad(k.y, n) : Bytes{});
}

}  // namespace cdcp11::core::cloud
