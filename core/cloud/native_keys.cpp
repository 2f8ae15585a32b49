#include "core/cloud/native_keys.h"

#include <optional>

#include "cdcp11/cdcp11.h"
#include "common/log.h"
#include "core/cloud/key_attrs.h"
#include "core/cloud/resident.h"
#include "core/cloud/vault_ops.h"
#include "core/mirror/naming.h"
#include "core/session/session.h"

namespace cdcp11::core::cloud {

namespace {
constexpr const char* kLog = "sync";
}

R<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> generate_native_pair(Token& token, Session& s, const Mechanism& m,
                                                                       AttrMap pub, AttrMap priv) {
  const CK_KEY_TYPE kt = priv.ulong(CKA_KEY_TYPE).value_or(0);
  if (kt != CKK_RSA && kt != CKK_EC)
    return err(Errc::mechanism_invalid, "Key Vault generates RSA and EC key pairs only");
  if (!priv.bool_or(CKA_TOKEN, false))
    return err(Errc::template_inconsistent, "a cloud-native key lives in Key Vault: its private key must be a "
                                            "token object (CKA_TOKEN true)");
  if (priv.bool_or(CKA_EXTRACTABLE, false) || !priv.bool_or(CKA_SENSITIVE, true))
    return err(Errc::template_inconsistent, "a cloud-native key never leaves Key Vault: CKA_EXTRACTABLE must be "
                                            "false and CKA_SENSITIVE true");
  auto conn = token.vault_connection();
  if (!conn)
    return err(Errc::function_failed, "group '" + token.name() + "' cannot reach Azure to create the key: " +
                                          token.azure_unavailable());
  const bool hsm = token.config().azure->vault_type != VaultType::standard;

  azure::CreateKeyOptions o;
  if (kt == CKK_RSA) {
    o.kty = hsm ? "RSA-HSM" : "RSA";
    auto bits = pub.ulong(CKA_MODULUS_BITS);
    if (!bits) return err(Errc::template_incomplete, "CKA_MODULUS_BITS is required for an RSA key pair");
    if (*bits != 2048 && *bits != 3072 && *bits != 4096)
      return err(Errc::key_size_range, "Key Vault makes RSA keys of 2048, 3072 or 4096 bits, not " +
                                           std::to_string(*bits));
    o.key_size = static_cast<int>(*bits);
    if (auto* e = pub.find(CKA_PUBLIC_EXPONENT); e && *e != Bytes{0x01, 0x00, 0x01} &&
                                                  *e != Bytes{0x00, 0x01, 0x00, 0x01})
      return err(Errc::attribute_value_invalid, "Key Vault makes RSA keys with the public exponent 65537 only");
  } else {
    o.kty = hsm ? "EC-HSM" : "EC";
    auto* p = pub.find(CKA_EC_PARAMS);
    if (!p) return err(Errc::template_incomplete, "CKA_EC_PARAMS is required for an EC key pair");
    auto crv = curve_of(*p);
    if (!crv)
      return err(Errc::curve_not_supported, "Key Vault makes EC keys on P-256, P-384, P-521 and P-256K (secp256k1) only");
    o.crv = *crv;
  }
  o.key_ops = ops_from_usage(pub, priv);
  o.attributes.enabled = true;
  o.tags = {{"cdcp11-group", token.name()}, {"cdcp11-origin", "cloud-native"}};
  if (auto* id = priv.find(CKA_ID); id && !id->empty()) o.tags["cdcp11-id"] = to_hex(*id);
  const std::string label = priv.string_or(CKA_LABEL, "");
  if (!label.empty()) o.tags["cdcp11-label"] = label.substr(0, 256);

  CDC_TRY(token.check_can_create(s, pub));
  CDC_TRY(token.check_can_create(s, priv));

  // The name: CKA_CDC_AZURE_KEY_NAME exactly, or from the label with the collision rule.
  const std::string asked = priv.string_or(CKA_CDC_AZURE_KEY_NAME, "");
  if (!asked.empty() && !mirror::valid_key_name(asked))
    return err(Errc::attribute_value_invalid, "CKA_CDC_AZURE_KEY_NAME '" + asked +
                                                  "' is not a Key Vault key name (1-127 of 0-9, a-z, A-Z, -)");
  std::string fallback = "key";
  if (auto* id = priv.find(CKA_ID); id && !id->empty()) fallback += "-" + to_hex(*id).substr(0, 32);
  const std::string base = asked.empty() ? mirror::key_name_from_label(label, fallback) : asked;
  auto kv = conn->vault();
  std::optional<azure::KeyBundle> made;
  for (unsigned n = 1; n <= 50 && !made; ++n) {
    const std::string name = mirror::candidate_name(base, n);
    auto existing = kv.get_key(name);
    const bool free = !existing && existing.error().kind == azure::ErrorKind::not_found;
    if (!free) {
      if (!existing) return fail(from_azure(existing.error()));
      if (!asked.empty())
        return err(Errc::attribute_value_invalid, "the vault already has a key named '" + name + "'");
      continue;
    }
    auto r = kv.create_key(name, o);
    if (r) {
      made = std::move(*r);
    } else if (r.error().kind == azure::ErrorKind::conflict && asked.empty()) {
      continue;  // held by a soft-deleted key: the next candidate
    } else {
      return fail(from_azure(r.error()));
    }
  }
  if (!made) return err(Errc::function_failed, "no free key name found in the vault for '" + base + "'");
  log::info(kLog, "group '" + token.name() + "': created " + made->key.kid + " in Key Vault (cloud-native)");

  pub.set_bool(CKA_LOCAL, true);
  pub.set_ulong(CKA_KEY_GEN_MECHANISM, m.entry->type);
  priv.set_bool(CKA_LOCAL, true);
  priv.set_ulong(CKA_KEY_GEN_MECHANISM, m.entry->type);
  priv.set_bool(CKA_CDC_CLOUD_NATIVE, true);
  CDC_ASSIGN(auto pair, resident_pair(*made, std::move(pub), std::move(priv)));
  auto t = token.lock();
  // The vault key stays if storing the local objects fails: the next sync brings it in.
  auto po = t.backend().create_object(pair.first);
  if (!po) {
    log::error(kLog, "cloud-native key " + made->name() + " is in the vault but its public key object could not "
                     "be stored (" + po.error().message + "); a sync brings it in");
    return fail(std::move(po).error());
  }
  auto vo = t.backend().create_key_reference(pair.second);
  if (!vo) {
    (void)t.backend().destroy_object(po->uid);
    log::error(kLog, "cloud-native key " + made->name() + " is in the vault but its private key object could not "
                     "be stored (" + vo.error().message + "); a sync brings it in");
    return fail(std::move(vo).error());
  }
  const bool pt = po->attrs.bool_or(CKA_TOKEN, false);
  CK_OBJECT_HANDLE ph = t.add(std::move(*po), pt, pt ? 0 : s.handle());
  CK_OBJECT_HANDLE vh = t.add(std::move(*vo), true, 0);
  return std::make_pair(ph, vh);
}

}  // namespace cdcp11::core::cloud
