#include "tools/cdcctl/output.h"
#include "tools/cdcctl/group_commands.h"
#include "tools/cdcctl/group_sync.h"

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "azure/util.h"
#include "common/atomic_file.h"
#include "common/bytes.h"
#include "tools/cdcctl/config_doc.h"
#include "tools/cdcctl/group_test.h"
#include "tools/cdcctl/table.h"

namespace cdcp11::cdcctl {

namespace fs = std::filesystem;

namespace {

// Options shared by "group add" and "group edit"; an option the user did not give is left
// untouched in the file.
struct GroupOptions {
  std::string description, token_dir, cloud, tenant, client, subscription, secret_file, secret_env, cert_file,
      key_file, ca_file, client_cert, client_key, proxy, proxy_user, proxy_password_file, proxy_password_env, vault,
      vault_type, trigger, mode, on_destroy, plain_export, plain_export_from_hsm, retire_former;
  unsigned long slot_id = 0, max_pin_retries = 0, rotate_every_days = 0, retire_former_after_days = 0;
  std::vector<std::string> connect_to;
  bool secret_stdin = false, proxy_password_stdin = false, no_validate_host = false, validate_host = false,
       local_only = false;
  std::map<std::string, CLI::Option*> given;

  bool has(const std::string& name) const {
    auto it = given.find(name);
    return it != given.end() && it->second->count() > 0;
  }
};

void add_group_options(CLI::App* cmd, GroupOptions& o, bool for_edit) {
  auto opt = [&](const std::string& flag, std::string& v, const std::string& help) {
    o.given[flag] = cmd->add_option("--" + flag, v, help);
  };
  opt("description", o.description, "Free text shown in tables");
  opt("token-dir", o.token_dir, "Token directory (relative to the config file); default tokens/NAME");
  o.given["slot-id"] = cmd->add_option("--slot-id", o.slot_id, "Fixed PKCS#11 slot id (default: hash of the name)");
  o.given["max-pin-retries"] =
      cmd->add_option("--max-pin-retries", o.max_pin_retries, "Wrong PINs before a PIN locks (0 = never)");
  opt("cloud", o.cloud, "Azure cloud: global, usgov or china");
  opt("tenant-id", o.tenant, "Entra ID tenant (directory) id");
  opt("client-id", o.client, "Application (client) id");
  opt("subscription-id", o.subscription, "Subscription holding the vaults");
  opt("secret-file", o.secret_file, "File holding the client secret (mode 0600)");
  opt("secret-env", o.secret_env, "Environment variable holding the client secret");
  o.given["secret-stdin"] = cmd->add_flag("--secret-stdin", o.secret_stdin,
                                          "Read the client secret from standard input and store it in "
                                          "secrets/NAME.secret (0600) beside the config");
  opt("certificate-file", o.cert_file, "PEM certificate of the application (certificate credential)");
  opt("key-file", o.key_file, "PEM private key of that certificate (mode 0600)");
  opt("ca-file", o.ca_file, "CA bundle to trust instead of the system CAs");
  o.given["no-validate-host"] = cmd->add_flag("--no-validate-host", o.no_validate_host,
                                              "Do not check the server host name (logged as a warning)");
  o.given["validate-host"] = cmd->add_flag("--validate-host", o.validate_host, "Check the server host name (default)");
  opt("client-cert-file", o.client_cert, "Client certificate for mutual TLS");
  opt("client-key-file", o.client_key, "Client key for mutual TLS (mode 0600)");
  opt("proxy", o.proxy, "HTTPS proxy URL, without credentials (http://HOST:PORT or https://HOST:PORT)");
  opt("proxy-user", o.proxy_user, "User name for the proxy");
  opt("proxy-password-file", o.proxy_password_file, "File holding the proxy password (mode 0600)");
  opt("proxy-password-env", o.proxy_password_env, "Environment variable holding the proxy password");
  o.given["proxy-password-stdin"] =
      cmd->add_flag("--proxy-password-stdin", o.proxy_password_stdin,
                    "Read the proxy password from standard input and store it in secrets/NAME.proxy-password (0600)");
  o.given["connect-to"] = cmd->add_option("--connect-to", o.connect_to,
                                          "Route HOST:PORT to ADDR:PORT (libcurl CONNECT_TO syntax), repeatable");
  opt("vault", o.vault, "The vault or managed HSM name to mirror into");
  o.given["vault-type"] = cmd->add_option("--vault-type", o.vault_type, "standard, premium or managed_hsm")
                              ->check(CLI::IsMember({"standard", "premium", "managed_hsm"}));
  o.given["mirror"] = cmd->add_option("--mirror", o.trigger, "When to mirror: on_generate or on_request")
                          ->check(CLI::IsMember({"on_generate", "on_request"}));
  o.given["mirror-mode"] = cmd->add_option("--mirror-mode", o.mode, "sync or async")
                               ->check(CLI::IsMember({"sync", "async"}));
  o.given["allow-plain-export-of-non-extractable"] =
      cmd->add_option("--allow-plain-export-of-non-extractable", o.plain_export,
                      "true: a Standard vault may get non-extractable keys as a plain JWK (they then lose "
                      "CKA_NEVER_EXTRACTABLE); false (default): such a mirror is refused")
          ->check(CLI::IsMember({"true", "false"}));
  o.given["allow-plain-export-from-hsm"] =
      cmd->add_option("--allow-plain-export-from-hsm", o.plain_export_from_hsm,
                      "HSM groups. true: a Standard vault may get a key the HSM lets out in clear (extractable, "
                      "not sensitive) as a plain JWK, logged each time; false (default): refused")
          ->check(CLI::IsMember({"true", "false"}));
  o.given["on-destroy"] = cmd->add_option("--on-destroy", o.on_destroy,
                                          "What C_DestroyObject does to the Azure copy: keep, disable or delete")
                              ->check(CLI::IsMember({"keep", "disable", "delete"}));
  o.given["rotate-every-days"] =
      cmd->add_option("--rotate-every-days", o.rotate_every_days,
                      "Mirrored keys are due for rotation this many days after their version was made (0: never)")
          ->check(CLI::Range(0ul, 36500ul));
  o.given["retire-former"] = cmd->add_option("--retire-former", o.retire_former,
                                             "What becomes of a former version when it retires: keep, disable "
                                             "(its Azure version) or destroy (the local key)")
                                 ->check(CLI::IsMember({"keep", "disable", "destroy"}));
  o.given["retire-former-after-days"] =
      cmd->add_option("--retire-former-after-days", o.retire_former_after_days,
                      "Days after a rotation that the former version retires (0: never)")
          ->check(CLI::Range(0ul, 36500ul));
  if (for_edit)
    o.given["local-only"] = cmd->add_flag("--local-only", o.local_only, "Remove the group's Azure connection");
  o.given["secret-file"]->excludes(o.given["secret-env"]);
  o.given["secret-stdin"]->excludes(o.given["secret-file"])->excludes(o.given["secret-env"]);
  o.given["proxy-password-file"]->excludes(o.given["proxy-password-env"]);
  o.given["proxy-password-stdin"]
      ->excludes(o.given["proxy-password-file"])
      ->excludes(o.given["proxy-password-env"])
      ->excludes(o.given["secret-stdin"]);  // one secret per standard input
  o.given["no-validate-host"]->excludes(o.given["validate-host"]);
}

std::string read_secret_stdin(const char* prompt) {
  std::string s;
  termios old{};
  const bool tty = ::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &old) == 0;
  if (tty) {
    std::cerr << prompt << ": " << std::flush;
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  std::getline(std::cin, s);
  if (tty) {
    ::tcsetattr(STDIN_FILENO, TCSANOW, &old);
    std::cerr << '\n';
  }
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// Reads a secret from standard input into secrets/NAME.SUFFIX (0600) beside the config; returns
// its path relative to the config, as the config records it.
Result<std::string, std::string> store_stdin_secret(const ConfigDoc& doc, const std::string& name,
                                                    const std::string& suffix, const char* what) {
  std::string secret = read_secret_stdin(capitalised(what).c_str());
  if (secret.empty()) return fail("no " + std::string(what) + " was given on standard input");
  const fs::path base = fs::path(doc.path()).parent_path();
  const fs::path dir = base / "secrets";
  std::error_code ec;
  fs::create_directories(dir, ec);
  ::chmod(dir.c_str(), 0700);
  const std::string file = (dir / (name + "." + suffix)).string();
  auto w = write_file_atomically(file, secret, 0600);
  secure_zero(secret.data(), secret.size());
  if (!w) return fail(std::move(w).error());
  return fs::relative(file, base).string();
}

Status apply(ConfigDoc& doc, rapidjson::Value& g, const std::string& name, GroupOptions& o) {
  auto setif = [&](const char* flag, const char* path, const std::string& v) {
    if (o.has(flag)) doc.set(g, path, v);
  };
  setif("description", "description", o.description);
  setif("token-dir", "token.dir", o.token_dir);
  if (o.has("slot-id")) doc.set_uint(g, "slot_id", o.slot_id);
  if (o.has("max-pin-retries")) doc.set_uint(g, "token.max_pin_retries", o.max_pin_retries);
  if (o.local_only) {
    doc.erase(g, "azure");
    return {};
  }
  setif("cloud", "azure.cloud", o.cloud);
  setif("tenant-id", "azure.tenant_id", o.tenant);
  setif("client-id", "azure.client_id", o.client);
  setif("subscription-id", "azure.subscription_id", o.subscription);
  auto credential = [&](const char* type) {
    doc.erase(g, "azure.credential");
    doc.set(g, "azure.credential.type", std::string(type));
  };
  if (o.secret_stdin) {
    CDC_ASSIGN(std::string file, store_stdin_secret(doc, name, "secret", "client secret"));
    credential("secret");
    doc.set(g, "azure.credential.secret_file", file);
  }
  if (o.has("secret-file")) {
    credential("secret");
    doc.set(g, "azure.credential.secret_file", o.secret_file);
  }
  if (o.has("secret-env")) {
    credential("secret");
    doc.set(g, "azure.credential.secret_env", o.secret_env);
  }
  if (o.has("certificate-file")) {
    credential("certificate");
    doc.set(g, "azure.credential.certificate_file", o.cert_file);
    if (o.has("key-file")) doc.set(g, "azure.credential.key_file", o.key_file);
  } else if (o.has("key-file")) {
    doc.set(g, "azure.credential.key_file", o.key_file);
  }
  setif("ca-file", "azure.tls.ca_file", o.ca_file);
  if (o.no_validate_host) doc.set_bool(g, "azure.tls.validate_host", false);
  if (o.validate_host) doc.set_bool(g, "azure.tls.validate_host", true);
  setif("client-cert-file", "azure.tls.client_cert_file", o.client_cert);
  setif("client-key-file", "azure.tls.client_key_file", o.client_key);
  setif("proxy", "azure.tls.proxy", o.proxy);
  setif("proxy-user", "azure.tls.proxy_user", o.proxy_user);
  auto proxy_password = [&](const char* field, const std::string& value) {
    doc.erase(g, "azure.tls.proxy_password_file");
    doc.erase(g, "azure.tls.proxy_password_env");
    doc.set(g, std::string("azure.tls.") + field, value);
  };
  if (o.proxy_password_stdin) {
    CDC_ASSIGN(std::string file, store_stdin_secret(doc, name, "proxy-password", "proxy password"));
    proxy_password("proxy_password_file", file);
  }
  if (o.has("proxy-password-file")) proxy_password("proxy_password_file", o.proxy_password_file);
  if (o.has("proxy-password-env")) proxy_password("proxy_password_env", o.proxy_password_env);
  if (o.has("connect-to")) doc.set_strings(g, "azure.tls.connect_to", o.connect_to);
  setif("vault", "azure.vault.name", o.vault);
  setif("vault-type", "azure.vault.type", o.vault_type);
  setif("mirror", "mirror.trigger", o.trigger);
  setif("mirror-mode", "mirror.mode", o.mode);
  setif("on-destroy", "mirror.on_destroy", o.on_destroy);
  if (o.has("allow-plain-export-of-non-extractable"))
    doc.set_bool(g, "mirror.allow_plain_export_of_non_extractable", o.plain_export == "true");
  if (o.has("allow-plain-export-from-hsm"))
    doc.set_bool(g, "mirror.allow_plain_export_from_hsm", o.plain_export_from_hsm == "true");
  if (o.has("rotate-every-days")) doc.set_uint(g, "mirror.rotation.every_days", o.rotate_every_days);
  setif("retire-former", "mirror.rotation.retire_former", o.retire_former);
  if (o.has("retire-former-after-days"))
    doc.set_uint(g, "mirror.rotation.retire_former_after_days", o.retire_former_after_days);
  return {};
}

const char* trigger_name(core::MirrorTrigger t) { return t == core::MirrorTrigger::on_generate ? "on_generate" : "on_request"; }
const char* mode_name(core::MirrorMode m) { return m == core::MirrorMode::sync ? "sync" : "async"; }
const char* destroy_name(core::OnDestroy d) {
  return d == core::OnDestroy::keep ? "keep" : d == core::OnDestroy::disable ? "disable" : "delete";
}
const char* retire_name(core::RetireFormer r) {
  return r == core::RetireFormer::keep ? "keep" : r == core::RetireFormer::disable ? "disable" : "destroy";
}
std::string rotation_description(const core::RotationConfig& r) {
  if (r.every_days == 0 && r.retire_former_after_days == 0) return "manual; former versions kept";
  std::string d = r.every_days ? "every " + std::to_string(r.every_days) + " days" : "manual";
  if (r.retire_former == core::RetireFormer::keep || r.retire_former_after_days == 0) return d + "; former versions kept";
  return d + "; former versions: " + retire_name(r.retire_former) + " after " +
         std::to_string(r.retire_former_after_days) + " days";
}

std::string azure_status(const core::GroupConfig& g) {
  if (!g.azure_error.empty()) return "Azure misconfigured";
  if (!g.azure) return "local only";
  if (g.azure->vault_name.empty()) return "no vault chosen";
  return "configured (untested)";
}

// The proxy, its user and where its password comes from (never the password).
std::string proxy_description(const core::TlsConfig& t) {
  std::string d = azure::redact_url_credentials(t.proxy);
  if (!t.proxy_user.empty()) d += " as " + t.proxy_user;
  if (!t.proxy_password_file.empty()) d += ", password in file " + t.proxy_password_file;
  if (!t.proxy_password_env.empty()) d += ", password in $" + t.proxy_password_env;
  return d;
}

using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

void write_group_json(Writer& w, const core::GroupConfig& g) {
  w.StartObject();
  w.Key("name"); w.String(g.name.c_str());
  w.Key("description"); w.String(g.description.c_str());
  w.Key("slot_id"); w.Uint64(g.slot_id);
  w.Key("token_dir"); w.String(g.token.dir.c_str());
  w.Key("max_pin_retries"); w.Uint(g.token.max_pin_retries);
  w.Key("status"); w.String(azure_status(g).c_str());
  w.Key("azure_error"); g.azure_error.empty() ? w.Null() : w.String(g.azure_error.c_str());
  w.Key("azure");
  if (!g.azure) {
    w.Null();
  } else {
    auto& a = *g.azure;
    w.StartObject();
    w.Key("cloud"); w.String(a.cloud.name.c_str());
    w.Key("tenant_id"); w.String(a.tenant_id.c_str());
    w.Key("client_id"); w.String(a.client_id.c_str());
    w.Key("subscription_id"); w.String(a.subscription_id.c_str());
    w.Key("credential");
    w.String(a.credential.kind == core::CredentialConfig::Kind::certificate ? "certificate" : "secret");
    w.Key("vault"); a.vault_name.empty() ? w.Null() : w.String(a.vault_name.c_str());
    w.Key("vault_type"); w.String(core::vault_type_name(a.vault_type));
    w.Key("validate_host"); w.Bool(a.tls.validate_host);
    w.Key("proxy"); a.tls.proxy.empty() ? w.Null() : w.String(azure::redact_url_credentials(a.tls.proxy).c_str());
    w.Key("proxy_user"); a.tls.proxy_user.empty() ? w.Null() : w.String(a.tls.proxy_user.c_str());
    w.EndObject();
  }
  w.Key("mirror");
  w.StartObject();
  w.Key("trigger"); w.String(trigger_name(g.mirror.trigger));
  w.Key("mode"); w.String(mode_name(g.mirror.mode));
  w.Key("on_destroy"); w.String(destroy_name(g.mirror.on_destroy));
  w.Key("allow_plain_export_of_non_extractable"); w.Bool(g.mirror.allow_plain_export_of_non_extractable);
  w.Key("allow_plain_export_from_hsm"); w.Bool(g.mirror.allow_plain_export_from_hsm);
  w.Key("rotation");
  w.StartObject();
  w.Key("every_days"); w.Uint(g.mirror.rotation.every_days);
  w.Key("retire_former"); w.String(retire_name(g.mirror.rotation.retire_former));
  w.Key("retire_former_after_days"); w.Uint(g.mirror.rotation.retire_former_after_days);
  w.EndObject();
  w.EndObject();
  w.EndObject();
}


Result<core::Config, std::string> load_validated(const std::string& path) {
  CDC_ASSIGN(auto doc, ConfigDoc::load(path));
  return doc.validate();
}

// What the parsed command line binds to; shared by the callbacks, which CLI::App keeps alive.
struct CommandState {
  std::string show_name, remove_name;
  std::string add_name, edit_name;
  GroupOptions add_opts, edit_opts;
};

}  // namespace

void add_group_commands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto st = std::make_shared<CommandState>();
  auto* group = app.add_subcommand("group", "Manage CDC groups (one PKCS#11 slot and one Azure vault each)");
  group->require_subcommand(1);

  add_group_sync_command(group, global, exit_code);
  auto* list = group->add_subcommand("list", "Table of the configured groups");
  list->callback([&, st] {
    auto cfg = load_validated(global.config);
    if (!cfg) {
      exit_code = error_out(global, cfg.error());
      return;
    }
    if (global.json) {
      rapidjson::StringBuffer sb;
      Writer w(sb);
      w.StartArray();
      for (auto& g : cfg->groups) write_group_json(w, g);
      w.EndArray();
      std::cout << sb.GetString() << '\n';
      return;
    }
    Table t({"SLOT", "NAME", "CLOUD", "VAULT", "TYPE", "MIRROR", "AZURE"});
    for (auto& g : cfg->groups) {
      const bool az = g.azure.has_value();
      t.add({std::to_string(g.slot_id), g.name, az ? g.azure->cloud.name : "-",
             az && !g.azure->vault_name.empty() ? g.azure->vault_name : "-",
             az ? core::vault_type_name(g.azure->vault_type) : "-", trigger_name(g.mirror.trigger), azure_status(g)});
    }
    t.print(std::cout);
  });

  auto* show = group->add_subcommand("show", "Everything about one group (never its secret)");
  show->add_option("NAME", st->show_name, "Group name")->required();
  show->callback([&, st] {
    auto cfg = load_validated(global.config);
    if (!cfg) {
      exit_code = error_out(global, cfg.error());
      return;
    }
    for (auto& g : cfg->groups) {
      if (g.name != st->show_name) continue;
      rapidjson::StringBuffer sb;
      Writer w(sb);
      write_group_json(w, g);
      if (global.json) {
        std::cout << sb.GetString() << '\n';
        return;
      }
      Table t({"FIELD", "VALUE"});
      t.add({"name", g.name});
      t.add({"description", g.description});
      t.add({"slot id", std::to_string(g.slot_id)});
      t.add({"token directory", g.token.dir});
      t.add({"status", azure_status(g)});
      if (!g.azure_error.empty()) t.add({"problem", g.azure_error});
      if (g.azure) {
        auto& a = *g.azure;
        t.add({"cloud", a.cloud.name + " (" + a.cloud.authority_host + ")"});
        t.add({"tenant id", a.tenant_id});
        t.add({"client id", a.client_id});
        t.add({"subscription id", a.subscription_id});
        const bool cert = a.credential.kind == core::CredentialConfig::Kind::certificate;
        t.add({"credential", cert ? "certificate " + a.credential.certificate_file
                                  : !a.credential.secret_file.empty() ? "secret in file " + a.credential.secret_file
                                                                      : "secret in $" + a.credential.secret_env});
        t.add({"vault", a.vault_name.empty() ? "(not chosen)" : a.vault_name});
        t.add({"vault type", core::vault_type_name(a.vault_type)});
        t.add({"validate host", a.tls.validate_host ? "yes" : "NO"});
        if (!a.tls.ca_file.empty()) t.add({"CA file", a.tls.ca_file});
        if (!a.tls.proxy.empty()) t.add({"proxy", proxy_description(a.tls)});
      }
      t.add({"mirror", std::string(trigger_name(g.mirror.trigger)) + ", " + mode_name(g.mirror.mode) +
                           ", on destroy: " + destroy_name(g.mirror.on_destroy)});
      if (g.mirror.allow_plain_export_of_non_extractable)
        t.add({"plain export", "non-extractable keys may go to a Standard vault as a plain JWK"});
      if (g.mirror.allow_plain_export_from_hsm)
        t.add({"plain export from the HSM", "extractable, non-sensitive HSM keys may go to a Standard vault as a "
                                            "plain JWK (logged each time)"});
      t.add({"rotation", rotation_description(g.mirror.rotation)});
      t.print(std::cout);
      return;
    }
    exit_code = error_out(global, "no group named '" + st->show_name + "' in " + global.config);
  });

  auto* add = group->add_subcommand("add", "Add a group (its token is initialised with pkcs11-tool --init-token)");
  add->add_option("NAME", st->add_name, "Group name (also the token label)")->required();
  add_group_options(add, st->add_opts, false);
  add->callback([&, st] {
    auto doc = ConfigDoc::load(global.config);
    if (!doc) {
      exit_code = error_out(global, doc.error());
      return;
    }
    const std::string& name = st->add_name;
    if (doc->group(name)) {
      exit_code = error_out(global, "a group named '" + name + "' already exists");
      return;
    }
    auto& g = doc->add_group(name);
    if (!st->add_opts.has("token-dir")) doc->set(g, "token.dir", "tokens/" + name);
    doc->set(g, "token.backend", std::string("soft"));
    if (auto r = apply(*doc, g, name, st->add_opts); !r) {
      exit_code = error_out(global, r.error());
      return;
    }
    if (auto r = doc->save(); !r) {
      exit_code = error_out(global, r.error());
      return;
    }
    if (!global.json) std::cout << "Group '" << name << "' added to " << doc->path() << "\n";
    else std::cout << "{\"added\": \"" << name << "\"}\n";
  });

  auto* edit = group->add_subcommand("edit", "Change settings of a group");
  edit->add_option("NAME", st->edit_name, "Group name")->required();
  add_group_options(edit, st->edit_opts, true);
  edit->callback([&, st] {
    auto doc = ConfigDoc::load(global.config);
    if (!doc) {
      exit_code = error_out(global, doc.error());
      return;
    }
    auto* g = doc->group(st->edit_name);
    if (!g) {
      exit_code = error_out(global, "no group named '" + st->edit_name + "' in " + doc->path());
      return;
    }
    if (auto r = apply(*doc, *g, st->edit_name, st->edit_opts); !r) {
      exit_code = error_out(global, r.error());
      return;
    }
    if (auto r = doc->save(); !r) {
      exit_code = error_out(global, r.error());
      return;
    }
    if (!global.json) std::cout << "Group '" << st->edit_name << "' updated\n";
    else std::cout << "{\"updated\": \"" << st->edit_name << "\"}\n";
  });

  auto* remove = group->add_subcommand("remove", "Remove a group from the configuration (its token files stay)");
  remove->add_option("NAME", st->remove_name, "Group name")->required();
  remove->callback([&, st] {
    auto doc = ConfigDoc::load(global.config);
    if (!doc) {
      exit_code = error_out(global, doc.error());
      return;
    }
    if (!doc->remove_group(st->remove_name)) {
      exit_code = error_out(global, "no group named '" + st->remove_name + "' in " + doc->path());
      return;
    }
    if (auto r = doc->save(); !r) {
      exit_code = error_out(global, r.error());
      return;
    }
    if (!global.json) std::cout << "Group '" << st->remove_name << "' removed (token files kept)\n";
    else std::cout << "{\"removed\": \"" << st->remove_name << "\"}\n";
  });
  add_group_test_command(group, global, exit_code);
}

}  // namespace cdcp11::cdcctl
