// The configuration file as cdcctl edits it: a JSON document changed in place (unknown content
// kept), validated with the module's own parser before it is written atomically.
#pragma once

#include <rapidjson/document.h>

#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "core/config.h"

namespace cdcp11::cdcctl {

using Status = Result<void, std::string>;

class ConfigDoc {
 public:
  // A missing file is an empty configuration (written on the first save).
  static Result<ConfigDoc, std::string> load(const std::string& path);

  const std::string& path() const { return path_; }
  rapidjson::Value* group(const std::string& name);  // nullptr if absent
  rapidjson::Value& add_group(const std::string& name);
  bool remove_group(const std::string& name);
  rapidjson::Document::AllocatorType& alloc() { return doc_.GetAllocator(); }

  // Parses the document as the module would; the error names the group and field.
  Result<core::Config, std::string> validate() const;
  Status save() const;  // validate, then write atomically (mode 0600 for a new file)

  // Sets obj[key] (creating objects on the path "a.b.c") to a string / bool / number, or
  // removes it when value is nullopt.
  void set(rapidjson::Value& obj, const std::string& dotted, std::optional<std::string> value);
  void set_bool(rapidjson::Value& obj, const std::string& dotted, bool value);
  void set_uint(rapidjson::Value& obj, const std::string& dotted, unsigned long value);
  void set_strings(rapidjson::Value& obj, const std::string& dotted, const std::vector<std::string>& values);
  void erase(rapidjson::Value& obj, const std::string& dotted);

 private:
  std::string serialize() const;
  rapidjson::Value& parent_of(rapidjson::Value& obj, const std::string& dotted, std::string& leaf);

  std::string path_;
  rapidjson::Document doc_;
};

}  // namespace cdcp11::cdcctl
