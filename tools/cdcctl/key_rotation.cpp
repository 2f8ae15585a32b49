#include "tools/cdcctl/key_rotation.h"

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include "azure/rotation_policy.h"
#include "azure/util.h"
#include "cdcp11/cdcp11.h"
#include "core/mirror/rotation.h"
#include "tools/cdcctl/group_session.h"
#include "tools/cdcctl/output.h"
#include "tools/cdcctl/table.h"

namespace cdcp11::cdcctl {

namespace {

using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;
namespace rot = core::mirror;

struct Options {
  std::string group, pin_env, label, id_hex;
  bool all_due = false, dry_run = false, abandon = false;
};

const char* retire_name(core::RetireFormer how) {
  return how == core::RetireFormer::destroy ? "destroy" : how == core::RetireFormer::disable ? "disable" : "keep";
}

// One line on standard error, redrawn: "[#####.....] 3/10 label".
void progress(std::size_t done, std::size_t total, const std::string& what) {
  constexpr std::size_t kWidth = 30;
  const std::size_t filled = total ? done * kWidth / total : kWidth;
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  std::string line = "[" + bar + "] " + std::to_string(done) + "/" + std::to_string(total) + " " + what;
  if (line.size() > 79) line.resize(79);
  std::cerr << "\r\033[K" << line << std::flush;
}

struct Outcome {
  std::string label, error, azure_kid, former_kid, action;
  CK_ULONG version = 0;
  bool retire = false;
};

// The group's session with its mirror engine, or nullptr with the error said ("Group 'G' " + why).
std::unique_ptr<GroupSession> open_with_engine(const GlobalOptions& global, const Options& o, const std::string& why,
                                               int& exit_code) {
  auto g = GroupSession::open(global.config, o.group, o.pin_env);
  if (!g) {
    exit_code = error_out(global, g.error());
    return nullptr;
  }
  if (!(*g)->engine()) {
    exit_code = error_out(global, "Group '" + o.group + "' " + why + ": " + (*g)->unavailable());
    return nullptr;
  }
  return std::move(*g);
}

// --abandon: the key's unfinished rotation is undone, its current version left as it was.
void abandon_command(const GlobalOptions& global, const Options& o, int& exit_code) {
  if (o.label.empty() == o.id_hex.empty() || o.all_due || o.dry_run) {
    exit_code = error_out(global, "--abandon takes one key: --label or --id (not --all-due or --dry-run)");
    return;
  }
  auto g = open_with_engine(global, o, "has no rotation to abandon", exit_code);
  if (!g) return;
  GroupSession& gs = *g;
  auto k = gs.find_key(o.label, o.id_hex);
  if (!k) {
    exit_code = error_out(global, k.error());
    return;
  }
  auto done = rot::abandon_rotation(gs.token(), gs.session(), k->handle);
  if (global.json) {
    rapidjson::StringBuffer sb;
    Writer w(sb);
    w.StartObject();
    w.Key("group"); w.String(o.group.c_str());
    w.Key("abandoned");
    w.StartArray();
    if (done) {
      w.StartObject();
      w.Key("label"); w.String(done->label.c_str());
      w.Key("new_key"); done->new_uid.empty() ? w.Null() : w.String(done->new_uid.c_str());
      w.Key("azure_version"); done->azure_version.empty() ? w.Null() : w.String(done->azure_version.c_str());
      w.EndObject();
    }
    w.EndArray();
    w.Key("failed");
    w.StartArray();
    if (!done) {
      w.StartObject();
      w.Key("label"); w.String(k->label.c_str());
      w.Key("error"); w.String(done.error().message.c_str());
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    std::cout << sb.GetString() << '\n';
  } else if (done) {
    std::cout << done->label << ": rotation abandoned; the current version stays as it was";
    if (!done->azure_version.empty()) std::cout << "; the new Azure version " << done->azure_version << " is disabled";
    std::cout << '\n';
  } else {
    std::cout << k->label << ": abandoning the rotation FAILED: " << done.error().message << '\n';
  }
  if (!done) exit_code = 1;
}

void rotate_command(const GlobalOptions& global, const Options& o, int& exit_code) {
  if (o.abandon) return abandon_command(global, o, exit_code);
  if ((!o.label.empty()) + (!o.id_hex.empty()) + o.all_due != 1) {
    exit_code = error_out(global, "say which keys: exactly one of --label, --id or --all-due");
    return;
  }
  auto g = open_with_engine(global, o, "cannot rotate keys", exit_code);
  if (!g) return;
  GroupSession& gs = *g;
  std::vector<rot::DueItem> items;
  if (o.all_due) {
    auto due = rot::due_items(gs.token(), gs.session(), rot::now_seconds());
    if (!due) {
      exit_code = error_out(global, due.error().message);
      return;
    }
    items = std::move(*due);
  } else {
    auto k = gs.find_key(o.label, o.id_hex);
    if (!k) {
      exit_code = error_out(global, k.error());
      return;
    }
    items.push_back(rot::DueItem{k->handle, k->label, k->version, false, core::RetireFormer::keep});
  }
  const bool bar = o.all_due && !o.dry_run && !global.json && ::isatty(STDERR_FILENO) && !items.empty();
  std::vector<Outcome> out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& it = items[i];
    if (bar) progress(i, items.size(), it.label);
    Outcome r;
    r.label = it.label;
    r.retire = it.retire;
    r.action = retire_name(it.how);
    if (o.dry_run) {
      r.version = it.retire ? it.version : it.version + 1;
    } else if (it.retire) {
      r.version = it.version;
      if (auto done = rot::retire_former(gs.token(), gs.session(), it.handle, it.how); !done) r.error = done.error().message;
    } else {
      auto done = rot::rotate_key(gs.token(), gs.session(), it.handle);
      if (done) {
        r.label = done->label;
        r.version = done->version;
        r.azure_kid = done->azure_kid;
        r.former_kid = done->former_kid;
      } else {
        r.error = done.error().message;
      }
    }
    out.push_back(std::move(r));
  }
  if (bar) {
    progress(items.size(), items.size(), "done");
    std::cerr << '\n';
  }
  const bool any_failed = std::any_of(out.begin(), out.end(), [](const Outcome& r) { return !r.error.empty(); });
  if (global.json) {
    rapidjson::StringBuffer sb;
    Writer w(sb);
    w.StartObject();
    w.Key("group"); w.String(o.group.c_str());
    w.Key("dry_run"); w.Bool(o.dry_run);
    w.Key("rotated");
    w.StartArray();
    for (auto& r : out)
      if (!r.retire && r.error.empty()) {
        w.StartObject();
        w.Key("label"); w.String(r.label.c_str());
        w.Key("version"); r.version ? w.Uint64(r.version) : w.Null();
        w.Key("azure_key_id"); r.azure_kid.empty() ? w.Null() : w.String(r.azure_kid.c_str());
        w.Key("former_azure_key_id"); r.former_kid.empty() ? w.Null() : w.String(r.former_kid.c_str());
        w.EndObject();
      }
    w.EndArray();
    w.Key("retired");
    w.StartArray();
    for (auto& r : out)
      if (r.retire && r.error.empty()) {
        w.StartObject();
        w.Key("label"); w.String(r.label.c_str());
        w.Key("version"); w.Uint64(r.version);
        w.Key("action"); w.String(r.action.c_str());
        w.EndObject();
      }
    w.EndArray();
    w.Key("failed");
    w.StartArray();
    for (auto& r : out)
      if (!r.error.empty()) {
        w.StartObject();
        w.Key("label"); w.String(r.label.c_str());
        w.Key("error"); w.String(r.error.c_str());
        w.EndObject();
      }
    w.EndArray();
    w.EndObject();
    std::cout << sb.GetString() << '\n';
  } else {
    const std::string would = o.dry_run ? "would be " : "";
    for (auto& r : out) {
      if (!r.error.empty()) std::cout << r.label << ": FAILED (it stays current): " << r.error << '\n';
      else if (r.retire) std::cout << r.label << ": former version " << would << (r.action == "destroy" ? "destroyed" : "disabled in Azure") << '\n';
      else if (o.dry_run) std::cout << r.label << ": would be rotated to version " << r.version << '\n';
      else if (!r.version) std::cout << r.label << ": rotated by Key Vault; the token follows its new version " << r.azure_kid << '\n';
      else std::cout << r.label << ": rotated; version " << r.version << " is " << r.azure_kid << '\n';
    }
    if (out.empty()) std::cout << "Nothing is due in group '" << o.group << "'.\n";
  }
  if (any_failed) exit_code = 1;
}

void versions_command(const GlobalOptions& global, const Options& o, int& exit_code) {
  if (o.label.empty() == o.id_hex.empty()) {
    exit_code = error_out(global, "say which key: --label or --id");
    return;
  }
  auto g = GroupSession::open(global.config, o.group, o.pin_env);
  if (!g) {
    exit_code = error_out(global, g.error());
    return;
  }
  GroupSession& gs = **g;
  auto k = gs.find_key(o.label, o.id_hex);
  if (!k) {
    exit_code = error_out(global, k.error());
    return;
  }
  auto id = azure::parse_key_id(k->azure_kid);
  if (!id) {
    exit_code = error_out(global, "Key '" + k->label + "' is not mirrored: it has no Azure versions.");
    return;
  }
  struct Row {
    std::optional<LocalKey> local;
    std::optional<azure::KeyItem> remote;
  };
  std::map<std::string, Row> rows;  // by Azure version id
  for (auto& l : gs.keys()) {
    auto lid = azure::parse_key_id(l.azure_kid);
    if (lid && azure::iequals(lid->name, id->name)) rows[lid->version].local = l;
  }
  std::string remote_error;
  if (auto* eng = gs.engine()) {
    auto vs = eng->connection()->vault().list_key_versions(id->name);
    if (vs) {
      for (auto& v : *vs)
        if (auto vid = azure::parse_key_id(v.kid)) rows[vid->version].remote = v;
    } else {
      remote_error = vs.error().describe();
    }
  } else {
    remote_error = gs.unavailable();
  }
  std::vector<std::pair<std::string, Row>> sorted(rows.begin(), rows.end());
  auto rank = [](const Row& r) -> std::pair<long long, long long> {
    return {r.local ? static_cast<long long>(r.local->version) : -1,
            r.remote && r.remote->attributes.created ? *r.remote->attributes.created : 0};
  };
  std::sort(sorted.begin(), sorted.end(), [&](auto& a, auto& b) { return rank(a.second) > rank(b.second); });
  if (global.json) {
    rapidjson::StringBuffer sb;
    Writer w(sb);
    w.StartObject();
    w.Key("group"); w.String(o.group.c_str());
    w.Key("name"); w.String(id->name.c_str());
    w.Key("versions");
    w.StartArray();
    for (auto& [ver, r] : sorted) {
      w.StartObject();
      w.Key("version"); r.local ? w.Uint64(r.local->version) : w.Null();
      w.Key("local"); r.local ? w.String(r.local->label.c_str()) : w.Null();
      w.Key("state"); r.local ? w.String(rot::version_state_name(r.local->version_state)) : w.Null();
      w.Key("azure_version"); r.remote ? w.String(ver.c_str()) : w.Null();
      const auto* at = r.remote ? &r.remote->attributes : nullptr;
      w.Key("azure_enabled"); at && at->enabled ? w.Bool(*at->enabled) : w.Null();
      w.Key("azure_created"); at && at->created ? w.Int64(*at->created) : w.Null();
      w.Key("azure_expires"); at && at->exp ? w.Int64(*at->exp) : w.Null();
      w.EndObject();
    }
    w.EndArray();
    w.Key("azure_error"); remote_error.empty() ? w.Null() : w.String(remote_error.c_str());
    w.EndObject();
    std::cout << sb.GetString() << '\n';
    return;
  }
  std::cout << "Key '" << id->name << "' in vault " << id->vault_url << ":\n";
  Table t({"VERSION", "LOCAL KEY", "STATE", "AZURE VERSION", "ENABLED", "CREATED", "EXPIRES"});
  for (auto& [ver, r] : sorted) {
    const auto* at = r.remote ? &r.remote->attributes : nullptr;
    t.add({r.local ? std::to_string(r.local->version) : "-", r.local ? r.local->label : "(not in the token)",
           r.local ? rot::version_state_name(r.local->version_state) : "-", r.remote ? ver : "(not in the vault)",
           at && at->enabled ? (*at->enabled ? "yes" : "no") : "-", at && at->created ? day(*at->created) : "-",
           at && at->exp ? day(*at->exp) : "-"});
  }
  t.print(std::cout);
  if (!remote_error.empty()) std::cout << "Vault not listed: " << remote_error << '\n';
}

struct PolicyOptions {
  std::string group, pin_env, name, label, rotate_after, rotate_before_expiry, notify_before_expiry, expiry;
  bool get = false, set = false;
};

void print_policy(const GlobalOptions& global, const std::string& name, const azure::RotationPolicy& p) {
  auto trigger = [](const azure::LifetimeAction& a) {
    return a.time_after_create.empty() ? "before expiry " + a.time_before_expiry : "after create " + a.time_after_create;
  };
  if (global.json) {
    rapidjson::StringBuffer sb;
    Writer w(sb);
    w.StartObject();
    w.Key("name"); w.String(name.c_str());
    w.Key("lifetime_actions");
    w.StartArray();
    for (auto& a : p.lifetime_actions) {
      w.StartObject();
      w.Key("action"); w.String(a.action == azure::RotationAction::rotate ? "Rotate" : "Notify");
      w.Key("time_after_create"); a.time_after_create.empty() ? w.Null() : w.String(a.time_after_create.c_str());
      w.Key("time_before_expiry"); a.time_before_expiry.empty() ? w.Null() : w.String(a.time_before_expiry.c_str());
      w.EndObject();
    }
    w.EndArray();
    w.Key("expiry_time"); p.expiry_time.empty() ? w.Null() : w.String(p.expiry_time.c_str());
    w.EndObject();
    std::cout << sb.GetString() << '\n';
    return;
  }
  std::cout << "Rotation policy of '" << name << "':\n";
  for (auto& a : p.lifetime_actions)
    std::cout << "  " << (a.action == azure::RotationAction::rotate ? "Rotate" : "Notify") << " " << trigger(a) << '\n';
  if (p.lifetime_actions.empty()) std::cout << "  no lifetime actions\n";
  std::cout << "  versions made by rotation expire: " << (p.expiry_time.empty() ? "never" : "after " + p.expiry_time) << '\n';
}

void rotation_policy_command(const GlobalOptions& global, const PolicyOptions& o, int& exit_code) {
  if (o.name.empty() == o.label.empty()) {
    exit_code = error_out(global, "say which vault key: --name or --label");
    return;
  }
  const bool changes = !o.rotate_after.empty() || !o.rotate_before_expiry.empty() || !o.notify_before_expiry.empty() ||
                       !o.expiry.empty();
  if (o.get == o.set || (o.get && changes)) {
    exit_code = error_out(global, "say --get, or --set with --rotate-after, --rotate-before-expiry, "
                                  "--notify-before-expiry or --expiry");
    return;
  }
  azure::RotationPolicy p;
  for (auto& [dur, opt] : {std::pair{o.rotate_after, "--rotate-after"}, {o.rotate_before_expiry, "--rotate-before-expiry"},
                          {o.notify_before_expiry, "--notify-before-expiry"}, {o.expiry, "--expiry"}})
    if (!dur.empty() && !azure::iso8601_duration_valid(dur)) {
      exit_code = error_out(global, std::string(opt) + " '" + dur + "' is not an ISO 8601 duration (e.g. P90D, P1Y)");
      return;
    }
  if (!o.rotate_after.empty()) p.lifetime_actions.push_back({azure::RotationAction::rotate, o.rotate_after, ""});
  if (!o.rotate_before_expiry.empty())
    p.lifetime_actions.push_back({azure::RotationAction::rotate, "", o.rotate_before_expiry});
  if (!o.notify_before_expiry.empty())
    p.lifetime_actions.push_back({azure::RotationAction::notify, "", o.notify_before_expiry});
  p.expiry_time = o.expiry;
  auto g = GroupSession::open(global.config, o.group, o.pin_env);
  if (!g) {
    exit_code = error_out(global, g.error());
    return;
  }
  GroupSession& gs = **g;
  if (!gs.engine()) {
    exit_code = error_out(global, "Group '" + o.group + "' cannot reach its vault: " + gs.unavailable());
    return;
  }
  std::string name = o.name;
  if (name.empty()) {
    auto k = gs.find_key(o.label, "");
    if (!k) {
      exit_code = error_out(global, k.error());
      return;
    }
    auto id = azure::parse_key_id(k->azure_kid);
    if (!id) {
      exit_code = error_out(global, "Key '" + o.label + "' has no Azure key.");
      return;
    }
    name = id->name;
  }
  // Key Vault's Rotate makes versions in the vault only: for a key the token mirrors, the token is
  // the source and must make them (cdcctl key rotate).
  const bool rotates = !o.rotate_after.empty() || !o.rotate_before_expiry.empty();
  if (o.set && rotates)
    for (auto& k : gs.keys())
      if (auto id = azure::parse_key_id(k.azure_kid); id && !k.azure_resident && azure::iequals(id->name, name)) {
        exit_code = error_out(global, "Vault key '" + name + "' is the mirror of local key '" + k.label +
                                          "': Key Vault's Rotate would make versions the token does not have. "
                                          "Rotate it with 'cdcctl key rotate' (the group's mirror.rotation schedules it); "
                                          "a Notify action may be set.");
        return;
      }
  auto kv = gs.engine()->connection()->vault();
  auto r = o.set ? kv.set_rotation_policy(name, p) : kv.get_rotation_policy(name);
  if (!r) {
    exit_code = error_out(global, r.error().describe());
    return;
  }
  print_policy(global, name, *r);
}

}  // namespace

std::string day(std::int64_t t) {
  const auto tt = static_cast<std::time_t>(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

void add_key_rotation_commands(CLI::App& key, GlobalOptions& global, int& exit_code) {
  auto o = std::make_shared<Options>();
  auto common = [&](CLI::App* c) {
    c->add_option("GROUP", o->group, "Group name")->required();
    c->add_option("--pin-env", o->pin_env, "Read the user PIN from this environment variable (default: ask)");
    c->add_option("--label", o->label, "The key with this CKA_LABEL");
    c->add_option("--id", o->id_hex, "The key with this CKA_ID (hex)");
  };
  auto* rotate = key.add_subcommand(
      "rotate", "Make a new version of mirrored keys: a new key in the token, the next version of the same Azure key");
  common(rotate);
  rotate->add_flag("--all-due", o->all_due,
                   "Every key whose rotation is due (or under way), and every former version due to be retired");
  rotate->add_flag("--dry-run", o->dry_run, "Only list what would be done");
  rotate->add_flag("--abandon", o->abandon,
                   "Undo the key's unfinished rotation: remove the new key (disabling its Azure version if it was "
                   "imported) and keep the current version");
  rotate->callback([&global, &exit_code, o] { rotate_command(global, *o, exit_code); });

  auto po = std::make_shared<PolicyOptions>();
  auto* policy = key.add_subcommand("rotation-policy",
                                    "Key Vault's rotation policy of a vault key (for keys made in Azure)");
  policy->add_option("GROUP", po->group, "Group name")->required();
  policy->add_option("--pin-env", po->pin_env, "Read the user PIN from this environment variable (default: ask)");
  policy->add_option("--name", po->name, "The vault key with this name");
  policy->add_option("--label", po->label, "The vault key of the local key with this CKA_LABEL");
  policy->add_flag("--get", po->get, "Show the policy");
  policy->add_flag("--set", po->set, "Replace the policy with the one the options below describe");
  policy->add_option("--rotate-after", po->rotate_after, "Rotate this long after a version is made (ISO 8601, e.g. P90D)");
  policy->add_option("--rotate-before-expiry", po->rotate_before_expiry, "Rotate this long before a version expires");
  policy->add_option("--notify-before-expiry", po->notify_before_expiry, "Notify (Event Grid) this long before expiry");
  policy->add_option("--expiry", po->expiry, "Versions made by rotation expire this long after they are made");
  policy->callback([&global, &exit_code, po] { rotation_policy_command(global, *po, exit_code); });

  auto* versions = key.add_subcommand("versions", "A key's versions, in the token and in the vault, side by side");
  common(versions);
  versions->callback([&global, &exit_code, o] { versions_command(global, *o, exit_code); });
}

}  // namespace cdcp11::cdcctl
