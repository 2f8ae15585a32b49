// cdcctl key enable|disable|delete|recover|backup|restore: the lifecycle of the Azure copies of a
// group's keys, through the group's own Key Vault client (azure/keyvault.h and its retry rules).
// The local key is never changed beyond its mirror record: once its copy is deleted it no longer
// claims one, so `key mirror` mirrors it afresh; once its own copy is recovered or restored it
// claims it again (mirror::Service::set_link).
#include "tools/cdcctl/key_lifecycle.h"

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "azure/keyvault.h"
#include "azure/util.h"
#include "core/cloud/jwk.h"
#include "core/mirror/engine.h"
#include "core/mirror/naming.h"
#include "tools/cdcctl/group_session.h"
#include "tools/cdcctl/output.h"

namespace cdcp11::cdcctl {

namespace {

using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

enum class Verb { enable, disable, remove, recover, backup, restore };

struct Options {
  std::string group, pin_env, label, id_hex, name, file;
  bool purge = false;
};

// Deletion and recovery complete asynchronously in Key Vault (reference §4): how long to wait.
constexpr int kPolls = 60;
constexpr auto kPollInterval = std::chrono::milliseconds(500);
constexpr const char* kWaited = "30 s";

// One command run: the group's logged-in session and its vault.
struct Ctx {
  const GlobalOptions& global;
  const Options& opt;
  GroupSession& gs;
  azure::KeyVaultClient& kv;
  std::string vault;  // its name, for people
};

std::string shown(const LocalKey& k) { return k.label.empty() ? k.uid : k.label; }

std::string sentence(std::string s) {
  s = capitalised(std::move(s));
  if (!s.empty() && s.back() != '.') s += '.';
  return s;
}

std::string utc(std::int64_t t) {
  const auto tt = static_cast<std::time_t>(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

void print_json(const std::function<void(Writer&)>& fields) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  fields(w);
  w.EndObject();
  std::cout << sb.GetString() << '\n';
}

void put(Writer& w, const char* key, const std::string& v) {
  w.Key(key);
  w.String(v.c_str(), static_cast<rapidjson::SizeType>(v.size()));
}

void put_local(Writer& w, const std::optional<LocalKey>& k) {
  w.Key("local_key");
  k ? w.String(shown(*k).c_str()) : w.Null();
}

void put_where(Writer& w, const Ctx& c, const std::string& name) {
  put(w, "group", c.opt.group);
  put(w, "vault", c.vault);
  put(w, "name", name);
}

// An Azure error on the key the command is about, as one sentence.
std::string vault_error(const Ctx& c, const azure::Error& e, const std::string& name, bool deleted = false) {
  if (e.kind == azure::ErrorKind::not_found)
    return "Vault '" + c.vault + "' has no " + (deleted ? "deleted " : "") + "key named '" + name + "'.";
  return e.describe();
}

// ---- Which key ---------------------------------------------------------------------------------

struct Copy {
  std::string name, version;
};

// Where local key k's Azure copy is, from its record (CKA_CDC_AZURE_KEY_ID) or else its journal
// job; nullopt when it claims none.
Result<std::optional<Copy>, std::string> recorded_copy(const Ctx& c, const LocalKey& k) {
  std::string kid = k.azure_kid;
  if (kid.empty()) {
    auto job = c.gs.engine()->journal().get(k.uid);
    if (!job) return fail("Reading the mirror journal of group '" + c.opt.group + "' failed: " + job.error().message + ".");
    if (*job) kid = (**job).key_kid;
  }
  if (kid.empty()) return std::optional<Copy>();
  auto id = azure::parse_key_id(kid);
  if (!id) return fail("Key '" + shown(k) + "' records '" + kid + "', which is not a Key Vault key id.");
  if (!azure::iequals(id->vault_url, c.kv.vault_url()))
    return fail("Key '" + shown(k) + "' is mirrored into " + id->vault_url + ", not into the group's vault " +
                c.kv.vault_url() + ".");
  return std::optional<Copy>(Copy{id->name, id->version});
}

// What the selector names: a key in the vault and, for --label/--id, the local key it mirrors.
struct Target {
  std::string name;     // empty: the local key records no copy (or, for restore, no selector)
  std::string version;  // empty: the latest
  std::optional<LocalKey> local;
};

Result<Target, std::string> selected(Ctx& c) {
  if (c.opt.label.empty() && c.opt.id_hex.empty()) return Target{c.opt.name, "", std::nullopt};
  CDC_ASSIGN(LocalKey k, c.gs.find_key(c.opt.label, c.opt.id_hex));
  CDC_ASSIGN(auto copy, recorded_copy(c, k));
  if (!copy) return Target{"", "", std::move(k)};
  return Target{copy->name, copy->version, std::move(k)};
}

// For the commands on a key that exists in the vault (enable, disable, delete, backup).
Result<Target, std::string> vault_target(Ctx& c) {
  CDC_ASSIGN(Target t, selected(c));
  if (t.name.empty())
    return fail("Key '" + shown(*t.local) + "' of group '" + c.opt.group + "' has no copy in vault '" + c.vault +
                "': it is not mirrored.");
  return t;
}

// The local keys whose record says their copy is the vault key called name.
std::vector<LocalKey> keys_recording(const Ctx& c, const std::string& name) {
  std::vector<LocalKey> out;
  for (auto& k : c.gs.keys()) {
    auto copy = recorded_copy(c, k);
    if (copy && *copy && azure::iequals((*copy)->name, name)) out.push_back(k);
  }
  return out;
}

// The deleted vault key tagged as local key k's copy (deleting it cleared k's record).
Result<std::string, std::string> deleted_copy_of(Ctx& c, const LocalKey& k) {
  auto items = c.kv.list_deleted_keys();
  if (!items) return fail(items.error().describe());
  std::vector<std::string> names;
  for (auto& it : *items)
    if (auto t = it.tags.find("cdcp11-uid"); t != it.tags.end() && t->second == k.uid) names.push_back(it.name());
  if (names.empty())
    return fail("Vault '" + c.vault + "' holds no deleted copy of key '" + shown(k) +
                "' (a deletion shows there once it has completed).");
  if (names.size() > 1) {
    std::string list;
    for (auto& n : names) list += (list.empty() ? "" : ", ") + n;
    return fail("Vault '" + c.vault + "' holds " + std::to_string(names.size()) + " deleted copies of key '" +
                shown(k) + "' (" + list + "); choose one with --name.");
  }
  return names.front();
}

// Whether vault key b is local key k's copy, as the mirror engine decides it: b's tag cdcp11-uid
// names k and b's public key is k's (a secret key has no public part; its tag decides).
Result<bool, std::string> is_copy_of(Ctx& c, const LocalKey& k, const azure::KeyBundle& b) {
  auto tag = b.tags.find("cdcp11-uid");
  if (tag == b.tags.end() || tag->second != k.uid) return false;
  auto stored = c.gs.object(k.handle);
  if (!stored) return fail("Key '" + shown(k) + "' is gone from the token.");
  const core::StoredObject obj = std::move(*stored);
  if (obj.attrs.ulong(CKA_CLASS).value_or(CKO_DATA) == CKO_SECRET_KEY) return true;
  auto pub = core::cloud::public_jwk_of(c.gs.token().backend(), obj);
  if (!pub) return fail("The public key of '" + shown(k) + "' cannot be read: " + pub.error().message + ".");
  return azure::public_material_matches(b.key, *pub);
}

// After a recover or restore that brought back vault key b: the local key whose copy it is (the
// selected one, or the one its tags name) records it again. nullopt: b is no local key's copy.
Result<std::optional<LocalKey>, std::string> relink(Ctx& c, const std::optional<LocalKey>& chosen,
                                                    const azure::KeyBundle& b, const std::string& done) {
  std::optional<LocalKey> k = chosen;
  if (k && k->azure_resident) return k;  // its object names the vault key itself: nothing to relink
  if (!k) {
    auto tag = b.tags.find("cdcp11-uid");
    for (auto& l : c.gs.keys())
      if (tag != b.tags.end() && l.uid == tag->second) k = l;
  }
  if (!k) return std::optional<LocalKey>();
  CDC_ASSIGN(const bool ours, is_copy_of(c, *k, b));
  if (!ours) {
    if (!chosen) return std::optional<LocalKey>();
    return fail(done + " key '" + b.name() + "' in vault '" + c.vault + "', but it is not the copy of key '" +
                shown(*k) + "' (its cdcp11-uid tag or its public key differs); the local key's mirror state is "
                "unchanged.");
  }
  if (auto r = c.gs.token().mirror()->set_link(c.gs.session(), k->handle, b.key.kid); !r)
    return fail(done + " key '" + b.name() + "' in vault '" + c.vault + "', but key '" + shown(*k) +
                "' could not be marked mirrored: " + r.error().message + ".");
  return k;
}

// recover, restore: vault key b is back (done: "recovered in", "restored into"); its local key
// records it again, and the outcome is shown. expected: the name b was to have, if known.
int report_back(Ctx& c, const std::optional<LocalKey>& chosen, const azure::KeyBundle& b, const std::string& done,
                const std::string& expected) {
  const std::string name = b.name();
  const std::string what = capitalised(done.substr(0, done.find(' ')));
  auto linked = relink(c, chosen, b, what);
  if (!linked) return error_out(c.global, linked.error());
  if (!expected.empty() && !azure::iequals(name, expected))
    return error_out(c.global, "The backup in " + c.opt.file + " holds key '" + name + "', not '" + expected +
                                   "'; it was " + done + " vault '" + c.vault + "' as '" + name + "'.");
  if (c.global.json) {
    print_json([&](Writer& w) {
      put_where(w, c, name);
      put(w, "kid", b.key.kid);
      put_local(w, *linked);
    });
    return 0;
  }
  std::cout << "Key '" << name << "' was " << done << " vault '" << c.vault << "': " << b.key.kid << '\n';
  if (*linked) std::cout << "Key '" << shown(**linked) << "' of group '" << c.opt.group << "' is mirrored to it again.\n";
  else std::cout << "It is the copy of no key of group '" << c.opt.group << "'.\n";
  return 0;
}

// ---- The commands --------------------------------------------------------------------------------

int set_enabled(Ctx& c, bool enable) {
  auto t = vault_target(c);
  if (!t) return error_out(c.global, t.error());
  azure::UpdateKeyOptions o;
  o.attributes.enabled = enable;
  auto r = c.kv.update_key(t->name, t->version, o);
  if (!r) return error_out(c.global, vault_error(c, r.error(), t->name));
  const std::optional<bool> now = r->attributes.enabled;
  if (now != enable)
    return error_out(c.global, "Vault '" + c.vault + "' answered the update of key '" + t->name + "' with enabled=" +
                                   (now ? (*now ? "true" : "false") : "(missing)") + ".");
  if (c.global.json) {
    print_json([&](Writer& w) {
      put_where(w, c, t->name);
      put(w, "kid", r->key.kid);
      w.Key("enabled");
      w.Bool(*now);
      put_local(w, t->local);
    });
  } else {
    std::cout << "Key '" << t->name << "' in vault '" << c.vault << "' is " << (*now ? "enabled" : "disabled") << ": "
              << r->key.kid << '\n';
  }
  return 0;
}

// Purges a soft-deleted key once its deletion has completed (GET /deletedkeys/{n} answers).
Result<void, std::string> purge_when_deleted(Ctx& c, const std::string& name) {
  for (int i = 1;; ++i) {
    auto d = c.kv.get_deleted_key(name);
    if (d) break;
    if (d.error().kind != azure::ErrorKind::not_found) return fail(d.error().describe());
    if (i == kPolls)
      return fail("Key '" + name + "' was deleted from vault '" + c.vault + "', but the deletion had not completed after " +
                  kWaited + "; purge it later with cdcctl key delete " + c.opt.group + " --name " + name + " --purge.");
    std::this_thread::sleep_for(kPollInterval);
  }
  auto p = c.kv.purge_deleted_key(name);
  if (!p) return fail("Key '" + name + "' was deleted from vault '" + c.vault + "' but not purged: " + p.error().describe());
  return {};
}

int remove(Ctx& c) {
  auto t = vault_target(c);
  if (!t) return error_out(c.global, t.error());
  auto del = c.kv.delete_key(t->name);
  if (!del && del.error().kind == azure::ErrorKind::not_found && c.opt.purge) {
    // Deleted before: --purge finishes what that delete began.
    if (auto earlier = c.kv.get_deleted_key(t->name)) del = std::move(earlier);
  }
  if (!del) return error_out(c.global, vault_error(c, del.error(), t->name));

  // The copy is gone, or only soft-deleted: no local key may claim it any more.
  // An Azure-resident key has no other copy: its objects stay (a recover makes them work again)
  // until a sync finds the vault key gone.
  std::vector<LocalKey> reset, resident;
  if (t->local) (t->local->azure_resident ? resident : reset).push_back(*t->local);
  for (auto& k : keys_recording(c, t->name)) {
    auto& into = k.azure_resident ? resident : reset;
    if (std::none_of(into.begin(), into.end(), [&](const LocalKey& r) { return r.uid == k.uid; })) into.push_back(k);
  }
  for (auto& k : reset)
    if (auto r = c.gs.token().mirror()->set_link(c.gs.session(), k.handle, ""); !r)
      return error_out(c.global, "Key '" + t->name + "' was deleted from vault '" + c.vault + "', but key '" + shown(k) +
                                     "' could not be marked not mirrored: " + r.error().message + ".");
  if (!c.global.json) {
    for (auto& k : reset)
      std::cout << "Key '" << shown(k) << "' of group '" << c.opt.group << "' is no longer mirrored.\n";
    for (auto& k : resident)
      std::cout << "Key '" << shown(k) << "' of group '" << c.opt.group << "' lived only in the vault; "
                << "`cdcctl group sync " << c.opt.group << "` removes its objects (after a recover, a sync brings them back).\n";
  }

  // What the vault's recovery level says (reference §4). No recoveryId: soft delete is off.
  const std::string& level = del->attributes.recovery_level;
  const bool recoverable = level.find("Recoverable") != std::string::npos;
  const bool purgeable = level.find("Purgeable") != std::string::npos;
  const bool final = del->recovery_id.empty() || (purgeable && !recoverable);
  const std::optional<std::int64_t> purge_date = del->scheduled_purge_date;
  bool purged = false;
  if (c.opt.purge && !final) {
    if (!recoverable || !purgeable) {
      const std::string why =
          recoverable ? "purge protection keeps it until its scheduled purge date" +
                            (purge_date ? ", " + utc(*purge_date) : std::string()) + "."
                      : "vault '" + c.vault + "' reports recovery level '" + level + "', which does not allow a purge.";
      return error_out(c.global, "Key '" + t->name + "' was deleted from vault '" + c.vault + "' but not purged: " + why);
    }
    if (auto p = purge_when_deleted(c, t->name); !p) return error_out(c.global, p.error());
    purged = true;
  }

  if (c.global.json) {
    print_json([&](Writer& w) {
      put_where(w, c, t->name);
      put(w, "kid", del->key.kid);
      put(w, "recovery_level", level);
      w.Key("recoverable");
      w.Bool(!final && !purged);
      w.Key("scheduled_purge_date");
      purge_date && !final && !purged ? w.Int64(*purge_date) : w.Null();
      w.Key("purged");
      w.Bool(purged);
      w.Key("local_keys_not_mirrored");
      w.StartArray();
      for (auto& k : reset) w.String(shown(k).c_str());
      w.EndArray();
    });
    return 0;
  }
  std::cout << "Key '" << t->name << "' was deleted from vault '" << c.vault << "'";
  if (purged) std::cout << " and purged.\n";
  else if (final) std::cout << "; soft delete is off there, so the delete is final.\n";
  else
    std::cout << "; it can be recovered" << (purge_date ? " until " + utc(*purge_date) : std::string())
              << " with cdcctl key recover " << c.opt.group << " --name " << t->name << ".\n";
  return 0;
}

int recover(Ctx& c) {
  auto t = selected(c);
  if (!t) return error_out(c.global, t.error());
  if (t->name.empty()) {
    auto found = deleted_copy_of(c, *t->local);
    if (!found) return error_out(c.global, found.error());
    t->name = *found;
  }
  const std::string& name = t->name;
  // A deletion still completing answers 409: wait for it, as for the recovery below.
  for (int i = 1;; ++i) {
    auto r = c.kv.recover_deleted_key(name);
    if (r) break;
    if (r.error().kind != azure::ErrorKind::conflict || i == kPolls)
      return error_out(c.global, vault_error(c, r.error(), name, true));
    std::this_thread::sleep_for(kPollInterval);
  }
  // Recovery completes asynchronously: the key answers once it is back.
  std::optional<azure::KeyBundle> back;
  for (int i = 1; !back; ++i) {
    auto g = c.kv.get_key(name);
    if (g) {
      back = std::move(*g);
    } else if (g.error().kind != azure::ErrorKind::not_found) {
      return error_out(c.global, g.error().describe());
    } else if (i == kPolls) {
      return error_out(c.global, "Key '" + name + "' is being recovered in vault '" + c.vault +
                                     "' but was not back after " + kWaited + "; run the command again later.");
    } else {
      std::this_thread::sleep_for(kPollInterval);
    }
  }
  return report_back(c, t->local, *back, "recovered in", "");
}

int backup(Ctx& c) {
  auto t = vault_target(c);
  if (!t) return error_out(c.global, t.error());
  auto blob = c.kv.backup_key(t->name);
  if (!blob) return error_out(c.global, vault_error(c, blob.error(), t->name));
  const std::string_view bytes(reinterpret_cast<const char*>(blob->data()), blob->size());
  if (auto w = write_private_file(c.opt.file, bytes); !w) return error_out(c.global, w.error());
  if (c.global.json) {
    print_json([&](Writer& w) {
      put_where(w, c, t->name);
      put(w, "file", c.opt.file);
      w.Key("bytes");
      w.Uint64(blob->size());
      put_local(w, t->local);
    });
  } else {
    std::cout << "Wrote the backup of key '" << t->name << "' of vault '" << c.vault << "' to " << c.opt.file << " ("
              << blob->size() << " bytes, mode 0600).\n";
  }
  return 0;
}

int restore(Ctx& c) {
  std::ifstream f(c.opt.file, std::ios::binary);
  if (!f) return error_out(c.global, "Cannot read the backup file " + c.opt.file + ": " + std::strerror(errno) + ".");
  const Bytes blob{std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
  if (blob.empty()) return error_out(c.global, "The backup file " + c.opt.file + " is empty.");

  // The name the backup should restore as, when known: checked before, and passed on so that a
  // repeated request can tell whether the first one happened.
  auto t = selected(c);
  if (!t) return error_out(c.global, t.error());
  const std::string& expected = t->name;
  if (!expected.empty()) {
    auto existing = c.kv.get_key(expected);
    if (existing)
      return error_out(c.global, "Vault '" + c.vault + "' already holds a key named '" + expected +
                                     "'; a restore never replaces a key: delete and purge it first, or restore into "
                                     "another vault.");
    if (existing.error().kind != azure::ErrorKind::not_found) return error_out(c.global, existing.error().describe());
  }
  auto r = c.kv.restore_key(blob, azure::RestoreOptions{expected});
  if (!r) return error_out(c.global, r.error().describe());
  return report_back(c, t->local, *r, "restored into", expected);
}

int run(const GlobalOptions& global, const Options& o, Verb verb) {
  const int selectors = !o.label.empty() + !o.id_hex.empty() + !o.name.empty();
  if (selectors > 1) return error_out(global, "Give only one of --label, --id and --name.");
  if (selectors == 0 && verb != Verb::restore) return error_out(global, "Say which key: --label, --id or --name.");
  if (!o.name.empty() && !core::mirror::valid_key_name(o.name))
    return error_out(global, "'" + o.name + "' is not a valid Key Vault key name (letters, digits and '-', 1 to 127).");
  if (!o.pin_env.empty() && !std::getenv(o.pin_env.c_str()))
    return error_out(global, "The environment variable " + o.pin_env + " (--pin-env) is not set.");

  auto g = GroupSession::open(global.config, o.group, o.pin_env);
  if (!g) return error_out(global, sentence(g.error()));
  GroupSession& gs = **g;
  auto* engine = gs.engine();
  const std::string why = gs.unavailable();
  if (!engine)
    return error_out(global, "Group '" + o.group + "' cannot reach its vault: " + why + (why.ends_with('.') ? "" : "."));
  auto kv = engine->connection()->vault();
  Ctx c{global, o, gs, kv, engine->azure_config().vault_name};
  switch (verb) {
    case Verb::enable: return set_enabled(c, true);
    case Verb::disable: return set_enabled(c, false);
    case Verb::remove: return remove(c);
    case Verb::recover: return recover(c);
    case Verb::backup: return backup(c);
    case Verb::restore: return restore(c);
  }
  return 1;
}

}  // namespace

void add_key_lifecycle_commands(CLI::App& key, GlobalOptions& global, int& exit_code) {
  auto opt = std::make_shared<Options>();
  auto command = [&](const char* name, const char* help, Verb verb, const char* selector_help) {
    auto* c = key.add_subcommand(name, help);
    c->add_option("GROUP", opt->group, "Group name")->required();
    c->add_option("--label", opt->label, std::string("The group's key with this CKA_LABEL") + selector_help);
    c->add_option("--id", opt->id_hex, std::string("The group's key with this CKA_ID (hex)") + selector_help);
    c->add_option("--pin-env", opt->pin_env, "Read the user PIN from this environment variable (default: ask)");
    c->add_flag("--json", global.json, "Machine-readable JSON output");
    c->callback([&global, &exit_code, opt, verb] { exit_code = run(global, *opt, verb); });
    return c;
  };
  const char* its_copy = ": its copy in the vault";

  command("enable", "Enable the Azure copy of a key in the group's vault", Verb::enable, its_copy)
      ->add_option("--name", opt->name, "The vault key with this name (latest version)");
  command("disable",
          "Disable the Azure copy of a key: the vault refuses every use of it until it is enabled",
          Verb::disable, its_copy)
      ->add_option("--name", opt->name, "The vault key with this name (latest version)");

  auto* del = command("delete",
                      "Delete the Azure copy of a key, never the local key (which is then no longer mirrored)",
                      Verb::remove, its_copy);
  del->add_option("--name", opt->name, "The vault key with this name (or, with --purge, the deleted key)");
  del->add_flag("--purge", opt->purge,
                "Then purge it, where the vault's recovery level allows it (soft delete on, no purge protection); "
                "where soft delete is off the delete is final already");

  command("recover",
          "Recover a deleted key in the group's vault; its local key is mirrored to it again",
          Verb::recover, ": its deleted copy in the vault")
      ->add_option("--name", opt->name, "The deleted vault key with this name");

  auto* bak = command("backup", "Write the vault's backup of a key (an opaque blob) to a file",
                      Verb::backup, its_copy);
  bak->add_option("--name", opt->name, "The vault key with this name");
  bak->add_option("--out", opt->file, "The file to write (mode 0600, replaced atomically)")->required();

  auto* res = command("restore",
                      "Restore a backup into the group's vault, never over an existing key",
                      Verb::restore, ": the backup is of its copy");
  res->add_option("--name", opt->name, "The name of the key the backup holds (checked before and after)");
  res->add_option("--in", opt->file, "The backup file (from cdcctl key backup or az keyvault key backup)")->required();
}

}  // namespace cdcp11::cdcctl
