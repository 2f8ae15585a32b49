// Mirroring keys into the group's Key Vault: when, and recording the outcome on the object.
#include <functional>

#include "cdcp11/cdcp11.h"
#include "common/log.h"
#include "core/azure_link.h"
#include "core/cloud/key_attrs.h"
#include "core/library.h"

namespace cdcp11::core {

namespace {
constexpr const char* kLog = "mirror";
}

void Library::open_mirror(Slot& slot) {
  const GroupConfig& g = slot.cfg;
  if (!g.azure) {
    slot.mirror_unavailable = g.azure_error.empty() ? "the group has no Azure connection" : g.azure_error;
    return;
  }
  if (!g.azure->tls.validate_host)
    log::warn(kLog, "group '" + g.name + "': TLS host name validation is OFF for its Azure connection");
  if (g.azure->vault_name.empty()) {
    slot.mirror_unavailable = "no vault is chosen for group '" + g.name + "'";
    return;
  }
  auto conn = open_azure(g);
  if (!conn) {
    slot.mirror_unavailable = conn.error();
    log::error(kLog, conn.error());
    return;
  }
  auto journal = mirror::Journal::open(g.token.dir + ".mirror");
  if (!journal) {
    slot.mirror_unavailable = journal.error().message;
    log::error(kLog, "group '" + g.name + "': " + journal.error().message);
    return;
  }
  slot.mirror = std::make_unique<mirror::Engine>(g.name, *g.azure, std::move(*conn), std::move(*journal), g.mirror);
  slot.worker = std::make_unique<mirror::Worker>();
}

bool Library::wants_mirror(const Slot& slot, const AttrMap& a) const {
  const auto cls = a.ulong(CKA_CLASS).value_or(CKO_DATA);
  if (cls != CKO_PRIVATE_KEY && cls != CKO_SECRET_KEY) return false;
  if (!a.bool_or(CKA_TOKEN, false)) return false;
  if (cloud::azure_resident(a)) return false;  // it lives in the vault already
  if (a.has(CKA_CDC_MIRROR)) return a.bool_or(CKA_CDC_MIRROR, false);
  return slot.cfg.mirror.trigger == MirrorTrigger::on_generate;
}

R<void> Library::precheck_mirror(const Slot& slot, const AttrMap& a, std::size_t rsa_bits) const {
  if (!wants_mirror(slot, a)) return {};
  if (!slot.mirror)
    return err(Errc::function_failed, "group '" + slot.cfg.name + "' mirrors this key but cannot reach Azure: " +
                                          slot.mirror_unavailable);
  CDC_TRY(mirror::Engine::check_target(slot.mirror->azure_config(), a.ulong(CKA_CLASS).value_or(0),
                                       a.ulong(CKA_KEY_TYPE).value_or(0), rsa_bits));
  // The creating functions know no CKR_KEY_UNEXTRACTABLE: for them the template and the group's
  // policy are what conflict.
  if (auto plain = slot.mirror->plain_export_of_non_extractable(a); !plain)
    return err(Errc::template_inconsistent, plain.error().message);
  return {};
}

namespace {

// Changes attributes of the key with this uid, in the token and in the slot's view of it.
R<void> update_key(Slot& slot, const std::string& uid, const std::function<void(AttrMap&)>& change) {
  std::lock_guard sl(slot.mu);
  auto it = slot.by_uid.find(uid);
  if (it == slot.by_uid.end()) return err(Errc::key_handle_invalid, "the key is gone");
  auto& e = slot.objects[it->second];
  AttrMap a = e.obj.attrs;
  change(a);
  CDC_TRY(slot.backend->update_object(uid, a));
  slot.index.remove(it->second, e.obj.attrs);
  e.obj.attrs = std::move(a);
  slot.index.add(it->second, e.obj.attrs);
  return {};
}

}  // namespace

void Library::record_mirror(Slot& slot, const std::string& uid, CK_ULONG state, const std::string& kid,
                            const std::string& error) {
  auto r = update_key(slot, uid, [&](AttrMap& a) {
    a.set_ulong(CKA_CDC_MIRROR_STATE, state);
    if (!kid.empty() || state != CDC_MIRROR_STATE_FAILED) a.set_string(CKA_CDC_AZURE_KEY_ID, kid);
    a.set_string(CKA_CDC_MIRROR_ERROR, error);
  });
  if (!r && r.error().code != Errc::key_handle_invalid)
    log::error(kLog, "recording the mirror state of " + uid + " failed: " + r.error().message);
}

R<void> Library::run_mirror(Slot& slot, CK_OBJECT_HANDLE h) {
  std::lock_guard one_at_a_time(slot.mirror_mu);
  StoredObject key;
  {
    std::lock_guard sl(slot.mu);
    auto it = slot.objects.find(h);
    if (it == slot.objects.end()) return err(Errc::key_handle_invalid, "the key is gone");
    key = it->second.obj;
  }
  if (!slot.mirror) {
    std::string why = "group '" + slot.cfg.name + "' cannot mirror: " + slot.mirror_unavailable;
    record_mirror(slot, key.uid, CDC_MIRROR_STATE_FAILED, "", why);
    return err(Errc::function_failed, why);
  }
  auto plain = slot.mirror->plain_export_of_non_extractable(key.attrs);
  if (!plain) {
    record_mirror(slot, key.uid, CDC_MIRROR_STATE_FAILED, "", plain.error().message);
    return fail(std::move(plain).error());
  }
  if (*plain && key.attrs.bool_or(CKA_NEVER_EXTRACTABLE, true)) {
    // Written before the key material leaves: from here on it has been extractable.
    if (auto r = update_key(slot, key.uid, [](AttrMap& a) { a.set_bool(CKA_NEVER_EXTRACTABLE, false); }); !r) {
      const std::string why = "the key's CKA_NEVER_EXTRACTABLE could not be cleared before its plain export: " +
                              r.error().message;
      record_mirror(slot, key.uid, CDC_MIRROR_STATE_FAILED, "", why);
      return err(Errc::device_error, why);
    }
    key.attrs.set_bool(CKA_NEVER_EXTRACTABLE, false);
  }
  record_mirror(slot, key.uid, CDC_MIRROR_STATE_PENDING, "", "");
  // No slot lock is held here: the engine talks to Azure and to the backend (thread-safe).
  auto r = slot.mirror->mirror(*slot.backend, key);
  if (!r) {
    auto j = slot.mirror->journal().get(key.uid);
    const bool imported = j && *j && (*j)->step == mirror::Step::imported;
    record_mirror(slot, key.uid, imported ? CDC_MIRROR_STATE_MIRRORED : CDC_MIRROR_STATE_FAILED,
                  imported ? (*j)->key_kid : "", r.error().message);
    return fail(std::move(r).error());
  }
  // Mirrored; an unfinished KEK cleanup stays visible in CKA_CDC_MIRROR_ERROR until it is done.
  record_mirror(slot, key.uid, CDC_MIRROR_STATE_MIRRORED, r->key_kid, r->cleanup_pending ? r->note : "");
  return {};
}

R<void> Library::after_new_key(Session& s, CK_OBJECT_HANDLE h) {
  Slot& slot = *s.slot;
  {
    std::lock_guard sl(slot.mu);
    auto it = slot.objects.find(h);
    if (it == slot.objects.end() || !wants_mirror(slot, it->second.obj.attrs)) return {};
  }
  if (slot.cfg.mirror.mode == MirrorMode::async && slot.worker && slot.mirror) {
    StoredObject key;
    {
      std::lock_guard sl(slot.mu);
      key = slot.objects[h].obj;
    }
    // Journaled before C_Generate* returns: if this process exits first, the next login resumes it.
    if (auto r = slot.mirror->enqueue(key); !r) {
      record_mirror(slot, key.uid, CDC_MIRROR_STATE_FAILED, "", r.error().message);
      return fail(std::move(r).error());
    }
    record_mirror(slot, key.uid, CDC_MIRROR_STATE_PENDING, "", "");
    slot.worker->submit([this, &slot, h] { (void)run_mirror(slot, h); });
    return {};
  }
  return run_mirror(slot, h);
}

void Library::resume_mirrors(Slot& slot) {
  if (!slot.mirror || !slot.worker) return;
  auto jobs = slot.mirror->journal().unfinished();
  if (!jobs) {
    log::error(kLog, "group '" + slot.cfg.name + "': reading the mirror journal failed: " + jobs.error().message);
    return;
  }
  for (auto& job : *jobs) {
    CK_OBJECT_HANDLE h = 0;
    {
      std::lock_guard sl(slot.mu);
      if (auto it = slot.by_uid.find(job.object_uid); it != slot.by_uid.end()) h = it->second;
    }
    if (!h) continue;  // the key is gone (or not visible): nothing to mirror
    log::info(kLog, "group '" + slot.cfg.name + "': resuming the mirror of " + job.object_uid + " (at step " +
                        mirror::step_name(job.step) + ")");
    slot.worker->submit([this, &slot, h] { (void)run_mirror(slot, h); });
  }
}

void Library::apply_destroy_policy(Slot& slot, const std::string& kid) {
  const OnDestroy policy = slot.cfg.mirror.on_destroy;
  if (policy == OnDestroy::keep || kid.empty() || !slot.mirror) return;
  auto id = azure::parse_key_id(kid);
  if (!id) return;
  auto kv = slot.mirror->connection()->vault();
  std::string what;
  if (policy == OnDestroy::disable) {
    azure::UpdateKeyOptions o;
    o.attributes.enabled = false;
    auto r = kv.update_key(id->name, "", o);
    what = r ? "" : r.error().describe();
  } else {
    auto r = kv.delete_key(id->name);
    what = r ? "" : r.error().describe();
  }
  const char* verb = policy == OnDestroy::disable ? "disabled" : "deleted";
  if (what.empty()) log::info(kLog, "group '" + slot.cfg.name + "': the Azure copy " + id->name + " was " + verb);
  else log::warn(kLog, "group '" + slot.cfg.name + "': the local key is destroyed but its Azure copy " + id->name +
                         " could not be " + verb + ": " + what);
}

R<std::string> Library::mirrorable_key(Slot& slot, const Session& s, CK_OBJECT_HANDLE h) {
  std::lock_guard sl(slot.mu);
  CDC_TRY(sync(slot));
  CDC_ASSIGN(ObjectEntry * e, visible_object(slot, s, h, Errc::key_handle_invalid));
  const auto cls = e->obj.attrs.ulong(CKA_CLASS).value_or(0);
  if ((cls != CKO_PRIVATE_KEY && cls != CKO_SECRET_KEY) || !e->token)
    return err(Errc::key_handle_invalid, "only private and secret token keys are mirrored");
  if (cloud::azure_resident(e->obj.attrs))
    return err(Errc::key_function_not_permitted, "the key lives in Key Vault only; there is no copy to mirror or "
                                                 "link (a sync follows changes there)");
  return e->obj.uid;
}

R<void> Library::mirror_key(CK_SESSION_HANDLE hs, CK_OBJECT_HANDLE h) {
  CDC_ASSIGN(auto s, session(hs));
  Slot& slot = *s->slot;
  CDC_TRY(mirrorable_key(slot, *s, h));
  return run_mirror(slot, h);
}

R<std::pair<CK_ULONG, std::string>> Library::mirror_status(CK_SESSION_HANDLE hs, CK_OBJECT_HANDLE h) {
  CDC_ASSIGN(auto s, session(hs));
  Slot& slot = *s->slot;
  std::lock_guard sl(slot.mu);
  CDC_TRY(sync(slot));
  CDC_ASSIGN(ObjectEntry * e, visible_object(slot, *s, h, Errc::key_handle_invalid));
  return std::make_pair(e->obj.attrs.ulong(CKA_CDC_MIRROR_STATE).value_or(CDC_MIRROR_STATE_NONE),
                        e->obj.attrs.string_or(CKA_CDC_AZURE_KEY_ID, ""));
}

R<void> Library::set_mirror_link(CK_SESSION_HANDLE hs, CK_OBJECT_HANDLE h, const std::string& kid) {
  CDC_ASSIGN(auto s, session(hs));
  Slot& slot = *s->slot;
  std::lock_guard one_at_a_time(slot.mirror_mu);  // no mirror of this key runs meanwhile
  CDC_ASSIGN(const std::string uid, mirrorable_key(slot, *s, h));
  if (!slot.mirror)
    return err(Errc::function_failed, "group '" + slot.cfg.name + "' has no mirror: " + slot.mirror_unavailable);
  auto& journal = slot.mirror->journal();
  if (kid.empty()) {
    CDC_TRY(journal.remove(uid));
  } else {
    auto id = azure::parse_key_id(kid);
    if (!id || id->version.empty()) return err(Errc::arguments_bad, "'" + kid + "' is not a versioned Azure key id");
    CDC_ASSIGN(auto found, journal.get(uid));
    mirror::Job job = found ? std::move(*found) : mirror::Job{};
    job.object_uid = uid;
    job.azure_name = id->name;
    job.key_kid = kid;
    job.step = mirror::Step::done;
    job.error.clear();
    CDC_TRY(journal.put(job));
  }
  const CK_ULONG state = kid.empty() ? CDC_MIRROR_STATE_NONE : CDC_MIRROR_STATE_MIRRORED;
  record_mirror(slot, uid, state, kid, "");
  // record_mirror logs a failed write instead of returning it: check that the record took.
  std::lock_guard sl(slot.mu);
  auto it = slot.objects.find(h);
  if (it == slot.objects.end() || it->second.obj.attrs.ulong(CKA_CDC_MIRROR_STATE) != state ||
      it->second.obj.attrs.string_or(CKA_CDC_AZURE_KEY_ID, "") != kid)
    return err(Errc::device_error, "the key's mirror state could not be written to the token (see the log)");
  return {};
}

}  // namespace cdcp11::core
