// Interoperability: every operation done with one backend is checked with the other.
#include "helpers.h"

namespace cdcp11::crypto::test {

namespace {

using SS = SignParams::Scheme;
using CS = CipherParams::Scheme;

struct Pair {
  Backend* a;
  Backend* b;
};

std::vector<Pair> pairs() {
  REQUIRE(openssl_backend() != nullptr);
  REQUIRE(botan_backend() != nullptr);
  return {{openssl_backend(), botan_backend()}, {botan_backend(), openssl_backend()}};
}

SignParams sp(SS s, std::optional<Hash> h = std::nullopt, Hash pss_hash = Hash::sha256) {
  SignParams p;
  p.scheme = s;
  p.hash = h;
  p.pss.hash = p.pss.mgf1 = h ? *h : pss_hash;
  p.pss.salt_len = hash_size(p.pss.hash);
  return p;
}

bool same(const PrivateMaterial& x, const PrivateMaterial& y) {
  if (x.index() != y.index()) return false;
  if (auto* r = std::get_if<RsaPrivate>(&x)) {
    const auto& s = std::get<RsaPrivate>(y);
    return r->n == s.n && r->e == s.e && r->d == s.d && r->p == s.p && r->q == s.q && r->dp == s.dp &&
           r->dq == s.dq && r->qinv == s.qinv;
  }
  const auto& e = std::get<EcPrivate>(x);
  const auto& f = std::get<EcPrivate>(y);
  return e.curve == f.curve && e.d == f.d && e.point == f.point;
}

}  // namespace

TEST_CASE("interop: RSA signatures (PKCS#1 v1.5 and PSS, hashed and raw)") {
  for (auto [a, b] : pairs()) {
    std::string dir = std::string(a->name()) + "->" + b->name();
    CAPTURE(dir);
    const RsaPrivate& k = rsa2048(*a);
    auto ka = ok(a->load_private(k));
    auto kb = ok(b->load_private(k));
    auto pb = ok(b->load_public(RsaPublic{k.n, k.e}));
    Bytes msg = random_bytes(2000);
    for (Hash h : kAllHashes) {
      CAPTURE(hash_size(h));
      Bytes s = sign(*a, ka, sp(SS::rsa_pkcs1, h), msg);
      CHECK(s == sign(*b, kb, sp(SS::rsa_pkcs1, h), msg));  // deterministic scheme: identical output
      ok(verify(*b, pb, sp(SS::rsa_pkcs1, h), msg, s));
      Bytes p = sign(*a, ka, sp(SS::rsa_pss, h), msg);
      ok(verify(*b, pb, sp(SS::rsa_pss, h), msg, p));
      Bytes dg = digest(*a, h, msg);
      Bytes pr = sign(*a, ka, sp(SS::rsa_pss, std::nullopt, h), dg);
      ok(verify(*b, pb, sp(SS::rsa_pss, std::nullopt, h), dg, pr));
      ok(verify(*b, pb, sp(SS::rsa_pss, h), msg, pr));
      p[7] ^= 1;
      CHECK_CODE(verify(*b, pb, sp(SS::rsa_pss, h), msg, p), Error::Code::bad_signature);
    }
    Bytes block = random_bytes(100);
    Bytes raw = sign(*a, ka, sp(SS::rsa_pkcs1), block);
    CHECK(raw == sign(*b, kb, sp(SS::rsa_pkcs1), block));
    ok(verify(*b, pb, sp(SS::rsa_pkcs1), block, raw));
  }
}

TEST_CASE("interop: ECDSA on all curves, Ed25519, ECDH") {
  for (auto [a, b] : pairs()) {
    std::string dir = std::string(a->name()) + "->" + b->name();
    CAPTURE(dir);
    Bytes msg = random_bytes(500);
    for (Curve c : kEcdsaCurves) {
      CAPTURE(static_cast<int>(c));
      const EcPrivate& k = ec_key(*a, c);
      auto ka = ok(a->load_private(k));
      auto pb = ok(b->load_public(EcPublic{c, k.point}));
      for (Hash h : kAllHashes) {
        Bytes s = sign(*a, ka, sp(SS::ecdsa, h), msg);
        ok(verify(*b, pb, sp(SS::ecdsa, h), msg, s));
        // Raw digests shorter and longer than the order are truncated/accepted the same way.
        Bytes dg = digest(*a, h, msg);
        Bytes r = sign(*a, ka, sp(SS::ecdsa), dg);
        ok(verify(*b, pb, sp(SS::ecdsa), dg, r));
        ok(verify(*b, pb, sp(SS::ecdsa, h), msg, r));
      }
      Bytes s = sign(*a, ka, sp(SS::ecdsa, Hash::sha256), msg);
      s[s.size() - 1] ^= 1;
      CHECK_CODE(verify(*b, pb, sp(SS::ecdsa, Hash::sha256), msg, s), Error::Code::bad_signature);
      // ECDH: a's key with b's key agree across backends.
      const EcPrivate& other = ec_key(*b, c);
      SecureBytes s1 = ok(a->ecdh(ka, other.point));
      SecureBytes s2 = ok(b->ecdh(ok(b->load_private(other)), k.point));
      CHECK(s1 == s2);
      CHECK(s1.size() == curve_size(c));
    }
    const EcPrivate& ed = ec_key(*a, Curve::ed25519);
    auto ea = ok(a->load_private(ed));
    auto eb = ok(b->load_private(ed));
    Bytes s = sign(*a, ea, sp(SS::eddsa), msg);
    CHECK(s == sign(*b, eb, sp(SS::eddsa), msg));  // Ed25519 is deterministic
    ok(verify(*b, ok(b->load_public(EcPublic{Curve::ed25519, ed.point})), sp(SS::eddsa), msg, s));
    CHECK(ok(b->complete_ec(EcPrivate{Curve::ed25519, ed.d, {}})).point == ed.point);
  }
}

TEST_CASE("interop: RSA-OAEP and RSAES-PKCS1-v1_5 encryption") {
  for (auto [a, b] : pairs()) {
    std::string dir = std::string(a->name()) + "->" + b->name();
    CAPTURE(dir);
    const RsaPrivate& k = rsa2048(*b);
    auto pa = ok(a->load_public(RsaPublic{k.n, k.e}));
    auto kb = ok(b->load_private(k));
    for (Hash h : kAllHashes) {
      for (Hash mgf : {h, Hash::sha1}) {
        CipherParams p;
        p.scheme = CS::rsa_oaep;
        p.oaep_hash = h;
        p.mgf1 = mgf;
        p.label = random_bytes(static_cast<std::size_t>(h) * 3);
        Bytes pt = random_bytes(40);
        SecureBytes ct = ok(run_cipher(*a, pa, p, pt, true));
        CHECK(ok(run_cipher(*b, kb, p, ct, false)) == to_secure(pt));
      }
    }
    CipherParams p;
    p.scheme = CS::rsa_pkcs1;
    Bytes pt = random_bytes(200);
    CHECK(ok(run_cipher(*b, kb, p, ok(run_cipher(*a, pa, p, pt, true)), false)) == to_secure(pt));
  }
}

TEST_CASE("interop: AES modes give identical ciphertext and decrypt across backends") {
  for (auto [a, b] : pairs()) {
    std::string dir = std::string(a->name()) + "->" + b->name();
    CAPTURE(dir);
    for (std::size_t ks : {16u, 24u, 32u}) {
      Bytes key = random_bytes(ks);
      auto ka = ok(a->load_secret(key));
      auto kb = ok(b->load_secret(key));
      Bytes pt = random_bytes(301);
      std::vector<CipherParams> ps;
      for (std::size_t tag : {128u, 120u, 96u, 64u, 40u, 32u}) {
        CipherParams g;
        g.scheme = CS::aes_gcm;
        g.iv = random_bytes(tag == 128 ? 12 : tag / 8);
        g.aad = random_bytes(tag / 4);
        g.tag_bits = tag;
        ps.push_back(g);
      }
      CipherParams c;
      c.scheme = CS::aes_cbc_pad;
      c.iv = random_bytes(16);
      ps.push_back(c);
      CipherParams t;
      t.scheme = CS::aes_ctr;
      t.iv = H("00112233445566778899aabbccddeeff");  // crosses a 64-bit carry while counting
      t.iv[8] = 0x7f;
      t.counter_bits = 128;
      ps.push_back(t);
      for (const auto& p : ps) {
        CAPTURE(static_cast<int>(p.scheme));
        CAPTURE(p.tag_bits);
        SecureBytes ca = ok(run_cipher(*a, ka, p, pt, true));
        CHECK(ca == ok(run_cipher(*b, kb, p, pt, true)));
        CHECK(ok(run_cipher(*b, kb, p, ca, false)) == to_secure(pt));
        if (p.scheme == CS::aes_gcm) {
          ca[ca.size() - 1] ^= 4;
          CHECK_CODE(run_cipher(*b, kb, p, ca, false), Error::Code::bad_encrypted_input);
        }
      }
    }
  }
}

TEST_CASE("interop: AES-KW / KWP wrap with one backend, unwrap with the other") {
  for (auto [a, b] : pairs()) {
    std::string dir = std::string(a->name()) + "->" + b->name();
    CAPTURE(dir);
    for (std::size_t ks : {16u, 24u, 32u}) {
      Bytes kek = random_bytes(ks);
      for (bool pad : {false, true}) {
        for (bool custom_iv : {false, true}) {
          Bytes iv = custom_iv ? random_bytes(pad ? 4 : 8) : Bytes{};
          for (std::size_t len : {16u, 32u, 48u, 1u, 5u, 8u, 13u, 100u}) {
            if (!pad && len % 8) continue;
            if (!pad && len < 16) continue;
            Bytes key = random_bytes(len);
            Bytes w = ok(a->aes_key_wrap(kek, key, pad, iv));
            CHECK(w == ok(b->aes_key_wrap(kek, key, pad, iv)));
            CHECK(ok(b->aes_key_unwrap(kek, w, pad, iv)) == to_secure(key));
            w[0] ^= 1;
            CHECK_CODE(b->aes_key_unwrap(kek, w, pad, iv), Error::Code::bad_wrapped_key);
          }
        }
      }
    }
  }
}

TEST_CASE("interop: PKCS#8, HMAC, digests and scrypt") {
  for (auto [a, b] : pairs()) {
    std::string dir = std::string(a->name()) + "->" + b->name();
    CAPTURE(dir);
    std::vector<PrivateMaterial> keys{rsa2048(*a)};
    for (Curve c : kAllCurves) keys.push_back(ec_key(*a, c));
    for (const auto& m : keys) {
      CAPTURE(m.index());
      SecureBytes der = ok(a->encode_pkcs8(m));
      PrivateMaterial back = ok(b->decode_pkcs8(der));
      CHECK(same(back, m));
      // Re-encoding with the other backend decodes back to the same key with the first one.
      CHECK(same(ok(a->decode_pkcs8(ok(b->encode_pkcs8(back)))), m));
    }
    Bytes key = random_bytes(33), msg = random_bytes(999);
    for (Hash h : kAllHashes) {
      SignParams p = sp(SS::hmac, h);
      CHECK(sign(*a, ok(a->load_secret(key)), p, msg) == sign(*b, ok(b->load_secret(key)), p, msg));
      CHECK(digest(*a, h, msg) == digest(*b, h, msg));
    }
    CHECK(ok(a->scrypt(view("pin"), view("salt-salt"), 1024, 8, 1, 32)) ==
          ok(b->scrypt(view("pin"), view("salt-salt"), 1024, 8, 1, 32)));
  }
}

TEST_CASE("interop: CKM_RSA_AES_KEY_WRAP composition (OAEP-SHA1 of an AES-256 key || KWP of PKCS#8)") {
  for (auto [a, b] : pairs()) {
    std::string dir = std::string(a->name()) + "->" + b->name();
    CAPTURE(dir);
    const RsaPrivate& wrapping = rsa2048(*b);  // the receiver owns the RSA key pair
    std::vector<PrivateMaterial> targets{rsa2048(*a), ec_key(*a, Curve::p256), ec_key(*a, Curve::p521),
                                         ec_key(*a, Curve::ed25519)};
    for (const auto& target : targets) {
      CAPTURE(target.index());
      // Sender (backend a).
      SecureBytes aes(32);
      ok(a->random(aes.data(), aes.size()));
      CipherParams oaep;
      oaep.scheme = CS::rsa_oaep;
      oaep.oaep_hash = Hash::sha1;
      oaep.mgf1 = Hash::sha1;
      SecureBytes wrapped_aes = ok(run_cipher(*a, ok(a->load_public(RsaPublic{wrapping.n, wrapping.e})), oaep, aes, true));
      SecureBytes pkcs8 = ok(a->encode_pkcs8(target));
      Bytes wrapped_key = ok(a->aes_key_wrap(aes, pkcs8, true, {}));
      Bytes blob(wrapped_aes.begin(), wrapped_aes.end());
      blob.insert(blob.end(), wrapped_key.begin(), wrapped_key.end());

      // Receiver (backend b).
      std::size_t k = wrapping.n.size();
      REQUIRE(blob.size() > k);
      SecureBytes aes2 = ok(run_cipher(*b, ok(b->load_private(wrapping)), oaep, ByteView(blob).first(k), false));
      CHECK(aes2 == aes);
      SecureBytes pkcs8b = ok(b->aes_key_unwrap(aes2, ByteView(blob).subspan(k), true, {}));
      PrivateMaterial opened = ok(b->decode_pkcs8(pkcs8b));
      CHECK(same(opened, target));
    }
  }
}

}  // namespace cdcp11::crypto::test
