// SoftHSM2 2.6.1 wrap findings (hsm/README.md), at the HSM client's level and checked with
// OpenSSL: what the forwarding backend relies on when core's BYOK composes the blob there
// (core/mirror/byok.h; the mirror itself is tests/mirror/test_hsm_mirror.py).
#include <algorithm>

#include "hsm/mechanism.h"
#include "tests/unit/hsm/ossl.h"
#include "tests/unit/hsm/support.h"

namespace cdcp11::hsm::test {
namespace {

CK_OBJECT_HANDLE import_secret(Session& s, CK_KEY_TYPE type, ByteView value, bool extractable = true,
                               bool wrap_with_trusted = false) {
  Tmpl t;
  t.ul(CKA_CLASS, CKO_SECRET_KEY).ul(CKA_KEY_TYPE, type).b(CKA_TOKEN, false)
      .b(CKA_SENSITIVE, true).b(CKA_EXTRACTABLE, extractable).b(CKA_WRAP, true)
      .b(CKA_WRAP_WITH_TRUSTED, wrap_with_trusted).bytes(CKA_VALUE, value);
  return ok(s.create(t));
}

// A KEK's public key imported as a session object usable only to wrap, as core's BYOK imports it.
struct Kek {
  Pkey key = rsa_generate(2048);
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  explicit Kek(Session& s) {
    Tmpl t;
    t.ul(CKA_CLASS, CKO_PUBLIC_KEY).ul(CKA_KEY_TYPE, CKK_RSA).b(CKA_TOKEN, false).b(CKA_PRIVATE, false)
        .b(CKA_WRAP, true).b(CKA_ENCRYPT, false).b(CKA_VERIFY, false)
        .bytes(CKA_MODULUS, bn_param(key.get(), "n")).bytes(CKA_PUBLIC_EXPONENT, bn_param(key.get(), "e"));
    handle = ok(s.create(t));
  }
};

Bytes attr(Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t) {
  const CK_ATTRIBUTE_TYPE want[] = {t};
  Attributes a = ok(s.get_attributes(h, want));
  REQUIRE(a.find(t));
  return *a.find(t);
}

}  // namespace

TEST_CASE("SoftHSM2 2.6.1 offers CKM_AES_KEY_WRAP_PAD, not _KWP nor CKM_RSA_AES_KEY_WRAP") {
  SoftHsm h;
  auto mechs = ok(h.module->mechanisms(h.slot));
  auto has = [&](CK_MECHANISM_TYPE t) { return std::count(mechs.begin(), mechs.end(), t) == 1; };
  CHECK(has(CKM_AES_KEY_WRAP));
  CHECK(has(CKM_AES_KEY_WRAP_PAD));
  CHECK(has(CKM_RSA_PKCS_OAEP));
  CHECK_FALSE(has(CKM_AES_KEY_WRAP_KWP));
  CHECK_FALSE(has(CKM_RSA_AES_KEY_WRAP));
  auto pad = ok(h.module->mechanism_info(h.slot, CKM_AES_KEY_WRAP_PAD));
  CHECK((pad.flags & CKF_WRAP));
  CHECK((pad.flags & CKF_UNWRAP));
}

TEST_CASE("SoftHSM2's CKM_AES_KEY_WRAP_PAD is RFC 5649: OpenSSL's id-aes256-wrap-pad unwraps it") {
  SoftHsm h;
  Session s = h.user_session();
  Bytes kek(32), aes(32), odd(20);
  for (std::size_t i = 0; i < 32; ++i) kek[i] = static_cast<std::uint8_t>(0xa0 + i);
  for (std::size_t i = 0; i < 32; ++i) aes[i] = static_cast<std::uint8_t>(i * 7);
  for (std::size_t i = 0; i < 20; ++i) odd[i] = static_cast<std::uint8_t>(0x55 ^ i);
  CK_OBJECT_HANDLE w = import_secret(s, CKK_AES, kek);
  CK_OBJECT_HANDLE a = import_secret(s, CKK_AES, aes);
  CK_OBJECT_HANDLE g = import_secret(s, CKK_GENERIC_SECRET, odd);

  Bytes wa = ok(s.wrap_key(Mechanism(CKM_AES_KEY_WRAP_PAD), w, a));
  // RFC 5649 adds 8 bytes to a multiple of 8; PKCS#7 padding + RFC 3394 would give 48 or more.
  CHECK(wa.size() == 40);
  CHECK(kwp_unwrap(kek, wa) == aes);
  Bytes wg = ok(s.wrap_key(Mechanism(CKM_AES_KEY_WRAP_PAD), w, g));
  CHECK(wg.size() == 32);
  // An unaligned key: the RFC 5649 framing holds (OpenSSL's integrity check passes) but SoftHSM2
  // zero-pads the key to a multiple of 8 first and records the padded length, so a strict
  // RFC 5649 unwrap gives the key followed by zeros.
  Bytes padded = odd;
  padded.resize(24, 0);
  CHECK(kwp_unwrap(kek, wg) == padded);
  // Plain RFC 3394 of the same key differs: the _PAD output is not KW with an aligned input.
  CHECK(ok(s.wrap_key(Mechanism(CKM_AES_KEY_WRAP), w, a)) != wa);
}

TEST_CASE("SoftHSM2 wrap rules: CKA_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED and CKA_TRUSTED") {
  SoftHsm h;
  const Bytes value(32, 0x11);
  {
    Session s = h.user_session();
    Kek kek(s);
    CK_OBJECT_HANDLE w = ok(s.generate_key(Mechanism(CKM_AES_KEY_GEN), aes_key(32)));

    SUBCASE("a key that is not CKA_EXTRACTABLE is refused, and cannot be made extractable") {
      CK_OBJECT_HANDLE t = import_secret(s, CKK_AES, value, false);
      CHECK(err(s.wrap_key(Mechanism(CKM_AES_KEY_WRAP_PAD), w, t)).rv == CKR_KEY_UNEXTRACTABLE);
      CHECK(err(s.set_attributes(t, Tmpl().b(CKA_EXTRACTABLE, true))).rv ==
            CKR_ATTRIBUTE_READ_ONLY);
    }
    SUBCASE("CKA_WRAP_WITH_TRUSTED: refused under an untrusted key, with what to do") {
      CK_OBJECT_HANDLE t = import_secret(s, CKK_AES, value, true, true);
      CHECK(err(s.wrap_key(Mechanism(CKM_AES_KEY_WRAP_PAD), w, t)).rv == CKR_KEY_NOT_WRAPPABLE);
    }
    SUBCASE("the user cannot set CKA_TRUSTED, at creation or later") {
      Tmpl t = aes_key(32);
      t.b(CKA_TRUSTED, true);
      CHECK(err(s.generate_key(Mechanism(CKM_AES_KEY_GEN), t)).rv == CKR_ATTRIBUTE_READ_ONLY);
      CHECK(err(s.set_attributes(w, Tmpl().b(CKA_TRUSTED, true))).rv == CKR_ATTRIBUTE_READ_ONLY);
    }
    SUBCASE("RSA-OAEP and RSA-PKCS wrap secret keys only") {
      KeyPair kp = ok(s.generate_key_pair(Mechanism(CKM_RSA_PKCS_KEY_PAIR_GEN), rsa_public(),
                                          rsa_private()));
      OaepParams oaep;
      CHECK(err(s.wrap_key(oaep.mechanism(), kek.handle, kp.private_key)).rv ==
            CKR_KEY_NOT_WRAPPABLE);
      CHECK(err(s.wrap_key(Mechanism(CKM_RSA_PKCS), kek.handle, kp.private_key)).rv ==
            CKR_KEY_NOT_WRAPPABLE);
    }
  }
  SUBCASE("a CKA_TRUSTED key the SO made wraps a CKA_WRAP_WITH_TRUSTED key") {
    {
      Session so = h.session();
      ok(so.login(UserType::so, pin(kSoPin)));
      Tmpl t = aes_key(32);
      t.b(CKA_TOKEN, true).b(CKA_PRIVATE, false).b(CKA_TRUSTED, true).str(CKA_LABEL, "trusted");
      ok(so.generate_key(Mechanism(CKM_AES_KEY_GEN), t));
      ok(so.logout());
    }
    Session s = h.user_session();
    auto trusted = ok(s.find(Tmpl().str(CKA_LABEL, "trusted")));
    REQUIRE(trusted.size() == 1);
    CK_OBJECT_HANDLE t = import_secret(s, CKK_AES, value, true, true);
    CHECK(ok(s.wrap_key(Mechanism(CKM_AES_KEY_WRAP_PAD), trusted[0], t)).size() == 40);
  }
}

TEST_CASE("SoftHSM2 2.6.1 has no CKA_UNIQUE_ID") {
  SoftHsm h;
  Session s = h.user_session();
  KeyPair kp = ok(s.generate_key_pair(Mechanism(CKM_EC_KEY_PAIR_GEN), ec_params_p256(false),
                                      Tmpl(ec_params_p256(true)).b(CKA_TOKEN, true)));
  const CK_ATTRIBUTE_TYPE want[] = {CKA_UNIQUE_ID, CKA_ID};
  Attributes a = ok(s.get_attributes(kp.private_key, want));
  CHECK(a.unavailable.at(CKA_UNIQUE_ID) == CKR_ATTRIBUTE_TYPE_INVALID);
  CHECK(a.find(CKA_ID) != nullptr);
}

TEST_CASE("RSA-OAEP (SHA-1) wrap of an AES key under an imported KEK: OpenSSL recovers the key") {
  SoftHsm h;
  Session s = h.user_session();
  Kek kek(s);
  Bytes value(32);
  for (std::size_t i = 0; i < value.size(); ++i) value[i] = static_cast<std::uint8_t>(3 * i + 1);
  CK_OBJECT_HANDLE t = import_secret(s, CKK_AES, value);
  OaepParams oaep;
  Bytes wrapped = ok(s.wrap_key(oaep.mechanism(), kek.handle, t));
  CHECK(wrapped.size() == 256);
  CHECK(oaep_sha1_decrypt(kek.key.get(), wrapped) == value);
  // The KEK is a session object: gone with the session, never on the token.
  CHECK(attr(s, kek.handle, CKA_TOKEN) == Bytes{CK_FALSE});
}

}  // namespace cdcp11::hsm::test
