#include <doctest/doctest.h>

#include "core/attribute_policy.h"
#include "core/attributes.h"

using namespace cdcp11;
using namespace cdcp11::core;

namespace {
AttrMap secret_key_template() {
  AttrMap a;
  a.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
  a.set_ulong(CKA_KEY_TYPE, CKK_AES);
  a.set(CKA_VALUE, Bytes(16, 0x11));
  return a;
}
}  // namespace

TEST_CASE("AttrMap serialisation round-trips and rejects damage") {
  AttrMap a = secret_key_template();
  a.set_string(CKA_LABEL, "k1");
  a.set(CKA_ID, Bytes{});
  auto b = a.serialize();
  auto back = AttrMap::deserialize(b);
  REQUIRE(back);
  CHECK(back->map() == a.map());
  Bytes truncated(b.begin(), b.end() - 1);
  CHECK_FALSE(AttrMap::deserialize(truncated));
  Bytes trailing = b;
  trailing.push_back(0);
  CHECK_FALSE(AttrMap::deserialize(trailing));
}

TEST_CASE("AttrMap::matches compares every template attribute by value") {
  AttrMap a = secret_key_template();
  AttrMap t;
  t.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
  CHECK(a.matches(t));
  t.set_string(CKA_LABEL, "x");
  CHECK_FALSE(a.matches(t));
  CHECK(a.matches(AttrMap{}));
}

TEST_CASE("from_template refuses a NULL value with a length") {
  CK_ATTRIBUTE t{CKA_LABEL, nullptr, 4};
  auto r = AttrMap::from_template(&t, 1);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::arguments_bad);
}

TEST_CASE("create template checks: required, forbidden, unknown and malformed attributes") {
  SUBCASE("complete AES key is accepted") {
    CHECK(check_template(CreateOp::create, CKO_SECRET_KEY, CKK_AES, secret_key_template()));
  }
  SUBCASE("missing CKA_VALUE is template_incomplete") {
    auto a = secret_key_template();
    a.erase(CKA_VALUE);
    auto r = check_template(CreateOp::create, CKO_SECRET_KEY, CKK_AES, a);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::template_incomplete);
    CHECK(r.error().message.find("CKA_VALUE") != std::string::npos);
  }
  SUBCASE("CKA_LOCAL may not be given") {
    auto a = secret_key_template();
    a.set_bool(CKA_LOCAL, true);
    auto r = check_template(CreateOp::create, CKO_SECRET_KEY, CKK_AES, a);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::attribute_read_only);
  }
  SUBCASE("CKA_VALUE_LEN may not be given on create") {
    auto a = secret_key_template();
    a.set_ulong(CKA_VALUE_LEN, 16);
    CHECK(check_template(CreateOp::create, CKO_SECRET_KEY, CKK_AES, a).error().code == Errc::attribute_read_only);
  }
  SUBCASE("an attribute of another object kind is type_invalid") {
    auto a = secret_key_template();
    a.set(CKA_MODULUS, Bytes{1, 2, 3});
    CHECK(check_template(CreateOp::create, CKO_SECRET_KEY, CKK_AES, a).error().code == Errc::attribute_type_invalid);
  }
  SUBCASE("a boolean of the wrong size is value_invalid") {
    auto a = secret_key_template();
    a.set(CKA_SENSITIVE, Bytes{1, 0});
    CHECK(check_template(CreateOp::create, CKO_SECRET_KEY, CKK_AES, a).error().code == Errc::attribute_value_invalid);
  }
  SUBCASE("generate forbids CKA_VALUE and CKA_MODULUS but requires CKA_MODULUS_BITS") {
    AttrMap g;
    g.set(CKA_VALUE, Bytes(16));
    CHECK(check_template(CreateOp::generate, CKO_SECRET_KEY, CKK_AES, g).error().code == Errc::attribute_read_only);
    AttrMap pub;
    CHECK(check_template(CreateOp::generate, CKO_PUBLIC_KEY, CKK_RSA, pub).error().code == Errc::template_incomplete);
    pub.set_ulong(CKA_MODULUS_BITS, 2048);
    CHECK(check_template(CreateOp::generate, CKO_PUBLIC_KEY, CKK_RSA, pub));
    pub.set(CKA_MODULUS, Bytes{1});
    CHECK(check_template(CreateOp::generate, CKO_PUBLIC_KEY, CKK_RSA, pub).error().code == Errc::attribute_read_only);
  }
  SUBCASE("unsupported key type") {
    CHECK(check_template(CreateOp::create, CKO_SECRET_KEY, CKK_DES3, AttrMap{}).error().code ==
          Errc::attribute_value_invalid);
  }
}

TEST_CASE("defaults: private and secret keys are private, sensitive and unextractable") {
  AttrMap a;
  apply_defaults(CKO_PRIVATE_KEY, CKK_EC, a);
  CHECK(a.bool_or(CKA_PRIVATE, false));
  CHECK(a.bool_or(CKA_SENSITIVE, false));
  CHECK_FALSE(a.bool_or(CKA_EXTRACTABLE, true));
  CHECK_FALSE(a.bool_or(CKA_TOKEN, true));
  AttrMap p;
  apply_defaults(CKO_PUBLIC_KEY, CKK_EC, p);
  CHECK_FALSE(p.bool_or(CKA_PRIVATE, true));
  AttrMap given;
  given.set_bool(CKA_SENSITIVE, false);
  apply_defaults(CKO_SECRET_KEY, CKK_AES, given);
  CHECK_FALSE(given.bool_or(CKA_SENSITIVE, true));
}

TEST_CASE("modify rules: one-way attributes, read-only attributes, SO-only trust, CKA_MODIFIABLE") {
  AttrMap k = secret_key_template();
  apply_defaults(CKO_SECRET_KEY, CKK_AES, k);
  const Bytes t{CK_TRUE}, f{CK_FALSE};
  CHECK(check_modify(k, CKA_SENSITIVE, f, false, false).error().code == Errc::attribute_read_only);
  CHECK(check_modify(k, CKA_EXTRACTABLE, t, false, false).error().code == Errc::attribute_read_only);
  CHECK(check_modify(k, CKA_LABEL, Bytes{'a'}, false, false));
  CHECK(check_modify(k, CKA_KEY_TYPE, Bytes(sizeof(CK_ULONG)), false, false).error().code == Errc::attribute_read_only);
  CHECK(check_modify(k, CKA_TRUSTED, t, false, false).error().code == Errc::attribute_read_only);
  CHECK(check_modify(k, CKA_TRUSTED, t, true, false));
  AttrMap nonsens = secret_key_template();
  nonsens.set_bool(CKA_SENSITIVE, false);
  nonsens.set_bool(CKA_EXTRACTABLE, true);
  CHECK(check_modify(nonsens, CKA_SENSITIVE, t, false, false));
  CHECK(check_modify(nonsens, CKA_EXTRACTABLE, f, false, false));
  k.set_bool(CKA_MODIFIABLE, false);
  CHECK(check_modify(k, CKA_LABEL, Bytes{'a'}, false, false).error().code == Errc::action_prohibited);
  // Copying may still change the copy flags of a non-modifiable object, but not make it modifiable.
  CHECK(check_modify(k, CKA_TOKEN, t, false, true));
  CHECK(check_modify(k, CKA_MODIFIABLE, t, false, true).error().code == Errc::attribute_read_only);
}

TEST_CASE("readability: sensitive or unextractable secrets are not revealed") {
  AttrMap k = secret_key_template();
  k.set_bool(CKA_SENSITIVE, true);
  k.set_bool(CKA_EXTRACTABLE, true);
  CHECK(check_readable(k, CKA_VALUE).error().code == Errc::attribute_sensitive);
  k.set_bool(CKA_SENSITIVE, false);
  CHECK(check_readable(k, CKA_VALUE));
  k.set_bool(CKA_EXTRACTABLE, false);
  CHECK(check_readable(k, CKA_VALUE).error().code == Errc::attribute_sensitive);
  CHECK(check_readable(k, CKA_LABEL).ok());
  CHECK(check_readable(k, CKA_MODULUS).error().code == Errc::attribute_type_invalid);
  CHECK(is_secret_attribute(CKO_PRIVATE_KEY, CKA_PRIME_1));
  CHECK_FALSE(is_secret_attribute(CKO_PUBLIC_KEY, CKA_MODULUS));
  CHECK_FALSE(is_secret_attribute(CKO_DATA, CKA_VALUE));
}

TEST_CASE("secure_zero clears exactly the bytes it is given, at any length and alignment") {
  for (std::size_t off : {0, 1, 3, 7}) {
    for (std::size_t n : {1, 2, 15, 16, 17, 63, 64, 65, 4097}) {
      Bytes buf(n + off + 8, 0xa5);
      secure_zero(buf.data() + off, n);
      for (std::size_t i = 0; i < buf.size(); ++i) {
        const bool inside = i >= off && i < off + n;
        if (buf[i] != (inside ? 0 : 0xa5)) FAIL("byte " << i << " (off " << off << ", n " << n << ")");
      }
    }
  }
}
