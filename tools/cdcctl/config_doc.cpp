#include "tools/cdcctl/config_doc.h"

#include <rapidjson/error/en.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/atomic_file.h"

namespace cdcp11::cdcctl {

namespace fs = std::filesystem;
using rapidjson::Value;

Result<ConfigDoc, std::string> ConfigDoc::load(const std::string& path) {
  ConfigDoc d;
  d.path_ = fs::absolute(path).lexically_normal().string();
  std::ifstream in(d.path_, std::ios::binary);
  if (!in) {
    if (fs::exists(d.path_)) return fail(d.path_ + ": cannot read the configuration file");
    d.doc_.SetObject();
    d.doc_.AddMember("version", 1, d.alloc());
    d.doc_.AddMember("groups", Value(rapidjson::kArrayType), d.alloc());
    return d;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  d.doc_.Parse(text.c_str(), text.size());
  if (d.doc_.HasParseError())
    return fail(d.path_ + ": invalid JSON at offset " + std::to_string(d.doc_.GetErrorOffset()) + ": " +
                rapidjson::GetParseError_En(d.doc_.GetParseError()));
  if (!d.doc_.IsObject() || !d.doc_.HasMember("groups") || !d.doc_["groups"].IsArray())
    return fail(d.path_ + ": not a cdcp11 configuration (no \"groups\" array)");
  return d;
}

Value* ConfigDoc::group(const std::string& name) {
  for (auto& g : doc_["groups"].GetArray())
    if (g.IsObject() && g.HasMember("name") && g["name"].IsString() && name == g["name"].GetString()) return &g;
  return nullptr;
}

Value& ConfigDoc::add_group(const std::string& name) {
  Value g(rapidjson::kObjectType);
  g.AddMember("name", Value(name.c_str(), alloc()), alloc());
  auto& arr = doc_["groups"];
  arr.PushBack(g, alloc());
  return arr[arr.Size() - 1];
}

bool ConfigDoc::remove_group(const std::string& name) {
  auto& arr = doc_["groups"];
  for (auto it = arr.Begin(); it != arr.End(); ++it)
    if (it->IsObject() && it->HasMember("name") && (*it)["name"].IsString() && name == (*it)["name"].GetString()) {
      arr.Erase(it);
      return true;
    }
  return false;
}

std::string ConfigDoc::serialize() const {
  rapidjson::StringBuffer sb;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> w(sb);
  w.SetIndent(' ', 2);
  doc_.Accept(w);
  return std::string(sb.GetString(), sb.GetSize()) + "\n";
}

Result<core::Config, std::string> ConfigDoc::validate() const {
  auto c = core::parse_config(serialize(), path_);
  if (!c) return fail(c.error().message);
  return std::move(*c);
}

Status ConfigDoc::save() const {
  CDC_ASSIGN(auto cfg, validate());
  for (auto& g : cfg.groups)
    if (!g.azure_error.empty()) return fail(g.azure_error);
  // A new config is private; an existing one keeps the mode its owner gave it (it holds no secret).
  struct stat st {};
  const unsigned mode = ::stat(path_.c_str(), &st) == 0 ? st.st_mode & 07777 : 0600;
  return write_file_atomically(path_, serialize(), mode);
}

Value& ConfigDoc::parent_of(Value& obj, const std::string& dotted, std::string& leaf) {
  Value* cur = &obj;
  std::size_t start = 0;
  for (std::size_t dot; (dot = dotted.find('.', start)) != std::string::npos; start = dot + 1) {
    std::string part = dotted.substr(start, dot - start);
    auto it = cur->FindMember(part.c_str());
    if (it == cur->MemberEnd() || !it->value.IsObject()) {
      if (it != cur->MemberEnd()) cur->RemoveMember(it);
      cur->AddMember(Value(part.c_str(), alloc()), Value(rapidjson::kObjectType), alloc());
      it = cur->FindMember(part.c_str());
    }
    cur = &it->value;
  }
  leaf = dotted.substr(start);
  return *cur;
}

void ConfigDoc::set(Value& obj, const std::string& dotted, std::optional<std::string> value) {
  if (!value) return erase(obj, dotted);
  std::string leaf;
  Value& p = parent_of(obj, dotted, leaf);
  p.RemoveMember(leaf.c_str());
  p.AddMember(Value(leaf.c_str(), alloc()), Value(value->c_str(), alloc()), alloc());
}

void ConfigDoc::set_bool(Value& obj, const std::string& dotted, bool value) {
  std::string leaf;
  Value& p = parent_of(obj, dotted, leaf);
  p.RemoveMember(leaf.c_str());
  p.AddMember(Value(leaf.c_str(), alloc()), Value(value), alloc());
}

void ConfigDoc::set_uint(Value& obj, const std::string& dotted, unsigned long value) {
  std::string leaf;
  Value& p = parent_of(obj, dotted, leaf);
  p.RemoveMember(leaf.c_str());
  p.AddMember(Value(leaf.c_str(), alloc()), Value(static_cast<uint64_t>(value)), alloc());
}

void ConfigDoc::set_strings(Value& obj, const std::string& dotted, const std::vector<std::string>& values) {
  std::string leaf;
  Value& p = parent_of(obj, dotted, leaf);
  p.RemoveMember(leaf.c_str());
  Value arr(rapidjson::kArrayType);
  for (auto& v : values) arr.PushBack(Value(v.c_str(), alloc()), alloc());
  p.AddMember(Value(leaf.c_str(), alloc()), arr, alloc());
}

void ConfigDoc::erase(Value& obj, const std::string& dotted) {
  Value* cur = &obj;
  std::size_t start = 0;
  for (std::size_t dot; (dot = dotted.find('.', start)) != std::string::npos; start = dot + 1) {
    auto it = cur->FindMember(dotted.substr(start, dot - start).c_str());
    if (it == cur->MemberEnd() || !it->value.IsObject()) return;
    cur = &it->value;
  }
  cur->RemoveMember(dotted.substr(start).c_str());
}

}  // namespace cdcp11::cdcctl
