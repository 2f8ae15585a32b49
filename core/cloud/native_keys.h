// Cloud-native keys: CKA_CDC_CLOUD_NATIVE true in C_GenerateKeyPair's private template makes
// the key pair in the group's Key Vault (RSA 2048/3072/4096, EC P-256/384/521/P-256K; -HSM in
// Premium vaults and Managed HSMs); the token gets its Azure-resident objects.
#pragma once

#include <utility>

#include "core/token/token.h"

namespace cdcp11::core::cloud {

// pub/priv: the complete, policy-checked templates. If the process dies between the vault's
// answer and the local objects, the next sync brings the key in.
R<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> generate_native_pair(Token& token, Session& s, const Mechanism& m,
                                                                       AttrMap pub, AttrMap priv);

}  // namespace cdcp11::core::cloud
