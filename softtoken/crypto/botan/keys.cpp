// Botan 2 backend: key generation, completion/validation, loading and PKCS#8.
#include <botan/data_src.h>
#include <botan/ecdsa.h>
#include <botan/ed25519.h>
#include <botan/numthry.h>
#include <botan/pkcs8.h>
#include <botan/rsa.h>

#include "softtoken/crypto/botan/bt.h"

namespace cdcp11::crypto::bt {

const Botan::EC_Group& group(Curve c) {
  // Built once per curve; EC_Group objects are immutable and shareable across threads.
  static const Botan::EC_Group* groups[4] = {
      new Botan::EC_Group("secp256r1"), new Botan::EC_Group("secp384r1"),
      new Botan::EC_Group("secp521r1"), new Botan::EC_Group("secp256k1")};
  return *groups[static_cast<std::size_t>(c)];
}

namespace {

std::optional<Curve> curve_of(const Botan::EC_Group& g) {
  for (Curve c : {Curve::p256, Curve::p384, Curve::p521, Curve::secp256k1})
    if (g == group(c)) return c;
  return std::nullopt;
}

RsaPrivate rsa_material(const Botan::RSA_PrivateKey& k) {
  RsaPrivate out;
  out.n = big_bytes(k.get_n());
  out.e = big_bytes(k.get_e());
  out.d = big_secure(k.get_d());
  out.p = big_secure(k.get_p());
  out.q = big_secure(k.get_q());
  out.dp = big_secure(k.get_d1());
  out.dq = big_secure(k.get_d2());
  out.qinv = big_secure(k.get_c());
  return out;
}

R<EcPrivate> ec_material(const Botan::EC_PrivateKey& k, Curve c) {
  EcPrivate out;
  out.curve = c;
  std::size_t fs = curve_size(c);
  out.d.resize(fs);
  Botan::BigInt::encode_1363(out.d.data(), fs, k.private_value());
  auto pt = k.public_point().encode(Botan::PointGFp::UNCOMPRESSED);
  out.point.assign(pt.begin(), pt.end());
  return out;
}

// Recovers p and q from n, e, d (same method as the OpenSSL backend).
R<std::pair<Botan::BigInt, Botan::BigInt>> factor_rsa(const Botan::BigInt& n, const Botan::BigInt& e,
                                                      const Botan::BigInt& d) {
  Botan::BigInt k = d * e - 1;
  if (k.is_odd() || k.is_zero()) return err(Code::bad_key, "RSA d and e are inconsistent");
  Botan::BigInt t = k;
  std::size_t s = 0;
  while (t.is_even()) {
    t >>= 1;
    ++s;
  }
  const Botan::BigInt nm1 = n - 1;
  for (Botan::word base = 2; base < 200; ++base) {
    Botan::BigInt x = Botan::power_mod(Botan::BigInt(base), t, n);
    if (x == 1 || x == nm1) continue;
    for (std::size_t i = 0; i < s; ++i) {
      Botan::BigInt y = (x * x) % n;
      if (y == 1) {
        Botan::BigInt p = Botan::gcd(x - 1, n);
        if (p == 1 || p == n || n % p != 0) return err(Code::bad_key, "RSA n, e, d are inconsistent");
        Botan::BigInt q = n / p;
        if (p < q) std::swap(p, q);
        return std::make_pair(p, q);
      }
      if (y == nm1) break;
      x = y;
    }
  }
  return err(Code::bad_key, "RSA n, e, d are inconsistent (cannot recover the primes)");
}

R<Bytes> ed25519_public(const SecureBytes& seed) {
  if (seed.size() != 32) return err(Code::bad_key, "Ed25519 seed must be 32 bytes");
  Botan::Ed25519_PrivateKey k(Botan::secure_vector<uint8_t>(seed.begin(), seed.end()));
  auto pub = k.get_public_key();
  return Bytes(pub.begin(), pub.end());
}

R<std::unique_ptr<Botan::Private_Key>> private_key(const PrivateMaterial& m) {
  auto& be = backend();
  if (auto* rsa = std::get_if<RsaPrivate>(&m)) {
    CDC_ASSIGN(RsaPrivate f, be.complete_rsa(*rsa));
    return guard("RSA key", [&]() -> R<std::unique_ptr<Botan::Private_Key>> {
      return std::unique_ptr<Botan::Private_Key>(
          std::make_unique<Botan::RSA_PrivateKey>(big(f.p), big(f.q), big(f.e), big(f.d), big(f.n)));
    }, Code::bad_key);
  }
  CDC_ASSIGN(EcPrivate f, be.complete_ec(std::get<EcPrivate>(m)));
  return guard("EC key", [&]() -> R<std::unique_ptr<Botan::Private_Key>> {
    if (f.curve == Curve::ed25519)
      return std::unique_ptr<Botan::Private_Key>(
          std::make_unique<Botan::Ed25519_PrivateKey>(Botan::secure_vector<uint8_t>(f.d.begin(), f.d.end())));
    return std::unique_ptr<Botan::Private_Key>(
        std::make_unique<Botan::ECDSA_PrivateKey>(rng(), group(f.curve), big(f.d)));
  }, Code::bad_key);
}

}  // namespace

R<RsaPrivate> BotanBackend::generate_rsa(std::size_t bits, ByteView public_exponent) {
  if (bits < 1024 || bits > 16384 || bits % 8)
    return err(Code::unsupported, "RSA key size must be 1024..16384 bits in steps of 8");
  Bytes e = public_exponent.empty() ? Bytes{0x01, 0x00, 0x01} : detail::strip_leading_zeros<Bytes>(public_exponent);
  if (e.empty() || !(e.back() & 1) || (e.size() == 1 && e[0] < 3))
    return err(Code::bad_param, "RSA public exponent must be odd and >= 3");
  if (e.size() > 4) return err(Code::unsupported, "Botan backend supports public exponents up to 32 bits");
  std::size_t ev = 0;
  for (auto b : e) ev = (ev << 8) | b;
  return guard("RSA keygen", [&]() -> R<RsaPrivate> {
    Botan::RSA_PrivateKey k(rng(), bits, ev);
    return rsa_material(k);
  });
}

R<EcPrivate> BotanBackend::generate_ec(Curve curve) {
  return guard("EC keygen", [&]() -> R<EcPrivate> {
    if (curve == Curve::ed25519) {
      Botan::Ed25519_PrivateKey k(rng());
      EcPrivate out;
      out.curve = curve;
      out.d.assign(k.get_private_key().begin(), k.get_private_key().begin() + 32);
      auto pub = k.get_public_key();
      out.point.assign(pub.begin(), pub.end());
      return out;
    }
    Botan::ECDSA_PrivateKey k(rng(), group(curve));
    return ec_material(k, curve);
  });
}

R<EcPrivate> BotanBackend::complete_ec(const EcPrivate& k) {
  EcPrivate out;
  if (k.curve == Curve::ed25519) {
    out.curve = k.curve;
    out.d = k.d;
    CDC_ASSIGN(out.point, ed25519_public(k.d));
  } else {
    std::size_t fs = curve_size(k.curve);
    SecureBytes d;
    if (k.d.empty() || !detail::pad_left(k.d, fs, d))
      return err(Code::bad_key, "EC private scalar has the wrong length for the curve");
    const auto& g = group(k.curve);
    Botan::BigInt x = big(d);
    if (x.is_zero() || x >= g.get_order()) return err(Code::bad_key, "EC private scalar out of range");
    CDC_ASSIGN(out, guard("EC public point", [&]() -> R<EcPrivate> {
                 Botan::ECDSA_PrivateKey key(rng(), g, x);
                 return ec_material(key, k.curve);
               }));
  }
  if (!k.point.empty() && k.point != out.point)
    return err(Code::bad_key, "EC public point does not match the private key");
  return out;
}

R<RsaPrivate> BotanBackend::complete_rsa(const RsaPrivate& k) {
  if (k.n.empty() || k.e.empty() || k.d.empty()) return err(Code::bad_key, "RSA private key needs n, e and d");
  if (k.p.empty() != k.q.empty()) return err(Code::bad_key, "RSA private key has only one prime");
  return guard("RSA completion", [&]() -> R<RsaPrivate> {
    Botan::BigInt n = big(k.n), e = big(k.e), d = big(k.d), p, q;
    if (n.is_even() || n.bits() < 512 || e.is_even() || e == 1 || d >= n)
      return err(Code::bad_key, "RSA key is malformed (n, e or d out of range)");
    if (k.p.empty()) {
      CDC_ASSIGN(auto pq, factor_rsa(n, e, d));
      p = pq.first;
      q = pq.second;
    } else {
      p = big(k.p);
      q = big(k.q);
      if (p * q != n) return err(Code::bad_key, "RSA p*q does not equal n");
    }
    Botan::BigInt pm1 = p - 1, qm1 = q - 1;
    if ((e * d) % pm1 != 1 || (e * d) % qm1 != 1) return err(Code::bad_key, "RSA d is not the inverse of e");
    Botan::BigInt qinv = Botan::inverse_mod(q, p);
    if (qinv.is_zero()) return err(Code::bad_key, "RSA primes are not coprime");
    RsaPrivate out;
    out.n = big_bytes(n);
    out.e = big_bytes(e);
    out.d = big_secure(d);
    out.p = big_secure(p);
    out.q = big_secure(q);
    out.dp = big_secure(d % pm1);
    out.dq = big_secure(d % qm1);
    out.qinv = big_secure(qinv);
    auto same = [](const SecureBytes& given, const SecureBytes& computed) {
      return given.empty() || detail::strip_leading_zeros<SecureBytes>(given) == computed;
    };
    if (!same(k.dp, out.dp) || !same(k.dq, out.dq) || !same(k.qinv, out.qinv))
      return err(Code::bad_key, "RSA CRT parameters do not match the key");
    return out;
  }, Code::bad_key);
}

R<std::shared_ptr<BotanKey>> make_private(const PrivateMaterial& m) {
  CDC_ASSIGN(auto pk, private_key(m));
  auto key = std::make_shared<BotanKey>();
  key->is_private = true;
  if (auto* rsa = std::get_if<RsaPrivate>(&m)) {
    (void)rsa;
    key->kind = KeyKind::rsa;
    key->bits_ = pk->key_length();
  } else {
    Curve c = std::get<EcPrivate>(m).curve;
    key->kind = c == Curve::ed25519 ? KeyKind::ed25519 : KeyKind::ec;
    key->curve = c;
    key->bits_ = detail::curve_bits(c);
  }
  std::shared_ptr<const Botan::Private_Key> shared(std::move(pk));
  key->priv = shared;
  key->pub = shared;
  return key;
}

R<KeyPtr> BotanBackend::load_private(const PrivateMaterial& m) {
  CDC_ASSIGN(auto key, make_private(m));
  return KeyPtr(std::move(key));
}

R<KeyPtr> BotanBackend::load_public(const PublicMaterial& m) {
  auto key = std::make_shared<BotanKey>();
  if (auto* rsa = std::get_if<RsaPublic>(&m)) {
    if (rsa->n.empty() || rsa->e.empty()) return err(Code::bad_key, "RSA public key needs n and e");
    Botan::BigInt n = big(rsa->n), e = big(rsa->e);
    if (n.is_even() || n.bits() < 512 || e.is_even() || e == 1)
      return err(Code::bad_key, "RSA public key is malformed (n or e even or too small)");
    CDC_TRY(guard("RSA public key", [&]() -> R<void> {
      key->pub = std::make_shared<Botan::RSA_PublicKey>(n, e);
      return {};
    }, Code::bad_key));
    key->kind = KeyKind::rsa;
    key->bits_ = n.bits();
    return KeyPtr(std::move(key));
  }
  const auto& ec = std::get<EcPublic>(m);
  key->curve = ec.curve;
  key->bits_ = detail::curve_bits(ec.curve);
  if (ec.curve == Curve::ed25519) {
    if (ec.point.size() != 32) return err(Code::bad_key, "Ed25519 public key must be 32 bytes");
    key->kind = KeyKind::ed25519;
    key->pub = std::make_shared<Botan::Ed25519_PublicKey>(std::vector<uint8_t>(ec.point.begin(), ec.point.end()));
    return KeyPtr(std::move(key));
  }
  std::size_t fs = curve_size(ec.curve);
  if (ec.point.size() != 1 + 2 * fs || ec.point[0] != 0x04)
    return err(Code::bad_key, "EC public point must be uncompressed, " + std::to_string(1 + 2 * fs) + " bytes");
  key->kind = KeyKind::ec;
  CDC_TRY(guard("EC public point", [&]() -> R<void> {
    const auto& g = group(ec.curve);
    auto pt = g.OS2ECP(ec.point.data(), ec.point.size());
    if (pt.is_zero() || !pt.on_the_curve()) return err(Code::bad_key, "EC public point is not on the curve");
    key->pub = std::make_shared<Botan::ECDSA_PublicKey>(g, pt);
    return {};
  }, Code::bad_key));
  return KeyPtr(std::move(key));
}

R<KeyPtr> BotanBackend::load_secret(ByteView value) {
  auto key = std::make_shared<BotanKey>();
  key->kind = KeyKind::secret;
  key->secret = to_secure(value);
  key->bits_ = value.size() * 8;
  return KeyPtr(std::move(key));
}

R<SecureBytes> BotanBackend::encode_pkcs8(const PrivateMaterial& m) {
  CDC_ASSIGN(auto key, private_key(m));
  return guard("PKCS#8 encoding", [&]() -> R<SecureBytes> {
    auto der = Botan::PKCS8::BER_encode(*key);
    return SecureBytes(der.begin(), der.end());
  });
}

R<PrivateMaterial> BotanBackend::decode_pkcs8(ByteView der) {
  std::unique_ptr<Botan::Private_Key> key;
  try {
    Botan::DataSource_Memory src(der.data(), der.size());
    key = Botan::PKCS8::load_key(src);
    if (!src.end_of_data()) return err(Code::bad_key, "PKCS#8 data has trailing bytes");
  } catch (const Botan::Lookup_Error&) {
    return err(Code::unsupported, "PKCS#8 key algorithm is not supported");
  } catch (const std::exception&) {
    return err(Code::bad_key, "PKCS#8 PrivateKeyInfo is malformed or of an unsupported algorithm");
  }
  return guard("PKCS#8 decoding", [&]() -> R<PrivateMaterial> {
    if (auto* rsa = dynamic_cast<Botan::RSA_PrivateKey*>(key.get())) {
      CDC_ASSIGN(RsaPrivate full, complete_rsa(rsa_material(*rsa)));
      return PrivateMaterial(std::move(full));
    }
    if (auto* ed = dynamic_cast<Botan::Ed25519_PrivateKey*>(key.get())) {
      EcPrivate out;
      out.curve = Curve::ed25519;
      out.d.assign(ed->get_private_key().begin(), ed->get_private_key().begin() + 32);
      CDC_ASSIGN(EcPrivate full, complete_ec(out));
      return PrivateMaterial(std::move(full));
    }
    if (auto* ec = dynamic_cast<Botan::ECDSA_PrivateKey*>(key.get())) {
      auto c = curve_of(ec->domain());
      if (!c) return err(Code::unsupported, "EC curve is not supported");
      CDC_ASSIGN(EcPrivate mat, ec_material(*ec, *c));
      CDC_ASSIGN(EcPrivate full, complete_ec(mat));
      return PrivateMaterial(std::move(full));
    }
    return err(Code::unsupported, "PKCS#8 key algorithm " + key->algo_name() + " is not supported");
  }, Code::bad_key);
}

}  // namespace cdcp11::crypto::bt
