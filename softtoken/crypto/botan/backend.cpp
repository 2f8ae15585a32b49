// Placeholder until the Botan backend lands.
#include "softtoken/crypto/backend.h"
namespace cdcp11::crypto {
Backend* botan_backend() { return nullptr; }
}
