// Binds default_backend() to the backend chosen by the meson option crypto_backend, and (for
// crypto_dep) the accessor of the backend that is not built to nullptr. Compiled once per
// configuration with CDCP11_CRYPTO_DEFAULT_{OPENSSL,BOTAN} and optionally CDCP11_CRYPTO_STUB_OTHER.
#include "softtoken/crypto/backend.h"

namespace cdcp11::crypto {

#if defined(CDCP11_CRYPTO_DEFAULT_OPENSSL)
Backend& default_backend() { return *openssl_backend(); }
#if defined(CDCP11_CRYPTO_STUB_OTHER)
Backend* botan_backend() { return nullptr; }
#endif
#elif defined(CDCP11_CRYPTO_DEFAULT_BOTAN)
Backend& default_backend() { return *botan_backend(); }
#if defined(CDCP11_CRYPTO_STUB_OTHER)
Backend* openssl_backend() { return nullptr; }
#endif
#else
#error "define CDCP11_CRYPTO_DEFAULT_OPENSSL or CDCP11_CRYPTO_DEFAULT_BOTAN"
#endif

}  // namespace cdcp11::crypto
