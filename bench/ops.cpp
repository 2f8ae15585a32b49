#include "bench/ops.h"

#include <array>
#include <atomic>

namespace cdcp11::bench {
namespace {

constexpr std::array<OpInfo, 8> kOps{{
    {Op::aes_gcm_16, "aes_gcm_16", 16, 1, 0},
    {Op::aes_gcm_1k, "aes_gcm_1k", 1024, 1, 0},
    {Op::aes_gcm_16k, "aes_gcm_16k", 16384, 1, 0},
    {Op::rsa2048_verify, "rsa2048_verify", 0, 1, 0},
    {Op::ecdsa_p256_sign, "ecdsa_p256_sign", 0, 1, 0},
    {Op::ecdsa_p256_verify, "ecdsa_p256_verify", 0, 1, 0},
    {Op::rsa2048_sign, "rsa2048_sign", 0, 1, 0},
    // A few keys a second, each taking a random time (the prime search): at least 24 keys per
    // repetition, so that a repetition's rate is not a handful of lucky or unlucky primes.
    {Op::rsa2048_keygen, "rsa2048_keygen", 0, 3, 24},
}};

// Stands for a SHA-256 digest: the operations never hash, so any 32 bytes do.
constexpr std::array<std::uint8_t, 32> kDigest{
    0x5b, 0x1e, 0x0c, 0x7a, 0x33, 0x96, 0xd2, 0x41, 0x8f, 0x27, 0xa4, 0x6e, 0x90, 0x15, 0xc8, 0x3d,
    0x72, 0xe1, 0x4b, 0x08, 0xbd, 0x5f, 0x63, 0xa9, 0x1c, 0xf4, 0x87, 0x2e, 0xd0, 0x39, 0x6b, 0x54};

// DER prefix of a SHA-256 DigestInfo (RFC 8017 §9.2 note 1).
constexpr std::array<std::uint8_t, 19> kSha256Prefix{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                     0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                     0x01, 0x05, 0x00, 0x04, 0x20};

constexpr auto kDigestInfo = [] {
  std::array<std::uint8_t, kSha256Prefix.size() + kDigest.size()> a{};
  for (std::size_t i = 0; i < kSha256Prefix.size(); ++i) a[i] = kSha256Prefix[i];
  for (std::size_t i = 0; i < kDigest.size(); ++i) a[kSha256Prefix.size() + i] = kDigest[i];
  return a;
}();

}  // namespace

std::span<const OpInfo> all_ops() { return kOps; }

const OpInfo* find_op(std::string_view id) {
  for (const auto& o : kOps)
    if (o.id == id) return &o;
  return nullptr;
}

double op_value(const OpInfo& op, double calls_per_s) {
  return op.bytes >= 1024 ? calls_per_s * static_cast<double>(op.bytes) / 1e6 : calls_per_s;
}

std::string_view op_unit(const OpInfo& op) {
  if (op.bytes >= 1024) return "MB/s";
  return op.bytes ? "calls/s" : "/s";
}

ByteView digest32() { return kDigest; }

ByteView rsa_digest_info() { return kDigestInfo; }

Bytes payload(std::size_t n) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i * 31 + 7);
  return b;
}

std::uint32_t iv_prefix() {
  static std::atomic<std::uint32_t> next{1};
  return next++;
}

}  // namespace cdcp11::bench
