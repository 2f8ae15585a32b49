// OpenSSL 3 backend: key generation, completion/validation, loading and PKCS#8.
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/obj_mac.h>

#include <cstring>

#include "softtoken/crypto/openssl/ossl.h"

namespace cdcp11::crypto::ossl {

namespace {

using EcGroupPtr = std::unique_ptr<EC_GROUP, Deleter<EC_GROUP_free>>;
using EcPointPtr = std::unique_ptr<EC_POINT, Deleter<EC_POINT_free>>;

int curve_nid(Curve c) {
  switch (c) {
    case Curve::p256: return NID_X9_62_prime256v1;
    case Curve::p384: return NID_secp384r1;
    case Curve::p521: return NID_secp521r1;
    case Curve::secp256k1: return NID_secp256k1;
    case Curve::ed25519: return NID_ED25519;
  }
  return NID_undef;
}

std::optional<Curve> curve_from_group_name(const std::string& n) {
  if (n == "prime256v1" || n == "P-256" || n == "secp256r1") return Curve::p256;
  if (n == "secp384r1" || n == "P-384") return Curve::p384;
  if (n == "secp521r1" || n == "P-521") return Curve::p521;
  if (n == "secp256k1") return Curve::secp256k1;
  return std::nullopt;
}

R<RsaPrivate> extract_rsa(const EVP_PKEY* pkey) {
  RsaPrivate out;
  CDC_ASSIGN(auto n, get_bn(pkey, OSSL_PKEY_PARAM_RSA_N));
  CDC_ASSIGN(auto e, get_bn(pkey, OSSL_PKEY_PARAM_RSA_E));
  CDC_ASSIGN(auto d, get_bn(pkey, OSSL_PKEY_PARAM_RSA_D));
  out.n = bn_bytes(n.get());
  out.e = bn_bytes(e.get());
  out.d = bn_secure_bytes(d.get());
  BIGNUM* tmp = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_FACTOR1, &tmp) == 1) {
    BnPtr p(tmp);
    CDC_ASSIGN(auto q, get_bn(pkey, OSSL_PKEY_PARAM_RSA_FACTOR2));
    CDC_ASSIGN(auto dp, get_bn(pkey, OSSL_PKEY_PARAM_RSA_EXPONENT1));
    CDC_ASSIGN(auto dq, get_bn(pkey, OSSL_PKEY_PARAM_RSA_EXPONENT2));
    CDC_ASSIGN(auto qinv, get_bn(pkey, OSSL_PKEY_PARAM_RSA_COEFFICIENT1));
    out.p = bn_secure_bytes(p.get());
    out.q = bn_secure_bytes(q.get());
    out.dp = bn_secure_bytes(dp.get());
    out.dq = bn_secure_bytes(dq.get());
    out.qinv = bn_secure_bytes(qinv.get());
  }
  clear_errors();
  return out;
}

// Key contexts are created by the algorithm's OID rather than its name. OpenSSL 3.0 maps a name
// like "RSA" to a legacy NID and then asks the global ENGINE table for that NID, so in a process
// that made an engine the default (openssl -engine pkcs11, i.e. libp11) it would hand us the
// engine's legacy method, which cannot build keys from parameters. A dotted OID has no NID
// mapping, so the context comes from our private library context's provider, as intended.
const char* keymgmt_name(const char* type) {
  if (std::strcmp(type, "RSA") == 0) return "1.2.840.113549.1.1.1";
  if (std::strcmp(type, "EC") == 0) return "1.2.840.10045.2.1";
  if (std::strcmp(type, "ED25519") == 0) return "1.3.101.112";
  return type;
}

R<PkeyPtr> pkey_fromdata(const char* type, int selection, const OSSL_PARAM* params) {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(libctx(), keymgmt_name(type), nullptr));
  EVP_PKEY* pkey = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &pkey, selection, const_cast<OSSL_PARAM*>(params)) != 1)
    return ossl_err(Code::bad_key, std::string(type) + " key material rejected");
  return PkeyPtr(pkey);
}

// Expects complete material (as returned by complete_rsa).
R<PkeyPtr> rsa_private_pkey(const RsaPrivate& k) {
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld) return ossl_err(Code::internal, "OSSL_PARAM_BLD_new");
  struct Item { const char* name; ByteView v; bool secret; };
  const Item items[] = {
      {OSSL_PKEY_PARAM_RSA_N, k.n, false},
      {OSSL_PKEY_PARAM_RSA_E, k.e, false},
      {OSSL_PKEY_PARAM_RSA_D, k.d, true},
      {OSSL_PKEY_PARAM_RSA_FACTOR1, k.p, true},
      {OSSL_PKEY_PARAM_RSA_FACTOR2, k.q, true},
      {OSSL_PKEY_PARAM_RSA_EXPONENT1, k.dp, true},
      {OSSL_PKEY_PARAM_RSA_EXPONENT2, k.dq, true},
      {OSSL_PKEY_PARAM_RSA_COEFFICIENT1, k.qinv, true},
  };
  std::vector<BnPtr> keep;  // the builder references the BIGNUMs until to_param
  for (const auto& it : items) {
    BnPtr bn = bn_from(it.v, it.secret);
    if (!bn || OSSL_PARAM_BLD_push_BN(bld.get(), it.name, bn.get()) != 1)
      return ossl_err(Code::internal, "building RSA parameters");
    keep.push_back(std::move(bn));
  }
  ParamsPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) return ossl_err(Code::internal, "building RSA parameters");
  return pkey_fromdata("RSA", EVP_PKEY_KEYPAIR, params.get());
}

R<PkeyPtr> rsa_public_pkey(const RsaPublic& k) {
  if (k.n.empty() || k.e.empty()) return err(Code::bad_key, "RSA public key needs n and e");
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  BnPtr n = bn_from(k.n, false), e = bn_from(k.e, false);
  if (!bld || !n || !e || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get()) != 1)
    return ossl_err(Code::internal, "building RSA parameters");
  if (!BN_is_odd(n.get()) || BN_num_bits(n.get()) < 512 || !BN_is_odd(e.get()) || BN_is_one(e.get()))
    return err(Code::bad_key, "RSA public key is malformed (n or e even or too small)");
  ParamsPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) return ossl_err(Code::internal, "building RSA parameters");
  return pkey_fromdata("RSA", EVP_PKEY_PUBLIC_KEY, params.get());
}

R<PkeyPtr> ec_private_pkey(const EcPrivate& k) {  // complete material
  if (k.curve == Curve::ed25519) {
    EVP_PKEY* p = EVP_PKEY_new_raw_private_key_ex(libctx(), keymgmt_name("ED25519"), nullptr, k.d.data(), k.d.size());
    if (p == nullptr) return ossl_err(Code::bad_key, "Ed25519 private key rejected");
    return PkeyPtr(p);
  }
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  BnPtr d = bn_from(k.d, true);
  if (!bld || !d ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, detail::curve_ossl_name(k.curve), 0) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, d.get()) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, k.point.data(), k.point.size()) != 1)
    return ossl_err(Code::internal, "building EC parameters");
  ParamsPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) return ossl_err(Code::internal, "building EC parameters");
  return pkey_fromdata("EC", EVP_PKEY_KEYPAIR, params.get());
}

R<EcGroupPtr> group(Curve c) {
  EcGroupPtr g(EC_GROUP_new_by_curve_name_ex(libctx(), nullptr, curve_nid(c)));
  if (!g) return ossl_err(Code::unsupported, std::string("curve ") + detail::curve_ossl_name(c) + " not available");
  return g;
}

R<Bytes> ed25519_public(ByteView seed) {
  if (seed.size() != 32) return err(Code::bad_key, "Ed25519 seed must be 32 bytes");
  PkeyPtr p(EVP_PKEY_new_raw_private_key_ex(libctx(), keymgmt_name("ED25519"), nullptr, seed.data(), seed.size()));
  Bytes pub(32);
  std::size_t len = pub.size();
  if (!p || EVP_PKEY_get_raw_public_key(p.get(), pub.data(), &len) != 1 || len != 32)
    return ossl_err(Code::bad_key, "Ed25519 key rejected");
  return pub;
}

std::size_t rsa_bits(ByteView n) {
  BnPtr bn = bn_from(n, false);
  return bn ? static_cast<std::size_t>(BN_num_bits(bn.get())) : 0;
}

// Recovers p and q from n, e, d (the standard randomized method with fixed small bases).
R<void> factor_rsa(const BIGNUM* n, const BIGNUM* e, const BIGNUM* d, BIGNUM* p, BIGNUM* q, BN_CTX* ctx) {
  BnPtr k(BN_secure_new()), t(BN_secure_new()), x(BN_new()), y(BN_new()), g(BN_new()), nm1(BN_new()),
      r(BN_new());
  if (!k || !t || !x || !y || !g || !nm1 || !r) return ossl_err(Code::internal, "BN_new");
  if (BN_mul(k.get(), d, e, ctx) != 1 || BN_sub_word(k.get(), 1) != 1 || !BN_copy(nm1.get(), n) ||
      BN_sub_word(nm1.get(), 1) != 1)
    return ossl_err(Code::internal, "RSA factoring");
  if (BN_is_odd(k.get()) || BN_is_zero(k.get())) return err(Code::bad_key, "RSA d and e are inconsistent");
  int s = 0;
  if (!BN_copy(t.get(), k.get())) return ossl_err(Code::internal, "BN_copy");
  while (!BN_is_odd(t.get())) {
    BN_rshift1(t.get(), t.get());
    ++s;
  }
  BN_set_flags(t.get(), BN_FLG_CONSTTIME);
  for (unsigned long base = 2; base < 200; ++base) {
    BN_set_word(g.get(), base);
    if (BN_mod_exp(x.get(), g.get(), t.get(), n, ctx) != 1) return ossl_err(Code::internal, "BN_mod_exp");
    if (BN_is_one(x.get()) || BN_cmp(x.get(), nm1.get()) == 0) continue;
    for (int i = 0; i < s; ++i) {
      if (BN_mod_sqr(y.get(), x.get(), n, ctx) != 1) return ossl_err(Code::internal, "BN_mod_sqr");
      if (BN_is_one(y.get())) {
        BN_sub_word(x.get(), 1);
        if (BN_gcd(p, x.get(), n, ctx) != 1 || BN_div(q, r.get(), n, p, ctx) != 1)
          return ossl_err(Code::internal, "RSA factoring");
        if (BN_is_one(p) || !BN_is_zero(r.get())) return err(Code::bad_key, "RSA n, e, d are inconsistent");
        return {};
      }
      if (BN_cmp(y.get(), nm1.get()) == 0) break;
      BN_copy(x.get(), y.get());
    }
  }
  return err(Code::bad_key, "RSA n, e, d are inconsistent (cannot recover the primes)");
}

}  // namespace

R<BnPtr> get_bn(const EVP_PKEY* pkey, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1) return ossl_err(Code::internal, std::string("missing key parameter ") + name);
  return BnPtr(bn);
}

R<PkeyPtr> ec_public_pkey(Curve c, ByteView point) {
  if (c == Curve::ed25519) {
    if (point.size() != 32) return err(Code::bad_key, "Ed25519 public key must be 32 bytes");
    EVP_PKEY* p = EVP_PKEY_new_raw_public_key_ex(libctx(), keymgmt_name("ED25519"), nullptr, point.data(), point.size());
    if (p == nullptr) return ossl_err(Code::bad_key, "Ed25519 public key rejected");
    return PkeyPtr(p);
  }
  std::size_t fs = curve_size(c);
  if (point.size() != 1 + 2 * fs || point[0] != 0x04)
    return err(Code::bad_key, "EC public point must be uncompressed, " + std::to_string(1 + 2 * fs) + " bytes");
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, detail::curve_ossl_name(c), 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1)
    return ossl_err(Code::internal, "building EC parameters");
  ParamsPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) return ossl_err(Code::internal, "building EC parameters");
  auto r = pkey_fromdata("EC", EVP_PKEY_PUBLIC_KEY, params.get());
  if (!r) return err(Code::bad_key, "EC public point is not on the curve");
  return r;
}

R<RsaPrivate> OpenSslBackend::generate_rsa(std::size_t bits, ByteView public_exponent) {
  if (bits < 1024 || bits > 16384 || bits % 8)
    return err(Code::unsupported, "RSA key size must be 1024..16384 bits in steps of 8");
  Bytes e = public_exponent.empty() ? Bytes{0x01, 0x00, 0x01} : detail::strip_leading_zeros<Bytes>(public_exponent);
  if (e.empty() || !(e.back() & 1) || (e.size() == 1 && e[0] < 3))
    return err(Code::bad_param, "RSA public exponent must be odd and >= 3");
  BnPtr ebn = bn_from(e, false);
  // Not RSA_generate_key_ex (what SoftHSM2 calls): in OpenSSL 3.0 both end in
  // RSA_generate_multi_prime_key and the same SP 800-56B prime search; fed one random stream
  // (150 keys, paired) they made the same keys in the same time (-0.2% +- 1.4%). A gap between
  // them in a benchmark is the search's luck: a key's time varies by about 60%.
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(libctx(), keymgmt_name("RSA"), nullptr));
  if (!ebn || !ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), static_cast<int>(bits)) != 1 ||
      EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx.get(), ebn.get()) != 1)
    return ossl_err(Code::internal, "RSA keygen setup failed");
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_generate(ctx.get(), &raw) != 1) return ossl_err(Code::internal, "RSA keygen failed");
  PkeyPtr pkey(raw);
  return extract_rsa(pkey.get());
}

R<EcPrivate> OpenSslBackend::generate_ec(Curve curve) {
  EcPrivate out;
  out.curve = curve;
  if (curve == Curve::ed25519) {
    out.d.resize(32);
    CDC_TRY(random(out.d.data(), out.d.size()));
    CDC_ASSIGN(out.point, ed25519_public(out.d));
    return out;
  }
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(libctx(), keymgmt_name("EC"), nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_group_name(ctx.get(), detail::curve_ossl_name(curve)) != 1 ||
      EVP_PKEY_generate(ctx.get(), &raw) != 1)
    return ossl_err(Code::internal, std::string("EC keygen failed for ") + detail::curve_ossl_name(curve));
  PkeyPtr pkey(raw);
  CDC_ASSIGN(auto d, get_bn(pkey.get(), OSSL_PKEY_PARAM_PRIV_KEY));
  out.d.resize(curve_size(curve));
  if (!bn_to_fixed(d.get(), out.d.data(), out.d.size())) return err(Code::internal, "EC scalar too long");
  return complete_ec(out);
}

R<EcPrivate> OpenSslBackend::complete_ec(const EcPrivate& k) {
  EcPrivate out;
  out.curve = k.curve;
  std::size_t fs = curve_size(k.curve);
  if (k.curve == Curve::ed25519) {
    out.d = k.d;
    CDC_ASSIGN(out.point, ed25519_public(k.d));
  } else {
    if (k.d.empty() || !detail::pad_left(k.d, fs, out.d))
      return err(Code::bad_key, "EC private scalar has the wrong length for the curve");
    CDC_ASSIGN(auto g, group(k.curve));
    BnCtxPtr bctx(BN_CTX_secure_new_ex(libctx()));
    BnPtr d = bn_from(out.d, true);
    EcPointPtr pub(EC_POINT_new(g.get()));
    if (!bctx || !d || !pub) return ossl_err(Code::internal, "EC allocation");
    if (BN_is_zero(d.get()) || BN_cmp(d.get(), EC_GROUP_get0_order(g.get())) >= 0)
      return err(Code::bad_key, "EC private scalar out of range");
    BN_set_flags(d.get(), BN_FLG_CONSTTIME);
    out.point.resize(1 + 2 * fs);
    if (EC_POINT_mul(g.get(), pub.get(), d.get(), nullptr, nullptr, bctx.get()) != 1 ||
        EC_POINT_point2oct(g.get(), pub.get(), POINT_CONVERSION_UNCOMPRESSED, out.point.data(), out.point.size(),
                           bctx.get()) != out.point.size())
      return ossl_err(Code::internal, "EC public point computation failed");
  }
  if (!k.point.empty() && k.point != out.point)
    return err(Code::bad_key, "EC public point does not match the private key");
  return out;
}

R<RsaPrivate> OpenSslBackend::complete_rsa(const RsaPrivate& k) {
  if (k.n.empty() || k.e.empty() || k.d.empty()) return err(Code::bad_key, "RSA private key needs n, e and d");
  if (k.p.empty() != k.q.empty()) return err(Code::bad_key, "RSA private key has only one prime");
  BnCtxPtr ctx(BN_CTX_secure_new_ex(libctx()));
  BnPtr n = bn_from(k.n, false), e = bn_from(k.e, false), d = bn_from(k.d, true);
  BnPtr p(BN_secure_new()), q(BN_secure_new()), pm1(BN_secure_new()), qm1(BN_secure_new()),
      t(BN_secure_new()), dp(BN_secure_new()), dq(BN_secure_new()), qinv(BN_secure_new());
  if (!ctx || !n || !e || !d || !p || !q || !pm1 || !qm1 || !t || !dp || !dq || !qinv)
    return ossl_err(Code::internal, "BN allocation");
  if (!BN_is_odd(n.get()) || BN_num_bits(n.get()) < 512 || !BN_is_odd(e.get()) || BN_is_one(e.get()) ||
      BN_cmp(d.get(), n.get()) >= 0)
    return err(Code::bad_key, "RSA key is malformed (n, e or d out of range)");
  if (k.p.empty()) {
    CDC_TRY(factor_rsa(n.get(), e.get(), d.get(), p.get(), q.get(), ctx.get()));
    // Conventional order p > q.
    if (BN_cmp(p.get(), q.get()) < 0) std::swap(p, q);
  } else {
    if (!BN_bin2bn(k.p.data(), static_cast<int>(k.p.size()), p.get()) ||
        !BN_bin2bn(k.q.data(), static_cast<int>(k.q.size()), q.get()))
      return ossl_err(Code::internal, "BN_bin2bn");
    if (BN_mul(t.get(), p.get(), q.get(), ctx.get()) != 1) return ossl_err(Code::internal, "BN_mul");
    if (BN_cmp(t.get(), n.get()) != 0) return err(Code::bad_key, "RSA p*q does not equal n");
  }
  BN_set_flags(d.get(), BN_FLG_CONSTTIME);
  if (!BN_copy(pm1.get(), p.get()) || !BN_copy(qm1.get(), q.get()) || BN_sub_word(pm1.get(), 1) != 1 ||
      BN_sub_word(qm1.get(), 1) != 1 || BN_mod(dp.get(), d.get(), pm1.get(), ctx.get()) != 1 ||
      BN_mod(dq.get(), d.get(), qm1.get(), ctx.get()) != 1 ||
      BN_mod_inverse(qinv.get(), q.get(), p.get(), ctx.get()) == nullptr)
    return ossl_err(Code::bad_key, "RSA CRT computation failed (inconsistent primes)");
  // e*d == 1 mod (p-1) and mod (q-1), i.e. modulo lcm(p-1, q-1).
  for (BIGNUM* m : {pm1.get(), qm1.get()}) {
    if (BN_mod_mul(t.get(), e.get(), d.get(), m, ctx.get()) != 1) return ossl_err(Code::internal, "BN_mod_mul");
    if (!BN_is_one(t.get())) return err(Code::bad_key, "RSA d is not the inverse of e");
  }
  RsaPrivate out;
  out.n = bn_bytes(n.get());
  out.e = bn_bytes(e.get());
  out.d = bn_secure_bytes(d.get());
  out.p = bn_secure_bytes(p.get());
  out.q = bn_secure_bytes(q.get());
  out.dp = bn_secure_bytes(dp.get());
  out.dq = bn_secure_bytes(dq.get());
  out.qinv = bn_secure_bytes(qinv.get());
  auto same = [](const SecureBytes& given, const SecureBytes& computed) {
    return given.empty() || detail::strip_leading_zeros<SecureBytes>(given) == computed;
  };
  if (!k.p.empty() && (!same(k.p, out.p) || !same(k.q, out.q)))
    return err(Code::internal, "RSA prime normalisation");
  if (!same(k.dp, out.dp) || !same(k.dq, out.dq) || !same(k.qinv, out.qinv))
    return err(Code::bad_key, "RSA CRT parameters do not match the key");
  return out;
}

R<std::unique_ptr<OsslKey>> make_private(const PrivateMaterial& m) {
  auto key = std::make_unique<OsslKey>();
  key->is_private = true;
  auto& be = *static_cast<OpenSslBackend*>(openssl_backend());
  if (auto* rsa = std::get_if<RsaPrivate>(&m)) {
    CDC_ASSIGN(RsaPrivate full, be.complete_rsa(*rsa));
    CDC_ASSIGN(key->pkey, rsa_private_pkey(full));
    key->kind = KeyKind::rsa;
    key->bits_ = static_cast<std::size_t>(EVP_PKEY_get_bits(key->pkey.get()));
  } else {
    const auto& ec = std::get<EcPrivate>(m);
    CDC_ASSIGN(EcPrivate full, be.complete_ec(ec));
    CDC_ASSIGN(key->pkey, ec_private_pkey(full));
    key->kind = ec.curve == Curve::ed25519 ? KeyKind::ed25519 : KeyKind::ec;
    key->curve = ec.curve;
    key->bits_ = detail::curve_bits(ec.curve);
  }
  return key;
}

R<KeyPtr> OpenSslBackend::load_private(const PrivateMaterial& m) {
  CDC_ASSIGN(auto key, make_private(m));
  return KeyPtr(std::move(key));
}

R<KeyPtr> OpenSslBackend::load_public(const PublicMaterial& m) {
  auto key = std::make_shared<OsslKey>();
  if (auto* rsa = std::get_if<RsaPublic>(&m)) {
    CDC_ASSIGN(key->pkey, rsa_public_pkey(*rsa));
    key->kind = KeyKind::rsa;
    key->bits_ = rsa_bits(rsa->n);
  } else {
    const auto& ec = std::get<EcPublic>(m);
    CDC_ASSIGN(key->pkey, ec_public_pkey(ec.curve, ec.point));
    key->kind = ec.curve == Curve::ed25519 ? KeyKind::ed25519 : KeyKind::ec;
    key->curve = ec.curve;
    key->bits_ = detail::curve_bits(ec.curve);
  }
  return KeyPtr(std::move(key));
}

R<KeyPtr> OpenSslBackend::load_secret(ByteView value) {
  auto key = std::make_shared<OsslKey>();
  key->kind = KeyKind::secret;
  key->secret = to_secure(value);
  key->bits_ = value.size() * 8;
  if (value.size() == 16 || value.size() == 24 || value.size() == 32) key->gcm_pool = std::make_shared<GcmCtxPool>();
  return KeyPtr(std::move(key));
}

R<SecureBytes> OpenSslBackend::encode_pkcs8(const PrivateMaterial& m) {
  CDC_ASSIGN(auto key, make_private(m));
  using EncPtr = std::unique_ptr<OSSL_ENCODER_CTX, Deleter<OSSL_ENCODER_CTX_free>>;
  EncPtr enc(OSSL_ENCODER_CTX_new_for_pkey(key->pkey.get(), EVP_PKEY_KEYPAIR, "DER", "PrivateKeyInfo", nullptr));
  unsigned char* data = nullptr;
  std::size_t len = 0;
  if (!enc || OSSL_ENCODER_CTX_get_num_encoders(enc.get()) == 0 || OSSL_ENCODER_to_data(enc.get(), &data, &len) != 1)
    return ossl_err(Code::internal, "PKCS#8 encoding failed");
  SecureBytes out(data, data + len);
  OPENSSL_clear_free(data, len);
  return out;
}

R<PrivateMaterial> OpenSslBackend::decode_pkcs8(ByteView der) {
  using DecPtr = std::unique_ptr<OSSL_DECODER_CTX, Deleter<OSSL_DECODER_CTX_free>>;
  EVP_PKEY* raw = nullptr;
  DecPtr dec(OSSL_DECODER_CTX_new_for_pkey(&raw, "DER", "PrivateKeyInfo", nullptr, EVP_PKEY_KEYPAIR, libctx(), nullptr));
  if (!dec) return ossl_err(Code::internal, "PKCS#8 decoder setup failed");
  const unsigned char* p = der.data();
  std::size_t left = der.size();
  int rc = OSSL_DECODER_from_data(dec.get(), &p, &left);
  PkeyPtr pkey(raw);
  if (rc != 1 || !pkey) {
    clear_errors();
    return err(Code::bad_key, "PKCS#8 PrivateKeyInfo is malformed or of an unsupported algorithm");
  }
  if (left != 0) return err(Code::bad_key, "PKCS#8 data has trailing bytes");
  if (EVP_PKEY_is_a(pkey.get(), "RSA")) {
    CDC_ASSIGN(RsaPrivate rsa, extract_rsa(pkey.get()));
    CDC_ASSIGN(RsaPrivate full, complete_rsa(rsa));
    return PrivateMaterial(std::move(full));
  }
  EcPrivate ec;
  if (EVP_PKEY_is_a(pkey.get(), "ED25519")) {
    ec.curve = Curve::ed25519;
    ec.d.resize(32);
    std::size_t len = 32;
    if (EVP_PKEY_get_raw_private_key(pkey.get(), ec.d.data(), &len) != 1 || len != 32)
      return ossl_err(Code::bad_key, "Ed25519 private key");
  } else if (EVP_PKEY_is_a(pkey.get(), "EC")) {
    char name[64] = {};
    std::size_t nlen = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey.get(), OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &nlen) != 1) {
      clear_errors();
      return err(Code::unsupported, "EC key without a named curve");
    }
    auto c = curve_from_group_name(name);
    if (!c) return err(Code::unsupported, std::string("EC curve ") + name + " is not supported");
    ec.curve = *c;
    CDC_ASSIGN(auto d, get_bn(pkey.get(), OSSL_PKEY_PARAM_PRIV_KEY));
    ec.d.resize(curve_size(ec.curve));
    if (!bn_to_fixed(d.get(), ec.d.data(), ec.d.size())) return err(Code::bad_key, "EC scalar too long");
    // Included public key (if any) is checked against the scalar when it is uncompressed.
    Bytes pub(1 + 2 * curve_size(ec.curve));
    std::size_t plen = 0;
    if (EVP_PKEY_get_octet_string_param(pkey.get(), OSSL_PKEY_PARAM_PUB_KEY, pub.data(), pub.size(), &plen) == 1 &&
        plen == pub.size() && pub[0] == 0x04)
      ec.point = std::move(pub);
    clear_errors();
  } else {
    return err(Code::unsupported, "PKCS#8 key algorithm is not supported");
  }
  CDC_ASSIGN(EcPrivate full, complete_ec(ec));
  return PrivateMaterial(std::move(full));
}

}  // namespace cdcp11::crypto::ossl
