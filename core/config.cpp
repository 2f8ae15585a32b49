#include "core/config.h"

#include "azure/cloud.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <sys/stat.h>

namespace cdcp11::core {
namespace fs = std::filesystem;

unsigned long default_slot_id(const std::string& name) {
  // FNV-1a, folded to 24 bits so ids stay small and readable in tools.
  std::uint32_t h = 2166136261u;
  for (unsigned char c : name) {
    h ^= c;
    h *= 16777619u;
  }
  return (h ^ (h >> 24)) & 0xffffff;
}

namespace {

using Value = rapidjson::Value;

struct Ctx {
  std::string file;
  std::string where;
  Unexpected<Error> bad(const std::string& field, const std::string& what) const {
    return err(Errc::general_error, file + ": " + where + field + ": " + what);
  }
};

R<std::string> get_string(const Ctx& c, const Value& o, const char* key, bool required,
                          const std::string& def = "") {
  auto it = o.FindMember(key);
  if (it == o.MemberEnd()) {
    if (required) return c.bad(key, "is required");
    return def;
  }
  if (!it->value.IsString()) return c.bad(key, "must be a string");
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

R<unsigned long> get_uint(const Ctx& c, const Value& o, const char* key, unsigned long def,
                          unsigned long min, unsigned long max) {
  auto it = o.FindMember(key);
  if (it == o.MemberEnd()) return def;
  if (!it->value.IsUint64()) return c.bad(key, "must be a non-negative integer");
  auto v = it->value.GetUint64();
  if (v < min || v > max)
    return c.bad(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  return static_cast<unsigned long>(v);
}

R<void> only_known(const Ctx& c, const Value& o, std::initializer_list<const char*> known) {
  for (auto it = o.MemberBegin(); it != o.MemberEnd(); ++it) {
    std::string k = it->name.GetString();
    bool ok = false;
    for (auto* n : known) ok |= k == n;
    if (!ok) return c.bad(k, "is not a known setting");
  }
  return {};
}

}  // namespace

const char* vault_type_name(VaultType t) {
  switch (t) {
    case VaultType::standard: return "standard";
    case VaultType::premium: return "premium";
    case VaultType::managed_hsm: return "managed_hsm";
  }
  return "?";
}

std::optional<CloudEndpoints> known_cloud(const std::string& name) {
  if (name != "global" && name != "usgov" && name != "china") return std::nullopt;
  auto c = azure::cloud_by_name(name);
  if (!c) return std::nullopt;
  return CloudEndpoints{name, c->authority_host, c->arm_endpoint, c->vault_suffix, c->mhsm_suffix};
}

bool file_is_private(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  return (st.st_mode & (S_IRWXG | S_IRWXO)) == 0;
}

namespace {

R<bool> get_bool(const Ctx& c, const Value& o, const char* key, bool def) {
  auto it = o.FindMember(key);
  if (it == o.MemberEnd()) return def;
  if (!it->value.IsBool()) return c.bad(key, "must be true or false");
  return it->value.GetBool();
}

R<std::string> get_choice(const Ctx& c, const Value& o, const char* key, std::initializer_list<const char*> choices,
                          const char* def) {
  CDC_ASSIGN(std::string v, get_string(c, o, key, false, def));
  std::string all;
  for (auto* ch : choices) {
    if (v == ch) return v;
    all += all.empty() ? "" : ", ";
    all += ch;
  }
  return c.bad(key, "must be one of: " + all);
}

bool is_guid(const std::string& s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

// The error_code forms of std::filesystem throughout: a path the system cannot check (too long,
// a symlink loop, no permission) must not throw out of the parser; using the file reports it.
fs::path absolute_or_same(const fs::path& p) {
  std::error_code ec;
  fs::path a = fs::absolute(p, ec);
  return ec ? p : a;
}

bool exists(const std::string& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

std::string resolve(const fs::path& base, const std::string& p) {
  if (p.empty()) return p;
  return absolute_or_same(base / p).lexically_normal().string();
}

// Whether a proxy setting carries user information ("user:password@"), as a URL or as libcurl's
// scheme-less "user:password@host:port"; password says whether a password is part of it.
bool proxy_userinfo(const std::string& proxy, bool& password) {
  auto start = proxy.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  auto end = proxy.find_first_of("/?#", start);
  const std::string authority = proxy.substr(start, end == std::string::npos ? std::string::npos : end - start);
  const auto at = authority.rfind('@');
  if (at == std::string::npos) return false;
  password = authority.find(':') < at;
  return true;
}

// tls.proxy and its credential. Like the client secret, a proxy password never sits in the
// configuration: it comes from a 0600 file or an environment variable. No message quotes the
// proxy setting, since it may hold the very password it refuses.
R<void> parse_proxy(const Ctx& tc, const Value& t, const fs::path& base, TlsConfig& tls) {
  CDC_ASSIGN(tls.proxy, get_string(tc, t, "proxy", false));
  if (bool password = false; proxy_userinfo(tls.proxy, password))
    return tc.bad("proxy", password ? "a proxy password may not be written in the configuration; use "
                                      "proxy_password_file (mode 0600) or proxy_password_env, and proxy_user"
                                    : "give the proxy user name in proxy_user, not in the URL");
  CDC_ASSIGN(tls.proxy_user, get_string(tc, t, "proxy_user", false));
  CDC_ASSIGN(std::string pf, get_string(tc, t, "proxy_password_file", false));
  CDC_ASSIGN(tls.proxy_password_env, get_string(tc, t, "proxy_password_env", false));
  tls.proxy_password_file = resolve(base, pf);
  const bool has_password = !tls.proxy_password_file.empty() || !tls.proxy_password_env.empty();
  if (!tls.proxy_password_file.empty() && !tls.proxy_password_env.empty())
    return tc.bad("proxy_password_file", "give at most one of proxy_password_file and proxy_password_env");
  if (has_password && tls.proxy_user.empty()) return tc.bad("proxy_user", "a proxy password needs proxy_user");
  if (!tls.proxy_user.empty() && tls.proxy.empty()) return tc.bad("proxy_user", "is set but no proxy is");
  if (!tls.proxy_password_file.empty() && exists(tls.proxy_password_file) &&
      !file_is_private(tls.proxy_password_file))
    return tc.bad("proxy_password_file", tls.proxy_password_file + " is readable by group or others; chmod 600 it");
  return {};
}

R<AzureConfig> parse_azure(const Ctx& c, const Value& a, const fs::path& base) {
  if (!a.IsObject()) return c.bad("", "must be an object");
  CDC_TRY(only_known(c, a, {"cloud", "tenant_id", "client_id", "subscription_id", "credential", "tls", "vault"}));
  AzureConfig az;
  auto cit = a.FindMember("cloud");
  if (cit == a.MemberEnd() || cit->value.IsString()) {
    std::string name = cit == a.MemberEnd() ? "global" : cit->value.GetString();
    auto cl = known_cloud(name);
    if (!cl) return c.bad("cloud", "must be global, usgov, china or an object of explicit endpoints");
    az.cloud = *cl;
  } else if (cit->value.IsObject()) {
    Ctx cc{c.file, c.where + "cloud."};
    CDC_TRY(only_known(cc, cit->value, {"authority_host", "arm_endpoint", "vault_suffix", "mhsm_suffix"}));
    az.cloud.name = "custom";
    CDC_ASSIGN(az.cloud.authority_host, get_string(cc, cit->value, "authority_host", true));
    CDC_ASSIGN(az.cloud.arm_endpoint, get_string(cc, cit->value, "arm_endpoint", true));
    CDC_ASSIGN(az.cloud.vault_suffix, get_string(cc, cit->value, "vault_suffix", true));
    CDC_ASSIGN(az.cloud.mhsm_suffix, get_string(cc, cit->value, "mhsm_suffix", true));
  } else {
    return c.bad("cloud", "must be a string or an object");
  }
  for (auto [key, field] : {std::pair{"tenant_id", &az.tenant_id}, std::pair{"client_id", &az.client_id},
                            std::pair{"subscription_id", &az.subscription_id}}) {
    CDC_ASSIGN(*field, get_string(c, a, key, true));
    if (!is_guid(*field)) return c.bad(key, "must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
  }
  auto crit = a.FindMember("credential");
  if (crit == a.MemberEnd() || !crit->value.IsObject()) return c.bad("credential", "must be an object");
  {
    const Value& cr = crit->value;
    Ctx cc{c.file, c.where + "credential."};
    if (cr.HasMember("secret") || cr.HasMember("client_secret"))
      return cc.bad(cr.HasMember("secret") ? "secret" : "client_secret",
                    "a client secret may not be written in the configuration; use secret_file (mode 0600) or "
                    "secret_env");
    CDC_TRY(only_known(cc, cr, {"type", "secret_file", "secret_env", "certificate_file", "key_file"}));
    CDC_ASSIGN(std::string type, get_choice(cc, cr, "type", {"secret", "certificate"}, "secret"));
    auto& k = az.credential;
    if (type == "secret") {
      k.kind = CredentialConfig::Kind::secret;
      CDC_ASSIGN(std::string f, get_string(cc, cr, "secret_file", false));
      CDC_ASSIGN(k.secret_env, get_string(cc, cr, "secret_env", false));
      k.secret_file = resolve(base, f);
      if (k.secret_file.empty() == k.secret_env.empty())
        return cc.bad("secret_file", "give exactly one of secret_file and secret_env");
      if (!k.secret_file.empty() && exists(k.secret_file) && !file_is_private(k.secret_file))
        return cc.bad("secret_file", k.secret_file + " is readable by group or others; chmod 600 it");
    } else {
      k.kind = CredentialConfig::Kind::certificate;
      CDC_ASSIGN(std::string cf, get_string(cc, cr, "certificate_file", true));
      CDC_ASSIGN(std::string kf, get_string(cc, cr, "key_file", false));
      k.certificate_file = resolve(base, cf);
      k.key_file = kf.empty() ? k.certificate_file : resolve(base, kf);
      if (exists(k.key_file) && !file_is_private(k.key_file))
        return cc.bad("key_file", k.key_file + " is readable by group or others; chmod 600 it");
    }
  }
  if (auto tit = a.FindMember("tls"); tit != a.MemberEnd()) {
    const Value& t = tit->value;
    Ctx tc{c.file, c.where + "tls."};
    if (!t.IsObject()) return tc.bad("", "must be an object");
    CDC_TRY(only_known(tc, t, {"validate_host", "ca_file", "client_cert_file", "client_key_file", "proxy",
                               "proxy_user", "proxy_password_file", "proxy_password_env", "connect_to",
                               "connect_timeout_s", "total_timeout_s"}));
    CDC_ASSIGN(az.tls.validate_host, get_bool(tc, t, "validate_host", true));
    CDC_ASSIGN(std::string ca, get_string(tc, t, "ca_file", false));
    CDC_ASSIGN(std::string cc2, get_string(tc, t, "client_cert_file", false));
    CDC_ASSIGN(std::string ck, get_string(tc, t, "client_key_file", false));
    az.tls.ca_file = resolve(base, ca);
    az.tls.client_cert_file = resolve(base, cc2);
    az.tls.client_key_file = resolve(base, ck);
    if (az.tls.client_cert_file.empty() != az.tls.client_key_file.empty())
      return tc.bad("client_key_file", "client_cert_file and client_key_file go together");
    if (!az.tls.client_key_file.empty() && exists(az.tls.client_key_file) &&
        !file_is_private(az.tls.client_key_file))
      return tc.bad("client_key_file", az.tls.client_key_file + " is readable by group or others; chmod 600 it");
    CDC_TRY(parse_proxy(tc, t, base, az.tls));
    if (auto ct = t.FindMember("connect_to"); ct != t.MemberEnd()) {
      if (!ct->value.IsArray()) return tc.bad("connect_to", "must be an array of \"host:port:addr:port\" strings");
      for (auto& e : ct->value.GetArray()) {
        if (!e.IsString()) return tc.bad("connect_to", "must be an array of strings");
        az.tls.connect_to.emplace_back(e.GetString());
      }
    }
    CDC_ASSIGN(auto cto, get_uint(tc, t, "connect_timeout_s", 10, 1, 600));
    CDC_ASSIGN(auto tto, get_uint(tc, t, "total_timeout_s", 60, 1, 3600));
    az.tls.connect_timeout_s = static_cast<unsigned>(cto);
    az.tls.total_timeout_s = static_cast<unsigned>(tto);
  }
  if (auto vit = a.FindMember("vault"); vit != a.MemberEnd()) {
    const Value& v = vit->value;
    Ctx vc{c.file, c.where + "vault."};
    if (!v.IsObject()) return vc.bad("", "must be an object");
    CDC_TRY(only_known(vc, v, {"name", "type"}));
    CDC_ASSIGN(az.vault_name, get_string(vc, v, "name", true));
    if (az.vault_name.size() < 3 || az.vault_name.size() > 24 ||
        az.vault_name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") !=
            std::string::npos)
      return vc.bad("name", "must be 3 to 24 letters, digits or hyphens");
    CDC_ASSIGN(std::string type, get_choice(vc, v, "type", {"standard", "premium", "managed_hsm"}, "premium"));
    az.vault_type = type == "standard" ? VaultType::standard
                    : type == "premium" ? VaultType::premium
                                        : VaultType::managed_hsm;
  }
  return az;
}

constexpr unsigned long kMaxDays = 36500;

R<RotationConfig> parse_rotation(const Ctx& c, const Value& r) {
  if (!r.IsObject()) return c.bad("", "must be an object");
  CDC_TRY(only_known(c, r, {"every_days", "retire_former", "retire_former_after_days"}));
  RotationConfig rc;
  CDC_ASSIGN(rc.every_days, get_uint(c, r, "every_days", 0, 0, kMaxDays));
  CDC_ASSIGN(std::string retire, get_choice(c, r, "retire_former", {"keep", "disable", "destroy"}, "keep"));
  rc.retire_former = retire == "keep" ? RetireFormer::keep : retire == "disable" ? RetireFormer::disable
                                                                                : RetireFormer::destroy;
  CDC_ASSIGN(rc.retire_former_after_days, get_uint(c, r, "retire_former_after_days", 0, 0, kMaxDays));
  return rc;
}

// The token section: the soft token (a directory) or a token of another PKCS#11 module.
R<TokenConfig> parse_token(const Ctx& tc, const Value& t, const fs::path& base, const std::string& group) {
  TokenConfig tk;
  CDC_ASSIGN(tk.backend, get_choice(tc, t, "backend", {"soft", "pkcs11"}, "soft"));
  const bool hsm = tk.backend == "pkcs11";
  static constexpr std::initializer_list<const char*> kSoft = {"max_pin_retries", "kdf_scrypt_log2_n"};
  static constexpr std::initializer_list<const char*> kHsm = {"module", "token_label", "token_serial", "slot_id",
                                                              "module_args"};
  for (auto* k : hsm ? kSoft : kHsm)
    if (t.HasMember(k)) return tc.bad(k, std::string("is not a setting of the ") + tk.backend + " backend");
  CDC_TRY(only_known(tc, t, {"backend", "dir", "max_pin_retries", "kdf_scrypt_log2_n", "module", "token_label",
                             "token_serial", "slot_id", "module_args"}));
  CDC_ASSIGN(std::string dir, get_string(tc, t, "dir", !hsm));
  if (!hsm && dir.empty()) return tc.bad("dir", "must not be empty");
  tk.dir = resolve(base, dir.empty() ? group + ".hsm" : dir);
  if (!hsm) {
    CDC_ASSIGN(auto retries, get_uint(tc, t, "max_pin_retries", 10, 0, 1000));
    tk.max_pin_retries = static_cast<unsigned>(retries);
    CDC_ASSIGN(auto logn, get_uint(tc, t, "kdf_scrypt_log2_n", 15, 10, 22));
    tk.kdf_scrypt_log2_n = static_cast<unsigned>(logn);
    return tk;
  }
  CDC_ASSIGN(std::string module, get_string(tc, t, "module", true));
  if (module.empty()) return tc.bad("module", "must not be empty");
  tk.module = resolve(base, module);
  const int selectors = t.HasMember("token_label") + t.HasMember("token_serial") + t.HasMember("slot_id");
  if (selectors != 1)  // names the section itself: "token: give ..."
    return Ctx{tc.file, tc.where.substr(0, tc.where.size() - 1)}.bad("", "give exactly one of token_label, "
                                                                         "token_serial and slot_id");
  if (t.HasMember("token_label")) {
    tk.selector = TokenConfig::Select::label;
    CDC_ASSIGN(tk.token_label, get_string(tc, t, "token_label", true));
    if (tk.token_label.empty() || tk.token_label.size() > 32) return tc.bad("token_label", "must be 1 to 32 characters");
  } else if (t.HasMember("token_serial")) {
    tk.selector = TokenConfig::Select::serial;
    CDC_ASSIGN(tk.token_serial, get_string(tc, t, "token_serial", true));
    if (tk.token_serial.empty() || tk.token_serial.size() > 16)
      return tc.bad("token_serial", "must be 1 to 16 characters");
  } else {
    tk.selector = TokenConfig::Select::slot_id;
    CDC_ASSIGN(tk.hsm_slot_id, get_uint(tc, t, "slot_id", 0, 0, ~0UL));
  }
  if (t.HasMember("module_args")) {
    CDC_ASSIGN(std::string args, get_string(tc, t, "module_args", true));
    tk.module_args = std::move(args);
  }
  return tk;
}

R<MirrorConfig> parse_mirror(const Ctx& c, const Value& m) {
  if (!m.IsObject()) return c.bad("", "must be an object");
  CDC_TRY(only_known(c, m, {"trigger", "mode", "on_destroy", "recover_soft_deleted",
                            "allow_plain_export_of_non_extractable", "allow_plain_export_from_hsm", "rotation"}));
  MirrorConfig mc;
  CDC_ASSIGN(std::string trig, get_choice(c, m, "trigger", {"on_generate", "on_request"}, "on_request"));
  CDC_ASSIGN(std::string mode, get_choice(c, m, "mode", {"sync", "async"}, "sync"));
  CDC_ASSIGN(std::string od, get_choice(c, m, "on_destroy", {"keep", "disable", "delete"}, "keep"));
  mc.trigger = trig == "on_generate" ? MirrorTrigger::on_generate : MirrorTrigger::on_request;
  mc.mode = mode == "sync" ? MirrorMode::sync : MirrorMode::async;
  mc.on_destroy = od == "keep" ? OnDestroy::keep : od == "disable" ? OnDestroy::disable : OnDestroy::remove;
  CDC_ASSIGN(mc.recover_soft_deleted, get_bool(c, m, "recover_soft_deleted", false));
  CDC_ASSIGN(mc.allow_plain_export_of_non_extractable,
             get_bool(c, m, "allow_plain_export_of_non_extractable", false));
  CDC_ASSIGN(mc.allow_plain_export_from_hsm, get_bool(c, m, "allow_plain_export_from_hsm", false));
  if (auto rit = m.FindMember("rotation"); rit != m.MemberEnd()) {
    CDC_ASSIGN(mc.rotation, parse_rotation(Ctx{c.file, c.where + "rotation."}, rit->value));
  }
  return mc;
}

}  // namespace

R<Config> parse_config(const std::string& json, const std::string& path) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseIterativeFlag>(json.c_str(), json.size());
  if (d.HasParseError())
    return err(Errc::general_error, path + ": invalid JSON at offset " + std::to_string(d.GetErrorOffset()) +
                                        ": " + rapidjson::GetParseError_En(d.GetParseError()));
  Ctx c{path, ""};
  if (!d.IsObject()) return c.bad("top level", "must be a JSON object");
  CDC_TRY(only_known(c, d, {"version", "groups"}));
  CDC_ASSIGN(auto version, get_uint(c, d, "version", 1, 1, 1));
  (void)version;
  auto git = d.FindMember("groups");
  if (git == d.MemberEnd() || !git->value.IsArray()) return c.bad("groups", "must be an array");
  Config cfg;
  cfg.path = path;
  const fs::path base = fs::path(path).parent_path();
  std::set<std::string> names;
  std::set<unsigned long> ids;
  for (auto& g : git->value.GetArray()) {
    Ctx gc{path, "group #" + std::to_string(cfg.groups.size() + 1) + ": "};
    if (!g.IsObject()) return gc.bad("", "must be an object");
    GroupConfig gr;
    CDC_ASSIGN(gr.name, get_string(gc, g, "name", true));
    gc.where = "group '" + gr.name + "': ";
    if (gr.name.empty() || gr.name.size() > 32) return gc.bad("name", "must be 1 to 32 characters");
    if (!names.insert(gr.name).second) return gc.bad("name", "is used by another group");
    CDC_TRY(only_known(gc, g, {"name", "description", "slot_id", "token", "azure", "mirror"}));
    CDC_ASSIGN(gr.description, get_string(gc, g, "description", false));
    CDC_ASSIGN(gr.slot_id, get_uint(gc, g, "slot_id", default_slot_id(gr.name), 0, 0xffffffffUL));
    if (!ids.insert(gr.slot_id).second) return gc.bad("slot_id", "is used by another group");
    auto tit = g.FindMember("token");
    if (tit == g.MemberEnd() || !tit->value.IsObject()) return gc.bad("token", "must be an object");
    CDC_ASSIGN(gr.token, parse_token(Ctx{path, gc.where + "token."}, tit->value, base, gr.name));
    if (auto mit = g.FindMember("mirror"); mit != g.MemberEnd()) {
      CDC_ASSIGN(gr.mirror, parse_mirror(Ctx{path, gc.where + "mirror."}, mit->value));
    }
    // A broken azure section leaves the group serving its local token (the issue's rule).
    if (auto ait = g.FindMember("azure"); ait != g.MemberEnd()) {
      auto az = parse_azure(Ctx{path, gc.where + "azure."}, ait->value, base);
      if (az) gr.azure = std::move(*az);
      else gr.azure_error = az.error().message;
    }
    cfg.groups.push_back(std::move(gr));
  }
  return cfg;
}

R<Config> load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return err(Errc::general_error, path + ": cannot read the configuration file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), absolute_or_same(path).string());
}

}  // namespace cdcp11::core
