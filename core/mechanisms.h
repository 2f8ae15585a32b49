// The one mechanism table: which mechanisms exist, for which key types and sizes, with which
// flags, and what family of algorithm each is. C_GetMechanismList/Info, operation checks and
// the token backends' dispatch all read it.
#pragma once

#include <span>
#include <vector>

#include "cdcp11/pkcs11_3_0.h"

namespace cdcp11::core {

enum class MechFamily {
  rsa_keygen, ec_keygen, ed_keygen, aes_keygen, generic_keygen,
  rsa_pkcs1,      // sign/verify/encrypt/decrypt/wrap/unwrap
  rsa_pss, ecdsa, eddsa, hmac,
  rsa_oaep, aes_gcm, aes_cbc_pad, aes_ctr,
  aes_ecb, aes_cbc,  // no padding: whole blocks only
  digest, ecdh,
  aes_kw, aes_kwp, rsa_aes_kw,
};

struct MechanismEntry {
  CK_MECHANISM_TYPE type;
  const char* name;
  MechFamily family;
  CK_MECHANISM_TYPE hash;          // digest applied by the mechanism (CKM_SHA256...), or 0
  CK_ULONG min_key, max_key;       // units as PKCS#11 says for the family
  CK_FLAGS flags;                  // CKF_SIGN | CKF_ENCRYPT | ... | CKF_EC_*
  bool multipart;                  // Update/Final allowed for sign/verify/encrypt/decrypt/digest
  std::vector<CK_KEY_TYPE> key_types;  // empty for digest

  bool allows_key_type(CK_KEY_TYPE kt) const;
};

std::span<const MechanismEntry> mechanism_table();
const MechanismEntry* find_mechanism(CK_MECHANISM_TYPE type);
const char* mechanism_name(CK_MECHANISM_TYPE type);  // "0x..." string for unknown ones

}  // namespace cdcp11::core
