// Known-answer tests, run against every backend linked into the binary.
#include "helpers.h"

namespace cdcp11::crypto::test {

TEST_CASE("both backends are linked into the test binary") {
  REQUIRE(openssl_backend() != nullptr);
  REQUIRE(botan_backend() != nullptr);
  CHECK(std::string(openssl_backend()->name()) == "openssl");
  CHECK(std::string(botan_backend()->name()) == "botan");
}

TEST_CASE("hash and curve sizes") {
  CHECK(hash_size(Hash::sha1) == 20);
  CHECK(hash_size(Hash::sha224) == 28);
  CHECK(hash_size(Hash::sha256) == 32);
  CHECK(hash_size(Hash::sha384) == 48);
  CHECK(hash_size(Hash::sha512) == 64);
  CHECK(curve_size(Curve::p256) == 32);
  CHECK(curve_size(Curve::p384) == 48);
  CHECK(curve_size(Curve::p521) == 66);
  CHECK(curve_size(Curve::secp256k1) == 32);
  CHECK(curve_size(Curve::ed25519) == 32);
}

TEST_CASE("SHA known answers (FIPS 180 'abc' and the two-block message)") {
  struct V { Hash h; const char* abc; const char* empty; };
  const V vs[] = {
      {Hash::sha1, "a9993e364706816aba3e25717850c26c9cd0d89d", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
      {Hash::sha224, "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
       "d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f"},
      {Hash::sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {Hash::sha384,
       "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
       "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b"},
      {Hash::sha512,
       "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
       "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"},
  };
  // 'abc' repeated so that every hash sees several blocks, computed via split updates.
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    for (const auto& v : vs) {
      CAPTURE(hash_size(v.h));
      CHECK(hex(digest(*b, v.h, view("abc"))) == v.abc);
      CHECK(hex(digest(*b, v.h, {})) == v.empty);
      // clone() continues independently from the same state.
      auto d = b->digest(v.h);
      d->update(view("a"));
      auto c = d->clone();
      REQUIRE(c != nullptr);
      d->update(view("bc"));
      c->update(view("b"));
      c->update(view("c"));
      CHECK(hex(d->finish()) == v.abc);
      CHECK(hex(c->finish()) == v.abc);
    }
    // SHA-256 of the 56-byte two-block FIPS message.
    CHECK(hex(digest(*b, Hash::sha256, view("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))) ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  }
}

TEST_CASE("HMAC known answers (RFC 4231) and SHA-1 (RFC 2202)") {
  struct V { Hash h; Bytes key; std::string data; const char* mac; std::size_t trunc; };
  const Bytes k1(20, 0x0b), k5(20, 0x0c), k6(131, 0xaa);
  const Bytes jefe = to_bytes(view("Jefe"));
  const V vs[] = {
      {Hash::sha224, k1, "Hi There", "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22", 0},
      {Hash::sha256, k1, "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", 0},
      {Hash::sha384, k1, "Hi There",
       "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6", 0},
      {Hash::sha512, k1, "Hi There",
       "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854", 0},
      {Hash::sha256, jefe, "what do ya want for nothing?",
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", 0},
      {Hash::sha256, k5, "Test With Truncation", "a3b6167473100ee06e0c796c2955552b", 16},
      {Hash::sha512, k5, "Test With Truncation", "415fad6271580a531d4179bc891d87a6", 16},
      {Hash::sha256, k6, "Test Using Larger Than Block-Size Key - Hash Key First",
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", 0},
      {Hash::sha1, k1, "Hi There", "b617318655057264e28bc0b6fb378c8ef146be00", 0},
  };
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    for (const auto& v : vs) {
      CAPTURE(v.mac);
      auto key = ok(b->load_secret(v.key));
      SignParams p;
      p.scheme = SignParams::Scheme::hmac;
      p.hash = v.h;
      p.hmac_len = v.trunc;
      Bytes mac = sign(*b, key, p, view(v.data));
      CHECK(hex(mac) == v.mac);
      ok(verify(*b, key, p, view(v.data), mac));
      mac[mac.size() - 1] ^= 1;
      CHECK_CODE(verify(*b, key, p, view(v.data), mac), Error::Code::bad_signature);
    }
  }
}

TEST_CASE("AES key wrap known answers (RFC 3394 section 4, RFC 5649 section 6)") {
  struct V { const char* kek; const char* key; const char* wrapped; bool pad; };
  const V vs[] = {
      {"000102030405060708090A0B0C0D0E0F", "00112233445566778899AABBCCDDEEFF",
       "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5", false},
      {"000102030405060708090A0B0C0D0E0F1011121314151617", "00112233445566778899AABBCCDDEEFF",
       "96778B25AE6CA435F92B5B97C050AED2468AB8A17AD84E5D", false},
      {"000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", "00112233445566778899AABBCCDDEEFF",
       "64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7", false},
      {"000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
       "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
       "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21", false},
      {"5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", "c37b7e6492584340bed12207808941155068f738",
       "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a", true},
      {"5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", "466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f", true},
  };
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    for (const auto& v : vs) {
      CAPTURE(v.wrapped);
      Bytes kek = H(v.kek), key = H(v.key), want = H(v.wrapped);
      CHECK(ok(b->aes_key_wrap(kek, key, v.pad, {})) == want);
      SecureBytes back = ok(b->aes_key_unwrap(kek, want, v.pad, {}));
      CHECK(Bytes(back.begin(), back.end()) == key);
      // The explicit default IV gives the same result.
      Bytes iv = v.pad ? H("A65959A6") : H("A6A6A6A6A6A6A6A6");
      CHECK(ok(b->aes_key_wrap(kek, key, v.pad, iv)) == want);
      Bytes bad = want;
      bad[bad.size() / 2] ^= 0x01;
      CHECK_CODE(b->aes_key_unwrap(kek, bad, v.pad, {}), Error::Code::bad_wrapped_key);
    }
  }
}

TEST_CASE("AES-GCM known answers (GCM spec test cases 3 and 4, NIST SP 800-38D)") {
  const Bytes key = H("feffe9928665731c6d6a8f9467308308");
  const Bytes iv = H("cafebabefacedbaddecaf888");
  const Bytes pt = H(
      "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525"
      "b16aedf5aa0de657ba637b391aafd255");
  const Bytes ct = H(
      "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa05"
      "1ba30b396a0aac973d58e091473f5985");
  const Bytes aad = H("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    auto k = ok(b->load_secret(key));
    CipherParams p;
    p.scheme = CipherParams::Scheme::aes_gcm;
    p.iv = iv;
    // Test case 3: no AAD.
    SecureBytes out = ok(run_cipher(*b, k, p, pt, true));
    CHECK(hex(out) == hex(ct) + "4d5c2af327cd64a62cf35abd2ba6fab4");
    SecureBytes back = ok(run_cipher(*b, k, p, out, false));
    CHECK(hex(back) == hex(pt));
    // Test case 4: AAD, 60-byte plaintext.
    p.aad = aad;
    ByteView pt60 = ByteView(pt).first(60);
    out = ok(run_cipher(*b, k, p, pt60, true));
    CHECK(hex(out) == hex(ByteView(ct).first(60)) + "5bc94fbc3221a5db94fae95ae7121a47");
    // Truncated 96-bit tag is the prefix of the full tag.
    p.tag_bits = 96;
    out = ok(run_cipher(*b, k, p, pt60, true));
    CHECK(hex(out) == hex(ByteView(ct).first(60)) + "5bc94fbc3221a5db94fae95a");
    back = ok(run_cipher(*b, k, p, out, false));
    CHECK(hex(back) == hex(pt60));
  }
}

TEST_CASE("scrypt known answers (RFC 7914 section 12)") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    CHECK(hex(ok(b->scrypt({}, {}, 16, 1, 1, 64))) ==
          "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906");
    CHECK(hex(ok(b->scrypt(view("password"), view("NaCl"), 1024, 8, 16, 64))) ==
          "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640");
    CHECK_CODE(b->scrypt(view("p"), view("s"), 1000, 8, 1, 32), Error::Code::bad_param);
    CHECK_CODE(b->scrypt(view("p"), view("s"), 1024, 0, 1, 32), Error::Code::bad_param);
  }
}

}  // namespace cdcp11::crypto::test
