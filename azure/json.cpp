#include "azure/json.h"

#include <rapidjson/error/en.h>

#include <algorithm>
#include <cmath>

namespace cdcp11::azure {

namespace {

// Nesting depth of JSON text, counting brackets outside strings; stops early past `limit`.
std::size_t nesting_depth(std::string_view text, std::size_t limit) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) break;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

bool parse_json(std::string_view text, JsonDocument& doc, std::string* why) {
  if (nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    if (why) *why = "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    doc.SetNull();
    return false;
  }
  doc.Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());
  if (!doc.HasParseError()) return true;
  if (why)
    *why = std::string("invalid JSON at offset ") + std::to_string(doc.GetErrorOffset()) + ": " +
           rapidjson::GetParseError_En(doc.GetParseError());
  return false;
}

std::optional<int64_t> int_member(const JsonValue& obj, const char* name) {
  const JsonValue* v = member(obj, name);
  if (!v) return std::nullopt;
  if (v->IsInt64()) return v->GetInt64();
  if (!v->IsDouble()) return std::nullopt;
  // [-2^63, 2^63): both bounds are exact doubles; NaN fails both comparisons.
  const double d = std::trunc(v->GetDouble());
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return std::nullopt;
  return static_cast<int64_t>(d);
}

}  // namespace cdcp11::azure
