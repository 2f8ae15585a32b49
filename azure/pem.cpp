#include "azure/pem.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

namespace cdcp11::azure {

const char* const kEncryptedKeyAdvice =
    "cdcp11 cannot ask for its passphrase: store the key unencrypted in a file only its owner can read "
    "(openssl pkey -in KEY -out PLAIN-KEY; chmod 600 PLAIN-KEY)";

namespace {

// Called when the key wants a passphrase: notes it and declines, so nothing is prompted.
int no_passphrase(char*, int, int, void* asked) {
  *static_cast<bool*>(asked) = true;
  return -1;
}

}  // namespace

PemKey read_pem_private_key(ByteView pem) {
  PemKey out;
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  if (!bio) return out;
  bool asked = false;
  EVP_PKEY* k = PEM_read_bio_PrivateKey(bio.get(), nullptr, &no_passphrase, &asked);
  ERR_clear_error();  // a declined passphrase or a missing key leaves errors we report our own way
  if (k) out.key.reset(k, &EVP_PKEY_free);
  out.encrypted = !k && asked;
  return out;
}

}  // namespace cdcp11::azure
