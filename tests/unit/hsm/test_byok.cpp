// SoftHSM2 2.6.1 wrap findings (hsm/README.md) and the BYOK blob composed inside the HSM,
// checked independently with OpenSSL.
#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>

#include "hsm/byok_wrap.h"
#include "hsm/mechanism.h"
#include "tests/unit/hsm/ossl.h"
#include "tests/unit/hsm/support.h"

namespace cdcp11::hsm::test {
namespace {

const std::uint8_t kP256Oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

CK_OBJECT_HANDLE import_rsa_private(Session& s, const EVP_PKEY* k) {
  Tmpl t = rsa_private();
  t.bytes(CKA_MODULUS, bn_param(k, "n")).bytes(CKA_PUBLIC_EXPONENT, bn_param(k, "e"))
      .bytes(CKA_PRIVATE_EXPONENT, bn_param(k, "d")).bytes(CKA_PRIME_1, bn_param(k, "rsa-factor1"))
      .bytes(CKA_PRIME_2, bn_param(k, "rsa-factor2"))
      .bytes(CKA_EXPONENT_1, bn_param(k, "rsa-exponent1"))
      .bytes(CKA_EXPONENT_2, bn_param(k, "rsa-exponent2"))
      .bytes(CKA_COEFFICIENT, bn_param(k, "rsa-coefficient1"));
  return ok(s.create(t));
}

CK_OBJECT_HANDLE import_ec_private(Session& s, const EVP_PKEY* k) {
  Tmpl t = ec_params_p256(true);
  t.bytes(CKA_EC_PARAMS, kP256Oid).bytes(CKA_VALUE, bn_param(k, "priv", 32));
  return ok(s.create(t));
}

CK_OBJECT_HANDLE import_secret(Session& s, CK_KEY_TYPE type, ByteView value, bool extractable = true,
                               bool wrap_with_trusted = false) {
  Tmpl t;
  t.ul(CKA_CLASS, CKO_SECRET_KEY).ul(CKA_KEY_TYPE, type).b(CKA_TOKEN, false)
      .b(CKA_SENSITIVE, true).b(CKA_EXTRACTABLE, extractable).b(CKA_WRAP, true)
      .b(CKA_WRAP_WITH_TRUSTED, wrap_with_trusted).bytes(CKA_VALUE, value);
  return ok(s.create(t));
}

struct Kek {
  Pkey key = rsa_generate(2048);
  CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
  explicit Kek(Session& s) {
    handle = ok(import_rsa_wrapping_key(s, bn_param(key.get(), "n"), bn_param(key.get(), "e")));
  }
};

// What unwrapping the blob with the KEK's private key gives: the target as the HSM wrapped it.
Bytes open_blob(const Kek& kek, const Bytes& blob) {
  REQUIRE(blob.size() > 256);
  Bytes aes = oaep_sha1_decrypt(kek.key.get(), ByteView(blob.data(), 256));
  REQUIRE(aes.size() == 32);
  return kwp_unwrap(aes, ByteView(blob.data() + 256, blob.size() - 256));
}

// The PKCS#8 DER at the start of an unwrapped blob, checking that what follows it is SoftHSM2's
// zero padding to a multiple of 8 (see the CKM_AES_KEY_WRAP_PAD test) and nothing else.
Bytes pkcs8_of(const Bytes& unwrapped) {
  REQUIRE(unwrapped.size() > 4);
  REQUIRE(unwrapped[0] == 0x30);
  std::size_t len = unwrapped[1], header = 2;
  if (len & 0x80) {
    std::size_t n = len & 0x7f;
    REQUIRE(n <= 2);
    len = 0;
    for (std::size_t i = 0; i < n; ++i) len = len << 8 | unwrapped[2 + i];
    header += n;
  }
  std::size_t der = header + len;
  REQUIRE(der <= unwrapped.size());
  CHECK(unwrapped.size() == (der + 7) / 8 * 8);
  CHECK(std::all_of(unwrapped.begin() + static_cast<std::ptrdiff_t>(der), unwrapped.end(),
                    [](std::uint8_t b) { return b == 0; }));
  return Bytes(unwrapped.begin(), unwrapped.begin() + static_cast<std::ptrdiff_t>(der));
}

std::size_t count_secret_keys(Session& s) {
  return ok(s.find(Tmpl().ul(CKA_CLASS, CKO_SECRET_KEY))).size();
}

Bytes attr(Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t) {
  const CK_ATTRIBUTE_TYPE want[] = {t};
  Attributes a = ok(s.get_attributes(h, want));
  REQUIRE(a.find(t));
  return *a.find(t);
}

RsaAesWrapPlan softhsm_plan(SoftHsm& h) { return ok(plan_rsa_aes_wrap(*h.module, h.slot, true)); }

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

  RsaAesWrapPlan p = softhsm_plan(h);
  CHECK_FALSE(p.native);
  CHECK(p.kwp == CKM_AES_KEY_WRAP_PAD);
  Error e = err(plan_rsa_aes_wrap(*h.module, h.slot, false));
  CHECK(e.rv == CKR_MECHANISM_INVALID);
  CHECK(contains(e.message, "neither CKM_RSA_AES_KEY_WRAP nor an RFC 5649 AES key wrap"));

  auto fake = ok(Module::load(fake_module_path()));
  CHECK(ok(plan_rsa_aes_wrap(*fake, 7, false)).native);
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
    RsaAesWrapPlan plan = softhsm_plan(h);
    CK_OBJECT_HANDLE w = ok(s.generate_key(Mechanism(CKM_AES_KEY_GEN), aes_key(32)));

    SUBCASE("a key that is not CKA_EXTRACTABLE is refused, and cannot be made extractable") {
      CK_OBJECT_HANDLE t = import_secret(s, CKK_AES, value, false);
      CHECK(err(s.wrap_key(Mechanism(CKM_AES_KEY_WRAP_PAD), w, t)).rv == CKR_KEY_UNEXTRACTABLE);
      Error e = err(rsa_aes_wrap(s, plan, kek.handle, t));
      CHECK(e.rv == CKR_KEY_UNEXTRACTABLE);
      CHECK(contains(e.message, "not CKA_EXTRACTABLE"));
      CHECK(contains(e.message, "must be set when the key is created"));
      CHECK(err(s.set_attributes(t, Tmpl().b(CKA_EXTRACTABLE, true))).rv ==
            CKR_ATTRIBUTE_READ_ONLY);
    }
    SUBCASE("CKA_WRAP_WITH_TRUSTED: refused under an untrusted key, with what to do") {
      CK_OBJECT_HANDLE t = import_secret(s, CKK_AES, value, true, true);
      CHECK(err(s.wrap_key(Mechanism(CKM_AES_KEY_WRAP_PAD), w, t)).rv == CKR_KEY_NOT_WRAPPABLE);
      Error e = err(rsa_aes_wrap(s, plan, kek.handle, t));
      CHECK(e.rv == CKR_KEY_NOT_WRAPPABLE);
      CHECK(contains(e.message, "CKA_WRAP_WITH_TRUSTED"));
      CHECK(contains(e.message, "only the SO can mark one"));
      CHECK(err(rsa_aes_wrap(s, RsaAesWrapPlan{true, 0}, kek.handle, t)).rv != CKR_OK);
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

TEST_CASE("composed CKM_RSA_AES_KEY_WRAP blob: RSA, EC and AES targets, checked with OpenSSL") {
  SoftHsm h;
  Session s = h.user_session();
  Kek kek(s);
  RsaAesWrapPlan plan = softhsm_plan(h);
  std::size_t secrets_before = count_secret_keys(s);

  SUBCASE("RSA key imported from a known PKCS#8: the blob opens to that key") {
    Pkey target = rsa_generate(2048);
    Bytes blob = ok(rsa_aes_wrap(s, plan, kek.handle, import_rsa_private(s, target.get())));
    Pkey back = parse_pkcs8(pkcs8_of(open_blob(kek, blob)));
    REQUIRE(back);
    CHECK(same_private_key(back.get(), target.get()));
  }
  SUBCASE("RSA key generated in the HSM: the blob opens to its private half") {
    KeyPair kp = ok(s.generate_key_pair(Mechanism(CKM_RSA_PKCS_KEY_PAIR_GEN), rsa_public(3072),
                                        rsa_private()));
    Bytes blob = ok(rsa_aes_wrap(s, plan, kek.handle, kp.private_key));
    Pkey back = parse_pkcs8(pkcs8_of(open_blob(kek, blob)));
    REQUIRE(back);
    CHECK(bn_param(back.get(), "n") == attr(s, kp.public_key, CKA_MODULUS));
  }
  SUBCASE("EC key imported from a known scalar") {
    Pkey target = ec_generate_p256();
    Bytes blob = ok(rsa_aes_wrap(s, plan, kek.handle, import_ec_private(s, target.get())));
    Pkey back = parse_pkcs8(pkcs8_of(open_blob(kek, blob)));
    REQUIRE(back);
    CHECK(bn_param(back.get(), "priv", 32) == bn_param(target.get(), "priv", 32));
  }
  SUBCASE("EC key generated in the HSM") {
    KeyPair kp = ok(s.generate_key_pair(Mechanism(CKM_EC_KEY_PAIR_GEN), ec_params_p256(false),
                                        ec_params_p256(true)));
    Bytes blob = ok(rsa_aes_wrap(s, plan, kek.handle, kp.private_key));
    Pkey back = parse_pkcs8(pkcs8_of(open_blob(kek, blob)));
    REQUIRE(back);
    Bytes point = attr(s, kp.public_key, CKA_EC_POINT);  // DER OCTET STRING around 04||X||Y
    REQUIRE(point.size() == 67);
    CHECK(ec_public_point(back.get()) == Bytes(point.begin() + 2, point.end()));
  }
  SUBCASE("AES key: the blob opens to the raw key value") {
    Bytes value(32);
    for (std::size_t i = 0; i < value.size(); ++i) value[i] = static_cast<std::uint8_t>(255 - i);
    Bytes blob = ok(rsa_aes_wrap(s, plan, kek.handle, import_secret(s, CKK_AES, value)));
    CHECK(blob.size() == 256 + 40);
    CHECK(open_blob(kek, blob) == value);
    secrets_before += 1;  // the target itself
  }
  // The ephemeral AES key is destroyed after each wrap.
  CHECK(count_secret_keys(s) == secrets_before);
}

TEST_CASE("pkcs11-spy trace of the composed wrap: no key material is ever read") {
  TempDir logs;
  const std::string log = logs.path + "/spy.log";
  setenv("PKCS11SPY", kSoftHsm, 1);
  setenv("PKCS11SPY_OUTPUT", log.c_str(), 1);
  {
    SoftHsm h("spy", kSpy);
    Session s = h.user_session();
    Kek kek(s);
    RsaAesWrapPlan plan = softhsm_plan(h);
    KeyPair rsa = ok(s.generate_key_pair(Mechanism(CKM_RSA_PKCS_KEY_PAIR_GEN), rsa_public(),
                                         rsa_private()));
    CHECK(parse_pkcs8(pkcs8_of(open_blob(kek, ok(rsa_aes_wrap(s, plan, kek.handle, rsa.private_key))))));
    // A refusal reads the one attribute it explains (CKA_WRAP_WITH_TRUSTED), nothing secret.
    CK_OBJECT_HANDLE wwt = import_secret(s, CKK_AES, Bytes(32, 1), true, true);
    CHECK(err(rsa_aes_wrap(s, plan, kek.handle, wwt)).rv == CKR_KEY_NOT_WRAPPABLE);
  }
  unsetenv("PKCS11SPY");
  unsetenv("PKCS11SPY_OUTPUT");

  std::ifstream in(log);
  REQUIRE(in);
  std::stringstream all;
  all << in.rdbuf();
  // Split the trace into calls ("N: C_Name" starts one).
  std::vector<std::pair<std::string, std::string>> calls;
  std::regex start(R"(^\d+: (C_\w+))");
  std::string line;
  while (std::getline(all, line)) {
    std::smatch m;
    if (std::regex_search(line, m, start))
      calls.emplace_back(m[1], "");
    else if (!calls.empty())
      calls.back().second += line + "\n";
  }
  auto count = [&](std::string_view fn) {
    return std::count_if(calls.begin(), calls.end(), [&](auto& c) { return c.first == fn; });
  };
  CHECK(count("C_WrapKey") >= 5);  // two per composed wrap (each two-call), one refused
  CHECK(count("C_GenerateKey") == 2);
  CHECK(count("C_DestroyObject") == 2);
  std::regex secret(R"(\b(CKA_VALUE|CKA_PRIVATE_EXPONENT|CKA_PRIME_[12]|CKA_EXPONENT_[12]|CKA_COEFFICIENT)\b)");
  int reads = 0;
  for (const auto& [fn, body] : calls) {
    if (fn != "C_GetAttributeValue") continue;
    ++reads;
    CHECK_MESSAGE(!std::regex_search(body, secret), "key material read:\n" << body);
  }
  CHECK(reads >= 1);  // the refusal's explanation, so the check above did look at something
}

}  // namespace cdcp11::hsm::test
