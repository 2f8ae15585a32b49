// Key Vault keys in PKCS#11 terms: the attributes of the public and private key objects that
// stand for a key living in Key Vault (an Azure-resident key), from its JSON Web Key and
// key_ops; and the EC curve encodings both directions need.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "azure/keyvault.h"
#include "core/attributes.h"
#include "core/errors.h"
#include "core/backend.h"

namespace cdcp11::core::cloud {

// CKA_EC_PARAMS (DER OID) of a Key Vault curve name, and back: the curves Key Vault and the
// token share, P-256, P-384, P-521 and P-256K (secp256k1).
std::optional<Bytes> ec_params_of(std::string_view crv);
std::optional<std::string> curve_of(ByteView ec_params);
std::size_t curve_bytes(std::string_view crv);

// CKA_EC_POINT: DER OCTET STRING of the uncompressed point 04 || x || y.
Bytes ec_point_of(ByteView x, ByteView y);

// The key material attributes of a Key Vault key for an object of class cls: CKA_KEY_TYPE and
// CKA_MODULUS / CKA_PUBLIC_EXPONENT, or CKA_EC_PARAMS (+ CKA_EC_POINT for public keys).
// key_type_inconsistent for keys PKCS#11 objects here cannot stand for (oct).
R<AttrMap> material_attrs(const azure::JsonWebKey& k, CK_OBJECT_CLASS cls);

// Usage flags from Key Vault key_ops for an object of class cls (sign -> CKA_SIGN on the private
// key, verify -> CKA_VERIFY on the public key, and so on).
void usage_from_ops(const std::vector<std::string>& ops, CK_OBJECT_CLASS cls, AttrMap& a);

// The Key Vault key_ops a key pair made from these templates gets (the reverse mapping).
std::vector<std::string> ops_from_usage(const AttrMap& pub, const AttrMap& priv);

// An Azure-resident key: a private key object whose key material is in Key Vault only.
bool azure_resident(const AttrMap& a);

// A canonical string of a JWK's public part, so two sides can compare or hash it.
std::string public_fingerprint_input(const azure::JsonWebKey& k);

}  // namespace cdcp11::core::cloud
