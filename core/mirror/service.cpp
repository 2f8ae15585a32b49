#include "core/mirror/service.h"

#include <algorithm>
#include <system_error>
#include <thread>

#include "cdcp11/cdcp11.h"
#include "common/log.h"
#include "core/cloud/key_attrs.h"
#include "core/mirror/byok.h"
#include "core/mirror/rotation.h"
#include "core/session/session.h"
#include "core/token/token.h"

namespace cdcp11::core::mirror {

namespace {
constexpr const char* kLog = "mirror";
}

std::unique_ptr<Service> Service::open(Token& token) {
  std::unique_ptr<Service> s(new Service(token));
  const GroupConfig& g = token.config();
  auto conn = token.vault_connection();
  if (!conn) {
    s->unavailable_ = token.azure_unavailable();
    return s;
  }
  try {
    auto journal = Journal::open(g.token.dir + ".mirror");
    if (!journal) {
      s->unavailable_ = journal.error().message;
      log::error(kLog, "group '" + g.name + "': " + journal.error().message);
      return s;
    }
    s->engine_ = std::make_unique<Engine>(g.name, *g.azure, std::move(conn), std::move(*journal), g.mirror);
    s->worker_ = std::make_unique<Worker>(kParallelMirrors);
  } catch (const std::exception& e) {
    s->engine_.reset();
    s->unavailable_ = std::string("the mirror could not be opened: ") + e.what();
    log::error(kLog, "group '" + g.name + "': " + s->unavailable_);
  }
  return s;
}

Service::~Service() { worker_.reset(); }

bool Service::wants(const AttrMap& a) const {
  const auto cls = a.ulong(CKA_CLASS).value_or(CKO_DATA);
  if (cls != CKO_PRIVATE_KEY && cls != CKO_SECRET_KEY) return false;
  if (!a.bool_or(CKA_TOKEN, false)) return false;
  if (cloud::azure_resident(a)) return false;  // it lives in the vault already
  if (a.has(CKA_CDC_MIRROR)) return a.bool_or(CKA_CDC_MIRROR, false);
  return token_.config().mirror.trigger == MirrorTrigger::on_generate;
}

R<void> Service::before_key_made(const AttrMap& a, std::size_t rsa_bits) {
  if (!wants(a)) return {};
  if (!engine_)
    return err(Errc::function_failed,
               "group '" + token_.name() + "' mirrors this key but cannot reach Azure: " + unavailable_);
  CDC_TRY(Engine::check_target(engine_->azure_config(), a.ulong(CKA_CLASS).value_or(0),
                               a.ulong(CKA_KEY_TYPE).value_or(0), rsa_bits));
  // The creating functions know no CKR_KEY_UNEXTRACTABLE: for them the template and the group's
  // policy are what conflict.
  const bool standard = engine_->azure_config().vault_type == VaultType::standard;
  if (auto can = check_exportable(token_.backend(), token_.name(), StoredObject{{}, a}, standard,
                                  token_.config().mirror.allow_plain_export_from_hsm);
      !can)
    return err(Errc::template_inconsistent, can.error().message);
  if (auto plain = engine_->plain_export_of_non_extractable(a); !plain)
    return err(Errc::template_inconsistent, plain.error().message);
  return {};
}

R<void> Service::update_key(const std::string& uid, const std::function<void(AttrMap&)>& change) {
  auto t = token_.lock();
  auto h = t.cache().handle_of(uid);
  if (!h) return err(Errc::key_handle_invalid, "the key is gone");
  AttrMap a = t.cache().get(*h)->attrs();
  change(a);
  CDC_TRY(t.backend().update_object(uid, a));
  t.cache().set_attrs(*h, std::move(a));
  return {};
}

void Service::record(const std::string& uid, CK_ULONG state, const std::string& kid, const std::string& error) {
  auto r = update_key(uid, [&](AttrMap& a) {
    a.set_ulong(CKA_CDC_MIRROR_STATE, state);
    if (!kid.empty() || state != CDC_MIRROR_STATE_FAILED) a.set_string(CKA_CDC_AZURE_KEY_ID, kid);
    a.set_string(CKA_CDC_MIRROR_ERROR, error);
    // A mirrored key is a version (rotation); its age counts from its first mirror.
    if (state == CDC_MIRROR_STATE_MIRRORED && !a.has(CKA_CDC_VERSION_SINCE)) {
      a.set_ulong(CKA_CDC_VERSION_SINCE, static_cast<CK_ULONG>(now_seconds()));
      if (!a.has(CKA_CDC_KEY_VERSION)) a.set_ulong(CKA_CDC_KEY_VERSION, 1);
      if (!a.has(CKA_CDC_VERSION_STATE)) a.set_ulong(CKA_CDC_VERSION_STATE, CDC_VERSION_CURRENT);
    }
  });
  if (!r && r.error().code != Errc::key_handle_invalid)
    log::error(kLog, "recording the mirror state of " + uid + " failed: " + r.error().message);
}

std::unique_lock<std::mutex> Service::exclusive() {
  std::unique_lock lk(mu_);
  idle_.wait(lk, [this] { return running_ == 0; });
  return lk;
}

R<void> Service::run(CK_OBJECT_HANDLE h) {
  {
    std::lock_guard lk(mu_);  // waits while exclusive() is held
    ++running_;
  }
  struct Done {
    Service* s;
    ~Done() {
      {
        std::lock_guard lk(s->mu_);
        --s->running_;
      }
      s->idle_.notify_all();
    }
  } done{this};
  StoredObject key;
  {
    auto t = token_.lock();
    Object* o = t.cache().get(h);
    if (!o) return err(Errc::key_handle_invalid, "the key is gone");
    key = o->obj;
  }
  if (!engine_) {
    std::string why = "group '" + token_.name() + "' cannot mirror: " + unavailable_;
    record(key.uid, CDC_MIRROR_STATE_FAILED, "", why);
    return err(Errc::function_failed, why);
  }
  auto plain = engine_->plain_export_of_non_extractable(key.attrs);
  if (!plain) {
    record(key.uid, CDC_MIRROR_STATE_FAILED, "", plain.error().message);
    return fail(std::move(plain).error());
  }
  if (*plain && key.attrs.bool_or(CKA_NEVER_EXTRACTABLE, true)) {
    // Written before the key material leaves: from here on it has been extractable.
    if (auto r = update_key(key.uid, [](AttrMap& a) { a.set_bool(CKA_NEVER_EXTRACTABLE, false); }); !r) {
      const std::string why = "the key's CKA_NEVER_EXTRACTABLE could not be cleared before its plain export: " +
                              r.error().message;
      record(key.uid, CDC_MIRROR_STATE_FAILED, "", why);
      return err(Errc::device_error, why);
    }
    key.attrs.set_bool(CKA_NEVER_EXTRACTABLE, false);
  }
  // A job past its import (a KEK left to clean up, or done while another caller waited) keeps the
  // key shown as mirrored, with its Azure id, while this run finishes it: no transient "pending".
  auto prior = engine_->journal().get(key.uid);
  const bool imported = prior && *prior && ((*prior)->step == Step::imported || (*prior)->step == Step::done);
  if (!imported) record(key.uid, CDC_MIRROR_STATE_PENDING, "", "");
  // No token lock is held here: the engine talks to Azure and to the backend (thread-safe).
  auto r = engine_->mirror(token_.backend(), key);
  if (!r) {
    auto j = engine_->journal().get(key.uid);
    const bool imported = j && *j && (*j)->step == Step::imported;
    record(key.uid, imported ? CDC_MIRROR_STATE_MIRRORED : CDC_MIRROR_STATE_FAILED, imported ? (*j)->key_kid : "",
           r.error().message);
    return fail(std::move(r).error());
  }
  // Mirrored; an unfinished KEK cleanup stays visible in CKA_CDC_MIRROR_ERROR until it is done.
  record(key.uid, CDC_MIRROR_STATE_MIRRORED, r->key_kid, r->cleanup_pending ? r->note : "");
  return {};
}

R<void> Service::key_made(Session&, CK_OBJECT_HANDLE h) {
  StoredObject key;
  {
    auto t = token_.lock();
    Object* o = t.cache().get(h);
    if (!o || !wants(o->attrs())) return {};
    key = o->obj;
  }
  if (token_.config().mirror.mode == MirrorMode::async && worker_ && engine_) {
    // Journaled before C_Generate* returns: if this process exits first, the next login resumes it.
    if (auto r = engine_->enqueue(key); !r) {
      record(key.uid, CDC_MIRROR_STATE_FAILED, "", r.error().message);
      return fail(std::move(r).error());
    }
    record(key.uid, CDC_MIRROR_STATE_PENDING, "", "");
    worker_->submit([this, h] { (void)run(h); });
    return {};
  }
  return run(h);
}

void Service::user_logged_in() {
  if (!engine_ || !worker_) return;
  auto jobs = engine_->journal().unfinished();
  if (!jobs) {
    log::error(kLog, "group '" + token_.name() + "': reading the mirror journal failed: " + jobs.error().message);
    return;
  }
  for (auto& job : *jobs) {
    std::optional<CK_OBJECT_HANDLE> h;
    {
      auto t = token_.lock();
      h = t.cache().handle_of(job.object_uid);
    }
    if (!h) continue;  // the key is gone (or not visible): nothing to mirror
    // A rotation's new key is mirrored by its rotation, which then makes it current.
    if (!job.new_version_of.empty()) continue;
    log::info(kLog, "group '" + token_.name() + "': resuming the mirror of " + job.object_uid + " (at step " +
                        step_name(job.step) + ")");
    worker_->submit([this, h = *h] { (void)run(h); });
  }
}

std::unique_lock<std::mutex> Service::hold_for_logout() { return exclusive(); }

void Service::key_destroyed(const std::string& uid, const AttrMap& attrs) {
  if (engine_) engine_->abandon(uid);
  // The key's Azure copy; an Azure-resident key's kid names the vault key itself.
  const bool former = attrs.ulong(CKA_CDC_VERSION_STATE).value_or(CDC_VERSION_CURRENT) != CDC_VERSION_CURRENT;
  apply_destroy_policy(attrs.string_or(CKA_CDC_AZURE_KEY_ID, ""), former);
}

void Service::apply_destroy_policy(const std::string& kid, bool former) {
  const OnDestroy policy = token_.config().mirror.on_destroy;
  if (policy == OnDestroy::keep || kid.empty() || !engine_) return;
  auto id = azure::parse_key_id(kid);
  if (!id) return;
  auto kv = engine_->connection()->vault();
  std::string what;
  if (former && id->version.empty()) return;
  if (policy == OnDestroy::disable || former) {
    azure::UpdateKeyOptions o;
    o.attributes.enabled = false;
    auto r = kv.update_key(id->name, former ? id->version : "", o);
    what = r ? "" : r.error().describe();
  } else {
    auto r = kv.delete_key(id->name);
    what = r ? "" : r.error().describe();
  }
  const char* verb = policy == OnDestroy::disable || former ? "disabled" : "deleted";
  if (former) {
    if (what.empty()) log::info(kLog, "group '" + token_.name() + "': Azure version " + id->version + " of " + id->name + " was disabled");
    else log::warn(kLog, "group '" + token_.name() + "': former version destroyed, but Azure version " + id->version + " of " +
                           id->name + " could not be disabled: " + what);
    return;
  }
  if (what.empty()) log::info(kLog, "group '" + token_.name() + "': the Azure copy " + id->name + " was " + verb);
  else log::warn(kLog, "group '" + token_.name() + "': the local key is destroyed but its Azure copy " + id->name +
                         " could not be " + verb + ": " + what);
}

R<std::string> Service::mirrorable(const Session&, CK_OBJECT_HANDLE h) {
  auto t = token_.lock();
  CDC_TRY(t.refresh());
  CDC_ASSIGN(Object * o, t.visible(h, Errc::key_handle_invalid));
  if ((o->cls() != CKO_PRIVATE_KEY && o->cls() != CKO_SECRET_KEY) || !o->token)
    return err(Errc::key_handle_invalid, "only private and secret token keys are mirrored");
  if (cloud::azure_resident(o->attrs()))
    return err(Errc::key_function_not_permitted, "the key lives in Key Vault only; there is no copy to mirror or "
                                                 "link (a sync follows changes there)");
  return o->obj.uid;
}

R<void> Service::mirror_now(const Session& s, CK_OBJECT_HANDLE h) {
  CDC_ASSIGN(const std::string uid, mirrorable(s, h));
  if (engine_)
    if (auto j = engine_->journal().get(uid); j && *j && !(*j)->new_version_of.empty())
      return err(Errc::key_function_not_permitted,
                 "this key is the new version of a rotation under way; resume the rotation (cdcctl key rotate "
                 "--all-due, or C_CDC_RotateKey on the key it replaces)");
  return run(h);
}

void Service::mirror_many(const Session& s, const std::vector<CK_OBJECT_HANDLE>& keys,
                          const std::function<void(CK_OBJECT_HANDLE, const R<void>&)>& done) {
  std::mutex mu;
  std::size_t next = 0;
  auto work = [&] {
    for (;;) {
      CK_OBJECT_HANDLE h;
      {
        std::lock_guard lk(mu);
        if (next == keys.size()) return;
        h = keys[next++];
      }
      R<void> r = mirror_now(s, h);
      std::lock_guard lk(mu);
      done(h, r);
    }
  };
  std::vector<std::jthread> threads;
  const std::size_t n = std::min<std::size_t>(kParallelMirrors, keys.size());
  for (std::size_t i = 1; i < n; ++i) {
    try {
      threads.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // fewer threads: the rest run on those there are
    }
  }
  work();
}

R<void> Service::mirror_new_version(const Session& s, CK_OBJECT_HANDLE h) {
  CDC_TRY(mirrorable(s, h));
  return run(h);
}

R<std::pair<CK_ULONG, std::string>> Service::status(const Session&, CK_OBJECT_HANDLE h) {
  auto t = token_.lock();
  CDC_TRY(t.refresh());
  CDC_ASSIGN(Object * o, t.visible(h, Errc::key_handle_invalid));
  return std::make_pair(o->attrs().ulong(CKA_CDC_MIRROR_STATE).value_or(CDC_MIRROR_STATE_NONE),
                        o->attrs().string_or(CKA_CDC_AZURE_KEY_ID, ""));
}

R<void> Service::set_link(const Session& s, CK_OBJECT_HANDLE h, const std::string& kid) {
  std::lock_guard one_at_a_time(mu_);  // no mirror of this key runs meanwhile
  CDC_ASSIGN(const std::string uid, mirrorable(s, h));
  if (!engine_) return err(Errc::function_failed, "group '" + token_.name() + "' has no mirror: " + unavailable_);
  auto& journal = engine_->journal();
  if (kid.empty()) {
    CDC_TRY(journal.remove(uid));
  } else {
    auto id = azure::parse_key_id(kid);
    if (!id || id->version.empty()) return err(Errc::arguments_bad, "'" + kid + "' is not a versioned Azure key id");
    CDC_ASSIGN(auto found, journal.get(uid));
    Job job = found ? std::move(*found) : Job{};
    job.object_uid = uid;
    job.azure_name = id->name;
    job.key_kid = kid;
    job.step = Step::done;
    job.error.clear();
    CDC_TRY(journal.put(job));
  }
  const CK_ULONG state = kid.empty() ? CDC_MIRROR_STATE_NONE : CDC_MIRROR_STATE_MIRRORED;
  auto r = update_key(uid, [&](AttrMap& a) {
    a.set_ulong(CKA_CDC_MIRROR_STATE, state);
    a.set_string(CKA_CDC_AZURE_KEY_ID, kid);
    a.set_string(CKA_CDC_MIRROR_ERROR, "");
  });
  if (!r)
    return err(Errc::device_error, "the key's mirror state could not be written to the token: " + r.error().message);
  return {};
}

}  // namespace cdcp11::core::mirror
