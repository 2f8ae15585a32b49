// Azure-resident keys: keys whose private half lives only in Key Vault. They reach the token by
// sync (keys made in Azure) or by cloud-native generation (CKA_CDC_CLOUD_NATIVE); each is a
// public key object plus a private key object without key material (CKA_CDC_ORIGIN azure) whose
// private key operations go to the vault.
#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "cdcp11/cdcp11.h"
#include "azure/util.h"
#include "common/log.h"
#include "core/attribute_policy.h"
#include "core/cloud/key_attrs.h"
#include "core/cloud/vault_ops.h"
#include "core/library.h"
#include "core/mirror/engine.h"
#include "core/mirror/naming.h"

namespace cdcp11::core {

namespace {

constexpr const char* kLog = "sync";

std::string name_of_kid(const std::string& kid) {
  auto id = azure::parse_key_id(kid);
  return id ? azure::to_lower(id->name) : std::string();
}

std::string tag(const azure::Tags& t, const char* k) {
  auto it = t.find(k);
  return it == t.end() ? std::string() : it->second;
}

Bytes key_id_for(TokenBackend& backend, const azure::KeyBundle& b) {
  Bytes id;
  if (from_hex(tag(b.tags, "cdcp11-id"), id) && !id.empty()) return id;
  // No id from a token: a stable one from the public key, so both halves match and a later
  // sync (or another process) computes the same.
  if (auto op = backend.begin_digest(Mechanism{find_mechanism(CKM_SHA256), {}})) {
    (void)(*op)->update(view(cloud::public_fingerprint_input(b.key)));
    if (auto d = (*op)->finish()) return Bytes(d->begin(), d->begin() + 20);
  }
  const std::string name = b.name();
  return Bytes(name.begin(), name.end());
}

// The two objects standing for a vault key. Caller-chosen attributes (from templates) come in
// pub/priv; the vault decides the key material and the vendor attributes.
R<std::pair<AttrMap, AttrMap>> resident_pair(const azure::KeyBundle& b, AttrMap pub, AttrMap priv) {
  CDC_ASSIGN(auto pm, cloud::material_attrs(b.key, CKO_PUBLIC_KEY));
  CDC_ASSIGN(auto vm, cloud::material_attrs(b.key, CKO_PRIVATE_KEY));
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

}  // namespace

// ---------------------------------------------------------------- operations

R<std::unique_ptr<Operation>> Library::begin_vault_op(Slot& slot, OpKind kind, const Mechanism& m,
                                                      const StoredObject& key) {
  if (!slot.mirror)
    return err(Errc::device_error, "the key lives in Key Vault but group '" + slot.cfg.name +
                                       "' cannot reach Azure: " + slot.mirror_unavailable);
  CDC_ASSIGN(auto vk, cloud::vault_key_of(slot.mirror->connection(), key.attrs));
  return cloud::begin_vault_op(*slot.backend, kind, m, std::move(vk));
}

R<SecureBytes> Library::vault_unwrap(Slot& slot, const Mechanism& m, const StoredObject& key, ByteView wrapped) {
  if (!slot.mirror)
    return err(Errc::device_error, "the key lives in Key Vault but group '" + slot.cfg.name +
                                       "' cannot reach Azure: " + slot.mirror_unavailable);
  CDC_ASSIGN(auto vk, cloud::vault_key_of(slot.mirror->connection(), key.attrs));
  return cloud::vault_unwrap(m, vk, wrapped);
}

// ---------------------------------------------------------------- cloud-native generation

R<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> Library::generate_cloud_native(Session& s, const Mechanism& m,
                                                                                AttrMap pub, AttrMap priv) {
  Slot& slot = *s.slot;
  const CK_KEY_TYPE kt = priv.ulong(CKA_KEY_TYPE).value_or(0);
  if (kt != CKK_RSA && kt != CKK_EC)
    return err(Errc::mechanism_invalid, "Key Vault generates RSA and EC key pairs only");
  if (!priv.bool_or(CKA_TOKEN, false))
    return err(Errc::template_inconsistent, "a cloud-native key lives in Key Vault: its private key must be a "
                                            "token object (CKA_TOKEN true)");
  if (priv.bool_or(CKA_EXTRACTABLE, false) || !priv.bool_or(CKA_SENSITIVE, true))
    return err(Errc::template_inconsistent, "a cloud-native key never leaves Key Vault: CKA_EXTRACTABLE must be "
                                            "false and CKA_SENSITIVE true");
  if (!slot.mirror)
    return err(Errc::function_failed, "group '" + slot.cfg.name + "' cannot reach Azure to create the key: " +
                                          slot.mirror_unavailable);
  const AzureConfig& az = slot.mirror->azure_config();
  const bool hsm = az.vault_type != VaultType::standard;

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
    auto crv = cloud::curve_of(*p);
    if (!crv)
      return err(Errc::curve_not_supported, "Key Vault makes EC keys on P-256, P-384, P-521 and P-256K (secp256k1) only");
    o.crv = *crv;
  }
  o.key_ops = cloud::ops_from_usage(pub, priv);
  o.attributes.enabled = true;
  o.tags = {{"cdcp11-group", slot.cfg.name}, {"cdcp11-origin", "cloud-native"}};
  if (auto* id = priv.find(CKA_ID); id && !id->empty()) o.tags["cdcp11-id"] = to_hex(*id);
  const std::string label = priv.string_or(CKA_LABEL, "");
  if (!label.empty()) o.tags["cdcp11-label"] = label.substr(0, 256);

  {
    std::lock_guard sl(slot.mu);
    CDC_TRY(check_can_create(slot, s, pub));
    CDC_TRY(check_can_create(slot, s, priv));
  }

  // The name: CKA_CDC_AZURE_KEY_NAME exactly, or from the label with the collision rule.
  const std::string asked = priv.string_or(CKA_CDC_AZURE_KEY_NAME, "");
  if (!asked.empty() && !mirror::valid_key_name(asked))
    return err(Errc::attribute_value_invalid, "CKA_CDC_AZURE_KEY_NAME '" + asked +
                                                  "' is not a Key Vault key name (1-127 of 0-9, a-z, A-Z, -)");
  std::string fallback = "key";
  if (auto* id = priv.find(CKA_ID); id && !id->empty()) fallback += "-" + to_hex(*id).substr(0, 32);
  const std::string base = asked.empty() ? mirror::key_name_from_label(label, fallback) : asked;
  auto kv = slot.mirror->connection()->vault();
  std::optional<azure::KeyBundle> made;
  for (unsigned n = 1; n <= 50 && !made; ++n) {
    const std::string name = mirror::candidate_name(base, n);
    auto existing = kv.get_key(name);
    const bool free = !existing && existing.error().kind == azure::ErrorKind::not_found;
    if (!free) {
      if (!existing) return fail(cloud::from_azure(existing.error()));
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
      return fail(cloud::from_azure(r.error()));
    }
  }
  if (!made) return err(Errc::function_failed, "no free key name found in the vault for '" + base + "'");
  log::info(kLog, "group '" + slot.cfg.name + "': created " + made->key.kid + " in Key Vault (cloud-native)");

  pub.set_bool(CKA_LOCAL, true);
  pub.set_ulong(CKA_KEY_GEN_MECHANISM, m.entry->type);
  priv.set_bool(CKA_LOCAL, true);
  priv.set_ulong(CKA_KEY_GEN_MECHANISM, m.entry->type);
  priv.set_bool(CKA_CDC_CLOUD_NATIVE, true);
  CDC_ASSIGN(auto pair, resident_pair(*made, std::move(pub), std::move(priv)));
  std::lock_guard sl(slot.mu);
  // The vault key stays if storing the local objects fails: the next sync brings it in.
  auto po = slot.backend->create_object(pair.first);
  if (!po) {
    log::error(kLog, "cloud-native key " + made->name() + " is in the vault but its public key object could not "
                     "be stored (" + po.error().message + "); a sync brings it in");
    return fail(std::move(po).error());
  }
  auto vo = slot.backend->create_key_reference(pair.second);
  if (!vo) {
    (void)slot.backend->destroy_object(po->uid);
    log::error(kLog, "cloud-native key " + made->name() + " is in the vault but its private key object could not "
                     "be stored (" + vo.error().message + "); a sync brings it in");
    return fail(std::move(vo).error());
  }
  const bool pt = po->attrs.bool_or(CKA_TOKEN, false);
  CK_OBJECT_HANDLE ph = add_object(slot, std::move(*po), pt, pt ? 0 : s.handle);
  CK_OBJECT_HANDLE vh = add_object(slot, std::move(*vo), true, 0);
  return std::make_pair(ph, vh);
}

// ---------------------------------------------------------------- sync

R<SyncReport> Library::sync_keys(CK_SESSION_HANDLE hs, const SyncProgress& progress) {
  CDC_ASSIGN(auto s, session(hs));
  Slot& slot = *s->slot;
  {
    std::lock_guard sl(slot.mu);
    if (slot.login != LoginState::user)
      return err(Errc::user_not_logged_in, "syncing keys needs the user to be logged in");
    if (!(s->flags & CKF_RW_SESSION)) return err(Errc::session_read_only, "syncing keys needs a R/W session");
  }
  if (!slot.mirror)
    return err(Errc::function_failed, "group '" + slot.cfg.name + "' cannot reach Azure: " + slot.mirror_unavailable);
  // Not while a mirror of this process runs: its half-finished import would look Azure-made.
  std::lock_guard one_at_a_time(slot.mirror_mu);
  auto kv = slot.mirror->connection()->vault();
  auto items = kv.list_keys();
  if (!items) return fail(cloud::from_azure(items.error()));
  std::erase_if(*items, [](const azure::KeyItem& it) { return it.tags.count("cdcp11-kek-for") > 0; });

  // The token's side: local keys by uid, Azure-resident objects by vault key name.
  struct Resident {
    CK_OBJECT_HANDLE priv = 0, pub = 0;
    std::string kid;
  };
  std::map<std::string, StoredObject> local;
  std::map<std::string, Resident> resident;
  std::set<std::string> mirrored_as;  // vault key names local keys are linked to
  {
    std::lock_guard sl(slot.mu);
    CDC_TRY(sync(slot));
    for (auto& [h, e] : slot.objects) {
      if (!e.token) continue;
      const auto& a = e.obj.attrs;
      const auto cls = a.ulong(CKA_CLASS).value_or(CKO_DATA);
      const bool az = a.ulong(CKA_CDC_ORIGIN).value_or(CDC_ORIGIN_LOCAL) == CDC_ORIGIN_AZURE;
      if (az && (cls == CKO_PRIVATE_KEY || cls == CKO_PUBLIC_KEY)) {
        auto& r = resident[name_of_kid(a.string_or(CKA_CDC_AZURE_KEY_ID, ""))];
        (cls == CKO_PRIVATE_KEY ? r.priv : r.pub) = h;
        if (cls == CKO_PRIVATE_KEY) r.kid = a.string_or(CKA_CDC_AZURE_KEY_ID, "");
      } else if (!az && (cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY)) {
        local[e.obj.uid] = e.obj;
        if (a.ulong(CKA_CDC_MIRROR_STATE).value_or(0) == CDC_MIRROR_STATE_MIRRORED)
          mirrored_as.insert(name_of_kid(a.string_or(CKA_CDC_AZURE_KEY_ID, "")));
      }
    }
  }

  SyncReport rep;
  auto skip = [&](const std::string& why) {
    ++rep.skipped;
    rep.notes.push_back(why);
    log::warn(kLog, "group '" + slot.cfg.name + "': " + why);
  };
  std::set<std::string> in_vault;
  std::optional<std::vector<std::pair<std::string, azure::PublicKeyMaterial>>> local_public;  // made when needed
  const std::size_t total = items->size();
  for (std::size_t i = 0; i < total; ++i) {
    if (progress) progress(i, total);
    const azure::KeyItem& it = (*items)[i];
    const std::string name = it.name();
    in_vault.insert(azure::to_lower(name));

    // 1. A key this token mirrored: link it when the public keys agree.
    if (auto l = local.find(tag(it.tags, "cdcp11-uid")); l != local.end()) {
      const auto& a = l->second.attrs;
      if (a.ulong(CKA_CDC_MIRROR_STATE).value_or(0) == CDC_MIRROR_STATE_MIRRORED &&
          name_of_kid(a.string_or(CKA_CDC_AZURE_KEY_ID, "")) == azure::to_lower(name)) {
        ++rep.unchanged;
        continue;
      }
      auto b = kv.get_key(name);
      if (!b) return fail(cloud::from_azure(b.error()));
      if (a.ulong(CKA_CLASS).value_or(0) == CKO_PRIVATE_KEY) {
        auto pc = slot.backend->public_components(l->second);
        if (!pc || !azure::public_material_matches(b->key, mirror::public_material(*pc))) {
          skip("vault key '" + name + "' is tagged as a copy of local key " + l->first +
               " but its public key differs; not linked");
          continue;
        }
      }
      record_mirror(slot, l->first, CDC_MIRROR_STATE_MIRRORED, b->key.kid, "");
      log::info(kLog, "group '" + slot.cfg.name + "': linked local key " + l->first + " to " + b->key.kid);
      ++rep.linked;
      continue;
    }

    if (mirrored_as.count(azure::to_lower(name))) {
      ++rep.unchanged;
      continue;
    }

    // 2. Already here as an Azure-resident key: follow its current version.
    auto rit = resident.find(azure::to_lower(name));
    if (rit != resident.end() && rit->second.priv) {
      auto b = kv.get_key(name);
      if (!b) return fail(cloud::from_azure(b.error()));
      if (b->key.kid == rit->second.kid) {
        ++rep.unchanged;
        continue;
      }
      auto mat_pub = cloud::material_attrs(b->key, CKO_PUBLIC_KEY);
      auto mat_priv = cloud::material_attrs(b->key, CKO_PRIVATE_KEY);
      if (!mat_pub || !mat_priv) {
        skip("vault key '" + name + "': " + (mat_pub ? mat_priv.error() : mat_pub.error()).message);
        continue;
      }
      std::lock_guard sl(slot.mu);
      for (auto [h, mat] : {std::pair{rit->second.priv, &*mat_priv}, std::pair{rit->second.pub, &*mat_pub}}) {
        auto e = slot.objects.find(h);
        if (!h || e == slot.objects.end()) continue;
        AttrMap a = e->second.obj.attrs;
        for (auto& [t, v] : *mat) a.set(t, v);
        a.set_string(CKA_CDC_AZURE_KEY_ID, b->key.kid);
        CDC_TRY(slot.backend->update_object(e->second.obj.uid, a));
        slot.index.remove(h, e->second.obj.attrs);
        e->second.obj.attrs = std::move(a);
        slot.index.add(h, e->second.obj.attrs);
      }
      log::info(kLog, "group '" + slot.cfg.name + "': " + name + " moved to version " + b->version());
      ++rep.updated;
      continue;
    }

    // 3. New to the token. A local key with this public key (imported by hand, e.g. an offline
    //    BYOK file) is linked; otherwise it is a key made in Azure (or mirrored from a key this
    //    token no longer has) and comes in as an Azure-resident key.
    auto b = kv.get_key(name);
    if (!b) return fail(cloud::from_azure(b.error()));
    if (!local_public) {
      local_public.emplace();
      for (auto& [uid, obj] : local)
        if (obj.attrs.ulong(CKA_CLASS).value_or(0) == CKO_PRIVATE_KEY)
          if (auto pc = slot.backend->public_components(obj)) local_public->emplace_back(uid, mirror::public_material(*pc));
    }
    auto same = std::find_if(local_public->begin(), local_public->end(),
                             [&](const auto& lp) { return azure::public_material_matches(b->key, lp.second); });
    if (same != local_public->end()) {
      record_mirror(slot, same->first, CDC_MIRROR_STATE_MIRRORED, b->key.kid, "");
      log::info(kLog, "group '" + slot.cfg.name + "': linked local key " + same->first + " to " + b->key.kid +
                          " (same public key)");
      ++rep.linked;
      continue;
    }
    AttrMap pub, priv;
    const std::string label = tag(b->tags, "cdcp11-label").empty() ? name : tag(b->tags, "cdcp11-label");
    const Bytes id = key_id_for(*slot.backend, *b);
    for (AttrMap* a : {&pub, &priv}) {
      a->set_string(CKA_LABEL, label);
      a->set(CKA_ID, id);
      a->set_bool(CKA_TOKEN, true);
      a->set_bool(CKA_LOCAL, false);
      cloud::usage_from_ops(b->key.key_ops, a == &pub ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY, *a);
    }
    pub.set_bool(CKA_PRIVATE, false);
    auto pair = resident_pair(*b, std::move(pub), std::move(priv));
    if (!pair) {
      skip("vault key '" + name + "' is not brought in: " + pair.error().message);
      continue;
    }
    std::lock_guard sl(slot.mu);
    CDC_ASSIGN(auto po, slot.backend->create_object(pair->first));
    auto vo = slot.backend->create_key_reference(pair->second);
    if (!vo) {
      (void)slot.backend->destroy_object(po.uid);
      return fail(std::move(vo).error());
    }
    add_object(slot, std::move(po), true, 0);
    add_object(slot, std::move(*vo), true, 0);
    log::info(kLog, "group '" + slot.cfg.name + "': brought in " + b->key.kid + " as an Azure-resident key");
    ++rep.added;
  }

  // 4. Azure-resident keys the vault no longer has (deleted there): nothing of them is left to use.
  for (auto& [name, r] : resident) {
    if (in_vault.count(name)) continue;
    std::lock_guard sl(slot.mu);
    for (CK_OBJECT_HANDLE h : {r.priv, r.pub}) {
      auto e = slot.objects.find(h);
      if (!h || e == slot.objects.end()) continue;
      CDC_TRY(slot.backend->destroy_object(e->second.obj.uid));
      remove_object(slot, h);
    }
    log::info(kLog, "group '" + slot.cfg.name + "': removed Azure-resident key " + name + " (gone from the vault)");
    ++rep.removed;
  }
  if (progress) progress(total, total);
  return rep;
}

}  // namespace cdcp11::core
