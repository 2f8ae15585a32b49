// OpenSSL on the test side: the independent check of what the HSM wrapped.
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>

#include "common/bytes.h"

namespace cdcp11::hsm::test {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Pkey rsa_generate(unsigned bits);
// A key parameter as big-endian bytes ("n", "e", "d", "rsa-factor1", "priv", ...); width > 0
// left-pads to that many bytes.
Bytes bn_param(const EVP_PKEY* k, const char* name, std::size_t width = 0);

// RSA-OAEP with SHA-1 and MGF1-SHA-1.
Bytes oaep_sha1_decrypt(const EVP_PKEY* k, ByteView ct);
// AES key wrap with padding, RFC 5649 (OpenSSL's id-aes{128,192,256}-wrap-pad).
Bytes kwp_unwrap(ByteView kek, ByteView wrapped);

}  // namespace cdcp11::hsm::test
