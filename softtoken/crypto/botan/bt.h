// Botan 2 backend internals.
#pragma once

#include <botan/bigint.h>
#include <botan/ec_group.h>
#include <botan/exceptn.h>
#include <botan/pk_keys.h>
#include <botan/rng.h>

#include <memory>
#include <string>

#include "softtoken/crypto/internal.h"

namespace cdcp11::crypto::bt {

using detail::Code;
using detail::err;

// Thread-safe system RNG (getrandom), created once and intentionally leaked.
Botan::RandomNumberGenerator& rng();

// Runs f, converting any exception into an Error with `code` (default internal).
template <class F>
auto guard(const char* what, F&& f, Code code = Code::internal) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return err(code, std::string(what) + ": " + e.what());
  }
}

Bytes big_bytes(const Botan::BigInt& v);
SecureBytes big_secure(const Botan::BigInt& v);
inline Botan::BigInt big(ByteView v) { return Botan::BigInt(v.data(), v.size()); }

enum class KeyKind { rsa, ec, ed25519, secret };

class BotanKey final : public Key {
 public:
  std::size_t bits() const override { return bits_; }

  KeyKind kind = KeyKind::secret;
  bool is_private = false;
  Curve curve = Curve::p256;
  std::size_t bits_ = 0;
  std::shared_ptr<const Botan::Private_Key> priv;  // set for private keys
  std::shared_ptr<const Botan::Public_Key> pub;    // always set for asymmetric keys
  SecureBytes secret;
};

R<const BotanKey*> as_botan(const KeyPtr& k);

class BotanBackend final : public Backend {
 public:
  const char* name() const override { return "botan"; }
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

BotanBackend& backend();
const Botan::EC_Group& group(Curve c);
// keys.cpp: a loaded private key (complete material validated).
R<std::shared_ptr<BotanKey>> make_private(const PrivateMaterial& m);

}  // namespace cdcp11::crypto::bt
