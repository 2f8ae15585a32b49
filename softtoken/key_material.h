// Converting between PKCS#11 key attributes and the crypto seam's key material, and mapping the
// seam's errors to core errors.
#pragma once

#include <map>

#include "core/attributes.h"
#include "core/errors.h"
#include "softtoken/crypto/backend.h"

namespace cdcp11::softtoken {

// Secret attributes of one object, as kept inside the token (sealed at rest).
using Secrets = std::map<CK_ATTRIBUTE_TYPE, SecureBytes>;
SecureBytes serialize_secrets(const Secrets& s);
core::R<Secrets> deserialize_secrets(ByteView b);

core::R<crypto::PrivateMaterial> private_material(const core::AttrMap& attrs, const Secrets& sec);
core::R<crypto::PublicMaterial> public_material(const core::AttrMap& attrs);
core::R<crypto::Curve> curve_of(const core::AttrMap& attrs);

// Attributes of a private key (public part into attrs, secret part into sec) from material.
void private_key_attrs(const crypto::PrivateMaterial& m, core::AttrMap& attrs, Secrets& sec);
// Attributes of the matching public key.
void public_key_attrs(const crypto::PrivateMaterial& m, core::AttrMap& attrs);

// A secret key's CKA_CHECK_VALUE (PKCS#11 3.0): for AES the first 3 bytes of AES-ECB of a zero
// block, for generic secret and HMAC keys the first 3 bytes of SHA-1 of the value. A template's
// non-empty value must be that (CKR_ATTRIBUTE_VALUE_INVALID otherwise); a zero-length one means
// the key has none.
core::R<void> set_check_value(crypto::Backend& c, core::AttrMap& attrs, const Secrets& sec);

std::optional<crypto::Hash> hash_of(CK_MECHANISM_TYPE digest_mech);
std::optional<crypto::Hash> mgf_hash(CK_RSA_PKCS_MGF_TYPE mgf);

enum class CryptoContext { sign, verify, encrypt, decrypt, wrap, unwrap, generate, other };
core::Error from_crypto(const crypto::Error& e, CryptoContext ctx);

}  // namespace cdcp11::softtoken
