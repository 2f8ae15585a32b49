#include "core/config.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

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

R<Config> parse_config(const std::string& json, const std::string& path) {
  rapidjson::Document d;
  d.Parse(json.c_str(), json.size());
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
    const Value& t = tit->value;
    Ctx tc{path, gc.where + "token."};
    CDC_TRY(only_known(tc, t, {"backend", "dir", "max_pin_retries", "kdf_scrypt_log2_n"}));
    CDC_ASSIGN(gr.token.backend, get_string(tc, t, "backend", false, "soft"));
    if (gr.token.backend != "soft") return tc.bad("backend", "must be \"soft\" (the only backend so far)");
    CDC_ASSIGN(std::string dir, get_string(tc, t, "dir", true));
    if (dir.empty()) return tc.bad("dir", "must not be empty");
    gr.token.dir = fs::absolute(base / dir).lexically_normal().string();
    CDC_ASSIGN(auto retries, get_uint(tc, t, "max_pin_retries", 10, 0, 1000));
    gr.token.max_pin_retries = static_cast<unsigned>(retries);
    CDC_ASSIGN(auto logn, get_uint(tc, t, "kdf_scrypt_log2_n", 15, 10, 22));
    gr.token.kdf_scrypt_log2_n = static_cast<unsigned>(logn);
    cfg.groups.push_back(std::move(gr));
  }
  return cfg;
}

R<Config> load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return err(Errc::general_error, path + ": cannot read the configuration file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), fs::absolute(path).string());
}

}  // namespace cdcp11::core
