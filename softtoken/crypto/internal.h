// Helpers shared by the OpenSSL and Botan backends (not part of the seam).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "softtoken/crypto/backend.h"

namespace cdcp11::crypto::detail {

using Code = Error::Code;

inline Unexpected<Error> err(Code c, std::string msg) { return fail(Error{c, std::move(msg)}); }

// Canonical algorithm names ("SHA-256"); both libraries accept these spellings.
const char* hash_name(Hash h);
// OpenSSL group names / Botan EC_Group names; ed25519 -> "ED25519".
const char* curve_ossl_name(Curve c);
const char* curve_botan_name(Curve c);
// Field bits as reported by Key::bits() (256, 384, 521, 256, 255).
std::size_t curve_bits(Curve c);
// Maximum plaintext of one RSA-OAEP / PKCS#1 v1.5 encryption for a modulus of k bytes (0 when
// the modulus is too small).
std::size_t oaep_max_input(std::size_t k, Hash h);
inline std::size_t pkcs1_max_input(std::size_t k) { return k > 11 ? k - 11 : 0; }

// Big-endian helpers.
template <class Vec>
Vec strip_leading_zeros(ByteView v) {
  std::size_t i = 0;
  while (i < v.size() && v[i] == 0) ++i;
  return Vec(v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
}
// Left-pads with zeros to `len` bytes; returns false when v (without leading zeros) is longer.
template <class Vec>
bool pad_left(ByteView v, std::size_t len, Vec& out) {
  std::size_t i = 0;
  while (i < v.size() && v[i] == 0) ++i;
  std::size_t n = v.size() - i;
  if (n > len) return false;
  out.assign(len, 0);
  std::copy(v.begin() + static_cast<std::ptrdiff_t>(i), v.end(), out.begin() + static_cast<std::ptrdiff_t>(len - n));
  return true;
}

// AES-CTR counter budget: PKCS#11 says the low `counter_bits` of the counter block increment and
// wrapping them is an error. Both libraries increment the whole 128-bit block, which is the same
// as long as the counter never wraps, so tracking the budget is enough.
class CtrBudget {
 public:
  // Returns false when counter_bits is out of 1..128 or the IV is not 16 bytes.
  bool init(ByteView iv, std::size_t counter_bits);
  // Accounts for n more bytes; false (state unchanged) when they would need a wrapped counter.
  bool consume(std::size_t n);

 private:
  unsigned __int128 max_increments_ = 0;  // how many times the counter may still be incremented
  unsigned __int128 bytes_ = 0;            // bytes processed so far
};

// Validates scheme-independent AES parameters shared by both backends.
R<void> check_aes_params(const CipherParams& p, std::size_t key_len);

// AES-ECB / AES-CBC without padding: the input must be whole blocks.
inline bool unpadded_block_mode(CipherParams::Scheme s) {
  return s == CipherParams::Scheme::aes_ecb || s == CipherParams::Scheme::aes_cbc;
}
// The error for a final partial block of those modes (bad_input_length).
Unexpected<Error> partial_block_error(CipherParams::Scheme s, std::size_t total);

// Validates an AES key-wrap request; returns the IV to use (default filled in).
R<Bytes> keywrap_iv(ByteView kek, std::size_t in_len, bool pad, ByteView iv, bool wrapping);

// RSAES-PKCS1-v1_5 decoding with implicit rejection (implicit_rejection.cpp): em is the raw RSA
// output, d the private exponent, both k bytes big-endian, ciphertext the k-byte input. Returns
// the message when the padding is valid, else a synthetic message derived from d and the
// ciphertext, chosen in constant time. Fails only on inconsistent lengths or a library error.
R<SecureBytes> pkcs1_decode_implicit(Backend& b, ByteView em, ByteView d, ByteView ciphertext);

}  // namespace cdcp11::crypto::detail
