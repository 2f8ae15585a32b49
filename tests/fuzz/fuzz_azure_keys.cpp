// Key Vault key answers: a key bundle (get, create, import, recover, deleted key) and a key list
// page, parsed as the client parses them, then turned into token attributes as a sync does.
#include "azure/keyvault.h"
#include "core/cloud/key_attrs.h"
#include "tests/fuzz/fuzz_common.h"

using namespace cdcp11;

namespace {

void use_bundle(const azure::KeyBundle& b) {
  (void)b.name();
  (void)b.version();
  (void)b.key.rsa_bits();
  for (CK_OBJECT_CLASS cls : {CKO_PUBLIC_KEY, CKO_PRIVATE_KEY}) {
    auto a = core::cloud::material_attrs(b.key, cls);
    core::AttrMap usage;
    core::cloud::usage_from_ops(b.key.key_ops, cls, usage);
  }
  (void)core::cloud::public_fingerprint_input(b.key);
  azure::PublicKeyMaterial m{b.key.n, b.key.e, b.key.crv, b.key.x, b.key.y};
  if (!m.empty() && !azure::public_material_matches(b.key, m))
    azure::public_material_matches(b.key, m) ? void() : fuzz::violated("a key's public part does not match itself");
  if (auto id = azure::parse_key_id(b.key.kid); id && id->name.empty()) fuzz::violated("a key id without a name");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  azure::KeyBundle b;
  if (azure::parse_key_bundle(json, b)) use_bundle(b);
  std::vector<azure::KeyItem> items;
  std::string next;
  if (azure::parse_key_items(json, items, next))
    for (auto& it : items) (void)it.name();
  return 0;
}
