// Cryptography with Azure-resident keys: the private key operations of a key that lives only in
// Key Vault (C_Sign, C_Decrypt, C_UnwrapKey) go to the vault. Digests are computed locally (the
// vault signs a digest); ECDSA r||s from the vault is already PKCS#11's signature format.
#pragma once

#include <memory>
#include <string>

#include "azure/connection.h"
#include "core/backend.h"

namespace cdcp11::core::cloud {

// A key in the vault, as the private key object names it (CKA_CDC_AZURE_KEY_ID).
struct VaultKey {
  std::shared_ptr<azure::Connection> conn;
  std::string name, version;
  CK_KEY_TYPE key_type = CKK_RSA;
  std::string crv;           // EC keys
  std::size_t modulus_bytes = 0;  // RSA keys
};

// The key named by an Azure-resident private key object, checked against the group's vault.
R<VaultKey> vault_key_of(std::shared_ptr<azure::Connection> conn, const AttrMap& key);

// A sign or decrypt operation with the vault key. digester computes the digests of the
// hash-and-sign mechanisms; it outlives the operation.
R<std::unique_ptr<Operation>> begin_vault_op(Backend& digester, OpKind kind, const Mechanism& m, VaultKey key);

// C_UnwrapKey with the vault key: the unwrapped key bytes.
R<SecureBytes> vault_unwrap(const Mechanism& m, const VaultKey& key, ByteView wrapped);

// An Azure failure as a core error: unreachable or throttled vaults are device errors, the rest
// function failures; the message is Azure's one-sentence description.
Error from_azure(const azure::Error& e);

}  // namespace cdcp11::core::cloud
