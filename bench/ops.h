// The operations measured, the same set for every column (a PKCS#11 module, or OpenSSL's EVP
// API doing the same per-call work), and the inputs they share.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "bench/measure.h"
#include "common/bytes.h"

namespace cdcp11::bench {

enum class Op {
  aes_gcm_16,         // C_EncryptInit + C_Encrypt of 16 bytes (fresh IV per call)
  aes_gcm_1k,         // the same with 1 KiB
  aes_gcm_16k,        // the same with 16 KiB
  rsa2048_verify,     // C_VerifyInit + C_Verify, CKM_RSA_PKCS over a SHA-256 DigestInfo
  ecdsa_p256_sign,    // C_SignInit + C_Sign, CKM_ECDSA over a 32-byte digest
  ecdsa_p256_verify,  // C_VerifyInit + C_Verify, CKM_ECDSA
  rsa2048_sign,       // C_SignInit + C_Sign, CKM_RSA_PKCS over a SHA-256 DigestInfo
  rsa2048_keygen,     // C_GenerateKeyPair, RSA 2048, e = 65537
};

struct OpInfo {
  Op op;
  std::string_view id;  // the row name in the results
  std::size_t bytes;    // AES payload (0 for the others)
  double time_factor;   // a repetition runs this many times the usual wall time
  long min_calls;       // and at least this many calls (per thread)
};

std::span<const OpInfo> all_ops();
const OpInfo* find_op(std::string_view id);
// The figure printed for a rate of calls per second: MB/s for bulk AES, calls per second else.
double op_value(const OpInfo& op, double calls_per_s);
std::string_view op_unit(const OpInfo& op);

// Inputs: what is signed (a SHA-256 digest of a fixed message; RSA signs its DigestInfo, as
// CKM_RSA_PKCS callers and `openssl speed` do) and what is encrypted.
ByteView digest32();
ByteView rsa_digest_info();
Bytes payload(std::size_t n);
// The first 4 bytes of an AES-GCM worker's IVs (the other 8 count its calls), different for
// every worker: threads sharing a key never repeat an IV.
std::uint32_t iv_prefix();

// One column of the comparison: makes a Worker for an operation, one per thread.
class Column {
 public:
  virtual ~Column() = default;
  virtual const std::string& name() const = 0;
  virtual BR<std::unique_ptr<Worker>> worker(Op op) = 0;
};

}  // namespace cdcp11::bench
