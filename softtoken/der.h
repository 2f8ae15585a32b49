// The few DER encodings PKCS#11 attributes need: named-curve parameters (CKA_EC_PARAMS) and
// EC points wrapped in an OCTET STRING (CKA_EC_POINT).
#pragma once

#include <optional>

#include "common/bytes.h"
#include "softtoken/crypto/backend.h"

namespace cdcp11::softtoken {

// CKA_EC_PARAMS: a namedCurve OID, or for Ed25519 also the PrintableString "edwards25519".
std::optional<crypto::Curve> curve_from_params(ByteView params);
Bytes params_for_curve(crypto::Curve c);

Bytes der_octet_string(ByteView content);
// Accepts a DER OCTET STRING; returns its content, or nullopt if malformed.
std::optional<Bytes> der_octet_string_content(ByteView der);

}  // namespace cdcp11::softtoken
