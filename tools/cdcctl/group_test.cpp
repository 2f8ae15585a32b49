#include "tools/cdcctl/output.h"
#include "tools/cdcctl/group_test.h"

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "azure/util.h"
#include "common/log.h"
#include "core/azure_link.h"
#include "core/config.h"
#include "tools/cdcctl/config_doc.h"
#include "tools/cdcctl/table.h"

namespace cdcp11::cdcctl {

namespace {

using azure::ErrorKind;
using azure::VaultInfo;
using azure::VaultTier;
using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

// The key permissions the mirror engine uses (access-policy names, lower case).
const std::vector<std::string>& mirror_permissions() {
  static const std::vector<std::string> p = {"get", "list", "create", "import", "delete", "purge", "recover", "update"};
  return p;
}

int tier_order(VaultTier t) {
  switch (t) {
    case VaultTier::standard: return 0;
    case VaultTier::premium: return 1;
    case VaultTier::managed_hsm: return 2;
    case VaultTier::unknown: return 3;
  }
  return 3;
}

const char* tier_title(VaultTier t) {
  switch (t) {
    case VaultTier::standard: return "Standard";
    case VaultTier::premium: return "Premium";
    case VaultTier::managed_hsm: return "Managed HSM";
    case VaultTier::unknown: return "Unknown";
  }
  return "Unknown";
}

// Same spelling as the configuration's vault type.
const char* tier_key(VaultTier t) {
  switch (t) {
    case VaultTier::standard: return "standard";
    case VaultTier::premium: return "premium";
    case VaultTier::managed_hsm: return "managed_hsm";
    case VaultTier::unknown: return "unknown";
  }
  return "unknown";
}

VaultTier tier_of(core::VaultType t) {
  switch (t) {
    case core::VaultType::standard: return VaultTier::standard;
    case core::VaultType::premium: return VaultTier::premium;
    case core::VaultType::managed_hsm: return VaultTier::managed_hsm;
  }
  return VaultTier::unknown;
}

std::string access_model(const VaultInfo& v) {
  if (v.tier == VaultTier::managed_hsm) return "local RBAC";
  return v.rbac ? "RBAC" : "access policy";
}

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

// Everything the test found out; printed as a table or as JSON.
struct Report {
  std::string group;
  std::optional<core::AzureConfig> azure;
  bool connected = false;
  std::string reason;                     // why not connected (one sentence)
  std::string detail;                     // the failure with status, codes and request ids (--verbose)
  std::vector<std::string> warnings;
  bool listed = false;                    // the subscription's vaults were read from ARM
  std::vector<VaultInfo> vaults;          // sorted by type, then name
  std::optional<VaultInfo> chosen;
  bool permissions_known = false;
  std::vector<std::string> missing;       // mirror permissions the application lacks
  std::string permissions_note;           // why permissions are not known, or what applies
};

void fail_with(Report& r, const azure::Error& e) {
  r.reason = e.describe();
  r.detail = e.to_log_string();
}

// open_azure's errors start with "group 'NAME': "; the header line names the group already.
std::string without_group_prefix(const std::string& msg, const std::string& name) {
  const std::string prefix = "group '" + name + "': ";
  return msg.rfind(prefix, 0) == 0 ? msg.substr(prefix.size()) : msg;
}

void judge_permissions(Report& r) {
  if (!r.chosen) return;
  const VaultInfo& v = *r.chosen;
  if (v.tier == VaultTier::managed_hsm) {
    r.permissions_note =
        "a managed HSM has no access policies in ARM; its local RBAC applies, and cdcctl cannot read those role "
        "assignments: the mirror needs Managed HSM Crypto User for its keys and Managed HSM Crypto Officer for purge "
        "and recover (Microsoft.KeyVault/managedHsm/keys/deletedKeys/delete and "
        ".../keys/deletedKeys/recover/action)";
  } else if (v.rbac) {
    r.permissions_note =
        "the vault uses Azure RBAC, so the application's permissions can't be read from ARM; check its role "
        "assignments: the mirror needs the data actions Microsoft.KeyVault/vaults/keys/read, create/action, "
        "import/action, update/action, delete, and for cleanup Microsoft.KeyVault/vaults/keys/purge/action and "
        "Microsoft.KeyVault/vaults/keys/recover/action (Key Vault Crypto Officer has every one; Crypto User has none "
        "of create, import, delete, purge or recover)";
  } else {
    r.permissions_known = true;
    for (auto& p : mirror_permissions())
      if (!v.can(p)) r.missing.push_back(p);
    if (!v.has_access_policy) r.warnings.push_back("the vault's access policies name no entry for this application");
  }
}

Report run_test(const core::GroupConfig& g) {
  Report r;
  r.group = g.name;
  r.azure = g.azure;
  if (!g.azure) {
    r.reason = g.azure_error.empty()
                   ? "The group is local only (no Azure connection): add one with cdcctl group edit " + g.name + "."
                   : "The group's Azure settings are invalid: " + g.azure_error;
    return r;
  }
  const core::AzureConfig& a = *g.azure;
  if (a.vault_name.empty() && a.subscription_id.empty()) {
    r.reason = "The group names neither a vault nor a subscription, so there is nothing to test: set one with "
               "cdcctl group edit " + g.name + " --vault or --subscription-id.";
    return r;
  }
  auto conn = core::open_azure(g);
  if (!conn) {
    r.reason = without_group_prefix(conn.error(), g.name);
    return r;
  }
  auto& c = *conn;

  // 1. ARM: the subscription's vaults and managed HSMs. The mirror itself does not need ARM, so a
  //    failure that is ARM's own (its host, its permissions) is a warning; a failure to get a token
  //    or to reach the login host is the answer, and the vault would only repeat it.
  if (!a.subscription_id.empty()) {
    auto all = c->arm().list_all();
    if (all) {
      r.listed = true;
      r.vaults = std::move(*all);
      std::stable_sort(r.vaults.begin(), r.vaults.end(), [](const VaultInfo& x, const VaultInfo& y) {
        return tier_order(x.tier) != tier_order(y.tier) ? tier_order(x.tier) < tier_order(y.tier) : x.name < y.name;
      });
    } else {
      const azure::Error& e = all.error();
      const bool arm_only = azure::iequals(e.host, azure::url_host(c->cloud().arm_endpoint)) ||
                            e.kind == ErrorKind::subscription_not_found;
      if (!arm_only || a.vault_name.empty()) {
        fail_with(r, e);
        return r;
      }
      r.warnings.push_back("the subscription's vaults could not be listed: " + e.describe());
      r.detail = e.to_log_string();
    }
  } else {
    r.warnings.push_back("no subscription ID is configured, so the vaults were not listed");
  }

  // 2. The chosen vault: in the list, of the configured type, and answering an authenticated request.
  if (a.vault_name.empty()) {
    r.connected = r.listed;
    r.warnings.push_back("no vault is chosen yet: choose one with cdcctl group edit " + g.name +
                         " --vault NAME --vault-type TYPE");
    return r;
  }
  if (r.listed) {
    for (auto& v : r.vaults)
      if (azure::iequals(v.name, a.vault_name)) r.chosen = v;
    if (!r.chosen) {
      r.reason = "Vault '" + a.vault_name + "' was not found in subscription " + a.subscription_id +
                 ": check the vault name, the subscription ID and the cloud.";
      return r;
    }
    if (r.chosen->tier != tier_of(a.vault_type) && r.chosen->tier != VaultTier::unknown)
      r.warnings.push_back(std::string("the group says the vault is ") + core::vault_type_name(a.vault_type) +
                           " but ARM reports " + tier_key(r.chosen->tier) + ": fix it with cdcctl group edit " +
                           g.name + " --vault-type " + tier_key(r.chosen->tier));
    const std::string url = core::vault_url(a);
    if (!r.chosen->uri.empty() && !azure::iequals(r.chosen->uri, url))
      r.warnings.push_back("ARM gives the vault's URI as " + r.chosen->uri + " but the group uses " + url);
  }
  if (auto chk = c->check(); !chk) {
    fail_with(r, chk.error());
    return r;
  }
  r.connected = true;
  judge_permissions(r);
  if (!r.chosen && !r.listed)
    r.permissions_note = "the vault list could not be read, so the application's permissions are unknown";
  return r;
}

// ------------------------------------------------------------------------------------ output

void write_vault(Writer& w, const VaultInfo& v) {
  w.StartObject();
  w.Key("name"); w.String(v.name.c_str());
  w.Key("type"); w.String(tier_key(v.tier));
  w.Key("uri"); w.String(v.uri.c_str());
  w.Key("location"); w.String(v.location.c_str());
  w.Key("resource_group"); w.String(v.resource_group.c_str());
  w.Key("soft_delete"); w.Bool(v.soft_delete);
  w.Key("retention_days"); w.Int(v.retention_days);
  w.Key("purge_protection"); w.Bool(v.purge_protection);
  w.Key("rbac"); w.Bool(v.rbac || v.tier == VaultTier::managed_hsm);
  w.Key("permissions");  // null: not readable from ARM (RBAC, managed HSM)
  if (v.rbac || v.tier == VaultTier::managed_hsm) {
    w.Null();
  } else {
    w.StartArray();
    for (auto& p : v.our_key_permissions) w.String(p.c_str());
    w.EndArray();
  }
  w.EndObject();
}

void print_json(const Report& r) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  auto str_or_null = [&](const std::string& s) { s.empty() ? w.Null() : w.String(s.c_str()); };
  w.StartObject();
  w.Key("group"); w.String(r.group.c_str());
  w.Key("connected"); w.Bool(r.connected);
  w.Key("reason"); r.connected ? w.Null() : w.String(r.reason.c_str());
  w.Key("cloud"); str_or_null(r.azure ? r.azure->cloud.name : "");
  w.Key("tenant_id"); str_or_null(r.azure ? r.azure->tenant_id : "");
  w.Key("client_id"); str_or_null(r.azure ? r.azure->client_id : "");
  w.Key("subscription_id"); str_or_null(r.azure ? r.azure->subscription_id : "");
  w.Key("vaults");
  if (!r.listed) {
    w.Null();
  } else {
    w.StartArray();
    for (auto& v : r.vaults) write_vault(w, v);
    w.EndArray();
  }
  w.Key("chosen_vault");
  if (r.chosen) write_vault(w, *r.chosen);
  else w.Null();
  w.Key("missing_permissions");  // null: unknown (not connected, RBAC, managed HSM)
  if (r.connected && r.permissions_known) {
    w.StartArray();
    for (auto& p : r.missing) w.String(p.c_str());
    w.EndArray();
  } else {
    w.Null();
  }
  w.Key("permissions_note"); str_or_null(r.permissions_note);
  w.Key("warnings");
  w.StartArray();
  for (auto& s : r.warnings) w.String(s.c_str());
  w.EndArray();
  w.EndObject();
  std::cout << sb.GetString() << '\n';
}

void print_human(const Report& r) {
  std::cout << "Group '" << r.group << "': ";
  if (r.connected) {
    std::cout << "Connected";
    if (r.azure)
      std::cout << " (tenant " << r.azure->tenant_id << ", client " << r.azure->client_id << ", cloud "
                << r.azure->cloud.name << ")";
    std::cout << '\n';
  } else {
    std::cout << "Not Connected \xe2\x80\x94 " << r.reason << '\n';
  }
  for (auto& s : r.warnings) std::cout << "Warning: " << s << '\n';
  if (r.listed) {
    std::cout << '\n';
    if (r.vaults.empty()) {
      std::cout << "The subscription has no key vaults or managed HSMs.\n";
    } else {
      Table t({"", "TYPE", "NAME", "URI", "SOFT DELETE", "PURGE PROTECTION", "ACCESS"});
      for (auto& v : r.vaults) {
        const bool mine = r.chosen && r.chosen->name == v.name;
        t.add({mine ? "*" : "", tier_title(v.tier), v.name, v.uri,
               v.soft_delete ? "yes (" + std::to_string(v.retention_days) + " days)" : "no",
               v.purge_protection ? "yes" : "no", access_model(v)});
      }
      t.print(std::cout);
      if (r.chosen) std::cout << "(* the group's vault)\n";
    }
  }
  if (!r.connected || !r.azure || r.azure->vault_name.empty()) return;
  std::cout << '\n';
  const std::string type = r.chosen ? tier_key(r.chosen->tier) : core::vault_type_name(r.azure->vault_type);
  std::cout << "Chosen vault '" << r.azure->vault_name << "' (" << type << "): ";
  if (r.permissions_known && r.missing.empty())
    std::cout << "the application has every permission the mirror needs (" << join(mirror_permissions()) << ")\n";
  else if (r.permissions_known)
    std::cout << "the application lacks: " << join(r.missing) << '\n';
  else
    std::cout << "permissions not checked: " << r.permissions_note << '\n';
}


struct TestState {
  std::string name;
  bool verbose = false;
};

}  // namespace

void add_group_test_command(CLI::App* group, GlobalOptions& global, int& exit_code) {
  auto st = std::make_shared<TestState>();
  auto* test = group->add_subcommand(
      "test", "Test connection: get a token, list the subscription's vaults, reach the group's vault and "
              "show which permissions the mirror lacks (exit 0 only when connected)");
  test->add_option("NAME", st->name, "Group name")->required();
  test->add_flag("-v,--verbose", st->verbose,
                 "Also log the HTTP status, Azure error codes and request ids of a failure on stderr");
  test->callback([&, st] {
    // The one-line reason is the output; the library's warning log lines would repeat it. A
    // CDCP11_LOG_LEVEL set by the operator wins.
    ::setenv("CDCP11_LOG_LEVEL", st->verbose ? "info" : "error", st->verbose ? 1 : 0);
    log::configure_from_env();
    auto doc = ConfigDoc::load(global.config);
    if (!doc) {
      exit_code = error_out(global, doc.error());
      return;
    }
    auto cfg = doc->validate();
    if (!cfg) {
      exit_code = error_out(global, cfg.error());
      return;
    }
    const core::GroupConfig* g = nullptr;
    for (auto& x : cfg->groups)
      if (x.name == st->name) g = &x;
    if (!g) {
      exit_code = error_out(global, "no group named '" + st->name + "' in " + global.config);
      return;
    }
    Report r = run_test(*g);
    if (st->verbose && !r.detail.empty()) std::cerr << "cdcctl: details: " << r.detail << '\n';
    if (global.json) print_json(r);
    else print_human(r);
    exit_code = r.connected ? 0 : 1;
  });
}

}  // namespace cdcp11::cdcctl
