#include "softtoken/token_meta.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace cdcp11::softtoken {

using core::Errc;
using core::err;

namespace {

void write_slot(rapidjson::Writer<rapidjson::StringBuffer>& w, const PinSlot& s) {
  w.StartObject();
  w.Key("salt"); w.String(to_hex(s.salt).c_str());
  w.Key("scrypt_log2_n"); w.Uint(s.log2_n);
  w.Key("nonce"); w.String(to_hex(s.nonce).c_str());
  w.Key("wrapped_token_key"); w.String(to_hex(s.wrapped).c_str());
  w.Key("failures"); w.Uint(s.failures);
  w.EndObject();
}

bool read_hex(const rapidjson::Value& o, const char* k, Bytes& out) {
  auto it = o.FindMember(k);
  return it != o.MemberEnd() && it->value.IsString() && from_hex(it->value.GetString(), out);
}

bool read_slot(const rapidjson::Value& o, PinSlot& s) {
  if (!o.IsObject()) return false;
  auto n = o.FindMember("scrypt_log2_n");
  auto f = o.FindMember("failures");
  if (n == o.MemberEnd() || !n->value.IsUint() || f == o.MemberEnd() || !f->value.IsUint()) return false;
  s.log2_n = n->value.GetUint();
  s.failures = f->value.GetUint();
  return read_hex(o, "salt", s.salt) && read_hex(o, "nonce", s.nonce) && read_hex(o, "wrapped_token_key", s.wrapped);
}

}  // namespace

std::string encode_meta(const TokenMeta& m) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("format"); w.Int(TokenMeta::kFormat);
  w.Key("token_id"); w.String(m.token_id.c_str());
  w.Key("label"); w.String(m.label.c_str(), static_cast<rapidjson::SizeType>(m.label.size()));
  w.Key("so"); write_slot(w, m.so);
  w.Key("user");
  if (m.user) write_slot(w, *m.user); else w.Null();
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

core::R<TokenMeta> decode_meta(ByteView json) {
  rapidjson::Document d;
  d.Parse(reinterpret_cast<const char*>(json.data()), json.size());
  if (d.HasParseError() || !d.IsObject()) return err(Errc::device_error, "token meta record is not valid JSON");
  auto f = d.FindMember("format");
  if (f == d.MemberEnd() || !f->value.IsInt() || f->value.GetInt() != TokenMeta::kFormat)
    return err(Errc::token_not_recognized, "token meta record has an unknown format version");
  TokenMeta m;
  auto id = d.FindMember("token_id");
  auto label = d.FindMember("label");
  auto so = d.FindMember("so");
  auto user = d.FindMember("user");
  if (id == d.MemberEnd() || !id->value.IsString() || label == d.MemberEnd() || !label->value.IsString() ||
      so == d.MemberEnd() || user == d.MemberEnd())
    return err(Errc::device_error, "token meta record is missing fields");
  m.token_id = id->value.GetString();
  m.label.assign(label->value.GetString(), label->value.GetStringLength());
  if (!read_slot(so->value, m.so)) return err(Errc::device_error, "token meta record: bad SO PIN entry");
  if (!user->value.IsNull()) {
    PinSlot u;
    if (!read_slot(user->value, u)) return err(Errc::device_error, "token meta record: bad user PIN entry");
    m.user = std::move(u);
  }
  return m;
}

}  // namespace cdcp11::softtoken
