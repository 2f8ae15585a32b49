// Azure BYOK's transfer ciphertext, made inside the backend from its generic calls: the
// CKM_RSA_AES_KEY_WRAP blob (RSA-OAEP with SHA-1 and MGF1-SHA-1 of a fresh AES-256 key under the
// KEK's public key, then AES key wrap with padding, RFC 5649, of the PKCS#8 private key or the
// secret value under that AES key). A backend that offers CKM_RSA_AES_KEY_WRAP makes it in one
// wrap_key; otherwise it is composed there: an ephemeral AES-256 session key, wrap_key of the
// target with the backend's RFC 5649 mechanism, wrap_key of the AES key with RSA-OAEP. The KEK
// and the ephemeral key are session objects destroyed when done. Nothing of the key leaves the
// backend in clear.
#pragma once

#include <string>

#include "core/backend.h"

namespace cdcp11::core::mirror {

// Whether the key can leave the backend for a vault, checked before any call to Azure so a
// refusal costs nothing remote. plain: the vault takes only a plain export (a Standard vault),
// refused where the backend keeps keys in hardware (Capabilities::plain_export false) unless
// the group opts in (hardware_plain_opt_in: mirror.allow_plain_export_from_hsm), and then only
// for keys it lets out (CKA_EXTRACTABLE true, CKA_SENSITIVE false). Otherwise (BYOK): the backend must have the
// mechanisms above, and where it enforces wrap policy itself the key must be CKA_EXTRACTABLE
// and not CKA_WRAP_WITH_TRUSTED. The error says which attribute or mechanism is missing, and is
// logged.
R<void> check_exportable(Backend& backend, const std::string& group, const StoredObject& key, bool plain,
                         bool hardware_plain_opt_in = false);

// The ciphertext for key under the KEK (kek_n, kek_e).
R<Bytes> wrap_for_byok(Backend& backend, const std::string& group, const StoredObject& key, ByteView kek_n,
                       ByteView kek_e);

}  // namespace cdcp11::core::mirror
