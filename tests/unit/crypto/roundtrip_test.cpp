// Round trips and error mapping for every operation, per backend.
#include "helpers.h"

#include <algorithm>
#include <atomic>
#include <thread>

namespace cdcp11::crypto::test {

namespace {

using SS = SignParams::Scheme;
using CS = CipherParams::Scheme;

// DER DigestInfo prefixes (RFC 8017 section 9.2 note 1).
Bytes digest_info(Hash h, ByteView digest) {
  Bytes prefix;
  switch (h) {
    case Hash::sha1: prefix = H("3021300906052b0e03021a05000414"); break;
    case Hash::sha224: prefix = H("302d300d06096086480165030402040500041c"); break;
    case Hash::sha256: prefix = H("3031300d060960864801650304020105000420"); break;
    case Hash::sha384: prefix = H("3041300d060960864801650304020205000430"); break;
    case Hash::sha512: prefix = H("3051300d060960864801650304020305000440"); break;
  }
  prefix.insert(prefix.end(), digest.begin(), digest.end());
  return prefix;
}

SignParams sp(SS s, std::optional<Hash> h = std::nullopt) {
  SignParams p;
  p.scheme = s;
  p.hash = h;
  if (h) p.pss.hash = p.pss.mgf1 = *h;
  p.pss.salt_len = h ? hash_size(*h) : 32;
  return p;
}

}  // namespace

TEST_CASE("random bytes") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    Bytes a(64), c(64);
    ok(b->random(a.data(), a.size()));
    ok(b->random(c.data(), c.size()));
    CHECK(a != c);
    CHECK(a != Bytes(64, 0));
    ok(b->random(nullptr, 0));
  }
}

TEST_CASE("RSA-2048 generation, completion and signatures") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    const RsaPrivate& k = rsa2048(*b);
    CHECK(k.n.size() == 256);
    CHECK(k.e == H("010001"));
    CHECK_FALSE(k.p.empty());
    CHECK_FALSE(k.qinv.empty());
    auto priv = ok(b->load_private(k));
    auto pub = ok(b->load_public(RsaPublic{k.n, k.e}));
    CHECK(priv->bits() == 2048);
    CHECK(pub->bits() == 2048);

    // complete_rsa recovers the primes and CRT values from n, e, d alone.
    RsaPrivate ned;
    ned.n = k.n;
    ned.e = k.e;
    ned.d = k.d;
    RsaPrivate full = ok(b->complete_rsa(ned));
    CHECK(((full.p == k.p && full.q == k.q) || (full.p == k.q && full.q == k.p)));
    CHECK(ok(b->complete_rsa(k)).dp == k.dp);
    RsaPrivate broken = k;
    broken.dp[0] ^= 1;
    CHECK_CODE(b->complete_rsa(broken), Error::Code::bad_key);
    broken = k;
    broken.p.back() ^= 2;
    CHECK_CODE(b->complete_rsa(broken), Error::Code::bad_key);
    CHECK_CODE(b->load_private(broken), Error::Code::bad_key);

    const Bytes msg = random_bytes(1000);
    for (Hash h : kAllHashes) {
      CAPTURE(hash_size(h));
      // PKCS#1 v1.5 with hash == raw PKCS#1 over the DigestInfo (deterministic).
      Bytes s1 = sign(*b, priv, sp(SS::rsa_pkcs1, h), msg);
      CHECK(s1.size() == 256);
      Bytes di = digest_info(h, digest(*b, h, msg));
      Bytes s2 = sign(*b, priv, sp(SS::rsa_pkcs1), di);
      CHECK(s1 == s2);
      ok(verify(*b, pub, sp(SS::rsa_pkcs1, h), msg, s1));
      ok(verify(*b, pub, sp(SS::rsa_pkcs1), di, s1));
      ok(verify(*b, priv, sp(SS::rsa_pkcs1, h), msg, s1));  // a private key verifies too

      // PSS: hashed and raw digest interoperate; randomized.
      Bytes p1 = sign(*b, priv, sp(SS::rsa_pss, h), msg);
      SignParams raw = sp(SS::rsa_pss);
      raw.pss = sp(SS::rsa_pss, h).pss;
      Bytes p3 = sign(*b, priv, raw, digest(*b, h, msg));
      CHECK(p1 != p3);
      ok(verify(*b, pub, sp(SS::rsa_pss, h), msg, p1));
      ok(verify(*b, pub, sp(SS::rsa_pss, h), msg, p3));
      ok(verify(*b, pub, raw, digest(*b, h, msg), p1));
      Bytes bad = p1;
      bad[10] ^= 0x40;
      CHECK_CODE(verify(*b, pub, sp(SS::rsa_pss, h), msg, bad), Error::Code::bad_signature);
    }
    // Salt length is enforced on verification.
    SignParams salt0 = sp(SS::rsa_pss, Hash::sha256);
    salt0.pss.salt_len = 0;
    Bytes s0 = sign(*b, priv, salt0, msg);
    ok(verify(*b, pub, salt0, msg, s0));
    CHECK_CODE(verify(*b, pub, sp(SS::rsa_pss, Hash::sha256), msg, s0), Error::Code::bad_signature);

    Bytes s = sign(*b, priv, sp(SS::rsa_pkcs1, Hash::sha256), msg);
    Bytes tampered = s;
    tampered[100] ^= 1;
    CHECK_CODE(verify(*b, pub, sp(SS::rsa_pkcs1, Hash::sha256), msg, tampered), Error::Code::bad_signature);
    CHECK_CODE(verify(*b, pub, sp(SS::rsa_pkcs1, Hash::sha256), view("other"), s), Error::Code::bad_signature);
    CHECK_CODE(verify(*b, pub, sp(SS::rsa_pkcs1, Hash::sha256), msg, ByteView(s).first(255)),
               Error::Code::bad_signature_length);
    Bytes longer = s;
    longer.push_back(0);
    CHECK_CODE(verify(*b, pub, sp(SS::rsa_pkcs1, Hash::sha256), msg, longer), Error::Code::bad_signature_length);
    // Raw PKCS#1 block: up to k - 11 bytes.
    sign(*b, priv, sp(SS::rsa_pkcs1), random_bytes(245));
    auto sg = ok(b->signer(priv, sp(SS::rsa_pkcs1)));
    ok(sg->update(random_bytes(246)));
    CHECK_CODE(sg->finish(), Error::Code::bad_input_length);
    // Raw PSS: digest length must equal the hash size.
    auto ps = ok(b->signer(priv, sp(SS::rsa_pss)));
    ok(ps->update(random_bytes(31)));
    CHECK_CODE(ps->finish(), Error::Code::bad_input_length);
    // PSS hash mismatch and oversize salt.
    SignParams mism = sp(SS::rsa_pss, Hash::sha256);
    mism.pss.hash = Hash::sha384;
    CHECK_CODE(b->signer(priv, mism), Error::Code::bad_param);
    SignParams big = sp(SS::rsa_pss, Hash::sha512);
    big.pss.salt_len = 256;
    CHECK_CODE(b->signer(priv, big), Error::Code::bad_param);
    // Key type checks.
    CHECK_CODE(b->signer(pub, sp(SS::rsa_pkcs1, Hash::sha256)), Error::Code::bad_key);
    CHECK_CODE(b->signer(priv, sp(SS::ecdsa, Hash::sha256)), Error::Code::bad_key);
  }
}

TEST_CASE("RSA encryption: OAEP (all hashes, label) and PKCS#1 v1.5") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    const RsaPrivate& k = rsa2048(*b);
    auto priv = ok(b->load_private(k));
    auto pub = ok(b->load_public(RsaPublic{k.n, k.e}));
    for (Hash h : kAllHashes) {
      CAPTURE(hash_size(h));
      CipherParams p;
      p.scheme = CS::rsa_oaep;
      p.oaep_hash = h;
      p.mgf1 = h == Hash::sha1 ? Hash::sha1 : Hash::sha256;
      p.label = to_bytes(view(std::string_view("label\0,()bytes", 14)));
      std::size_t max = 256 - 2 * hash_size(h) - 2;
      Bytes pt = random_bytes(max);
      SecureBytes ct = ok(run_cipher(*b, pub, p, pt, true));
      CHECK(ct.size() == 256);
      CHECK(ok(run_cipher(*b, priv, p, ct, false)) == to_secure(pt));
      CHECK_CODE(run_cipher(*b, pub, p, random_bytes(max + 1), true), Error::Code::bad_input_length);
      CipherParams other = p;
      other.label = to_bytes(view("label"));
      CHECK_CODE(run_cipher(*b, priv, other, ct, false), Error::Code::bad_encrypted_input);
      ct[5] ^= 1;
      CHECK_CODE(run_cipher(*b, priv, p, ct, false), Error::Code::bad_encrypted_input);
    }
    CipherParams p;
    p.scheme = CS::rsa_pkcs1;
    Bytes pt = random_bytes(245);
    SecureBytes ct = ok(run_cipher(*b, pub, p, pt, true));
    CHECK(ok(run_cipher(*b, priv, p, ct, false)) == to_secure(pt));
    CHECK(ok(run_cipher(*b, priv, p, ok(run_cipher(*b, pub, p, {}, true)), false)).empty());
    CHECK_CODE(run_cipher(*b, pub, p, random_bytes(246), true), Error::Code::bad_input_length);
    CHECK_CODE(run_cipher(*b, priv, p, ByteView(ct).first(255), false), Error::Code::bad_input_length);
    // Bad padding is not an error (implicit rejection, see rsa_pkcs1_test.cpp).
    SecureBytes zero(256, 0);
    CHECK(ok(run_cipher(*b, priv, p, zero, false)).size() <= 245);
    CHECK_CODE(b->decryptor(pub, p), Error::Code::bad_key);
  }
}

TEST_CASE("larger RSA keys: 4096 with OpenSSL, 3072 with Botan") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    std::size_t bits = std::string(b->name()) == "openssl" ? 4096 : 3072;
    RsaPrivate k = ok(b->generate_rsa(bits, H("010001")));
    CHECK(k.n.size() * 8 == bits);
    auto priv = ok(b->load_private(k));
    CHECK(priv->bits() == bits);
    auto pub = ok(b->load_public(RsaPublic{k.n, k.e}));
    Bytes s = sign(*b, priv, sp(SS::rsa_pss, Hash::sha384), view("message"));
    CHECK(s.size() * 8 == bits);
    ok(verify(*b, pub, sp(SS::rsa_pss, Hash::sha384), view("message"), s));
  }
  Backend& b = *backends().front();
  CHECK_CODE(b.generate_rsa(1000, {}), Error::Code::unsupported);
  CHECK_CODE(b.generate_rsa(2048, H("010000")), Error::Code::bad_param);
}

TEST_CASE("ECDSA on P-256, P-384, P-521 and secp256k1") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    for (Curve c : kEcdsaCurves) {
      CAPTURE(static_cast<int>(c));
      std::size_t fs = curve_size(c);
      const EcPrivate& k = ec_key(*b, c);
      CHECK(k.d.size() == fs);
      CHECK(k.point.size() == 1 + 2 * fs);
      CHECK(k.point[0] == 0x04);
      EcPrivate donly;
      donly.curve = c;
      donly.d = k.d;
      CHECK(ok(b->complete_ec(donly)).point == k.point);
      EcPrivate wrong = k;
      wrong.point[5] ^= 1;
      CHECK_CODE(b->complete_ec(wrong), Error::Code::bad_key);
      EcPrivate zero = donly;
      std::fill(zero.d.begin(), zero.d.end(), 0);
      CHECK_CODE(b->complete_ec(zero), Error::Code::bad_key);

      auto priv = ok(b->load_private(k));
      auto pub = ok(b->load_public(EcPublic{c, k.point}));
      CHECK(priv->bits() == (c == Curve::p384 ? 384u : c == Curve::p521 ? 521u : 256u));
      Bytes msg = random_bytes(300);
      for (Hash h : kAllHashes) {
        Bytes s = sign(*b, priv, sp(SS::ecdsa, h), msg);
        CHECK(s.size() == 2 * fs);
        ok(verify(*b, pub, sp(SS::ecdsa, h), msg, s));
        // Raw ECDSA over the digest (shorter or longer than the order) matches the hashed form.
        Bytes dg = digest(*b, h, msg);
        Bytes r = sign(*b, priv, sp(SS::ecdsa), dg);
        CHECK(r.size() == 2 * fs);
        ok(verify(*b, pub, sp(SS::ecdsa, h), msg, r));
        ok(verify(*b, pub, sp(SS::ecdsa), dg, s));
      }
      Bytes s = sign(*b, priv, sp(SS::ecdsa, Hash::sha256), msg);
      Bytes t = s;
      t[3] ^= 0x10;
      CHECK_CODE(verify(*b, pub, sp(SS::ecdsa, Hash::sha256), msg, t), Error::Code::bad_signature);
      CHECK_CODE(verify(*b, pub, sp(SS::ecdsa, Hash::sha256), msg, Bytes(2 * fs, 0)), Error::Code::bad_signature);
      CHECK_CODE(verify(*b, pub, sp(SS::ecdsa, Hash::sha256), msg, Bytes(2 * fs, 0xff)), Error::Code::bad_signature);
      CHECK_CODE(verify(*b, pub, sp(SS::ecdsa, Hash::sha256), msg, ByteView(s).first(2 * fs - 1)),
                 Error::Code::bad_signature_length);
      CHECK_CODE(verify(*b, pub, sp(SS::eddsa), msg, s), Error::Code::bad_key);
      // Off-curve public point.
      Bytes off = k.point;
      off.back() ^= 1;
      CHECK_CODE(b->load_public(EcPublic{c, off}), Error::Code::bad_key);
    }
  }
}

TEST_CASE("Ed25519: RFC 8032 test vectors 1 and 2, generation, sign/verify") {
  const Bytes seed1 = H("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  const Bytes pub1 = H("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  const char* sig1 =
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
  const Bytes seed2 = H("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
  const char* sig2 =
      "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    EcPrivate k;
    k.curve = Curve::ed25519;
    k.d = to_secure(seed1);
    EcPrivate full = ok(b->complete_ec(k));
    CHECK(full.point == pub1);
    auto priv = ok(b->load_private(k));
    CHECK(priv->bits() == 255);
    CHECK(hex(sign(*b, priv, sp(SS::eddsa), {})) == sig1);
    k.d = to_secure(seed2);
    CHECK(hex(sign(*b, ok(b->load_private(k)), sp(SS::eddsa), H("72"))) == sig2);

    const EcPrivate& g = ec_key(*b, Curve::ed25519);
    CHECK(g.d.size() == 32);
    CHECK(g.point.size() == 32);
    auto gp = ok(b->load_private(g));
    auto pub = ok(b->load_public(EcPublic{Curve::ed25519, g.point}));
    Bytes msg = random_bytes(777);
    Bytes s = sign(*b, gp, sp(SS::eddsa), msg);
    CHECK(s.size() == 64);
    ok(verify(*b, pub, sp(SS::eddsa), msg, s));
    s[0] ^= 1;
    CHECK_CODE(verify(*b, pub, sp(SS::eddsa), msg, s), Error::Code::bad_signature);
    CHECK_CODE(verify(*b, pub, sp(SS::eddsa), msg, ByteView(s).first(63)), Error::Code::bad_signature_length);
    CHECK_CODE(b->signer(gp, sp(SS::eddsa, Hash::sha256)), Error::Code::bad_param);
    CHECK_CODE(b->load_public(EcPublic{Curve::ed25519, Bytes(31, 1)}), Error::Code::bad_key);
    CHECK_CODE(b->ecdh(gp, g.point), Error::Code::bad_key);
  }
}

TEST_CASE("ECDH on the Weierstrass curves returns the x coordinate") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    for (Curve c : kEcdsaCurves) {
      CAPTURE(static_cast<int>(c));
      std::size_t fs = curve_size(c);
      EcPrivate a = ok(b->generate_ec(c));
      const EcPrivate& bb = ec_key(*b, c);
      auto ka = ok(b->load_private(a));
      auto kb = ok(b->load_private(bb));
      SecureBytes s1 = ok(b->ecdh(ka, bb.point));
      SecureBytes s2 = ok(b->ecdh(kb, a.point));
      CHECK(s1.size() == fs);
      CHECK(s1 == s2);
      Bytes off = a.point;
      off[1] ^= 1;
      CHECK_CODE(b->ecdh(kb, off), Error::Code::bad_param);
      CHECK_CODE(b->ecdh(kb, ByteView(a.point).first(fs + 1)), Error::Code::bad_param);
    }
    // ECDH with d = 1 gives the peer's own x coordinate.
    EcPrivate one;
    one.curve = Curve::p256;
    one.d = SecureBytes(32, 0);
    one.d.back() = 1;
    auto k1 = ok(b->load_private(one));
    const EcPrivate& peer = ec_key(*b, Curve::p256);
    SecureBytes x = ok(b->ecdh(k1, peer.point));
    CHECK(Bytes(x.begin(), x.end()) == Bytes(peer.point.begin() + 1, peer.point.begin() + 33));
  }
}

TEST_CASE("AES-GCM, CBC-PAD and CTR round trips for 128/192/256-bit keys") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    for (std::size_t ks : {16u, 24u, 32u}) {
      CAPTURE(ks);
      auto key = ok(b->load_secret(random_bytes(ks)));
      CHECK(key->bits() == ks * 8);
      for (std::size_t len : {0u, 1u, 15u, 16u, 17u, 64u, 1000u}) {
        CAPTURE(len);
        Bytes pt = random_bytes(len);
        CipherParams g;
        g.scheme = CS::aes_gcm;
        g.iv = random_bytes(len % 2 ? 12 : 7);
        g.aad = random_bytes(len % 5);
        g.tag_bits = len % 3 ? 128 : 64;
        SecureBytes ct = ok(run_cipher(*b, key, g, pt, true));
        CHECK(ct.size() == len + g.tag_bits / 8);
        CHECK(ok(run_cipher(*b, key, g, ct, false)) == to_secure(pt));

        CipherParams c;
        c.scheme = CS::aes_cbc_pad;
        c.iv = random_bytes(16);
        ct = ok(run_cipher(*b, key, c, pt, true));
        CHECK(ct.size() == (len / 16 + 1) * 16);
        CHECK(ok(run_cipher(*b, key, c, ct, false)) == to_secure(pt));

        CipherParams t;
        t.scheme = CS::aes_ctr;
        t.iv = random_bytes(16);
        t.counter_bits = 32;
        t.iv[12] = 0;  // keep the 32-bit counter far from wrapping
        ct = ok(run_cipher(*b, key, t, pt, true));
        CHECK(ct.size() == len);
        CHECK(ok(run_cipher(*b, key, t, ct, false)) == to_secure(pt));
      }
    }
  }
}

TEST_CASE("AES known relations: CTR keystream equals GCM body; CBC first block") {
  // GCM encrypts with CTR starting at J0+1 (J0 = IV || 00000001 for a 12-byte IV).
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    auto key = ok(b->load_secret(H("feffe9928665731c6d6a8f9467308308")));
    CipherParams t;
    t.scheme = CS::aes_ctr;
    t.iv = H("cafebabefacedbaddecaf88800000002");
    Bytes pt = H("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72");
    CHECK(hex(ok(run_cipher(*b, key, t, pt, true))) ==
          "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e");
  }
}

TEST_CASE("AES error mapping") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    auto key = ok(b->load_secret(random_bytes(16)));
    Bytes pt = random_bytes(40);
    // GCM: tampered tag / ciphertext, short input; nothing released before finish().
    CipherParams g;
    g.scheme = CS::aes_gcm;
    g.iv = random_bytes(12);
    SecureBytes ct = ok(run_cipher(*b, key, g, pt, true));
    for (std::size_t pos : {std::size_t{0}, ct.size() - 1}) {
      SecureBytes bad = ct;
      bad[pos] ^= 0x80;
      auto d = ok(b->decryptor(key, g));
      CHECK(ok(d->update(bad)).empty());
      CHECK_CODE(d->finish(), Error::Code::bad_encrypted_input);
    }
    CipherParams wrong_aad = g;
    wrong_aad.aad = H("00");
    CHECK_CODE(run_cipher(*b, key, wrong_aad, ct, false), Error::Code::bad_encrypted_input);
    CHECK_CODE(run_cipher(*b, key, g, ByteView(ct).first(15), false), Error::Code::bad_encrypted_input);
    CipherParams p = g;
    p.iv.clear();
    CHECK_CODE(b->encryptor(key, p), Error::Code::bad_param);
    p = g;
    p.tag_bits = 20;
    CHECK_CODE(b->encryptor(key, p), Error::Code::bad_param);
    p.tag_bits = 136;
    CHECK_CODE(b->decryptor(key, p), Error::Code::bad_param);
    // Unusual tag length (40 bits) still works and is a prefix of the full tag.
    p.tag_bits = 40;
    SecureBytes c40 = ok(run_cipher(*b, key, p, pt, true));
    CHECK(Bytes(c40.begin(), c40.end()) == Bytes(ct.begin(), ct.begin() + 45));
    CHECK(ok(run_cipher(*b, key, p, c40, false)) == to_secure(pt));
    c40.back() ^= 1;
    CHECK_CODE(run_cipher(*b, key, p, c40, false), Error::Code::bad_encrypted_input);

    // CBC: wrong IV size, ciphertext not a block multiple, bad padding.
    CipherParams c;
    c.scheme = CS::aes_cbc_pad;
    c.iv = random_bytes(15);
    CHECK_CODE(b->encryptor(key, c), Error::Code::bad_param);
    c.iv = random_bytes(16);
    SecureBytes cc = ok(run_cipher(*b, key, c, Bytes(16, 0), true));
    REQUIRE(cc.size() == 32);
    CHECK_CODE(run_cipher(*b, key, c, ByteView(cc).first(17), false), Error::Code::bad_encrypted_input);
    CHECK_CODE(run_cipher(*b, key, c, ByteView(cc).first(16), false), Error::Code::bad_encrypted_input);
    CHECK_CODE(run_cipher(*b, key, c, {}, false), Error::Code::bad_encrypted_input);

    // CTR: counter wrap is an error; exactly reaching the last counter is fine.
    CipherParams t;
    t.scheme = CS::aes_ctr;
    t.iv = H("000102030405060708090a0b0c0d0efe");
    t.counter_bits = 8;
    CHECK(ok(run_cipher(*b, key, t, random_bytes(32), true)).size() == 32);
    CHECK_CODE(run_cipher(*b, key, t, random_bytes(33), true), Error::Code::bad_input_length);
    auto e = ok(b->encryptor(key, t));
    CHECK(ok(e->update(random_bytes(20))).size() == 20);
    CHECK_CODE(e->update(random_bytes(13)), Error::Code::bad_input_length);
    t.iv = H("ffffffffffffffffffffffffffffffff");
    t.counter_bits = 128;
    CHECK(ok(run_cipher(*b, key, t, random_bytes(16), true)).size() == 16);
    CHECK_CODE(run_cipher(*b, key, t, random_bytes(17), true), Error::Code::bad_input_length);
    t.counter_bits = 0;
    CHECK_CODE(b->encryptor(key, t), Error::Code::bad_param);
    t.counter_bits = 64;
    t.iv = random_bytes(8);
    CHECK_CODE(b->encryptor(key, t), Error::Code::bad_param);

    // Key sizes / types.
    auto k17 = ok(b->load_secret(random_bytes(17)));
    CHECK_CODE(b->encryptor(k17, g), Error::Code::bad_key);
    CipherParams r;
    r.scheme = CS::rsa_oaep;
    CHECK_CODE(b->encryptor(key, r), Error::Code::bad_key);
  }
}

TEST_CASE("HMAC round trips, truncation and length errors") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    auto key = ok(b->load_secret(random_bytes(40)));
    Bytes msg = random_bytes(500);
    for (Hash h : kAllHashes) {
      SignParams p = sp(SS::hmac, h);
      Bytes full = sign(*b, key, p, msg);
      CHECK(full.size() == hash_size(h));
      CHECK(sign(*b, key, p, msg, false) == full);
      ok(verify(*b, key, p, msg, full));
      p.hmac_len = 10;
      Bytes t = sign(*b, key, p, msg);
      CHECK(t == Bytes(full.begin(), full.begin() + 10));
      ok(verify(*b, key, p, msg, t));
      CHECK_CODE(verify(*b, key, p, msg, full), Error::Code::bad_signature_length);
      p.hmac_len = hash_size(h) + 1;
      CHECK_CODE(b->signer(key, p), Error::Code::bad_param);
    }
    CHECK_CODE(b->signer(key, sp(SS::hmac)), Error::Code::bad_param);
    auto rsa = ok(b->load_private(rsa2048(*b)));
    CHECK_CODE(b->signer(rsa, sp(SS::hmac, Hash::sha256)), Error::Code::bad_key);
    CHECK_CODE(b->signer(key, sp(SS::rsa_pkcs1, Hash::sha256)), Error::Code::bad_key);
  }
}

TEST_CASE("AES key wrap: custom IVs and error mapping") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    Bytes kek = random_bytes(32);
    for (bool pad : {false, true}) {
      Bytes iv = random_bytes(pad ? 4 : 8);
      for (std::size_t len : {16u, 24u, 40u}) {
        Bytes key = random_bytes(len);
        Bytes w = ok(b->aes_key_wrap(kek, key, pad, iv));
        CHECK(w.size() == len + 8);
        CHECK(ok(b->aes_key_unwrap(kek, w, pad, iv)) == to_secure(key));
        CHECK(w != ok(b->aes_key_wrap(kek, key, pad, {})));
        CHECK_CODE(b->aes_key_unwrap(kek, w, pad, {}), Error::Code::bad_wrapped_key);
      }
      CHECK_CODE(b->aes_key_wrap(kek, random_bytes(16), pad, random_bytes(pad ? 8 : 4)), Error::Code::bad_param);
      CHECK_CODE(b->aes_key_wrap(random_bytes(20), random_bytes(16), pad, {}), Error::Code::bad_key);
      CHECK_CODE(b->aes_key_unwrap(kek, random_bytes(20), pad, {}), Error::Code::bad_wrapped_key);
      CHECK_CODE(b->aes_key_unwrap(kek, random_bytes(8), pad, {}), Error::Code::bad_wrapped_key);
    }
    CHECK_CODE(b->aes_key_wrap(kek, random_bytes(15), false, {}), Error::Code::bad_input_length);
    CHECK_CODE(b->aes_key_wrap(kek, random_bytes(8), false, {}), Error::Code::bad_input_length);
    CHECK_CODE(b->aes_key_wrap(kek, {}, true, {}), Error::Code::bad_input_length);
    // KWP handles lengths that are not multiples of 8, including a single byte.
    for (std::size_t len : {1u, 8u, 9u, 31u}) {
      Bytes key = random_bytes(len);
      Bytes w = ok(b->aes_key_wrap(kek, key, true, {}));
      CHECK(w.size() == std::max<std::size_t>(16, (len + 7) / 8 * 8 + 8));
      CHECK(ok(b->aes_key_unwrap(kek, w, true, {})) == to_secure(key));
    }
  }
}

TEST_CASE("PKCS#8 encode/decode round trips") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    const RsaPrivate& rsa = rsa2048(*b);
    SecureBytes der = ok(b->encode_pkcs8(rsa));
    PrivateMaterial back = ok(b->decode_pkcs8(der));
    REQUIRE(std::holds_alternative<RsaPrivate>(back));
    const auto& r = std::get<RsaPrivate>(back);
    CHECK(r.n == rsa.n);
    CHECK(r.d == rsa.d);
    CHECK(r.p == rsa.p);
    CHECK(r.qinv == rsa.qinv);
    // rsaEncryption OID.
    const Bytes rsa_oid = H("06092a864886f70d010101");
    CHECK(std::search(der.begin(), der.end(), rsa_oid.begin(), rsa_oid.end()) != der.end());

    const std::pair<Curve, const char*> oids[] = {
        {Curve::p256, "06082a8648ce3d030107"},
        {Curve::p384, "06052b81040022"},
        {Curve::p521, "06052b81040023"},
        {Curve::secp256k1, "06052b8104000a"},
        {Curve::ed25519, "06032b6570"},
    };
    for (const auto& [c, oid] : oids) {
      CAPTURE(static_cast<int>(c));
      const EcPrivate& k = ec_key(*b, c);
      SecureBytes d = ok(b->encode_pkcs8(k));
      Bytes o = H(oid);
      CHECK(std::search(d.begin(), d.end(), o.begin(), o.end()) != d.end());
      if (c != Curve::ed25519) {  // RFC 5915 with the public key included
        CHECK(std::search(d.begin(), d.end(), k.point.begin(), k.point.end()) != d.end());
      } else {
        CHECK(d.size() == 48);  // RFC 8410 section 10.3 layout
      }
      PrivateMaterial m = ok(b->decode_pkcs8(d));
      REQUIRE(std::holds_alternative<EcPrivate>(m));
      const auto& e = std::get<EcPrivate>(m);
      CHECK(e.curve == c);
      CHECK(e.d == k.d);
      CHECK(e.point == k.point);
    }
    // RFC 8410 section 10.3 example private key.
    PrivateMaterial ed = ok(b->decode_pkcs8(H("302e020100300506032b657004220420d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842")));
    REQUIRE(std::holds_alternative<EcPrivate>(ed));
    CHECK(hex(std::get<EcPrivate>(ed).d) == "d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842");
    CHECK(std::get<EcPrivate>(ed).point.size() == 32);

    SecureBytes broken = der;
    broken.resize(broken.size() / 2);
    CHECK_CODE(b->decode_pkcs8(broken), Error::Code::bad_key);
    CHECK_CODE(b->decode_pkcs8(H("3003020100")), Error::Code::bad_key);
  }
}

TEST_CASE("a loaded key is usable from several threads at once") {
  for (Backend* b : backends()) {
    const std::string bn = b->name();
    CAPTURE(bn);
    auto rsa = ok(b->load_private(rsa2048(*b)));
    auto ec = ok(b->load_private(ec_key(*b, Curve::p256)));
    auto aes = ok(b->load_secret(Bytes(32, 7)));
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        Bytes msg(100, static_cast<std::uint8_t>(t));
        for (int i = 0; i < 10; ++i) {
          auto run = [&](const KeyPtr& k, SignParams p) {
            auto s = b->signer(k, p);
            if (!s || !(*s)->update(msg)) return false;
            auto sig = (*s)->finish();
            if (!sig) return false;
            auto v = b->verifier(k, p);
            return v && (*v)->update(msg) && (*v)->finish(*sig);
          };
          if (!run(rsa, sp(SS::rsa_pss, Hash::sha256)) || !run(ec, sp(SS::ecdsa, Hash::sha256))) ++failures;
          CipherParams g;
          g.scheme = CS::aes_gcm;
          g.iv = Bytes(12, static_cast<std::uint8_t>(i));
          auto e = b->encryptor(aes, g);
          if (!e || !(*e)->update(msg) || !(*e)->finish()) ++failures;
        }
      });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
  }
}

}  // namespace cdcp11::crypto::test
