// Botan 2 backend: RNG, digests, ECDH, AES key wrap, scrypt and the accessor.
#include <botan/block_cipher.h>
#include <botan/ecdh.h>
#include <botan/hash.h>
#include <botan/nist_keywrap.h>
#include <botan/pubkey.h>
#include <botan/scrypt.h>
#include <botan/system_rng.h>

#include "softtoken/crypto/botan/bt.h"

namespace cdcp11::crypto {
namespace bt {

Botan::RandomNumberGenerator& rng() {
  static Botan::System_RNG* r = new Botan::System_RNG();  // leaked: usable until process exit
  return *r;
}

Bytes big_bytes(const Botan::BigInt& v) {
  Bytes out(v.bytes());
  v.binary_encode(out.data());
  return out;
}

SecureBytes big_secure(const Botan::BigInt& v) {
  SecureBytes out(v.bytes());
  v.binary_encode(out.data());
  return out;
}

R<const BotanKey*> as_botan(const KeyPtr& k) {
  auto* p = dynamic_cast<const BotanKey*>(k.get());
  if (p == nullptr) return err(Code::bad_key, "key was not loaded by the Botan backend");
  return p;
}

BotanBackend& backend() {
  static BotanBackend* b = new BotanBackend();  // leaked like the OpenSSL one
  return *b;
}

namespace {

class BotanDigest final : public Digest {
 public:
  explicit BotanDigest(std::unique_ptr<Botan::HashFunction> h) : h_(std::move(h)) {}
  void update(ByteView data) override { h_->update(data.data(), data.size()); }
  Bytes finish() override {
    auto out = h_->final();
    return Bytes(out.begin(), out.end());
  }
  std::unique_ptr<Digest> clone() const override { return std::make_unique<BotanDigest>(h_->copy_state()); }

 private:
  std::unique_ptr<Botan::HashFunction> h_;
};

// RFC 3394 / RFC 5649 with an explicit IV (Botan's nist_key_wrap only does the default IV).
SecureBytes kw_wrap(const Botan::BlockCipher& bc, const std::uint8_t a0[8], const SecureBytes& p) {
  std::size_t n = p.size() / 8;
  SecureBytes out(8 + p.size());
  std::uint8_t block[16];
  if (n == 1) {  // KWP single block
    std::copy(a0, a0 + 8, block);
    std::copy(p.begin(), p.end(), block + 8);
    bc.encrypt(block);
    std::copy(block, block + 16, out.begin());
    secure_zero(block, sizeof block);
    return out;
  }
  std::uint8_t a[8];
  std::copy(a0, a0 + 8, a);
  std::copy(p.begin(), p.end(), out.begin() + 8);
  for (std::size_t j = 0; j < 6; ++j) {
    for (std::size_t i = 1; i <= n; ++i) {
      std::copy(a, a + 8, block);
      std::copy(out.begin() + 8 * i, out.begin() + 8 * i + 8, block + 8);
      bc.encrypt(block);
      std::uint64_t t = n * j + i;
      for (int k = 7; k >= 0; --k, t >>= 8) a[k] = block[k] ^ static_cast<std::uint8_t>(t);
      std::copy(block + 8, block + 16, out.begin() + 8 * i);
    }
  }
  std::copy(a, a + 8, out.begin());
  secure_zero(block, sizeof block);
  return out;
}

// Returns the recovered A (8 bytes) followed by the plaintext blocks.
SecureBytes kw_unwrap(const Botan::BlockCipher& bc, ByteView c) {
  std::size_t n = c.size() / 8 - 1;
  SecureBytes out(c.begin(), c.end());
  std::uint8_t block[16];
  if (n == 1) {
    std::copy(c.begin(), c.end(), block);
    bc.decrypt(block);
    std::copy(block, block + 16, out.begin());
    secure_zero(block, sizeof block);
    return out;
  }
  std::uint8_t a[8];
  std::copy(c.begin(), c.begin() + 8, a);
  for (std::size_t j = 6; j-- > 0;) {
    for (std::size_t i = n; i >= 1; --i) {
      std::uint64_t t = n * j + i;
      for (int k = 7; k >= 0; --k, t >>= 8) block[k] = a[k] ^ static_cast<std::uint8_t>(t);
      std::copy(out.begin() + 8 * i, out.begin() + 8 * i + 8, block + 8);
      bc.decrypt(block);
      std::copy(block, block + 8, a);
      std::copy(block + 8, block + 16, out.begin() + 8 * i);
    }
  }
  std::copy(a, a + 8, out.begin());
  secure_zero(block, sizeof block);
  return out;
}

std::unique_ptr<Botan::BlockCipher> aes(ByteView key) {
  auto bc = Botan::BlockCipher::create_or_throw("AES-" + std::to_string(key.size() * 8));
  bc->set_key(key.data(), key.size());
  return bc;
}

}  // namespace

R<void> BotanBackend::random(std::uint8_t* out, std::size_t n) {
  return guard("random", [&]() -> R<void> {
    if (n) rng().randomize(out, n);
    return {};
  });
}

std::unique_ptr<Digest> BotanBackend::digest(Hash h) {
  try {
    return std::make_unique<BotanDigest>(Botan::HashFunction::create_or_throw(detail::hash_name(h)));
  } catch (const std::exception&) {
    return nullptr;
  }
}

R<SecureBytes> BotanBackend::ecdh(const KeyPtr& private_key, ByteView peer_point) {
  CDC_ASSIGN(const BotanKey* k, as_botan(private_key));
  if (k->kind != KeyKind::ec || !k->is_private) return err(Code::bad_key, "ECDH needs an EC private key");
  std::size_t fs = curve_size(k->curve);
  if (peer_point.size() != 1 + 2 * fs || peer_point[0] != 0x04)
    return err(Code::bad_param, "ECDH peer point must be an uncompressed point of " +
                                    std::to_string(1 + 2 * fs) + " bytes");
  const auto& ec = dynamic_cast<const Botan::EC_PrivateKey&>(*k->priv);
  auto peer_ok = guard("ECDH peer point", [&]() -> R<void> {
    auto pt = ec.domain().OS2ECP(peer_point.data(), peer_point.size());
    if (pt.is_zero() || !pt.on_the_curve()) return err(Code::bad_param, "ECDH peer point is not on the curve");
    return {};
  }, Code::bad_param);
  CDC_TRY(peer_ok);
  return guard("ECDH", [&]() -> R<SecureBytes> {
    Botan::ECDH_PrivateKey dh(rng(), ec.domain(), ec.private_value());
    Botan::PK_Key_Agreement ka(dh, rng(), "Raw");
    auto secret = ka.derive_key(0, peer_point.data(), peer_point.size()).bits_of();
    SecureBytes out;
    if (!detail::pad_left(ByteView(secret.data(), secret.size()), fs, out))
      return err(Code::internal, "ECDH output too long");
    return out;
  });
}

R<Bytes> BotanBackend::aes_key_wrap(ByteView kek, ByteView plaintext, bool pad, ByteView iv) {
  CDC_ASSIGN(Bytes use_iv, detail::keywrap_iv(kek, plaintext.size(), pad, iv, true));
  return guard("AES key wrap", [&]() -> R<Bytes> {
    auto bc = aes(kek);
    if (iv.empty()) {
      return pad ? Botan::nist_key_wrap_padded(plaintext.data(), plaintext.size(), *bc)
                 : Botan::nist_key_wrap(plaintext.data(), plaintext.size(), *bc);
    }
    std::uint8_t a[8];
    std::copy(use_iv.begin(), use_iv.end(), a);
    SecureBytes p(plaintext.begin(), plaintext.end());
    if (pad) {
      std::uint32_t mli = static_cast<std::uint32_t>(plaintext.size());
      for (int k = 0; k < 4; ++k) a[4 + k] = static_cast<std::uint8_t>(mli >> (24 - 8 * k));
      p.resize((p.size() + 7) / 8 * 8, 0);
    }
    SecureBytes out = kw_wrap(*bc, a, p);
    return Bytes(out.begin(), out.end());
  });
}

R<SecureBytes> BotanBackend::aes_key_unwrap(ByteView kek, ByteView wrapped, bool pad, ByteView iv) {
  CDC_ASSIGN(Bytes use_iv, detail::keywrap_iv(kek, wrapped.size(), pad, iv, false));
  auto bad = [&] { return err(Code::bad_wrapped_key, pad ? "AES-KWP unwrap integrity check failed"
                                                           : "AES-KW unwrap integrity check failed"); };
  try {
    auto bc = aes(kek);
    if (iv.empty()) {
      auto out = pad ? Botan::nist_key_unwrap_padded(wrapped.data(), wrapped.size(), *bc)
                     : Botan::nist_key_unwrap(wrapped.data(), wrapped.size(), *bc);
      return SecureBytes(out.begin(), out.end());
    }
    SecureBytes out = kw_unwrap(*bc, wrapped);
    if (!pad) {
      if (!ct_equal(ByteView(out.data(), 8), use_iv)) return bad();
      return SecureBytes(out.begin() + 8, out.end());
    }
    if (!ct_equal(ByteView(out.data(), 4), use_iv)) return bad();
    std::size_t mli = (std::size_t{out[4]} << 24) | (std::size_t{out[5]} << 16) | (std::size_t{out[6]} << 8) | out[7];
    std::size_t plen = out.size() - 8;
    if (mli > plen || mli + 8 <= plen) return bad();
    std::uint8_t acc = 0;
    for (std::size_t i = 8 + mli; i < out.size(); ++i) acc |= out[i];
    if (acc != 0) return bad();
    return SecureBytes(out.begin() + 8, out.begin() + 8 + static_cast<std::ptrdiff_t>(mli));
  } catch (const Botan::Invalid_Authentication_Tag&) {
    return bad();
  } catch (const std::exception& e) {
    return err(Code::bad_wrapped_key, std::string("AES key unwrap failed: ") + e.what());
  }
}

R<SecureBytes> BotanBackend::scrypt(ByteView password, ByteView salt, std::uint64_t n, std::uint32_t r,
                                    std::uint32_t p, std::size_t out_len) {
  if (n < 2 || (n & (n - 1)) != 0) return err(Code::bad_param, "scrypt N must be a power of two >= 2");
  if (r == 0 || p == 0) return err(Code::bad_param, "scrypt r and p must be positive");
  if (out_len == 0) return err(Code::bad_param, "scrypt output length must be positive");
  if (n > (std::uint64_t{1} << 40) / (128ull * r)) return err(Code::bad_param, "scrypt parameters need too much memory");
  return guard("scrypt", [&]() -> R<SecureBytes> {
    SecureBytes out(out_len);
    Botan::scrypt(out.data(), out.size(), reinterpret_cast<const char*>(password.data()), password.size(),
                  salt.data(), salt.size(), static_cast<std::size_t>(n), r, p);
    return out;
  }, Code::bad_param);
}

}  // namespace bt

Backend* botan_backend() { return &bt::backend(); }

}  // namespace cdcp11::crypto
