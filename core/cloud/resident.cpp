#include "core/cloud/resident.h"

#include "cdcp11/cdcp11.h"
#include "azure/util.h"
#include "core/attribute_policy.h"
#include "core/cloud/key_attrs.h"

namespace cdcp11::core::cloud {

std::string name_of_kid(const std::string& kid) {
  auto id = azure::parse_key_id(kid);
  return id ? azure::to_lower(id->name) : std::string();
}

std::string tag(const azure::Tags& t, const char* k) {
  auto it = t.find(k);
  return it == t.end() ? std::string() : it->second;
}

Bytes key_id_for(Backend& backend, const azure::KeyBundle& b) {
  Bytes id;
  if (from_hex(tag(b.tags, "cdcp11-id"), id) && !id.empty()) return id;
  // No id from a token: a stable one from the public key, so both halves match and a later
  // sync (or another process) computes the same.
  if (auto op = backend.begin_digest(Mechanism{find_mechanism(CKM_SHA256), {}})) {
    (void)(*op)->update(view(public_fingerprint_input(b.key)));
    if (auto d = (*op)->finish()) return Bytes(d->begin(), d->begin() + 20);
  }
  const std::string name = b.name();
  return Bytes(name.begin(), name.end());
}

R<std::pair<AttrMap, AttrMap>> resident_pair(const azure::KeyBundle& b, AttrMap pub, AttrMap priv) {
  CDC_ASSIGN(auto pm, material_attrs(b.key, CKO_PUBLIC_KEY));
  CDC_ASSIGN(auto vm, material_attrs(b.key, CKO_PRIVATE_KEY));
  for (auto& [t, v] : pm) pub.set(t, v);
  for (auto& [t, v] : vm) priv.set(t, v);
  const CK_KEY_TYPE kt = vm.ulong(CKA_KEY_TYPE).value_or(CKK_RSA);
  pub.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
  priv.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  priv.set_bool(CKA_TOKEN, true);
  priv.set_bool(CKA_PRIVATE, true);
  priv.set_bool(CKA_SENSITIVE, true);
  priv.set_bool(CKA_EXTRACTABLE, false);
  priv.set_bool(CKA_ALWAYS_SENSITIVE, true);
  priv.set_bool(CKA_NEVER_EXTRACTABLE, true);
  priv.set_ulong(CKA_CDC_ORIGIN, CDC_ORIGIN_AZURE);
  priv.set_string(CKA_CDC_AZURE_KEY_ID, b.key.kid);
  priv.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_MIRRORED);
  priv.set_string(CKA_CDC_MIRROR_ERROR, "");
  priv.set_bool(CKA_CDC_MIRROR, false);
  pub.set_ulong(CKA_CDC_ORIGIN, CDC_ORIGIN_AZURE);
  pub.set_string(CKA_CDC_AZURE_KEY_ID, b.key.kid);
  apply_defaults(CKO_PUBLIC_KEY, kt, pub);
  apply_defaults(CKO_PRIVATE_KEY, kt, priv);
  return std::make_pair(std::move(pub), std::move(priv));
}

}  // namespace cdcp11::core::cloud
