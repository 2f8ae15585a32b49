// OpenSSL 3 backend: library context, helpers, random, digests, ECDH, key wrap, scrypt.
#include <openssl/kdf.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>
#include <limits>

#include <array>

#include "softtoken/crypto/openssl/ossl.h"

namespace cdcp11::crypto {
namespace ossl {

OSSL_LIB_CTX* libctx() {
  // Created once and leaked on purpose (see ossl.h). A private context never reads openssl.cnf,
  // so no application-configured provider (pkcs11-provider) is loaded into it.
  static OSSL_LIB_CTX* ctx = [] {
    OSSL_LIB_CTX* c = OSSL_LIB_CTX_new();
    if (c == nullptr || OSSL_PROVIDER_load(c, "default") == nullptr) {
      // Without a private context every call would silently fall back to the default context,
      // which is exactly what must never happen. The default provider is built into libcrypto,
      // so this only fails when memory is exhausted.
      std::fputs("cdcp11: cannot create private OpenSSL library context\n", stderr);
      std::abort();
    }
    return c;
  }();
  return ctx;
}

const EVP_MD* md(Hash h) {
  static EVP_MD* const mds[5] = {
      EVP_MD_fetch(libctx(), "SHA1", nullptr),   EVP_MD_fetch(libctx(), "SHA224", nullptr),
      EVP_MD_fetch(libctx(), "SHA256", nullptr), EVP_MD_fetch(libctx(), "SHA384", nullptr),
      EVP_MD_fetch(libctx(), "SHA512", nullptr),
  };
  auto i = static_cast<std::size_t>(h);
  return i < 5 ? mds[i] : nullptr;
}

const EVP_CIPHER* aes_cipher(std::size_t key_bytes, AesMode mode) {
  static const auto table = [] {
    static const char* const modes[] = {"GCM", "CBC", "ECB", "CTR", "WRAP", "WRAP-PAD"};
    std::array<std::array<EVP_CIPHER*, std::size(modes)>, 3> t{};
    for (std::size_t k = 0; k < 3; ++k)
      for (std::size_t m = 0; m < std::size(modes); ++m) {
        std::string name = "AES-" + std::to_string((k + 2) * 64) + "-" + modes[m];
        t[k][m] = EVP_CIPHER_fetch(libctx(), name.c_str(), nullptr);  // leaked on purpose
      }
    clear_errors();
    return t;
  }();
  if (key_bytes != 16 && key_bytes != 24 && key_bytes != 32) return nullptr;
  return table[key_bytes / 8 - 2][static_cast<std::size_t>(mode)];
}

Unexpected<Error> ossl_err(Code c, const std::string& what) {
  std::string msg = what;
  unsigned long e = ERR_peek_last_error();
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    msg += " (";
    msg += buf;
    msg += ")";
  }
  ERR_clear_error();
  return err(c, std::move(msg));
}

BnPtr bn_from(ByteView v, bool secret) {
  BnPtr bn(secret ? BN_secure_new() : BN_new());
  if (!bn) return bn;
  if (BN_bin2bn(v.data(), static_cast<int>(v.size()), bn.get()) == nullptr) bn.reset();
  return bn;
}

Bytes bn_bytes(const BIGNUM* bn) {
  Bytes out(static_cast<std::size_t>(BN_num_bytes(bn)));
  BN_bn2bin(bn, out.data());
  return out;
}

SecureBytes bn_secure_bytes(const BIGNUM* bn) {
  SecureBytes out(static_cast<std::size_t>(BN_num_bytes(bn)));
  BN_bn2bin(bn, out.data());
  return out;
}

bool bn_to_fixed(const BIGNUM* bn, std::uint8_t* out, std::size_t len) {
  return BN_bn2binpad(bn, out, static_cast<int>(len)) == static_cast<int>(len);
}

R<const OsslKey*> as_ossl(const KeyPtr& k) {
  auto* p = dynamic_cast<const OsslKey*>(k.get());
  if (p == nullptr) return err(Code::bad_key, "key was not loaded by the OpenSSL backend");
  return p;
}

namespace {

class OsslDigest final : public Digest {
 public:
  explicit OsslDigest(MdCtxPtr ctx, std::size_t size) : ctx_(std::move(ctx)), size_(size) {}
  void update(ByteView data) override {
    if (ok_ && EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) != 1) ok_ = false;
  }
  Bytes finish() override {
    Bytes out(size_);
    unsigned int len = 0;
    if (!ok_ || EVP_DigestFinal_ex(ctx_.get(), out.data(), &len) != 1 || len != size_) {
      clear_errors();
      return {};
    }
    return out;
  }
  std::unique_ptr<Digest> clone() const override {
    MdCtxPtr c(EVP_MD_CTX_new());
    if (!c || EVP_MD_CTX_copy_ex(c.get(), ctx_.get()) != 1) return nullptr;
    auto d = std::make_unique<OsslDigest>(std::move(c), size_);
    d->ok_ = ok_;
    return d;
  }

 private:
  MdCtxPtr ctx_;
  std::size_t size_;
  bool ok_ = true;
};

}  // namespace

R<void> OpenSslBackend::random(std::uint8_t* out, std::size_t n) {
  while (n > 0) {
    std::size_t chunk = std::min<std::size_t>(n, 1u << 30);
    if (RAND_bytes_ex(libctx(), out, chunk, 0) != 1) return ossl_err(Code::internal, "RAND_bytes_ex failed");
    out += chunk;
    n -= chunk;
  }
  return {};
}

std::unique_ptr<Digest> OpenSslBackend::digest(Hash h) {
  const EVP_MD* m = md(h);
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (m == nullptr || !ctx || EVP_DigestInit_ex2(ctx.get(), m, nullptr) != 1) {
    clear_errors();
    return nullptr;
  }
  return std::make_unique<OsslDigest>(std::move(ctx), hash_size(h));
}

R<SecureBytes> OpenSslBackend::ecdh(const KeyPtr& private_key, ByteView peer_point) {
  CDC_ASSIGN(const OsslKey* k, as_ossl(private_key));
  if (k->kind != KeyKind::ec || !k->is_private) return err(Code::bad_key, "ECDH needs an EC private key");
  std::size_t fs = curve_size(k->curve);
  if (peer_point.size() != 1 + 2 * fs || peer_point[0] != 0x04)
    return err(Code::bad_param, "ECDH peer point must be an uncompressed point of " +
                                    std::to_string(1 + 2 * fs) + " bytes");
  auto peer = ec_public_pkey(k->curve, peer_point);
  if (!peer) return err(Code::bad_param, "ECDH peer point is not on the curve");
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(libctx(), k->pkey.get(), nullptr));
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1) return ossl_err(Code::internal, "ECDH init failed");
  if (EVP_PKEY_derive_set_peer_ex(ctx.get(), peer->get(), 1) != 1)
    return ossl_err(Code::bad_param, "ECDH peer point rejected");
  std::size_t len = 0;
  if (EVP_PKEY_derive(ctx.get(), nullptr, &len) != 1) return ossl_err(Code::internal, "ECDH failed");
  SecureBytes out(len);
  if (EVP_PKEY_derive(ctx.get(), out.data(), &len) != 1) return ossl_err(Code::internal, "ECDH failed");
  out.resize(len);
  if (out.size() != fs) {
    SecureBytes padded;
    if (!detail::pad_left(out, fs, padded)) return err(Code::internal, "ECDH output too long");
    out.swap(padded);
  }
  return out;
}

namespace {

R<SecureBytes> keywrap(ByteView kek, ByteView in, bool pad, ByteView iv, bool enc) {
  CDC_ASSIGN(Bytes use_iv, detail::keywrap_iv(kek, in.size(), pad, iv, enc));
  std::string name = "AES-" + std::to_string(kek.size() * 8) + (pad ? "-WRAP-PAD" : "-WRAP");
  const EVP_CIPHER* cipher = aes_cipher(kek.size(), pad ? AesMode::wrap_pad : AesMode::wrap);
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!cipher || !ctx) return ossl_err(Code::internal, "cannot fetch " + name);
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  if (EVP_CipherInit_ex2(ctx.get(), cipher, kek.data(), use_iv.data(), enc ? 1 : 0, nullptr) != 1)
    return ossl_err(Code::internal, name + " init failed");
  SecureBytes out(in.size() + 16);
  int len = 0, fin = 0;
  if (EVP_CipherUpdate(ctx.get(), out.data(), &len, in.data(), static_cast<int>(in.size())) <= 0 ||
      EVP_CipherFinal_ex(ctx.get(), out.data() + len, &fin) <= 0) {
    if (!enc) {
      clear_errors();
      return err(Code::bad_wrapped_key, name + " unwrap integrity check failed");
    }
    return ossl_err(Code::internal, name + " wrap failed");
  }
  out.resize(static_cast<std::size_t>(len + fin));
  return out;
}

}  // namespace

R<Bytes> OpenSslBackend::aes_key_wrap(ByteView kek, ByteView plaintext, bool pad, ByteView iv) {
  CDC_ASSIGN(SecureBytes out, keywrap(kek, plaintext, pad, iv, true));
  return Bytes(out.begin(), out.end());
}

R<SecureBytes> OpenSslBackend::aes_key_unwrap(ByteView kek, ByteView wrapped, bool pad, ByteView iv) {
  return keywrap(kek, wrapped, pad, iv, false);
}

R<SecureBytes> OpenSslBackend::scrypt(ByteView password, ByteView salt, std::uint64_t n, std::uint32_t r,
                                      std::uint32_t p, std::size_t out_len) {
  if (n < 2 || (n & (n - 1)) != 0) return err(Code::bad_param, "scrypt N must be a power of two >= 2");
  if (r == 0 || p == 0) return err(Code::bad_param, "scrypt r and p must be positive");
  if (out_len == 0) return err(Code::bad_param, "scrypt output length must be positive");
  // Memory: 128*r*N for V plus 128*r*p for B; refuse what cannot be represented.
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max() / 4;
  if (n > kMax / (128ull * r) || p > kMax / (128ull * r))
    return err(Code::bad_param, "scrypt parameters need too much memory");
  std::uint64_t maxmem = 128ull * r * (n + p + 2) + (1ull << 20);
  KdfPtr kdf(EVP_KDF_fetch(libctx(), "SCRYPT", nullptr));
  if (!kdf) return ossl_err(Code::unsupported, "scrypt not available");
  KdfCtxPtr ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) return ossl_err(Code::internal, "scrypt context");
  static std::uint8_t dummy = 0;
  std::uint64_t nn = n;
  std::uint32_t rr = r, pp = p;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
                                        password.empty() ? &dummy : const_cast<std::uint8_t*>(password.data()),
                                        password.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                        salt.empty() ? &dummy : const_cast<std::uint8_t*>(salt.data()),
                                        salt.size()),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &nn),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &rr),
      OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &pp),
      OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
      OSSL_PARAM_construct_end(),
  };
  SecureBytes out(out_len);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1)
    return ossl_err(Code::bad_param, "scrypt derivation failed (parameters rejected or out of memory)");
  return out;
}

}  // namespace ossl

Backend* openssl_backend() {
  // Leaked on purpose: no destructor may run against OpenSSL after its atexit cleanup.
  static ossl::OpenSslBackend* instance = [] {
    ossl::libctx();
    return new ossl::OpenSslBackend();
  }();
  return instance;
}

}  // namespace cdcp11::crypto
