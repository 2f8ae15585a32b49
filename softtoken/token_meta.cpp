#include "softtoken/token_meta.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace cdcp11::softtoken {

using core::Errc;
using core::err;

namespace {

constexpr std::size_t kSaltLen = 16, kNonceLen = 12, kWrappedLen = 32 + 16, kTokenIdLen = 32;
constexpr std::size_t kMaxLabel = 32;
// More failures than any max_pin_retries could need: a bigger count is not a real counter.
constexpr unsigned kMaxFailures = 1u << 20;

void write_slot(rapidjson::Writer<rapidjson::StringBuffer>& w, const PinSlot& s) {
  w.StartObject();
  w.Key("salt"); w.String(to_hex(s.salt).c_str());
  w.Key("scrypt_log2_n"); w.Uint(s.log2_n);
  w.Key("nonce"); w.String(to_hex(s.nonce).c_str());
  w.Key("wrapped_token_key"); w.String(to_hex(s.wrapped).c_str());
  w.Key("failures"); w.Uint(s.failures);
  w.EndObject();
}

bool read_hex(const rapidjson::Value& o, const char* k, std::size_t len, Bytes& out) {
  auto it = o.FindMember(k);
  return it != o.MemberEnd() && it->value.IsString() && from_hex(it->value.GetString(), out) &&
         out.size() == len;
}

// Empty on success, else what is wrong.
std::string read_slot(const rapidjson::Value& o, PinSlot& s) {
  if (!o.IsObject()) return "not an object";
  auto n = o.FindMember("scrypt_log2_n");
  auto f = o.FindMember("failures");
  if (n == o.MemberEnd() || !n->value.IsUint() || f == o.MemberEnd() || !f->value.IsUint())
    return "scrypt_log2_n or failures missing";
  s.log2_n = n->value.GetUint();
  if (s.log2_n < PinSlot::kMinLog2N || s.log2_n > PinSlot::kMaxLog2N)
    return "scrypt_log2_n " + std::to_string(s.log2_n) + " is outside " + std::to_string(PinSlot::kMinLog2N) +
           ".." + std::to_string(PinSlot::kMaxLog2N);
  s.failures = f->value.GetUint();
  if (s.failures > kMaxFailures) return "failures " + std::to_string(s.failures) + " is out of range";
  if (!read_hex(o, "salt", kSaltLen, s.salt)) return "salt is not " + std::to_string(kSaltLen) + " hex bytes";
  if (!read_hex(o, "nonce", kNonceLen, s.nonce)) return "nonce is not " + std::to_string(kNonceLen) + " hex bytes";
  if (!read_hex(o, "wrapped_token_key", kWrappedLen, s.wrapped))
    return "wrapped_token_key is not " + std::to_string(kWrappedLen) + " hex bytes";
  return {};
}

bool is_token_id(const std::string& id) {
  if (id.size() != kTokenIdLen) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

std::string encode_meta(const TokenMeta& m) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("format"); w.Int(m.format);
  w.Key("token_id"); w.String(m.token_id.c_str());
  w.Key("label"); w.String(m.label.c_str(), static_cast<rapidjson::SizeType>(m.label.size()));
  w.Key("so"); write_slot(w, m.so);
  w.Key("user");
  if (m.user) write_slot(w, *m.user); else w.Null();
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

core::R<TokenMeta> decode_meta(ByteView json) {
  auto bad = [](const std::string& why) { return err(Errc::device_error, "token meta record: " + why); };
  rapidjson::Document d;
  d.Parse(reinterpret_cast<const char*>(json.data()), json.size());
  if (d.HasParseError() || !d.IsObject()) return bad("not valid JSON");
  TokenMeta m;
  auto f = d.FindMember("format");
  if (f == d.MemberEnd() || !f->value.IsInt() ||
      (f->value.GetInt() != TokenMeta::kFormat && f->value.GetInt() != TokenMeta::kLegacyFormat))
    return bad("unknown format version");
  m.format = f->value.GetInt();
  auto id = d.FindMember("token_id");
  auto label = d.FindMember("label");
  auto so = d.FindMember("so");
  auto user = d.FindMember("user");
  if (id == d.MemberEnd() || !id->value.IsString() || label == d.MemberEnd() || !label->value.IsString() ||
      so == d.MemberEnd() || user == d.MemberEnd())
    return bad("fields missing");
  m.token_id = id->value.GetString();
  if (!is_token_id(m.token_id)) return bad("token_id is not 32 lowercase hex characters");
  m.label.assign(label->value.GetString(), label->value.GetStringLength());
  if (m.label.size() > kMaxLabel) return bad("label longer than " + std::to_string(kMaxLabel) + " bytes");
  if (auto why = read_slot(so->value, m.so); !why.empty()) return bad("SO PIN entry: " + why);
  if (!user->value.IsNull()) {
    PinSlot u;
    if (auto why = read_slot(user->value, u); !why.empty()) return bad("user PIN entry: " + why);
    m.user = std::move(u);
  }
  return m;
}

}  // namespace cdcp11::softtoken
