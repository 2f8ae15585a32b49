// core/cloud/jwk and core/ec_curves: the JWK is built in core from the PKCS#11 attributes a
// backend exports (Backend::public_key, export_plain); the backend knows no JWK.
#include <doctest/doctest.h>

#include "core/cloud/jwk.h"
#include "core/ec_curves.h"
#include "core/mirror/engine.h"

using namespace cdcp11;
using namespace cdcp11::core;

namespace {

SecureBytes sec(std::initializer_list<std::uint8_t> b) { return SecureBytes(b); }

}  // namespace

TEST_CASE("ec_curves: OIDs both ways, point encodings, field sizes") {
  const Bytes p384 = ec_params(EcCurve::p384);
  CHECK(ec_curve_of(p384) == EcCurve::p384);
  CHECK_FALSE(ec_curve_of(Bytes{0x06, 0x03, 0x2b, 0x65, 0x70}));  // Ed25519 is no curve here
  CHECK(ec_field_bytes(EcCurve::p521) == 66);
  const Bytes x(66, 0x11), y(66, 0x22);
  const Bytes der = ec_point_der(x, y);
  CHECK(der.size() == 3 + 133);  // long-form length: 04 81 85 04 ...
  auto xy = ec_point_xy(EcCurve::p521, der);
  REQUIRE(xy);
  CHECK(xy->x == x);
  CHECK(xy->y == y);
  Bytes raw{0x04};
  raw.insert(raw.end(), x.begin(), x.end());
  raw.insert(raw.end(), y.begin(), y.end());
  CHECK(ec_point_xy(EcCurve::p521, raw));                   // some modules give the raw point
  CHECK_FALSE(ec_point_xy(EcCurve::p256, der));             // not a point of that curve
}

TEST_CASE("jwk_public: RSA and EC public keys from attributes; other keys have no JWK") {
  AttrMap rsa;
  rsa.set_ulong(CKA_KEY_TYPE, CKK_RSA);
  rsa.set(CKA_MODULUS, Bytes{0x00, 0xc5, 0x01});
  rsa.set(CKA_PUBLIC_EXPONENT, Bytes{0x01, 0x00, 0x01});
  auto r = cloud::jwk_public(rsa);
  REQUIRE(r);
  CHECK(r->n == Bytes{0xc5, 0x01});  // minimal big-endian
  CHECK(r->e == Bytes{0x01, 0x00, 0x01});
  CHECK(r->crv.empty());

  AttrMap ec;
  ec.set_ulong(CKA_KEY_TYPE, CKK_EC);
  ec.set(CKA_EC_PARAMS, ec_params(EcCurve::p256));
  ec.set(CKA_EC_POINT, ec_point_der(Bytes(32, 0x0a), Bytes(32, 0x0b)));
  auto e = cloud::jwk_public(ec);
  REQUIRE(e);
  CHECK(e->crv == "P-256");
  CHECK(e->x == Bytes(32, 0x0a));
  CHECK(e->y == Bytes(32, 0x0b));

  ec.set(CKA_EC_POINT, Bytes{0x04, 0x03, 0x04, 0x01, 0x02});
  CHECK(cloud::jwk_public(ec).error().code == Errc::attribute_value_invalid);
  AttrMap ed;
  ed.set_ulong(CKA_KEY_TYPE, CKK_EC_EDWARDS);
  ed.set(CKA_EC_PARAMS, Bytes{0x06, 0x03, 0x2b, 0x65, 0x70});
  CHECK(cloud::jwk_public(ed).error().code == Errc::key_type_inconsistent);
  AttrMap no_modulus;
  no_modulus.set_ulong(CKA_KEY_TYPE, CKK_RSA);
  CHECK(cloud::jwk_public(no_modulus).error().code == Errc::template_incomplete);
}

TEST_CASE("jwk_private: RSA, EC (d padded to the field) and oct from exported material") {
  AttrMap priv;
  priv.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  priv.set_ulong(CKA_KEY_TYPE, CKK_RSA);
  SecretAttrs m{{CKA_MODULUS, sec({0xc5})},       {CKA_PUBLIC_EXPONENT, sec({3})}, {CKA_PRIVATE_EXPONENT, sec({0, 7})},
                {CKA_PRIME_1, sec({11})},         {CKA_PRIME_2, sec({13})},        {CKA_EXPONENT_1, sec({1})},
                {CKA_EXPONENT_2, sec({2})},       {CKA_COEFFICIENT, sec({5})}};
  auto r = cloud::jwk_private(priv, m);
  REQUIRE(r);
  CHECK(r->kty == "RSA");
  CHECK(r->d == sec({7}));
  CHECK(r->qi == sec({5}));
  m.erase(CKA_COEFFICIENT);
  auto missing = cloud::jwk_private(priv, m);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message.find("CKA_COEFFICIENT") != std::string::npos);

  AttrMap ecp;
  ecp.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  ecp.set_ulong(CKA_KEY_TYPE, CKK_EC);
  const Bytes point = ec_point_der(Bytes(48, 1), Bytes(48, 2));
  const Bytes params = ec_params(EcCurve::p384);
  SecretAttrs em{{CKA_EC_PARAMS, SecureBytes(params.begin(), params.end())},
                 {CKA_EC_POINT, SecureBytes(point.begin(), point.end())},
                 {CKA_VALUE, sec({0x00, 0x42})}};
  auto e = cloud::jwk_private(ecp, em);
  REQUIRE(e);
  CHECK(e->kty == "EC");
  CHECK(e->crv == "P-384");
  REQUIRE(e->d.size() == 48);
  CHECK(e->d[47] == 0x42);
  CHECK(e->d[0] == 0);

  AttrMap aes;
  aes.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
  auto k = cloud::jwk_private(aes, SecretAttrs{{CKA_VALUE, SecureBytes(32, 9)}});
  REQUIRE(k);
  CHECK(k->kty == "oct");
  CHECK(k->k == SecureBytes(32, 9));
}

TEST_CASE("public_hash_input: the canonical public key other hosts compare (cdcp11-pub-sha256)") {
  // Pinned: a vault key's tag written by one host is compared by every other; changing the form
  // unlinks every key mirrored before.
  AttrMap rsa;
  rsa.set_ulong(CKA_KEY_TYPE, CKK_RSA);
  rsa.set(CKA_MODULUS, Bytes{0x00, 0xc5, 0x01});  // a module's leading zero is not part of it
  rsa.set(CKA_PUBLIC_EXPONENT, Bytes{0x01, 0x00, 0x01});
  auto r = cloud::jwk_public(rsa);
  REQUIRE(r);
  CHECK(mirror::public_hash_input(*r) == "RSA||c501|010001||");
  const Bytes x(32, 0x0a), y(32, 0xb0);
  AttrMap ec;
  ec.set_ulong(CKA_KEY_TYPE, CKK_EC);
  ec.set(CKA_EC_PARAMS, ec_params(EcCurve::p256));
  Bytes raw{0x04};  // the raw point some modules give: the same input as the DER one
  raw.insert(raw.end(), x.begin(), x.end());
  raw.insert(raw.end(), y.begin(), y.end());
  for (const Bytes& point : {ec_point_der(x, y), raw}) {
    ec.set(CKA_EC_POINT, point);
    auto e = cloud::jwk_public(ec);
    REQUIRE(e);
    CHECK(mirror::public_hash_input(*e) == "EC|P-256|||" + to_hex(x) + "|" + to_hex(y));
  }
}
