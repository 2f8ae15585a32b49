// AES-ECB and AES-CBC without padding (CKM_AES_ECB, CKM_AES_CBC): NIST SP 800-38A known answers,
// multi-part block buffering, the length and IV errors, and interop between the backends.
#include "helpers.h"

namespace cdcp11::crypto::test {

namespace {

using CS = CipherParams::Scheme;

// NIST SP 800-38A, appendix F: the same four plaintext blocks under every key.
const char* const kPlain =
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";
const char* const kIv = "000102030405060708090a0b0c0d0e0f";

struct Kat {
  const char* name;
  CS scheme;
  const char* key;
  const char* cipher;
};
const Kat kKats[] = {
    {"F.1.1 ECB-AES128", CS::aes_ecb, "2b7e151628aed2a6abf7158809cf4f3c",
     "3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf"
     "43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4"},
    {"F.1.3 ECB-AES192", CS::aes_ecb, "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
     "bd334f1d6e45f25ff712a214571fa5cc974104846d0ad3ad7734ecb3ecee4eef"
     "ef7afd2270e2e60adce0ba2face6444e9a4b41ba738d6c72fb16691603c18e0e"},
    {"F.1.5 ECB-AES256", CS::aes_ecb, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
     "f3eed1bdb5d2a03c064b5a7e3db181f8591ccb10d410ed26dc5ba74a31362870"
     "b6ed21b99ca6f4f9f153e7b1beafed1d23304b7a39f9f3ff067d8d8f9e24ecc7"},
    {"F.2.1 CBC-AES128", CS::aes_cbc, "2b7e151628aed2a6abf7158809cf4f3c",
     "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
     "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7"},
    {"F.2.3 CBC-AES192", CS::aes_cbc, "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
     "4f021db243bc633d7178183a9fa071e8b4d9ada9ad7dedf4e5e738763f69145a"
     "571b242012fb7ae07fa9baac3df102e008b0e27988598881d920a9e64f5615cd"},
    {"F.2.5 CBC-AES256", CS::aes_cbc, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
     "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
     "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b"},
};

CipherParams params(CS s, Bytes iv = {}) {
  CipherParams p;
  p.scheme = s;
  p.iv = std::move(iv);
  return p;
}

CipherParams params_for(CS s) { return s == CS::aes_cbc ? params(s, H(kIv)) : params(s); }

}  // namespace

TEST_CASE("AES-ECB / AES-CBC known answers (NIST SP 800-38A), single- and multi-part") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    for (const auto& v : kKats) {
      CAPTURE(v.name);
      auto key = ok(b->load_secret(H(v.key)));
      CipherParams p = params_for(v.scheme);
      for (bool split : {false, true}) {
        CAPTURE(split);
        CHECK(hex(ok(run_cipher(*b, key, p, H(kPlain), true, split))) == v.cipher);
        CHECK(hex(ok(run_cipher(*b, key, p, H(v.cipher), false, split))) == kPlain);
      }
    }
  }
}

TEST_CASE("AES-ECB / AES-CBC round trips for 128/192/256-bit keys") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    for (std::size_t ks : {16u, 24u, 32u}) {
      auto key = ok(b->load_secret(random_bytes(ks)));
      for (CS s : {CS::aes_ecb, CS::aes_cbc}) {
        CipherParams p = s == CS::aes_cbc ? params(s, random_bytes(16)) : params(s);
        for (std::size_t len : {0u, 16u, 48u, 1024u}) {
          CAPTURE(ks);
          CAPTURE(len);
          Bytes pt = random_bytes(len);
          SecureBytes ct = ok(run_cipher(*b, key, p, pt, true));
          CHECK(ct.size() == len);
          CHECK(ok(run_cipher(*b, key, p, ct, false)) == to_secure(pt));
        }
      }
    }
  }
}

TEST_CASE("AES-ECB / AES-CBC multi-part: every update returns the complete blocks, no more") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    auto key = ok(b->load_secret(H("2b7e151628aed2a6abf7158809cf4f3c")));
    for (CS s : {CS::aes_ecb, CS::aes_cbc}) {
      for (bool enc : {true, false}) {
        CAPTURE(enc);
        const Bytes in = H(enc ? kPlain : kKats[s == CS::aes_ecb ? 0 : 3].cipher);
        auto c = ok(enc ? b->encryptor(key, params_for(s)) : b->decryptor(key, params_for(s)));
        ByteView v(in);
        SecureBytes out;
        // 5 bytes: nothing yet; 11 more: one block; 20 more: one block, 4 held; 28 more: two blocks.
        const std::pair<std::size_t, std::size_t> steps[] = {{5, 0}, {11, 16}, {20, 16}, {28, 32}};
        for (auto [n, want] : steps) {
          SecureBytes part = ok(c->update(v.first(n)));
          CHECK(part.size() == want);
          out.insert(out.end(), part.begin(), part.end());
          v = v.subspan(n);
        }
        CHECK(ok(c->finish()).empty());
        CHECK(hex(out) == hex(enc ? H(kKats[s == CS::aes_ecb ? 0 : 3].cipher) : H(kPlain)));
      }
    }
  }
}

TEST_CASE("AES-ECB / AES-CBC length and parameter errors") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    auto key = ok(b->load_secret(random_bytes(16)));
    for (CS s : {CS::aes_ecb, CS::aes_cbc}) {
      CipherParams p = params_for(s);
      for (std::size_t len : {1u, 15u, 17u, 31u, 33u}) {
        CAPTURE(len);
        // Encryption and decryption alike: the input must be whole blocks, checked at finish().
        CHECK_CODE(run_cipher(*b, key, p, random_bytes(len), true), Error::Code::bad_input_length);
        CHECK_CODE(run_cipher(*b, key, p, random_bytes(len), false), Error::Code::bad_input_length);
      }
      auto e = ok(b->encryptor(key, p));
      CHECK(ok(e->update(random_bytes(20))).size() == 16);
      CHECK_CODE(e->finish(), Error::Code::bad_input_length);
    }
    // CBC needs a 16-byte IV; ECB takes none.
    for (std::size_t n : {0u, 8u, 15u, 17u, 32u}) {
      CAPTURE(n);
      CHECK_CODE(b->encryptor(key, params(CS::aes_cbc, random_bytes(n))), Error::Code::bad_param);
      CHECK_CODE(b->decryptor(key, params(CS::aes_cbc, random_bytes(n))), Error::Code::bad_param);
    }
    CHECK_CODE(b->encryptor(key, params(CS::aes_ecb, random_bytes(16))), Error::Code::bad_param);
    auto k17 = ok(b->load_secret(random_bytes(17)));
    CHECK_CODE(b->encryptor(k17, params(CS::aes_ecb)), Error::Code::bad_key);
  }
}

TEST_CASE("interop: AES-ECB / AES-CBC ciphertext is identical and decrypts across backends") {
  Backend* o = openssl_backend();
  Backend* t = botan_backend();
  REQUIRE(o != nullptr);
  REQUIRE(t != nullptr);
  for (std::size_t ks : {16u, 24u, 32u}) {
    Bytes key = random_bytes(ks);
    auto ko = ok(o->load_secret(key));
    auto kt = ok(t->load_secret(key));
    for (CS s : {CS::aes_ecb, CS::aes_cbc}) {
      CipherParams p = s == CS::aes_cbc ? params(s, random_bytes(16)) : params(s);
      Bytes pt = random_bytes(16 * 37);
      SecureBytes co = ok(run_cipher(*o, ko, p, pt, true));
      CHECK(co == ok(run_cipher(*t, kt, p, pt, true)));
      CHECK(ok(run_cipher(*t, kt, p, co, false)) == to_secure(pt));
      CHECK(ok(run_cipher(*o, ko, p, co, false)) == to_secure(pt));
    }
  }
}

}  // namespace cdcp11::crypto::test
