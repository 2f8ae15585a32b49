// The crypto seam of the software token: one interface, two implementations (OpenSSL 3, the
// default, and Botan 2, chosen with the meson option `crypto_backend`). Nothing here knows
// PKCS#11 types; core/softtoken translate CK_MECHANISM and attributes into these structs.
//
// Conventions
// - Big integers (RSA components) are unsigned big-endian with no leading zero bytes.
// - EC public points are uncompressed SEC1 (0x04 || X || Y), X and Y padded to the field size.
//   EC private scalars are padded to the order size (32, 48, 66 bytes).
// - Ed25519 public keys are the raw 32 bytes; private keys the raw 32-byte seed.
// - Every secret output is SecureBytes. Implementations never log.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>

#include "common/bytes.h"
#include "common/result.h"

namespace cdcp11::crypto {

struct Error {
  enum class Code {
    bad_key,              // key material malformed, wrong type or size for the operation
    bad_param,            // mechanism parameter invalid (IV length, tag length, salt, ...)
    bad_input_length,     // plaintext / data length not acceptable (RSA too long, not block multiple)
    bad_encrypted_input,  // ciphertext invalid: bad padding, tag mismatch, bad length
    bad_signature,        // signature does not verify (right length)
    bad_signature_length, // signature length wrong for the key
    bad_wrapped_key,      // unwrap integrity check failed / malformed wrapped key
    unsupported,          // the backend cannot do this (curve, hash, size)
    internal,             // library failure; message says what
  } code = Code::internal;
  std::string message;
};

template <class T>
using R = Result<T, Error>;

enum class Hash { sha1, sha224, sha256, sha384, sha512 };
std::size_t hash_size(Hash h);

enum class Curve { p256, p384, p521, secp256k1, ed25519 };
// Byte length of a field element / scalar for the curve (32, 48, 66, 32, 32).
std::size_t curve_size(Curve c);

struct RsaPublic {
  Bytes n, e;
};
struct RsaPrivate {
  Bytes n, e;
  SecureBytes d, p, q, dp, dq, qinv;  // p..qinv may be empty (n, e, d only)
};
struct EcPublic {
  Curve curve = Curve::p256;
  Bytes point;  // uncompressed SEC1, or 32 raw bytes for ed25519
};
struct EcPrivate {
  Curve curve = Curve::p256;
  SecureBytes d;  // scalar (or ed25519 seed)
  Bytes point;    // may be empty on input; always filled on output
};
using PublicMaterial = std::variant<RsaPublic, EcPublic>;
using PrivateMaterial = std::variant<RsaPrivate, EcPrivate>;

// A parsed key ready for use: built once per object and cached by the token, so operations do
// not re-parse. Thread-safe for concurrent operations once built. Opaque to callers.
class Key {
 public:
  virtual ~Key() = default;
  // RSA modulus bits, EC field bits (256/384/521/255), secret key bytes*8.
  virtual std::size_t bits() const = 0;
};
using KeyPtr = std::shared_ptr<const Key>;

// ---- operation parameters ----

struct PssParams {
  Hash hash = Hash::sha256;  // hash of the message (must equal the digest hash used)
  Hash mgf1 = Hash::sha256;
  std::size_t salt_len = 32;
};

struct SignParams {
  enum class Scheme {
    rsa_pkcs1,   // EMSA-PKCS1-v1_5. hash set: hash the data, add DigestInfo. No hash: data is
                 // the (DigestInfo) block to pad as-is (CKM_RSA_PKCS).
    rsa_pss,     // hash set: hash the data. No hash: data is the digest (CKM_RSA_PKCS_PSS).
    ecdsa,       // output/input is raw r||s, each padded to curve order size. hash set: hash the
                 // data; no hash: data is the digest (truncated per FIPS 186 if longer).
    eddsa,       // pure Ed25519, single message (multi-part buffers the message).
    hmac,        // hash required; secret key.
  } scheme = Scheme::rsa_pkcs1;
  std::optional<Hash> hash;
  PssParams pss;
  std::size_t hmac_len = 0;  // 0 = full MAC length; else truncate (general-length HMAC)
};

// Multi-part signer: update() any number of times, then finish() once.
class Signer {
 public:
  virtual ~Signer() = default;
  virtual R<void> update(ByteView data) = 0;
  virtual R<Bytes> finish() = 0;
};
class Verifier {
 public:
  virtual ~Verifier() = default;
  virtual R<void> update(ByteView data) = 0;
  // Error bad_signature or bad_signature_length when it does not verify.
  virtual R<void> finish(ByteView signature) = 0;
};

struct CipherParams {
  enum class Scheme {
    aes_gcm,      // iv (any length >= 1; 12 recommended), aad, tag_bits (32..128, multiple of 8).
                  // Encrypt output = ciphertext || tag. Decrypt input = ciphertext || tag; decrypt
                  // outputs nothing until finish(), which verifies the tag first.
    aes_cbc_pad,  // iv 16 bytes, PKCS#7 padding
    aes_ecb,      // no iv, no padding: the input must be whole blocks (bad_input_length at finish())
    aes_cbc,      // iv 16 bytes, no padding: whole blocks as for aes_ecb
    aes_ctr,      // iv = 16-byte initial counter block; counter_bits = bits of the block that
                  // increment (1..128); wrapping the counter is an error (bad_input_length).
    rsa_oaep,     // oaep_hash, mgf1, label
    rsa_pkcs1,    // RSAES-PKCS1-v1_5. Decryption uses implicit rejection: invalid padding yields a
                  // synthetic message, never an error (see implicit_rejection.cpp)
  } scheme = Scheme::aes_gcm;
  Bytes iv;
  Bytes aad;
  std::size_t tag_bits = 128;
  std::size_t counter_bits = 128;
  Hash oaep_hash = Hash::sha1;
  Hash mgf1 = Hash::sha1;
  Bytes label;
};

// Multi-part cipher. RSA schemes are single-part: update() buffers, finish() does the work; a
// ciphertext of other than the modulus length is bad_input_length, one not below the modulus
// bad_encrypted_input (both public properties of the input).
class Cipher {
 public:
  virtual ~Cipher() = default;
  virtual R<SecureBytes> update(ByteView in) = 0;
  virtual R<SecureBytes> finish() = 0;
  // update(in) and finish() written into out, for an operation not yet fed. nullopt: out may
  // be too small, or this cipher cannot; nothing was done.
  virtual R<std::optional<std::size_t>> one_shot_into(ByteView /*in*/, std::span<std::uint8_t> /*out*/) {
    return std::optional<std::size_t>{};
  }
};

class Digest {
 public:
  virtual ~Digest() = default;
  virtual void update(ByteView data) = 0;
  virtual Bytes finish() = 0;
  virtual std::unique_ptr<Digest> clone() const = 0;
};

// ---- the backend ----

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;  // "openssl" or "botan"

  // Cryptographically secure random bytes.
  virtual R<void> random(std::uint8_t* out, std::size_t n) = 0;

  // Key generation. RSA: bits 1024..16384 (multiple of 8), public exponent as big-endian bytes
  // (empty = 65537). Returns complete material including CRT parts and EC public points.
  virtual R<RsaPrivate> generate_rsa(std::size_t bits, ByteView public_exponent) = 0;
  virtual R<EcPrivate> generate_ec(Curve curve) = 0;  // includes ed25519

  // Fills in what can be derived: EC/Ed25519 public point from the scalar, RSA CRT parts from
  // n,e,d,p,q. Validates consistency (error bad_key).
  virtual R<RsaPrivate> complete_rsa(const RsaPrivate& k) = 0;
  virtual R<EcPrivate> complete_ec(const EcPrivate& k) = 0;

  // Parsed, cacheable keys.
  virtual R<KeyPtr> load_private(const PrivateMaterial& m) = 0;
  virtual R<KeyPtr> load_public(const PublicMaterial& m) = 0;
  virtual R<KeyPtr> load_secret(ByteView value) = 0;  // AES / generic secret / HMAC

  virtual R<std::unique_ptr<Signer>> signer(const KeyPtr& key, const SignParams& p) = 0;
  virtual R<std::unique_ptr<Verifier>> verifier(const KeyPtr& key, const SignParams& p) = 0;
  virtual R<std::unique_ptr<Cipher>> encryptor(const KeyPtr& key, const CipherParams& p) = 0;
  virtual R<std::unique_ptr<Cipher>> decryptor(const KeyPtr& key, const CipherParams& p) = 0;
  virtual std::unique_ptr<Digest> digest(Hash h) = 0;

  // ECDH: raw shared secret (x-coordinate, field size bytes). peer_point uncompressed SEC1.
  virtual R<SecureBytes> ecdh(const KeyPtr& private_key, ByteView peer_point) = 0;

  // AES key wrap: RFC 3394 (pad=false; input multiple of 8, >= 16) or RFC 5649 (pad=true).
  // iv: empty = the RFC default IV (3394: A6A6A6A6A6A6A6A6; 5649: A65959A6). With pad=true a
  // non-empty iv is the 4-byte AIV prefix.
  virtual R<Bytes> aes_key_wrap(ByteView kek, ByteView plaintext, bool pad, ByteView iv) = 0;
  virtual R<SecureBytes> aes_key_unwrap(ByteView kek, ByteView wrapped, bool pad, ByteView iv) = 0;

  // PKCS#8 PrivateKeyInfo (DER, unencrypted) for RSA (RFC 3447 RSAPrivateKey inside), EC
  // (RFC 5915 ECPrivateKey with the named curve OID in the algorithm parameters and the public key
  // included), Ed25519 (RFC 8410).
  virtual R<SecureBytes> encode_pkcs8(const PrivateMaterial& m) = 0;
  virtual R<PrivateMaterial> decode_pkcs8(ByteView der) = 0;

  // Password-based key derivation for the token store: scrypt (RFC 7914).
  virtual R<SecureBytes> scrypt(ByteView password, ByteView salt, std::uint64_t n, std::uint32_t r,
                                std::uint32_t p, std::size_t out_len) = 0;
};

// The backend selected at build time (meson option crypto_backend).
Backend& default_backend();
// Both backends are compiled into the test binaries so they can be checked against each other;
// these return nullptr when that backend was not built.
Backend* openssl_backend();
Backend* botan_backend();

}  // namespace cdcp11::crypto
