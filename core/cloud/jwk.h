// A key's PKCS#11 attributes in JSON Web Key terms (RFC 7517/7518), the form Key Vault takes and
// shows: RSA (n, e; d, p, q, dp, dq, qi), EC with crv P-256 | P-384 | P-521 | P-256K (x, y; d,
// padded to the field size), or oct (k). A backend exports attributes (Backend::public_key,
// export_plain); the mirror and vault sync speak JWK; this is the one translation between them.
#pragma once

#include "azure/keyvault.h"
#include "core/attributes.h"
#include "core/backend.h"

namespace cdcp11::core::cloud {

// From public-key attributes: CKA_KEY_TYPE with CKA_MODULUS + CKA_PUBLIC_EXPONENT, or
// CKA_EC_PARAMS + CKA_EC_POINT. Ed25519 and other curves have no JWK Key Vault takes:
// key_type_inconsistent.
R<azure::PublicKeyMaterial> jwk_public(const AttrMap& pub);
// The public JWK of a public or private key object, read through its backend.
R<azure::PublicKeyMaterial> public_jwk_of(Backend& backend, const StoredObject& key);
// From a key's clear material (Backend::export_plain) and its non-secret attributes (class, key
// type).
R<azure::PrivateJwk> jwk_private(const AttrMap& key, const SecretAttrs& material);

}  // namespace cdcp11::core::cloud
