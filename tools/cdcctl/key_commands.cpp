// cdcctl key list|mirror: the group's keys, local and in the vault, side by side; mirroring on
// request. Runs the same core Provider the PKCS#11 module runs, in this process.
#include "tools/cdcctl/output.h"
#include "tools/cdcctl/key_commands.h"

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "azure/util.h"
#include "cdcp11/cdcp11.h"
#include "tools/cdcctl/group_session.h"
#include "core/mirror/rotation.h"
#include "tools/cdcctl/key_lifecycle.h"
#include "tools/cdcctl/key_rotation.h"
#include "tools/cdcctl/table.h"

namespace cdcp11::cdcctl {

namespace {

using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

struct KeyState {
  std::string group, pin_env, label, id_hex;
  bool pin_stdin = false, all = false;
};

const char* state_name(CK_ULONG s) {
  switch (s) {
    case CDC_MIRROR_STATE_PENDING: return "pending";
    case CDC_MIRROR_STATE_MIRRORED: return "mirrored";
    case CDC_MIRROR_STATE_FAILED: return "failed";
  }
  return "none";
}


}  // namespace

void add_key_commands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto st = std::make_shared<KeyState>();
  auto* key = app.add_subcommand("key", "The keys of a group, locally and in its vault");
  key->require_subcommand(1);
  auto common = [&](CLI::App* c) {
    c->add_option("GROUP", st->group, "Group name")->required();
    c->add_option("--pin-env", st->pin_env, "Read the user PIN from this environment variable (default: ask)");
  };

  auto* list = key->add_subcommand("list", "Local keys with their mirror state, and the vault's keys");
  common(list);
  list->callback([&, st] {
    auto g = GroupSession::open(global.config, st->group, st->pin_env);
    if (!g) {
      exit_code = error_out(global, g.error());
      return;
    }
    auto keys = (*g)->keys();
    const std::int64_t now = core::mirror::now_seconds();
    // The vault's side: keys not linked to a local key are listed as remote only.
    std::vector<std::string> remote_only;
    std::string remote_error;
    if (auto* eng = (*g)->engine()) {
      auto items = eng->connection()->vault().list_keys();
      if (!items) {
        remote_error = items.error().describe();
      } else {
        // Linked: tagged with a local key's uid, or named by a local key's Azure key id.
        std::set<std::string> linked;
        for (auto& k : keys) {
          linked.insert(k.uid);
          if (auto id = azure::parse_key_id(k.azure_kid)) linked.insert(azure::to_lower(id->name));
        }
        for (auto& it : *items) {
          auto uid = it.tags.find("cdcp11-uid");
          if (it.tags.count("cdcp11-kek-for") || linked.count(azure::to_lower(it.name()))) continue;
          if (uid == it.tags.end() || !linked.count(uid->second)) remote_only.push_back(it.kid);
        }
      }
    }
    if (global.json) {
      rapidjson::StringBuffer sb;
      Writer w(sb);
      w.StartObject();
      w.Key("group"); w.String(st->group.c_str());
      w.Key("keys");
      w.StartArray();
      for (auto& k : keys) {
        w.StartObject();
        w.Key("label"); w.String(k.label.c_str());
        w.Key("id"); w.String(k.id_hex.c_str());
        w.Key("type"); w.String(k.type.c_str());
        w.Key("unique_id"); w.String(k.uid.c_str());
        w.Key("origin"); w.String(k.azure_resident ? "azure" : "local");
        w.Key("mirror"); w.String(state_name(k.state));
        w.Key("azure_key_id"); k.azure_kid.empty() ? w.Null() : w.String(k.azure_kid.c_str());
        w.Key("error"); k.error.empty() ? w.Null() : w.String(k.error.c_str());
        w.Key("version"); w.Uint64(k.version);
        w.Key("version_state"); w.String(core::mirror::version_state_name(k.version_state));
        w.Key("age_days"); k.since ? w.Int64((now - *k.since) / 86400) : w.Null();
        w.Key("next_rotation"); k.next_rotation ? w.Int64(*k.next_rotation) : w.Null();
        w.Key("expires"); k.expires ? w.Int64(*k.expires) : w.Null();
        w.Key("rotation_error"); k.rotation_error.empty() ? w.Null() : w.String(k.rotation_error.c_str());
        w.EndObject();
      }
      w.EndArray();
      w.Key("remote_only");
      w.StartArray();
      for (auto& r : remote_only) w.String(r.c_str());
      w.EndArray();
      w.Key("remote_error"); remote_error.empty() ? w.Null() : w.String(remote_error.c_str());
      w.EndObject();
      std::cout << sb.GetString() << '\n';
      return;
    }
    Table t({"LABEL", "ID", "TYPE", "ORIGIN", "MIRROR", "VERSION", "AGE", "NEXT ROTATION", "EXPIRES", "AZURE KEY"});
    for (auto& k : keys) {
      std::string version = std::to_string(k.version);
      if (k.version_state != CDC_VERSION_CURRENT) version += " (" + std::string(core::mirror::version_state_name(k.version_state)) + ")";
      t.add({k.label, k.id_hex, k.type, k.azure_resident ? "azure" : "local", k.azure_resident ? "in vault" : state_name(k.state),
             version, k.since ? std::to_string((now - *k.since) / 86400) + " d" : "-",
             k.next_rotation ? day(*k.next_rotation) : "-", k.expires ? day(*k.expires) : "-",
             k.azure_kid.empty() ? "-" : k.azure_kid});
    }
    for (auto& r : remote_only) t.add({"-", "-", "-", "-", "remote only", "-", "-", "-", "-", r});
    t.print(std::cout);
    for (auto& k : keys) {
      if (!k.error.empty()) std::cout << "  " << (k.label.empty() ? k.uid : k.label) << ": " << k.error << '\n';
      if (!k.rotation_error.empty())
        std::cout << "  " << (k.label.empty() ? k.uid : k.label) << ": rotation failed: " << k.rotation_error << '\n';
    }
    if (!remote_error.empty()) std::cout << "Vault not listed: " << remote_error << '\n';
  });

  auto* mirror = key->add_subcommand("mirror", "Mirror keys into the group's vault now (or finish a failed mirror)");
  common(mirror);
  mirror->add_option("--label", st->label, "The key with this CKA_LABEL");
  mirror->add_option("--id", st->id_hex, "The key with this CKA_ID (hex)");
  mirror->add_flag("--all", st->all,
                   "Every key not mirrored yet (none, pending or failed), or mirrored with its cleanup pending");
  mirror->callback([&, st] {
    if (st->label.empty() && st->id_hex.empty() && !st->all) {
      exit_code = error_out(global, "say which keys: --label, --id or --all");
      return;
    }
    auto g = GroupSession::open(global.config, st->group, st->pin_env);
    if (!g) {
      exit_code = error_out(global, g.error());
      return;
    }
    int done = 0, failed = 0;
    std::map<CK_OBJECT_HANDLE, std::string> names;
    std::vector<CK_OBJECT_HANDLE> chosen;
    for (auto& k : (*g)->keys()) {
      const bool wanted = st->all ? k.state != CDC_MIRROR_STATE_MIRRORED || !k.error.empty()
                                  : (!st->label.empty() && k.label == st->label) || (!st->id_hex.empty() && k.id_hex == st->id_hex);
      if (!wanted) continue;
      chosen.push_back(k.handle);
      names[k.handle] = k.label.empty() ? k.uid : k.label;
    }
    // Several at once: the client's rate limiter keeps them within the vault's limits.
    auto* svc = (*g)->token().mirror();
    svc->mirror_many((*g)->session(), chosen, [&](CK_OBJECT_HANDLE h, const core::R<void>& r) {
      if (r) {
        ++done;
        auto s = svc->status((*g)->session(), h);
        if (!global.json) std::cout << names[h] << ": mirrored as " << (s ? s->second : "") << '\n';
      } else {
        ++failed;
        if (!global.json) std::cout << names[h] << ": FAILED: " << r.error().message << '\n';
      }
    });
    if (global.json) std::cout << "{\"mirrored\": " << done << ", \"failed\": " << failed << "}\n";
    if (done + failed == 0) exit_code = error_out(global, "no key of group '" + st->group + "' matches");
    else if (failed) exit_code = 1;
  });

  add_key_lifecycle_commands(*key, global, exit_code);
  add_key_rotation_commands(*key, global, exit_code);
}

}  // namespace cdcp11::cdcctl
