// Key Vault keys as PKCS#11 attributes (core/cloud/key_attrs): the encodings the sync and
// cloud-native generation write into token objects, checked against known DER.
#include <doctest/doctest.h>

#include "core/cloud/key_attrs.h"

using namespace cdcp11;
using namespace cdcp11::core;

namespace {
Bytes hex(const char* h) {
  Bytes b;
  REQUIRE(from_hex(h, b));
  return b;
}
}  // namespace

TEST_CASE("EC curves map to their DER OIDs and back; other curves do not") {
  CHECK(*cloud::ec_params_of("P-256") == hex("06082a8648ce3d030107"));
  CHECK(*cloud::ec_params_of("P-384") == hex("06052b81040022"));
  CHECK(*cloud::ec_params_of("P-521") == hex("06052b81040023"));
  CHECK(*cloud::curve_of(hex("06052b81040022")) == "P-384");
  CHECK(*cloud::ec_params_of("P-256K") == hex("06052b8104000a"));  // secp256k1
  CHECK(*cloud::curve_of(hex("06052b8104000a")) == "P-256K");
  CHECK_FALSE(cloud::ec_params_of("P-192"));
  CHECK_FALSE(cloud::curve_of(hex("06092b2403030208010107")));  // brainpoolP256r1
}

TEST_CASE("EC points are DER OCTET STRINGs, with a long-form length for P-521") {
  Bytes x32(32, 0x11), y32(32, 0x22);
  Bytes p256 = cloud::ec_point_of(x32, y32);
  REQUIRE(p256.size() == 2 + 65);
  CHECK(p256[0] == 0x04);
  CHECK(p256[1] == 65);
  CHECK(p256[2] == 0x04);
  Bytes x66(66, 0x01), y66(66, 0x02);
  Bytes p521 = cloud::ec_point_of(x66, y66);
  REQUIRE(p521.size() == 3 + 133);
  CHECK(p521[1] == 0x81);
  CHECK(p521[2] == 133);
  CHECK(p521[3] == 0x04);
}

TEST_CASE("material attributes from a JWK: minimal RSA integers, padded EC coordinates") {
  azure::JsonWebKey rsa;
  rsa.kty = "RSA-HSM";
  rsa.n = hex("00c3a1");
  rsa.e = hex("010001");
  auto a = cloud::material_attrs(rsa, CKO_PRIVATE_KEY);
  REQUIRE(a);
  CHECK(a->ulong(CKA_KEY_TYPE) == CKK_RSA);
  CHECK(*a->find(CKA_MODULUS) == hex("c3a1"));
  CHECK(*a->find(CKA_PUBLIC_EXPONENT) == hex("010001"));

  azure::JsonWebKey ec;
  ec.kty = "EC";
  ec.crv = "P-256";
  ec.x = Bytes(31, 0x05);  // a leading zero byte dropped by the service
  ec.y = Bytes(32, 0x06);
  auto pub = cloud::material_attrs(ec, CKO_PUBLIC_KEY);
  REQUIRE(pub);
  const Bytes& point = *pub->find(CKA_EC_POINT);
  CHECK(point.size() == 67);
  CHECK(point[3] == 0x00);  // x left-padded to 32 bytes
  auto priv = cloud::material_attrs(ec, CKO_PRIVATE_KEY);
  REQUIRE(priv);
  CHECK_FALSE(priv->has(CKA_EC_POINT));

  azure::JsonWebKey oct;
  oct.kty = "oct-HSM";
  auto r = cloud::material_attrs(oct, CKO_PRIVATE_KEY);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::key_type_inconsistent);
}

TEST_CASE("key_ops and usage flags map both ways") {
  AttrMap priv, pub;
  cloud::usage_from_ops({"sign", "verify", "unwrapKey"}, CKO_PRIVATE_KEY, priv);
  cloud::usage_from_ops({"sign", "verify", "unwrapKey"}, CKO_PUBLIC_KEY, pub);
  CHECK(priv.bool_or(CKA_SIGN, false));
  CHECK(priv.bool_or(CKA_UNWRAP, false));
  CHECK_FALSE(priv.bool_or(CKA_DECRYPT, true));
  CHECK(pub.bool_or(CKA_VERIFY, false));
  CHECK_FALSE(pub.bool_or(CKA_WRAP, true));
  priv.set_ulong(CKA_KEY_TYPE, CKK_RSA);
  CHECK(cloud::ops_from_usage(pub, priv) == std::vector<std::string>{"sign", "verify", "unwrapKey"});
  priv.set_ulong(CKA_KEY_TYPE, CKK_EC);  // EC keys neither decrypt nor unwrap in Key Vault
  CHECK(cloud::ops_from_usage(pub, priv) == std::vector<std::string>{"sign", "verify"});
}
