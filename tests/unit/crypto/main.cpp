#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "tests/unit/crypto/helpers.h"

#include <map>
#include <mutex>

namespace cdcp11::crypto::test {

const RsaPrivate& rsa2048(Backend& b) {
  static std::map<Backend*, RsaPrivate> cache;
  auto it = cache.find(&b);
  if (it == cache.end()) it = cache.emplace(&b, ok(b.generate_rsa(2048, {}))).first;
  return it->second;
}

const EcPrivate& ec_key(Backend& b, Curve c) {
  static std::map<std::pair<Backend*, Curve>, EcPrivate> cache;
  auto key = std::make_pair(&b, c);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, ok(b.generate_ec(c))).first;
  return it->second;
}

}  // namespace cdcp11::crypto::test
