// OpenSSL's own figures for the same operations, through the EVP API in OpenSSL's default
// library context, doing per call what a PKCS#11 module must do per Init + operation: a cipher
// context initialised with key and IV then encrypt + tag, a fresh EVP_PKEY_CTX from a loaded
// EVP_PKEY then sign or verify, EVP_PKEY_Q_keygen. (`openssl speed` keeps one initialised
// context across calls, which no C_*Init + C_* pair can, so it is not the like-for-like limit.)
#pragma once

#include <memory>

#include "bench/ops.h"

namespace cdcp11::bench {

BR<std::unique_ptr<Column>> make_evp_column();
// "OpenSSL 3.0.x ..." of the library the driver runs with.
std::string openssl_version();

}  // namespace cdcp11::bench
