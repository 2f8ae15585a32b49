// Azure-resident keys: keys whose private half lives only in Key Vault. They reach the token by
// vault sync (keys made in Azure) or by cloud-native generation (CKA_CDC_CLOUD_NATIVE); each is a
// public key object plus a private key object without key material (CKA_CDC_ORIGIN azure) whose
// private key operations go to the vault (core/cloud/vault_home.h).
#pragma once

#include <string>
#include <utility>

#include "azure/keyvault.h"
#include "core/backend.h"

namespace cdcp11::core::cloud {

// The lower-case key name of a Key Vault key id ("" if it is none).
std::string name_of_kid(const std::string& kid);
std::string tag(const azure::Tags& t, const char* k);

// The CKA_ID both objects of a vault key get: the cdcp11-id tag of a key a token named, else a
// stable one from the public key (so both halves match, and another process computes the same).
Bytes key_id_for(Backend& digester, const azure::KeyBundle& b);

// The two objects standing for a vault key. Caller-chosen attributes (from templates) come in
// pub/priv; the vault decides the key material and the vendor attributes.
R<std::pair<AttrMap, AttrMap>> resident_pair(const azure::KeyBundle& b, AttrMap pub, AttrMap priv);

}  // namespace cdcp11::core::cloud
