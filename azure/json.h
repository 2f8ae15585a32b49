// RapidJSON with zeroizing memory: request and response bodies may carry access tokens,
// private key components or unwrapped key bytes, so every buffer RapidJSON allocates for
// them is wiped before it is freed.
#pragma once

#include <malloc.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.h"

namespace cdcp11::azure {

class ZeroizingRapidAllocator {
 public:
  static const bool kNeedFree = true;
  void* Malloc(std::size_t size) { return size ? std::malloc(size) : nullptr; }
  void* Realloc(void* orig, std::size_t orig_size, std::size_t new_size) {
    if (new_size == 0) {
      Free(orig);
      return nullptr;
    }
    void* p = std::malloc(new_size);
    if (!p) return nullptr;
    if (orig) {
      std::memcpy(p, orig, orig_size < new_size ? orig_size : new_size);
      Free(orig);
    }
    return p;
  }
  // RapidJSON's Free has no size; glibc knows the usable size of the block.
  static void Free(void* p) {
    if (!p) return;
    secure_zero(p, malloc_usable_size(p));
    std::free(p);
  }
};

using JsonPool = rapidjson::MemoryPoolAllocator<ZeroizingRapidAllocator>;
using JsonDocument = rapidjson::GenericDocument<rapidjson::UTF8<>, JsonPool, ZeroizingRapidAllocator>;
using JsonValue = rapidjson::GenericValue<rapidjson::UTF8<>, JsonPool>;
using JsonBuffer = rapidjson::GenericStringBuffer<rapidjson::UTF8<>, ZeroizingRapidAllocator>;
using JsonWriter = rapidjson::Writer<JsonBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>, ZeroizingRapidAllocator>;

// Deeper than any Azure answer (they nest 4 or 5 levels), shallow enough for any stack.
constexpr std::size_t kMaxJsonDepth = 64;

// Parses text from the network. Refuses nesting deeper than kMaxJsonDepth before parsing (and
// parses iteratively), so a hostile answer cannot exhaust the stack. why, if given, gets the
// reason on failure.
bool parse_json(std::string_view text, JsonDocument& doc, std::string* why = nullptr);

inline SecureBytes to_body(const JsonBuffer& b) {
  return SecureBytes(reinterpret_cast<const uint8_t*>(b.GetString()),
                     reinterpret_cast<const uint8_t*>(b.GetString()) + b.GetSize());
}

inline const JsonValue* member(const JsonValue& obj, const char* name) {
  if (!obj.IsObject()) return nullptr;
  auto it = obj.FindMember(name);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

inline std::string str_member(const JsonValue& obj, const char* name) {
  const JsonValue* v = member(obj, name);
  return v && v->IsString() ? std::string(v->GetString(), v->GetStringLength()) : std::string();
}

// An integer member; a fractional number is truncated. Absent, or not a number in int64 range:
// nullopt (converting a double outside that range would be undefined).
std::optional<int64_t> int_member(const JsonValue& obj, const char* name);

inline std::optional<bool> bool_member(const JsonValue& obj, const char* name) {
  const JsonValue* v = member(obj, name);
  if (v && v->IsBool()) return v->GetBool();
  return std::nullopt;
}

inline void write_string(JsonWriter& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

}  // namespace cdcp11::azure
