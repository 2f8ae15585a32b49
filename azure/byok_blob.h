// The BYOK transfer blob (".byok" JSON, reference §1.2) built from the KEK's versioned kid
// and the CKM_RSA_AES_KEY_WRAP ciphertext the token produced. The wrapping itself happens in
// the token; this only packages the bytes.
#pragma once

#include <string>
#include <string_view>

#include "azure/error.h"
#include "common/bytes.h"
#include "common/result.h"

namespace cdcp11::azure {

// {"schema_version":"1.0.0","header":{"kid":KEK,"alg":"dir","enc":"CKM_RSA_AES_KEY_WRAP"},
//  "ciphertext":base64url(ciphertext),"generator":generator}
// Refuses an unversioned kid and a ciphertext that cannot be RSA-OAEP(2048/3072/4096) || KWP.
Result<Bytes, Error> build_byok_blob(std::string_view kek_kid, ByteView ciphertext,
                                     std::string_view generator = "cdcp11 0.1");

}  // namespace cdcp11::azure
