// Keys and crypto through the client: generation, sign/verify, encrypt/decrypt (single- and
// multi-part), digest, wrap/unwrap, derive, random; unfinished operations are ended.
#include <dlfcn.h>

#include <cstring>
#include <optional>

#include "hsm/mechanism.h"
#include "tests/unit/hsm/fake_module.h"
#include "tests/unit/hsm/support.h"

namespace cdcp11::hsm::test {
namespace {

Bytes B(std::string_view s) { return to_bytes(view(s)); }
Bytes concat(const Bytes& a, const Bytes& b) {
  Bytes r = a;
  r.insert(r.end(), b.begin(), b.end());
  return r;
}
std::string S(const SecureBytes& b) { return std::string(b.begin(), b.end()); }

}  // namespace

TEST_CASE("sign and verify: RSA and ECDSA, single- and multi-part") {
  SoftHsm h;
  Session s = h.user_session();
  const Bytes msg = B("the quick brown fox");

  KeyPair rsa = ok(s.generate_key_pair(Mechanism(CKM_RSA_PKCS_KEY_PAIR_GEN), rsa_public(2048),
                                       rsa_private()));
  Bytes sig = ok(s.sign(Mechanism(CKM_SHA256_RSA_PKCS), rsa.private_key, msg));
  CHECK(sig.size() == 256);
  ok(s.verify(Mechanism(CKM_SHA256_RSA_PKCS), rsa.public_key, msg, sig));

  SignOp op = ok(s.sign_init(Mechanism(CKM_SHA256_RSA_PKCS), rsa.private_key));
  ok(op.update(B("the quick ")));
  ok(op.update(B("brown fox")));
  CHECK(ok(op.final()) == sig);  // PKCS#1 v1.5 is deterministic
  CHECK_FALSE(op.active());
  CHECK(err(op.update(msg)).rv == CKR_OPERATION_NOT_INITIALIZED);

  VerifyOp vop = ok(s.verify_init(Mechanism(CKM_SHA256_RSA_PKCS), rsa.public_key));
  ok(vop.update(B("the quick ")));
  ok(vop.update(B("brown fox")));
  ok(vop.final(sig));

  Bytes bad = sig;
  bad[10] ^= 1;
  Error e = err(s.verify(Mechanism(CKM_SHA256_RSA_PKCS), rsa.public_key, msg, bad));
  CHECK(e.rv == CKR_SIGNATURE_INVALID);
  CHECK(e.code == core::Errc::signature_invalid);

  KeyPair ec = ok(s.generate_key_pair(Mechanism(CKM_EC_KEY_PAIR_GEN), ec_params_p256(false),
                                      ec_params_p256(true)));
  // SoftHSM2 2.6.1 signs ECDSA over a digest the caller made (no CKM_ECDSA_SHA256).
  Bytes digest = ok(s.digest(Mechanism(CKM_SHA256), msg));
  Bytes esig = ok(s.sign(Mechanism(CKM_ECDSA), ec.private_key, digest));
  CHECK(esig.size() == 64);
  ok(s.verify(Mechanism(CKM_ECDSA), ec.public_key, digest, esig));
  CHECK(err(s.sign_init(Mechanism(CKM_ECDSA_SHA256), ec.private_key)).rv == CKR_MECHANISM_INVALID);
}

TEST_CASE("encrypt and decrypt: AES-CBC-PAD multi-part, AES-GCM, RSA-OAEP with parameters") {
  SoftHsm h;
  Session s = h.user_session();
  CK_OBJECT_HANDLE aes = ok(s.generate_key(Mechanism(CKM_AES_KEY_GEN), aes_key(32)));
  const Bytes iv(16, 0x42);
  Mechanism cbc(CKM_AES_CBC_PAD, iv);
  const Bytes msg = B("forty bytes of plaintext, give or take..");

  Bytes ct = ok(s.encrypt(cbc, aes, msg));
  CHECK(ct.size() == 48);
  CHECK(S(ok(s.decrypt(cbc, aes, ct))) == std::string(msg.begin(), msg.end()));

  EncryptOp eop = ok(s.encrypt_init(cbc, aes));
  Bytes parts = ok(eop.update(Bytes(msg.begin(), msg.begin() + 7)));
  parts = concat(parts, ok(eop.update(Bytes(msg.begin() + 7, msg.end()))));
  parts = concat(parts, ok(eop.final()));
  CHECK(parts == ct);

  DecryptOp dop = ok(s.decrypt_init(cbc, aes));
  SecureBytes plain = ok(dop.update(Bytes(ct.begin(), ct.begin() + 20)));
  SecureBytes more = ok(dop.update(Bytes(ct.begin() + 20, ct.end())));
  plain.insert(plain.end(), more.begin(), more.end());
  SecureBytes last = ok(dop.final());
  plain.insert(plain.end(), last.begin(), last.end());
  CHECK(S(plain) == std::string(msg.begin(), msg.end()));

  GcmParams gcm(Bytes(12, 7), B("header"), 128);
  Bytes gct = ok(s.encrypt(gcm.mechanism(), aes, msg));
  CHECK(gct.size() == msg.size() + 16);
  CHECK(S(ok(s.decrypt(gcm.mechanism(), aes, gct))) == std::string(msg.begin(), msg.end()));
  gct.back() ^= 1;
  // SoftHSM2 2.6.1 answers a wrong GCM tag with CKR_GENERAL_ERROR; it is passed on as it is.
  Error e = err(s.decrypt(gcm.mechanism(), aes, gct));
  CHECK(e.rv == CKR_GENERAL_ERROR);
  CHECK(e.message == "C_Decrypt: CKR_GENERAL_ERROR");

  KeyPair rsa = ok(s.generate_key_pair(Mechanism(CKM_RSA_PKCS_KEY_PAIR_GEN), rsa_public(2048),
                                       rsa_private()));
  OaepParams oaep;
  Bytes rct = ok(s.encrypt(oaep.mechanism(), rsa.public_key, B("secret")));
  CHECK(rct.size() == 256);
  CHECK(S(ok(s.decrypt(oaep.mechanism(), rsa.private_key, rct))) == "secret");
  OaepParams sha256(CKM_SHA256, CKG_MGF1_SHA256);
  e = err(s.encrypt(sha256.mechanism(), rsa.public_key, B("secret")));
  CHECK(e.rv == CKR_ARGUMENTS_BAD);  // SoftHSM2 2.6.1 takes OAEP with SHA-1 only
}

TEST_CASE("digest: single, multi-part and C_DigestKey") {
  SoftHsm h;
  Session s = h.user_session();
  Bytes d = ok(s.digest(Mechanism(CKM_SHA256), B("abc")));
  Bytes expect;
  REQUIRE(from_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", expect));
  CHECK(d == expect);
  DigestOp op = ok(s.digest_init(Mechanism(CKM_SHA256)));
  ok(op.update(B("a")));
  ok(op.update(B("bc")));
  CHECK(ok(op.final()) == expect);

  Tmpl t = aes_key(16);
  t.b(CKA_SENSITIVE, false);
  CK_OBJECT_HANDLE k = ok(s.generate_key(Mechanism(CKM_AES_KEY_GEN), t));
  const CK_ATTRIBUTE_TYPE value[] = {CKA_VALUE};
  Attributes kv = ok(s.get_attributes(k, value));
  DigestOp kop = ok(s.digest_init(Mechanism(CKM_SHA256)));
  ok(kop.update_key(k));
  Bytes of_key = ok(kop.final());
  CHECK(of_key == ok(s.digest(Mechanism(CKM_SHA256), *kv.find(CKA_VALUE))));
}

TEST_CASE("wrap and unwrap: AES key wrap round trip gives a new handle with the same key") {
  SoftHsm h;
  Session s = h.user_session();
  CK_OBJECT_HANDLE kek = ok(s.generate_key(Mechanism(CKM_AES_KEY_GEN), aes_key(32)));
  CK_OBJECT_HANDLE target = ok(s.generate_key(Mechanism(CKM_AES_KEY_GEN), aes_key(16)));
  Bytes wrapped = ok(s.wrap_key(Mechanism(CKM_AES_KEY_WRAP), kek, target));
  CHECK(wrapped.size() == 24);
  Tmpl ut;
  ut.ul(CKA_CLASS, CKO_SECRET_KEY).ul(CKA_KEY_TYPE, CKK_AES).b(CKA_TOKEN, false)
      .b(CKA_ENCRYPT, true).b(CKA_DECRYPT, true);
  CK_OBJECT_HANDLE back = ok(s.unwrap_key(Mechanism(CKM_AES_KEY_WRAP), kek, wrapped, ut));
  CHECK(back != target);
  const Bytes iv(16, 1);
  Bytes ct = ok(s.encrypt(Mechanism(CKM_AES_CBC, iv), target, Bytes(32, 9)));
  CHECK(ok(s.decrypt(Mechanism(CKM_AES_CBC, iv), back, ct)) == SecureBytes(32, 9));

  wrapped[3] ^= 1;
  // SoftHSM2 2.6.1 answers a failed integrity check with CKR_GENERAL_ERROR.
  Error e = err(s.unwrap_key(Mechanism(CKM_AES_KEY_WRAP), kek, wrapped, ut));
  CHECK(e.rv == CKR_GENERAL_ERROR);
  CHECK(e.message == "C_UnwrapKey: CKR_GENERAL_ERROR");
}

TEST_CASE("derive: ECDH with raw CK_ECDH1_DERIVE_PARAMS gives both sides the same secret") {
  SoftHsm h;
  Session s = h.user_session();
  auto pair = [&] {
    return ok(s.generate_key_pair(Mechanism(CKM_EC_KEY_PAIR_GEN), ec_params_p256(false),
                                  ec_params_p256(true)));
  };
  KeyPair a = pair(), b = pair();
  const CK_ATTRIBUTE_TYPE point[] = {CKA_EC_POINT};
  auto raw_point = [&](CK_OBJECT_HANDLE pub) {
    Attributes at = ok(s.get_attributes(pub, point));
    Bytes der = *at.find(CKA_EC_POINT);  // DER OCTET STRING around the point
    REQUIRE(der.size() == 67);
    return Bytes(der.begin() + 2, der.end());
  };
  Tmpl out;
  out.ul(CKA_CLASS, CKO_SECRET_KEY).ul(CKA_KEY_TYPE, CKK_GENERIC_SECRET).ul(CKA_VALUE_LEN, 32)
      .b(CKA_TOKEN, false).b(CKA_SENSITIVE, false).b(CKA_EXTRACTABLE, true);
  auto derive = [&](CK_OBJECT_HANDLE priv, Bytes peer) {
    CK_ECDH1_DERIVE_PARAMS p{};
    p.kdf = CKD_NULL;
    p.public_data = peer.data();
    p.public_data_len = static_cast<CK_ULONG>(peer.size());
    CK_OBJECT_HANDLE k = ok(s.derive_key(Mechanism::with(CKM_ECDH1_DERIVE, p), priv, out));
    const CK_ATTRIBUTE_TYPE value[] = {CKA_VALUE};
    return *ok(s.get_attributes(k, value)).find(CKA_VALUE);
  };
  Bytes ab = derive(a.private_key, raw_point(b.public_key));
  Bytes ba = derive(b.private_key, raw_point(a.public_key));
  CHECK(ab.size() == 32);
  CHECK(ab == ba);
}

TEST_CASE("random: the requested length, and different each time") {
  SoftHsm h;
  Session s = h.session();
  SecureBytes a = ok(s.generate_random(32)), b = ok(s.generate_random(32));
  CHECK(a.size() == 32);
  CHECK(a != b);
  CHECK(ok(s.generate_random(0)).empty());
  ok(s.seed_random(B("extra entropy")));
}

TEST_CASE("operations: one dropped unfinished is ended, so the next one starts (2.x module)") {
  SoftHsm h;
  Session s = h.user_session();
  CK_OBJECT_HANDLE aes = ok(s.generate_key(Mechanism(CKM_AES_KEY_GEN), aes_key(32)));
  KeyPair rsa = ok(s.generate_key_pair(Mechanism(CKM_RSA_PKCS_KEY_PAIR_GEN), rsa_public(2048),
                                       rsa_private()));
  const Bytes iv(16, 0);
  {
    SignOp op = ok(s.sign_init(Mechanism(CKM_SHA256_RSA_PKCS), rsa.private_key));
    ok(op.update(B("abandoned")));
  }
  {
    VerifyOp op = ok(s.verify_init(Mechanism(CKM_SHA256_RSA_PKCS), rsa.public_key));
    ok(op.update(B("abandoned")));
  }
  {
    EncryptOp op = ok(s.encrypt_init(Mechanism(CKM_AES_CBC_PAD, iv), aes));
    (void)ok(op.update(Bytes(20, 1)));
  }
  {
    DecryptOp op = ok(s.decrypt_init(Mechanism(CKM_AES_CBC_PAD, iv), aes));
    (void)ok(op.update(Bytes(32, 1)));
  }
  { DigestOp op = ok(s.digest_init(Mechanism(CKM_SHA256))); }
  // Each of these would fail with CKR_OPERATION_ACTIVE had the operation been left open.
  ok(s.sign_init(Mechanism(CKM_SHA256_RSA_PKCS), rsa.private_key));
  ok(s.verify_init(Mechanism(CKM_SHA256_RSA_PKCS), rsa.public_key));
  ok(s.encrypt_init(Mechanism(CKM_AES_CBC_PAD, iv), aes));
  ok(s.decrypt_init(Mechanism(CKM_AES_CBC_PAD, iv), aes));
  ok(s.digest_init(Mechanism(CKM_SHA256)));
}

TEST_CASE("operations: a single-part one dropped unfinished is ended too (2.x module)") {
  // SoftHSM2 2.6.1 answers C_SignFinal & co. of a single-part mechanism (CKM_RSA_PKCS) with
  // CKR_OPERATION_NOT_INITIALIZED and keeps the operation active.
  SoftHsm h;
  Session s = h.user_session();
  KeyPair rsa = ok(s.generate_key_pair(Mechanism(CKM_RSA_PKCS_KEY_PAIR_GEN), rsa_public(2048),
                                       rsa_private()));
  const Mechanism raw(CKM_RSA_PKCS);
  { SignOp op = ok(s.sign_init(raw, rsa.private_key)); }
  ok(s.verify_init(raw, rsa.public_key));  // would be CKR_OPERATION_ACTIVE had the sign stayed
  { VerifyOp op = ok(s.verify_init(raw, rsa.public_key)); }
  { EncryptOp op = ok(s.encrypt_init(raw, rsa.public_key)); }
  { DecryptOp op = ok(s.decrypt_init(raw, rsa.private_key)); }
  SignOp op = ok(s.sign_init(raw, rsa.private_key));
  CHECK(ok(op.sign(B("still usable"))).size() == 256);
}

TEST_CASE("operations: SoftHSM2 2.6.1 runs one operation of any kind at a time per session") {
  SoftHsm h;
  Session s = h.user_session();
  DigestOp d = ok(s.digest_init(Mechanism(CKM_SHA256)));
  CHECK(err(s.encrypt_init(Mechanism(CKM_AES_CBC_PAD, Bytes(16, 0)), 1)).rv == CKR_OPERATION_ACTIVE);
}

TEST_CASE("operations: an impossible output length is an error that names it, and ends the operation") {
  SoftHsm h;
  Session s = h.user_session();
  CK_OBJECT_HANDLE aes = ok(s.generate_key(Mechanism(CKM_AES_KEY_GEN), aes_key(32)));
  const Bytes iv(16, 0);
  DecryptOp op = ok(s.decrypt_init(Mechanism(CKM_AES_CBC_PAD, iv), aes));
  // SoftHSM2 2.6.1 asks for (CK_ULONG)-1 bytes for the final part of nothing.
  Error e = err(op.final());
  CHECK(e.rv == CKR_GENERAL_ERROR);
  CHECK(contains(e.message, "C_DecryptFinal: CKR_GENERAL_ERROR (the module asked for an output "
                            "buffer of 18446744073709551615 bytes)"));
  CHECK_FALSE(op.active());
  ok(s.digest_init(Mechanism(CKM_SHA256)));
}

TEST_CASE("operations: a 3.0 module's unfinished operation is cancelled with a NULL mechanism") {
  void* dl = dlopen(fake_module_path().c_str(), RTLD_NOW | RTLD_LOCAL);
  REQUIRE(dl);
  auto* st = reinterpret_cast<FakeP11StateFn>(dlsym(dl, "fake_p11_state"))();
  {
    auto m = ok(Module::load(fake_module_path()));
    Session s = ok(m->open_session(7));
    int cancels = st->sign_cancel_calls;
    {
      SignOp op = ok(s.sign_init(Mechanism(CKM_SHA256_RSA_PKCS), 1));
      ok(op.update(B("x")));
    }
    CHECK(st->sign_cancel_calls == cancels + 1);
  }
  dlclose(dl);
}

TEST_CASE("operations: one that outlives its Session fails with CKR_SESSION_CLOSED, harmlessly") {
  SoftHsm h;
  std::optional<DigestOp> op;
  {
    Session s = h.user_session();
    op.emplace(ok(s.digest_init(Mechanism(CKM_SHA256))));
    ok(op->update(B("abc")));
  }
  Error e = err(op->update(B("def")));
  CHECK(e.rv == CKR_SESSION_CLOSED);
  CHECK(e.message == "C_DigestUpdate: the session is closed");
  op.reset();  // nothing to end: the session took the operation with it
}

TEST_CASE("operations: a failed Init is the HSM's CKR, naming the mechanism") {
  SoftHsm h;
  Session s = h.user_session();
  Error e = err(s.sign_init(Mechanism(CKM_SHA256_RSA_PKCS), 0x4242));
  CHECK(e.rv == CKR_OBJECT_HANDLE_INVALID);  // SoftHSM2's answer, passed on as it is
  CHECK(contains(e.message, "C_SignInit: CKR_OBJECT_HANDLE_INVALID (mechanism 64)"));
}

}  // namespace cdcp11::hsm::test
