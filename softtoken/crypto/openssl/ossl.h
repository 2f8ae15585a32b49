// OpenSSL 3 backend internals. Every algorithm is fetched from a private OSSL_LIB_CTX with only the
// default provider loaded: OpenSSL's pkcs11-provider may load this module inside an application's
// OpenSSL, and anything done through the default library context could be routed back into that
// provider (and into us), deadlocking or recursing.
#pragma once

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rsa.h>
#include <openssl/param_build.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>

#include "softtoken/crypto/internal.h"

namespace cdcp11::crypto::ossl {

using detail::Code;
using detail::err;

template <auto Fn>
struct Deleter {
  template <class T>
  void operator()(T* p) const noexcept { Fn(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, Deleter<EVP_CIPHER_CTX_free>>;
using MacPtr = std::unique_ptr<EVP_MAC, Deleter<EVP_MAC_free>>;
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, Deleter<EVP_MAC_CTX_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_clear_free>>;
using BnCtxPtr = std::unique_ptr<BN_CTX, Deleter<BN_CTX_free>>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, Deleter<OSSL_PARAM_BLD_free>>;
using ParamsPtr = std::unique_ptr<OSSL_PARAM, Deleter<OSSL_PARAM_free>>;
using KdfPtr = std::unique_ptr<EVP_KDF, Deleter<EVP_KDF_free>>;
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, Deleter<EVP_KDF_CTX_free>>;

// The private library context (created once, intentionally never freed: freeing it from a static
// destructor could run after OpenSSL's own atexit cleanup and crash).
OSSL_LIB_CTX* libctx();
// Fetched digests, cached for the life of the process (same reasoning).
const EVP_MD* md(Hash h);
// AES in a mode, for a key of 16, 24 or 32 bytes, fetched once from the private context and
// kept for the life of the process (a fetch per operation costs more than a small operation);
// nullptr for another key size or when unavailable.
enum class AesMode { gcm, cbc, ecb, ctr, wrap, wrap_pad };
const EVP_CIPHER* aes_cipher(std::size_t key_bytes, AesMode mode);

// Builds an internal error from the OpenSSL error queue (and clears it).
Unexpected<Error> ossl_err(Code c, const std::string& what);
// Discards queued OpenSSL errors (after an expected failure such as a bad signature).
inline void clear_errors() { ERR_clear_error(); }

BnPtr bn_from(ByteView v, bool secret);
Bytes bn_bytes(const BIGNUM* bn);
SecureBytes bn_secure_bytes(const BIGNUM* bn);
// Fixed-length big-endian (false if the number does not fit).
bool bn_to_fixed(const BIGNUM* bn, std::uint8_t* out, std::size_t len);

enum class KeyKind { rsa, ec, ed25519, secret };

// AES-GCM contexts with a key's schedule set, kept for the key's next operations: an init with
// only the new IV costs about half of one with the key and allocates nothing. They hold the key
// in another form, so they live as long as the key object that holds its bytes, or the last
// operation begun with it, whichever ends later (freed, and cleansed by OpenSSL, with their
// shelf); an operation takes one and gives it back when it finishes well (an abandoned or failed
// one frees its own). Lock-free.
//
// Threads on one key must not write a common line per call (#13: two threads of 16-byte AES-GCM
// scaled 1.1× while they did). So the contexts sit on shelves, one per thread slot
// (this_thread_slot), each its own allocation with its own count: an operation holds its thread's
// shelf, takes a context only from it and gives it back to it, and counts on no other line than
// that shelf's.
class GcmCtxShelf {
 public:
  GcmCtxShelf() = default;
  GcmCtxShelf(const GcmCtxShelf&) = delete;
  GcmCtxShelf& operator=(const GcmCtxShelf&) = delete;
  ~GcmCtxShelf();
  CipherCtxPtr take();          // nullptr when it holds none
  void give(CipherCtxPtr ctx);  // freed when the shelf is full
  std::size_t size() const;

 private:
  // Alone in its pair of 128-byte lines (the CPU may fetch lines in pairs): the shelf is allocated
  // with its count just before it, and whatever comes next starts past the padding.
  alignas(128) std::array<std::atomic<EVP_CIPHER_CTX*>, 2> ctx_{};
  char pad_[256 - sizeof(ctx_)]{};
};

class GcmCtxPool {
 public:
  GcmCtxPool();
  // This thread's shelf.
  const std::shared_ptr<GcmCtxShelf>& shelf() const;
  // A context from this thread's shelf; nullptr when it holds none. Never another's: a context
  // is allocated by the thread that made it, beside that thread's others, and two threads
  // calling on contexts one thread made write common lines (two threads of 16-byte AES-GCM
  // scaled 1.8x in one process and 1.97x in the next, as the steals fell).
  CipherCtxPtr take() const;
  std::size_t size() const;  // contexts kept (tests)

 private:
  std::array<std::shared_ptr<GcmCtxShelf>, 4> shelves_;
};

class OsslKey final : public Key {
 public:
  std::size_t bits() const override { return bits_; }

  KeyKind kind = KeyKind::secret;
  bool is_private = false;
  Curve curve = Curve::p256;
  std::size_t bits_ = 0;
  PkeyPtr pkey;        // asymmetric keys
  SecureBytes secret;  // secret keys
  std::shared_ptr<GcmCtxPool> gcm_pool;  // secret keys of an AES size
};

// Downcast helper: bad_key when the key was not made by this backend.
R<const OsslKey*> as_ossl(const KeyPtr& k);

class OpenSslBackend final : public Backend {
 public:
  const char* name() const override { return "openssl"; }
  R<void> random(std::uint8_t* out, std::size_t n) override;
  R<RsaPrivate> generate_rsa(std::size_t bits, ByteView public_exponent) override;
  R<EcPrivate> generate_ec(Curve curve) override;
  R<RsaPrivate> complete_rsa(const RsaPrivate& k) override;
  R<EcPrivate> complete_ec(const EcPrivate& k) override;
  R<KeyPtr> load_private(const PrivateMaterial& m) override;
  R<KeyPtr> load_public(const PublicMaterial& m) override;
  R<KeyPtr> load_secret(ByteView value) override;
  R<std::unique_ptr<Signer>> signer(const KeyPtr& key, const SignParams& p) override;
  R<std::unique_ptr<Verifier>> verifier(const KeyPtr& key, const SignParams& p) override;
  R<std::unique_ptr<Cipher>> encryptor(const KeyPtr& key, const CipherParams& p) override;
  R<std::unique_ptr<Cipher>> decryptor(const KeyPtr& key, const CipherParams& p) override;
  std::unique_ptr<Digest> digest(Hash h) override;
  R<SecureBytes> ecdh(const KeyPtr& private_key, ByteView peer_point) override;
  R<Bytes> aes_key_wrap(ByteView kek, ByteView plaintext, bool pad, ByteView iv) override;
  R<SecureBytes> aes_key_unwrap(ByteView kek, ByteView wrapped, bool pad, ByteView iv) override;
  R<SecureBytes> encode_pkcs8(const PrivateMaterial& m) override;
  R<PrivateMaterial> decode_pkcs8(ByteView der) override;
  R<SecureBytes> scrypt(ByteView password, ByteView salt, std::uint64_t n, std::uint32_t r,
                        std::uint32_t p, std::size_t out_len) override;
};

// keys.cpp helpers used elsewhere.
R<BnPtr> get_bn(const EVP_PKEY* pkey, const char* name);
R<PkeyPtr> ec_public_pkey(Curve c, ByteView point);
R<std::unique_ptr<OsslKey>> make_private(const PrivateMaterial& m);

}  // namespace cdcp11::crypto::ossl
