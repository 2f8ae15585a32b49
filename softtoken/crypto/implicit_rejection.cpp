// RSAES-PKCS1-v1_5 decoding with implicit rejection, shared by both backends.
//
// A decryption that reports bad padding is a Bleichenbacher oracle, and a uniform error code does
// not remove it: success versus failure is the oracle (Bardou et al. 2012 ran it against
// C_UnwrapKey of real tokens; the Marvin attack of 2023 recovered it from timing alone). Implicit
// rejection (draft-irtf-cfrg-rsa-guidance, section "Implicit rejection"; OpenSSL 3.2+ does the
// same by default, Debian 12's OpenSSL 3.0 does not) never fails on bad padding: it returns a
// message derived deterministically from the ciphertext and the private exponent, so the caller,
// and everything above it, takes the same path whatever the padding was. The construction is
// byte-for-byte the draft's (and OpenSSL's), so the draft's test vectors apply.
//
// Constant time, by construction: after the raw RSA operation nothing branches on, or indexes
// memory by, a value derived from the padding check until the message length is chosen; that
// length is then part of the output for valid and invalid input alike. Masks go through a value
// barrier so the compiler cannot turn them back into branches.
#include "softtoken/crypto/internal.h"

namespace cdcp11::crypto::detail {

namespace {

inline std::uint32_t barrier(std::uint32_t x) {
#if defined(__GNUC__) || defined(__clang__)
  __asm__("" : "+r"(x));
#endif
  return x;
}
// All-ones when x == 0, else zero.
inline std::uint32_t is_zero_mask(std::uint32_t x) { return barrier(0u - ((~x & (x - 1)) >> 31)); }
inline std::uint32_t eq_mask(std::uint32_t a, std::uint32_t b) { return is_zero_mask(a ^ b); }
// All-ones when a < b (unsigned).
inline std::uint32_t lt_mask(std::uint32_t a, std::uint32_t b) {
  return barrier(0u - ((a ^ ((a ^ b) | ((a - b) ^ b))) >> 31));
}
inline std::uint32_t select(std::uint32_t mask, std::uint32_t a, std::uint32_t b) {
  return (mask & a) | (~mask & b);
}

class Hmac256 {
 public:
  static R<Hmac256> make(Backend& b, ByteView key) {
    auto k = b.load_secret(key);
    if (!k) return fail(std::move(k).error());
    return Hmac256(b, std::move(*k));
  }
  R<SecureBytes> mac(std::initializer_list<ByteView> parts) const {
    SignParams p;
    p.scheme = SignParams::Scheme::hmac;
    p.hash = Hash::sha256;
    CDC_ASSIGN(auto s, b_->signer(key_, p));
    for (ByteView part : parts) CDC_TRY(s->update(part));
    CDC_ASSIGN(Bytes out, s->finish());
    SecureBytes r(out.begin(), out.end());
    secure_zero(out.data(), out.size());
    return r;
  }

 private:
  Hmac256(Backend& b, KeyPtr k) : b_(&b), key_(std::move(k)) {}
  Backend* b_;
  KeyPtr key_;
};

// The draft's PRF: HMAC-SHA256(kdk, be16(i) || label || be16(bits)) for i = 0, 1, ...
R<SecureBytes> prf(const Hmac256& kdk, std::string_view label, std::size_t len) {
  const std::size_t bits = len * 8;
  const std::uint8_t be_bits[2] = {std::uint8_t(bits >> 8), std::uint8_t(bits)};
  SecureBytes out;
  for (std::uint16_t i = 0; out.size() < len; ++i) {
    const std::uint8_t be_i[2] = {std::uint8_t(i >> 8), std::uint8_t(i)};
    CDC_ASSIGN(auto block, kdk.mac({ByteView(be_i, 2), view(label), ByteView(be_bits, 2)}));
    out.insert(out.end(), block.begin(), block.end());
  }
  out.resize(len);
  return out;
}

}  // namespace

R<SecureBytes> pkcs1_decode_implicit(Backend& b, ByteView em, ByteView d, ByteView ciphertext) {
  const std::size_t k = em.size();
  // Public preconditions (the modulus size); not data-dependent.
  if (k < 11 || k > 4096 || d.size() != k || ciphertext.size() != k)
    return err(Code::internal, "PKCS#1 v1.5 decoding called with inconsistent lengths");

  // Key derivation key: HMAC-SHA256(SHA-256(d), ciphertext).
  auto dh = b.digest(Hash::sha256);
  dh->update(d);
  Bytes d_hash = dh->finish();
  auto hk = Hmac256::make(b, d_hash);
  secure_zero(d_hash.data(), d_hash.size());
  if (!hk) return fail(std::move(hk).error());
  CDC_ASSIGN(auto kdk_bytes, hk->mac({ciphertext}));
  CDC_ASSIGN(auto kdk, Hmac256::make(b, kdk_bytes));

  CDC_ASSIGN(auto synthetic, prf(kdk, "message", k));
  // 128 candidate lengths; the last one below the maximum message length is used (the chance
  // that none is, 2^-128 or less, leaves length 0).
  CDC_ASSIGN(auto candidates, prf(kdk, "length", 256));
  const std::uint32_t max_len = static_cast<std::uint32_t>(k - 2 - 8);
  std::uint32_t len_mask = max_len;
  for (unsigned s : {1u, 2u, 4u, 8u}) len_mask |= len_mask >> s;
  std::uint32_t synthetic_len = 0;
  for (std::size_t i = 0; i < candidates.size(); i += 2) {
    std::uint32_t c = ((std::uint32_t{candidates[i]} << 8) | candidates[i + 1]) & len_mask;
    synthetic_len = select(lt_mask(c, max_len), c, synthetic_len);
  }

  // EM = 0x00 || 0x02 || PS (at least 8 non-zero bytes) || 0x00 || M
  std::uint32_t good = is_zero_mask(em[0]) & eq_mask(em[1], 2);
  std::uint32_t found = 0, zero_index = 0;
  for (std::size_t i = 2; i < k; ++i) {
    const std::uint32_t z = is_zero_mask(em[i]);
    zero_index = select(~found & z, static_cast<std::uint32_t>(i), zero_index);
    found |= z;
  }
  good &= ~lt_mask(zero_index, 2 + 8);  // no separator leaves zero_index 0, which fails here too
  const std::uint32_t msg_index =
      select(good, zero_index + 1, static_cast<std::uint32_t>(k) - synthetic_len);

  // From here on the length is the output's, valid or not; both buffers are read either way.
  SecureBytes out(k - msg_index);
  for (std::size_t i = msg_index, j = 0; i < k; ++i, ++j)
    out[j] = static_cast<std::uint8_t>(select(good, em[i], synthetic[i]));
  return out;
}

}  // namespace cdcp11::crypto::detail
