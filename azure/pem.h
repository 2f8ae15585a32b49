// Reading PEM private keys without ever asking for a passphrase: OpenSSL's default is to prompt
// on the controlling terminal, which would hang a PKCS#11 module inside someone's process.
#pragma once

#include <memory>

#include "common/bytes.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace cdcp11::azure {

struct PemKey {
  std::shared_ptr<EVP_PKEY> key;  // null if none could be read
  bool encrypted = false;         // the key is passphrase-protected (and was not read)
};

// The first PEM private key in pem (other PEM blocks, e.g. certificates, are skipped).
PemKey read_pem_private_key(ByteView pem);

// The sentence's tail for an encrypted key: what to do about it.
extern const char* const kEncryptedKeyAdvice;

}  // namespace cdcp11::azure
