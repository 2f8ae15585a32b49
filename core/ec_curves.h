// The EC curves the token and its backends share, by their CKA_EC_PARAMS (a DER OID), and the
// CKA_EC_POINT encoding: what any backend or the core needs to read an EC public key. Names
// for other systems (JWK's "P-256", ...) belong to those systems' translations.
#pragma once

#include <cstddef>
#include <optional>

#include "common/bytes.h"

namespace cdcp11::core {

enum class EcCurve { p256, p384, p521, secp256k1 };

Bytes ec_params(EcCurve c);                             // CKA_EC_PARAMS: the curve's OID
std::optional<EcCurve> ec_curve_of(ByteView ec_params);  // nullopt: not one of these curves
std::size_t ec_field_bytes(EcCurve c);                  // bytes of one coordinate

// CKA_EC_POINT: a DER OCTET STRING around the uncompressed point 04 || x || y.
Bytes ec_point_der(ByteView x, ByteView y);
// x and y of an uncompressed point of curve c, from CKA_EC_POINT as PKCS#11 says it (DER
// OCTET STRING) or as some modules give it (the raw point); nullopt when it is neither.
struct EcXY {
  Bytes x, y;
};
std::optional<EcXY> ec_point_xy(EcCurve c, ByteView ec_point);

}  // namespace cdcp11::core
