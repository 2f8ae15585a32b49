#include "core/mechanisms.h"

#include <algorithm>
#include <cstdio>

namespace cdcp11::core {
namespace {

constexpr CK_FLAGS kEcFlags = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;
constexpr CK_FLAGS kSV = CKF_SIGN | CKF_VERIFY;
constexpr CK_FLAGS kED = CKF_ENCRYPT | CKF_DECRYPT;
constexpr CK_FLAGS kWU = CKF_WRAP | CKF_UNWRAP;

using F = MechFamily;
const std::vector<CK_KEY_TYPE> kRsa{CKK_RSA};
const std::vector<CK_KEY_TYPE> kEc{CKK_EC};
const std::vector<CK_KEY_TYPE> kEd{CKK_EC_EDWARDS};
const std::vector<CK_KEY_TYPE> kAes{CKK_AES};
const std::vector<CK_KEY_TYPE> kGeneric{CKK_GENERIC_SECRET};
const std::vector<CK_KEY_TYPE> kHmac{CKK_GENERIC_SECRET, CKK_SHA_1_HMAC, CKK_SHA224_HMAC,
                                     CKK_SHA256_HMAC, CKK_SHA384_HMAC, CKK_SHA512_HMAC};

// Key sizes: RSA and EC in bits, AES and generic secrets in bytes (PKCS#11 3.0 section 6).
const std::vector<MechanismEntry>& table() {
  static const std::vector<MechanismEntry> t = {
      // key generation
      {CKM_RSA_PKCS_KEY_PAIR_GEN, "CKM_RSA_PKCS_KEY_PAIR_GEN", F::rsa_keygen, 0, 2048, 4096, CKF_GENERATE_KEY_PAIR, false, kRsa},
      {CKM_EC_KEY_PAIR_GEN, "CKM_EC_KEY_PAIR_GEN", F::ec_keygen, 0, 256, 521, CKF_GENERATE_KEY_PAIR | kEcFlags, false, kEc},
      {CKM_EC_EDWARDS_KEY_PAIR_GEN, "CKM_EC_EDWARDS_KEY_PAIR_GEN", F::ed_keygen, 0, 255, 255, CKF_GENERATE_KEY_PAIR, false, kEd},
      {CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN", F::aes_keygen, 0, 16, 32, CKF_GENERATE, false, kAes},
      {CKM_GENERIC_SECRET_KEY_GEN, "CKM_GENERIC_SECRET_KEY_GEN", F::generic_keygen, 0, 8, 4096, CKF_GENERATE, false, kGeneric},
      // RSA
      {CKM_RSA_PKCS, "CKM_RSA_PKCS", F::rsa_pkcs1, 0, 1024, 8192, kSV | kED | kWU, false, kRsa},
      {CKM_SHA1_RSA_PKCS, "CKM_SHA1_RSA_PKCS", F::rsa_pkcs1, CKM_SHA_1, 1024, 8192, kSV, true, kRsa},
      {CKM_SHA224_RSA_PKCS, "CKM_SHA224_RSA_PKCS", F::rsa_pkcs1, CKM_SHA224, 1024, 8192, kSV, true, kRsa},
      {CKM_SHA256_RSA_PKCS, "CKM_SHA256_RSA_PKCS", F::rsa_pkcs1, CKM_SHA256, 1024, 8192, kSV, true, kRsa},
      {CKM_SHA384_RSA_PKCS, "CKM_SHA384_RSA_PKCS", F::rsa_pkcs1, CKM_SHA384, 1024, 8192, kSV, true, kRsa},
      {CKM_SHA512_RSA_PKCS, "CKM_SHA512_RSA_PKCS", F::rsa_pkcs1, CKM_SHA512, 1024, 8192, kSV, true, kRsa},
      {CKM_RSA_PKCS_PSS, "CKM_RSA_PKCS_PSS", F::rsa_pss, 0, 1024, 8192, kSV, false, kRsa},
      {CKM_SHA1_RSA_PKCS_PSS, "CKM_SHA1_RSA_PKCS_PSS", F::rsa_pss, CKM_SHA_1, 1024, 8192, kSV, true, kRsa},
      {CKM_SHA224_RSA_PKCS_PSS, "CKM_SHA224_RSA_PKCS_PSS", F::rsa_pss, CKM_SHA224, 1024, 8192, kSV, true, kRsa},
      {CKM_SHA256_RSA_PKCS_PSS, "CKM_SHA256_RSA_PKCS_PSS", F::rsa_pss, CKM_SHA256, 1024, 8192, kSV, true, kRsa},
      {CKM_SHA384_RSA_PKCS_PSS, "CKM_SHA384_RSA_PKCS_PSS", F::rsa_pss, CKM_SHA384, 1024, 8192, kSV, true, kRsa},
      {CKM_SHA512_RSA_PKCS_PSS, "CKM_SHA512_RSA_PKCS_PSS", F::rsa_pss, CKM_SHA512, 1024, 8192, kSV, true, kRsa},
      {CKM_RSA_PKCS_OAEP, "CKM_RSA_PKCS_OAEP", F::rsa_oaep, 0, 1024, 8192, kED | kWU, false, kRsa},
      {CKM_RSA_AES_KEY_WRAP, "CKM_RSA_AES_KEY_WRAP", F::rsa_aes_kw, 0, 2048, 8192, kWU, false, kRsa},
      // EC
      {CKM_ECDSA, "CKM_ECDSA", F::ecdsa, 0, 256, 521, kSV | kEcFlags, false, kEc},
      {CKM_ECDSA_SHA1, "CKM_ECDSA_SHA1", F::ecdsa, CKM_SHA_1, 256, 521, kSV | kEcFlags, true, kEc},
      {CKM_ECDSA_SHA224, "CKM_ECDSA_SHA224", F::ecdsa, CKM_SHA224, 256, 521, kSV | kEcFlags, true, kEc},
      {CKM_ECDSA_SHA256, "CKM_ECDSA_SHA256", F::ecdsa, CKM_SHA256, 256, 521, kSV | kEcFlags, true, kEc},
      {CKM_ECDSA_SHA384, "CKM_ECDSA_SHA384", F::ecdsa, CKM_SHA384, 256, 521, kSV | kEcFlags, true, kEc},
      {CKM_ECDSA_SHA512, "CKM_ECDSA_SHA512", F::ecdsa, CKM_SHA512, 256, 521, kSV | kEcFlags, true, kEc},
      {CKM_ECDH1_DERIVE, "CKM_ECDH1_DERIVE", F::ecdh, 0, 256, 521, CKF_DERIVE | kEcFlags, false, kEc},
      {CKM_EDDSA, "CKM_EDDSA", F::eddsa, 0, 255, 255, kSV, false, kEd},
      // HMAC (key sizes in bytes)
      {CKM_SHA_1_HMAC, "CKM_SHA_1_HMAC", F::hmac, CKM_SHA_1, 1, 512, kSV, true, kHmac},
      {CKM_SHA224_HMAC, "CKM_SHA224_HMAC", F::hmac, CKM_SHA224, 1, 512, kSV, true, kHmac},
      {CKM_SHA256_HMAC, "CKM_SHA256_HMAC", F::hmac, CKM_SHA256, 1, 512, kSV, true, kHmac},
      {CKM_SHA384_HMAC, "CKM_SHA384_HMAC", F::hmac, CKM_SHA384, 1, 512, kSV, true, kHmac},
      {CKM_SHA512_HMAC, "CKM_SHA512_HMAC", F::hmac, CKM_SHA512, 1, 512, kSV, true, kHmac},
      // AES
      {CKM_AES_GCM, "CKM_AES_GCM", F::aes_gcm, 0, 16, 32, kED, true, kAes},
      {CKM_AES_CBC_PAD, "CKM_AES_CBC_PAD", F::aes_cbc_pad, 0, 16, 32, kED | kWU, true, kAes},
      {CKM_AES_CTR, "CKM_AES_CTR", F::aes_ctr, 0, 16, 32, kED, true, kAes},
      {CKM_AES_ECB, "CKM_AES_ECB", F::aes_ecb, 0, 16, 32, kED | kWU, true, kAes},
      {CKM_AES_CBC, "CKM_AES_CBC", F::aes_cbc, 0, 16, 32, kED | kWU, true, kAes},
      {CKM_AES_KEY_WRAP, "CKM_AES_KEY_WRAP", F::aes_kw, 0, 16, 32, kWU, false, kAes},
      {CKM_AES_KEY_WRAP_KWP, "CKM_AES_KEY_WRAP_KWP", F::aes_kwp, 0, 16, 32, kWU, false, kAes},
      // digests
      {CKM_SHA_1, "CKM_SHA_1", F::digest, CKM_SHA_1, 0, 0, CKF_DIGEST, true, {}},
      {CKM_SHA224, "CKM_SHA224", F::digest, CKM_SHA224, 0, 0, CKF_DIGEST, true, {}},
      {CKM_SHA256, "CKM_SHA256", F::digest, CKM_SHA256, 0, 0, CKF_DIGEST, true, {}},
      {CKM_SHA384, "CKM_SHA384", F::digest, CKM_SHA384, 0, 0, CKF_DIGEST, true, {}},
      {CKM_SHA512, "CKM_SHA512", F::digest, CKM_SHA512, 0, 0, CKF_DIGEST, true, {}},
  };
  return t;
}

}  // namespace

bool MechanismEntry::allows_key_type(CK_KEY_TYPE kt) const {
  return std::find(key_types.begin(), key_types.end(), kt) != key_types.end();
}

std::span<const MechanismEntry> mechanism_table() { return table(); }

const MechanismEntry* find_mechanism(CK_MECHANISM_TYPE type) {
  for (auto& e : table())
    if (e.type == type) return &e;
  return nullptr;
}

const char* mechanism_name(CK_MECHANISM_TYPE type) {
  if (auto* e = find_mechanism(type)) return e->name;
  thread_local char buf[24];
  std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(type));
  return buf;
}

}  // namespace cdcp11::core
