// Backend-independent pieces of the crypto seam, linked once into every configuration.
#include "softtoken/crypto/internal.h"

namespace cdcp11::crypto {

std::size_t hash_size(Hash h) {
  switch (h) {
    case Hash::sha1: return 20;
    case Hash::sha224: return 28;
    case Hash::sha256: return 32;
    case Hash::sha384: return 48;
    case Hash::sha512: return 64;
  }
  return 0;
}

std::size_t curve_size(Curve c) {
  switch (c) {
    case Curve::p256: return 32;
    case Curve::p384: return 48;
    case Curve::p521: return 66;
    case Curve::secp256k1: return 32;
    case Curve::ed25519: return 32;
  }
  return 0;
}

namespace detail {

const char* hash_name(Hash h) {
  switch (h) {
    case Hash::sha1: return "SHA-1";
    case Hash::sha224: return "SHA-224";
    case Hash::sha256: return "SHA-256";
    case Hash::sha384: return "SHA-384";
    case Hash::sha512: return "SHA-512";
  }
  return "?";
}

const char* curve_ossl_name(Curve c) {
  switch (c) {
    case Curve::p256: return "P-256";
    case Curve::p384: return "P-384";
    case Curve::p521: return "P-521";
    case Curve::secp256k1: return "secp256k1";
    case Curve::ed25519: return "ED25519";
  }
  return "?";
}

const char* curve_botan_name(Curve c) {
  switch (c) {
    case Curve::p256: return "secp256r1";
    case Curve::p384: return "secp384r1";
    case Curve::p521: return "secp521r1";
    case Curve::secp256k1: return "secp256k1";
    case Curve::ed25519: return "Ed25519";
  }
  return "?";
}

std::size_t curve_bits(Curve c) {
  switch (c) {
    case Curve::p256: return 256;
    case Curve::p384: return 384;
    case Curve::p521: return 521;
    case Curve::secp256k1: return 256;
    case Curve::ed25519: return 255;
  }
  return 0;
}

std::size_t oaep_max_input(std::size_t k, Hash h) {
  std::size_t overhead = 2 * hash_size(h) + 2;
  return k > overhead ? k - overhead : 0;
}

bool CtrBudget::init(ByteView iv, std::size_t counter_bits) {
  if (iv.size() != 16 || counter_bits < 1 || counter_bits > 128) return false;
  unsigned __int128 block = 0;
  for (auto b : iv) block = (block << 8) | b;
  unsigned __int128 mask =
      counter_bits == 128 ? ~static_cast<unsigned __int128>(0)
                          : ((static_cast<unsigned __int128>(1) << counter_bits) - 1);
  max_increments_ = mask - (block & mask);
  bytes_ = 0;
  return true;
}

bool CtrBudget::consume(std::size_t n) {
  unsigned __int128 total = bytes_ + n;
  if (total > 0) {
    // Block i (0-based) uses counter + i; the last block touched is (total - 1) / 16.
    unsigned __int128 last = (total - 1) / 16;
    if (last > max_increments_) return false;
  }
  bytes_ = total;
  return true;
}

R<void> check_aes_params(const CipherParams& p, std::size_t key_len) {
  if (key_len != 16 && key_len != 24 && key_len != 32)
    return err(Code::bad_key, "AES key must be 16, 24 or 32 bytes, got " + std::to_string(key_len));
  switch (p.scheme) {
    case CipherParams::Scheme::aes_gcm:
      if (p.iv.empty()) return err(Code::bad_param, "AES-GCM IV must not be empty");
      if (p.tag_bits < 32 || p.tag_bits > 128 || p.tag_bits % 8)
        return err(Code::bad_param, "AES-GCM tag length must be 32..128 bits in steps of 8, got " +
                                        std::to_string(p.tag_bits));
      return {};
    case CipherParams::Scheme::aes_cbc_pad:
    case CipherParams::Scheme::aes_cbc:
      if (p.iv.size() != 16)
        return err(Code::bad_param, "AES-CBC IV must be 16 bytes, got " + std::to_string(p.iv.size()));
      return {};
    case CipherParams::Scheme::aes_ecb:
      if (!p.iv.empty()) return err(Code::bad_param, "AES-ECB takes no IV");
      return {};
    case CipherParams::Scheme::aes_ctr:
      if (p.iv.size() != 16)
        return err(Code::bad_param,
                   "AES-CTR counter block must be 16 bytes, got " + std::to_string(p.iv.size()));
      if (p.counter_bits < 1 || p.counter_bits > 128)
        return err(Code::bad_param, "AES-CTR counter_bits must be 1..128, got " +
                                        std::to_string(p.counter_bits));
      return {};
    default:
      return err(Code::bad_key, "RSA scheme used with a secret key");
  }
}

Unexpected<Error> partial_block_error(CipherParams::Scheme s, std::size_t total) {
  return err(Code::bad_input_length, std::string(s == CipherParams::Scheme::aes_ecb ? "AES-ECB" : "AES-CBC") +
                                         " input must be a multiple of 16 bytes, got " + std::to_string(total));
}

R<Bytes> keywrap_iv(ByteView kek, std::size_t in_len, bool pad, ByteView iv, bool wrapping) {
  if (kek.size() != 16 && kek.size() != 24 && kek.size() != 32)
    return err(Code::bad_key, "AES key-wrap KEK must be 16, 24 or 32 bytes, got " +
                                  std::to_string(kek.size()));
  const char* name = pad ? "AES-KWP" : "AES-KW";
  if (wrapping) {
    if (!pad && (in_len < 16 || in_len % 8))
      return err(Code::bad_input_length,
                 "AES-KW input must be a multiple of 8 bytes and at least 16, got " + std::to_string(in_len));
    if (pad && (in_len < 1 || in_len > 0xFFFFFFFFull))
      return err(Code::bad_input_length, "AES-KWP input must be 1..2^32-1 bytes");
  } else {
    std::size_t min = pad ? 16 : 24;
    if (in_len < min || in_len % 8)
      return err(Code::bad_wrapped_key, std::string(name) + " wrapped key must be a multiple of 8 bytes and at least " +
                                            std::to_string(min) + ", got " + std::to_string(in_len));
  }
  if (iv.empty()) {
    if (pad) return Bytes{0xA6, 0x59, 0x59, 0xA6};
    return Bytes(8, 0xA6);
  }
  std::size_t want = pad ? 4 : 8;
  if (iv.size() != want)
    return err(Code::bad_param, std::string(name) + " IV must be " + std::to_string(want) + " bytes, got " +
                                    std::to_string(iv.size()));
  return to_bytes(iv);
}

}  // namespace detail
}  // namespace cdcp11::crypto
