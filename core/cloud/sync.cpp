#include "core/cloud/sync.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "cdcp11/cdcp11.h"
#include "azure/util.h"
#include "common/log.h"
#include "core/cloud/jwk.h"
#include "core/cloud/key_attrs.h"
#include "core/cloud/resident.h"
#include "core/cloud/vault_ops.h"
#include "core/mirror/engine.h"
#include "core/mirror/rotation.h"
#include "core/mirror/service.h"
#include "core/session/session.h"

namespace cdcp11::core::cloud {

namespace {
constexpr const char* kLog = "sync";
// A version created this recently may share its creation second with a newer one; its time is
// not kept, so the next sync reads the key once more.
constexpr std::int64_t kSettledSeconds = 2;

// A key version's creation time, when it can tell versions apart. The list answer carries each
// key's current version's `created` (not its version id): a time equal to the one kept on the
// token's private key object means the token has that version, and the key is not read again.
std::optional<CK_ULONG> version_created(const azure::KeyAttributes& a) {
  if (!a.created || *a.created < 0 || *a.created > mirror::now_seconds() - kSettledSeconds) return std::nullopt;
  return static_cast<CK_ULONG>(*a.created);
}

// What a skipped vault key looked like, from the list answer: its current version's creation and
// last update times (settled, as above), the tags sync decides by and whether the key its
// cdcp11-uid tag names is here. Equal stamps: nothing sync looks at changed. Empty: not comparable.
std::string skip_stamp(const azure::KeyItem& it, bool tagged_key_here) {
  const auto& a = it.attributes;
  const auto latest = mirror::now_seconds() - kSettledSeconds;
  if (!version_created(a) || !a.updated || *a.updated > latest) return {};
  return std::to_string(*a.created) + "/" + std::to_string(*a.updated) + "/" + tag(it.tags, "cdcp11-uid") + "/" +
         tag(it.tags, "cdcp11-kcv") + "/" + (tagged_key_here ? "here" : "absent");
}
}  // namespace

R<SyncReport> sync_keys(Token& token, const Session& s, const SyncProgress& progress) {
  if (token.login_state() != LoginState::user)
    return err(Errc::user_not_logged_in, "syncing keys needs the user to be logged in");
  if (!s.read_write()) return err(Errc::session_read_only, "syncing keys needs a R/W session");
  auto* svc = token.mirror();
  auto conn = token.vault_connection();
  if (!conn || !svc)
    return err(Errc::function_failed, "group '" + token.name() + "' cannot reach Azure: " + token.azure_unavailable());
  // Not while a mirror of this process runs: its half-finished import would look Azure-made.
  auto one_at_a_time = svc->exclusive();
  auto kv = conn->vault();
  auto items = kv.list_keys();
  if (!items) return fail(from_azure(items.error()));
  std::erase_if(*items, [](const azure::KeyItem& it) { return it.tags.count("cdcp11-kek-for") > 0; });

  // The token's side: local keys by uid, Azure-resident objects by vault key name.
  struct Resident {
    CK_OBJECT_HANDLE priv = 0, pub = 0;
    std::string kid;
    std::string priv_uid;
    std::optional<CK_ULONG> created;  // of the version held (CKA_CDC_VERSION_SINCE)
  };
  std::map<std::string, StoredObject> local;
  std::map<std::string, Resident> resident;
  std::set<std::string> mirrored_as;  // vault key names local keys are linked to
  {
    auto t = token.lock();
    CDC_TRY(t.refresh());
    for (auto& [h, e] : t.cache().all()) {
      if (!e.token) continue;
      const auto& a = e.obj.attrs;
      const auto cls = a.ulong(CKA_CLASS).value_or(CKO_DATA);
      const bool az = a.ulong(CKA_CDC_ORIGIN).value_or(CDC_ORIGIN_LOCAL) == CDC_ORIGIN_AZURE;
      if (az && (cls == CKO_PRIVATE_KEY || cls == CKO_PUBLIC_KEY)) {
        auto& r = resident[name_of_kid(a.string_or(CKA_CDC_AZURE_KEY_ID, ""))];
        (cls == CKO_PRIVATE_KEY ? r.priv : r.pub) = h;
        if (cls == CKO_PRIVATE_KEY) {
          r.kid = a.string_or(CKA_CDC_AZURE_KEY_ID, "");
          r.priv_uid = e.obj.uid;
          r.created = a.ulong(CKA_CDC_VERSION_SINCE);
        }
      } else if (!az && (cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY)) {
        local[e.obj.uid] = e.obj;
        if (a.ulong(CKA_CDC_MIRROR_STATE).value_or(0) == CDC_MIRROR_STATE_MIRRORED)
          mirrored_as.insert(name_of_kid(a.string_or(CKA_CDC_AZURE_KEY_ID, "")));
      }
    }
  }

  // Keys an earlier sync skipped are not read again while their stamp holds.
  mirror::Journal* journal = svc->engine() ? &svc->engine()->journal() : nullptr;
  mirror::Journal::SyncSkips skipped_before, skipped_now;
  if (journal) {
    if (auto k = journal->sync_skips()) skipped_before = std::move(*k);
    else log::warn(kLog, "group '" + token.name() + "': " + k.error().message + "; skipped keys are read again");
  }
  std::string lname, stamp;  // of the key at hand

  SyncReport rep;
  auto skip = [&](const std::string& why) {
    ++rep.skipped;
    rep.notes.push_back(why);
    log::warn(kLog, "group '" + token.name() + "': " + why);
    if (!stamp.empty()) skipped_now[lname] = stamp;
  };
  std::set<std::string> in_vault;
  // The local private keys' public parts, made when first needed.
  struct LocalPublic {
    std::string uid;
    azure::PublicKeyMaterial material;
  };
  std::optional<std::vector<LocalPublic>> local_public;
  auto local_keys = [&]() -> const std::vector<LocalPublic>& {
    if (!local_public) {
      local_public.emplace();
      for (auto& [uid, obj] : local)
        if (obj.attrs.ulong(CKA_CLASS).value_or(0) == CKO_PRIVATE_KEY)
          if (auto pc = public_jwk_of(token.backend(), obj)) local_public->push_back({uid, std::move(*pc)});
    }
    return *local_public;
  };
  const std::size_t total = items->size();
  for (std::size_t i = 0; i < total; ++i) {
    if (progress) progress(i, total);
    const azure::KeyItem& it = (*items)[i];
    const std::string name = it.name();
    lname = azure::to_lower(name);
    in_vault.insert(lname);
    stamp = skip_stamp(it, local.count(tag(it.tags, "cdcp11-uid")) > 0);
    // Asked before each GET: a key an earlier sync skipped, unchanged since, is skipped again unread.
    auto skipped_again = [&] {
      auto was = skipped_before.find(lname);
      if (stamp.empty() || was == skipped_before.end() || was->second != stamp) return false;
      ++rep.skipped;
      rep.notes.push_back("vault key '" + name + "': skipped, unchanged since a sync skipped it");
      skipped_now[lname] = stamp;
      return true;
    };

    // 1. A key this token mirrored: link it when the public keys agree.
    if (auto l = local.find(tag(it.tags, "cdcp11-uid")); l != local.end()) {
      const auto& a = l->second.attrs;
      if (a.ulong(CKA_CDC_MIRROR_STATE).value_or(0) == CDC_MIRROR_STATE_MIRRORED &&
          name_of_kid(a.string_or(CKA_CDC_AZURE_KEY_ID, "")) == azure::to_lower(name)) {
        ++rep.unchanged;
        continue;
      }
      if (skipped_again()) continue;
      // A secret key has no public key to compare: its check value, tagged by the mirror, is
      // compared instead (before any GET). Keys mirrored before that tag existed are linked as before.
      if (a.ulong(CKA_CLASS).value_or(0) == CKO_SECRET_KEY) {
        if (auto why = mirror::check_value_mismatch(a, it.tags); !why.empty()) {
          skip("vault key '" + name + "' is tagged as a copy of local key " + l->first + " but " + why + "; not linked");
          continue;
        }
      }
      auto b = kv.get_key(name);
      if (!b) return fail(from_azure(b.error()));
      if (a.ulong(CKA_CLASS).value_or(0) == CKO_PRIVATE_KEY) {
        auto pc = public_jwk_of(token.backend(), l->second);
        if (!pc || !azure::public_material_matches(b->key, *pc)) {
          skip("vault key '" + name + "' is tagged as a copy of local key " + l->first +
               " but its public key differs; not linked");
          continue;
        }
      }
      svc->record(l->first, CDC_MIRROR_STATE_MIRRORED, b->key.kid, "");
      log::info(kLog, "group '" + token.name() + "': linked local key " + l->first + " to " + b->key.kid);
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
      if (rit->second.created && rit->second.created == version_created(it.attributes)) {
        ++rep.unchanged;
        continue;
      }
      if (skipped_again()) continue;
      auto b = kv.get_key(name);
      if (!b) return fail(from_azure(b.error()));
      if (b->key.kid == rit->second.kid) {
        // Same version; its creation time is kept now (keys brought in before it was) for the next sync.
        if (auto c = version_created(b->attributes))
          CDC_TRY(svc->update_key(rit->second.priv_uid, [&](AttrMap& a) { a.set_ulong(CKA_CDC_VERSION_SINCE, *c); }));
        ++rep.unchanged;
        continue;
      }
      auto mat_pub = material_attrs(b->key, CKO_PUBLIC_KEY);
      auto mat_priv = material_attrs(b->key, CKO_PRIVATE_KEY);
      if (!mat_pub || !mat_priv) {
        skip("vault key '" + name + "': " + (mat_pub ? mat_priv.error() : mat_pub.error()).message);
        continue;
      }
      auto t = token.lock();
      for (auto [h, mat] : {std::pair{rit->second.priv, &*mat_priv}, std::pair{rit->second.pub, &*mat_pub}}) {
        Object* o = h ? t.cache().get(h) : nullptr;
        if (!o) continue;
        AttrMap a = o->attrs();
        for (auto& [type, v] : *mat) a.set(type, v);
        a.set_string(CKA_CDC_AZURE_KEY_ID, b->key.kid);
        if (auto c = version_created(b->attributes); c && h == rit->second.priv) a.set_ulong(CKA_CDC_VERSION_SINCE, *c);
        else if (h == rit->second.priv) a.erase(CKA_CDC_VERSION_SINCE);
        CDC_TRY(t.backend().update_object(o->obj.uid, a));
        t.cache().set_attrs(h, std::move(a));
      }
      log::info(kLog, "group '" + token.name() + "': " + name + " moved to version " + b->version());
      ++rep.updated;
      continue;
    }

    // 3. New to the token. A local key with this public key (imported by hand, e.g. an offline
    //    BYOK file) is linked; otherwise it is a key made in Azure (or mirrored from a key this
    //    token no longer has) and comes in as an Azure-resident key.
    if (skipped_again()) continue;
    auto b = kv.get_key(name);
    if (!b) return fail(from_azure(b.error()));
    const auto& keys = local_keys();
    auto same = std::find_if(keys.begin(), keys.end(),
                             [&](const LocalPublic& lp) { return azure::public_material_matches(b->key, lp.material); });
    if (same != keys.end()) {
      svc->record(same->uid, CDC_MIRROR_STATE_MIRRORED, b->key.kid, "");
      log::info(kLog, "group '" + token.name() + "': linked local key " + same->uid + " to " + b->key.kid +
                          " (same public key)");
      ++rep.linked;
      continue;
    }
    AttrMap pub, priv;
    const std::string label = tag(b->tags, "cdcp11-label").empty() ? name : tag(b->tags, "cdcp11-label");
    const Bytes id = key_id_for(token.backend(), *b);
    for (AttrMap* a : {&pub, &priv}) {
      a->set_string(CKA_LABEL, label);
      a->set(CKA_ID, id);
      a->set_bool(CKA_TOKEN, true);
      a->set_bool(CKA_LOCAL, false);
      usage_from_ops(b->key.key_ops, a == &pub ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY, *a);
    }
    pub.set_bool(CKA_PRIVATE, false);
    if (auto c = version_created(b->attributes)) priv.set_ulong(CKA_CDC_VERSION_SINCE, *c);
    auto pair = resident_pair(*b, std::move(pub), std::move(priv));
    if (!pair) {
      skip("vault key '" + name + "' is not brought in: " + pair.error().message);
      continue;
    }
    auto t = token.lock();
    CDC_ASSIGN(auto po, t.backend().create_object(pair->first));
    auto vo = t.backend().create_key_reference(pair->second);
    if (!vo) {
      (void)t.backend().destroy_object(po.uid);
      return fail(std::move(vo).error());
    }
    t.add(std::move(po), true, 0);
    t.add(std::move(*vo), true, 0);
    log::info(kLog, "group '" + token.name() + "': brought in " + b->key.kid + " as an Azure-resident key");
    ++rep.added;
  }

  // 4. Azure-resident keys the vault no longer has (deleted there): nothing of them is left to use.
  for (auto& [name, r] : resident) {
    if (in_vault.count(name)) continue;
    auto t = token.lock();
    for (CK_OBJECT_HANDLE h : {r.priv, r.pub}) {
      Object* o = h ? t.cache().get(h) : nullptr;
      if (!o) continue;
      CDC_TRY(t.backend().destroy_object(o->obj.uid));
      t.cache().remove(h);
    }
    log::info(kLog, "group '" + token.name() + "': removed Azure-resident key " + name + " (gone from the vault)");
    ++rep.removed;
  }
  if (journal && skipped_now != skipped_before)
    if (auto w = journal->set_sync_skips(skipped_now); !w)
      log::warn(kLog, "group '" + token.name() + "': " + w.error().message + "; the next sync reads skipped keys again");
  if (progress) progress(total, total);
  return rep;
}

}  // namespace cdcp11::core::cloud
