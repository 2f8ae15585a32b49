// JSON shapes of the keys API (reference §2, §3.3): request bodies and response parsing.
#include <algorithm>

#include "azure/base64url.h"
#include "azure/json.h"
#include "azure/keyvault.h"
#include "azure/util.h"

namespace cdcp11::azure {
namespace {

std::size_t field_len(std::string_view crv) {
  if (crv == "P-384") return 48;
  if (crv == "P-521") return 66;
  return 32;  // P-256, P-256K
}

template <class B>
B left_pad(const B& v, std::size_t len) {
  if (v.size() >= len) return v;
  B out(len - v.size(), 0);
  out.insert(out.end(), v.begin(), v.end());
  return out;
}

Bytes strip_zeros(const Bytes& v) {
  auto it = std::find_if(v.begin(), v.end(), [](uint8_t b) { return b != 0; });
  if (it == v.end()) return v.empty() ? v : Bytes{0};
  return Bytes(it, v.end());
}

void write_b64(JsonWriter& w, const char* key, ByteView v) {
  if (v.empty()) return;
  w.Key(key);
  write_string(w, b64url_encode(v));
}

// Private components: the base64url text goes through zeroizing memory only.
void write_b64_secret(JsonWriter& w, const char* key, const SecureBytes& v) {
  if (v.empty()) return;
  std::string enc = b64url_encode(v);
  w.Key(key);
  write_string(w, enc);
  secure_zero(enc.data(), enc.size());
}

void write_ops(JsonWriter& w, const std::vector<std::string>& ops) {
  if (ops.empty()) return;
  w.Key("key_ops");
  w.StartArray();
  for (const auto& o : ops) write_string(w, o);
  w.EndArray();
}

void write_attributes(JsonWriter& w, const KeyAttributes& a) {
  if (!a.enabled && !a.exportable && !a.nbf && !a.exp) return;
  w.Key("attributes");
  w.StartObject();
  if (a.enabled) { w.Key("enabled"); w.Bool(*a.enabled); }
  if (a.exportable) { w.Key("exportable"); w.Bool(*a.exportable); }
  if (a.nbf) { w.Key("nbf"); w.Int64(*a.nbf); }
  if (a.exp) { w.Key("exp"); w.Int64(*a.exp); }
  w.EndObject();
}

void write_tags(JsonWriter& w, const Tags& tags) {
  w.Key("tags");
  w.StartObject();
  for (const auto& [k, v] : tags) {
    write_string(w, k);
    write_string(w, v);
  }
  w.EndObject();
}

Bytes b64_member(const JsonValue& o, const char* name) {
  std::string s = str_member(o, name);
  if (s.empty()) return {};
  return b64url_decode(s).value_or(Bytes{});
}

void parse_attributes(const JsonValue& o, KeyAttributes& a) {
  const JsonValue* at = member(o, "attributes");
  if (!at || !at->IsObject()) return;
  a.enabled = bool_member(*at, "enabled");
  a.exportable = bool_member(*at, "exportable");
  a.nbf = int_member(*at, "nbf");
  a.exp = int_member(*at, "exp");
  a.created = int_member(*at, "created");
  a.updated = int_member(*at, "updated");
  if (auto d = int_member(*at, "recoverableDays")) a.recoverable_days = static_cast<int>(*d);
  a.recovery_level = str_member(*at, "recoveryLevel");
  a.hsm_platform = str_member(*at, "hsmPlatform");
}

void parse_tags(const JsonValue& o, Tags& tags) {
  const JsonValue* t = member(o, "tags");
  if (!t || !t->IsObject()) return;
  for (auto it = t->MemberBegin(); it != t->MemberEnd(); ++it)
    if (it->value.IsString()) tags[it->name.GetString()] = it->value.GetString();
}

template <class T>
void parse_deleted(const JsonValue& o, T& out) {
  out.recovery_id = str_member(o, "recoveryId");
  out.deleted_date = int_member(o, "deletedDate");
  out.scheduled_purge_date = int_member(o, "scheduledPurgeDate");
}

std::string last_segments_name(std::string_view kid) {
  auto id = parse_key_id(kid);
  return id ? id->name : std::string();
}

}  // namespace

std::optional<KeyId> parse_key_id(std::string_view kid) {
  auto p = kid.find("://");
  if (p == std::string_view::npos || kid.substr(0, p) != "https") return std::nullopt;
  auto path_start = kid.find('/', p + 3);
  if (path_start == std::string_view::npos) return std::nullopt;
  std::string authority(kid.substr(p + 3, path_start - p - 3));
  if (authority.size() > 4 && authority.substr(authority.size() - 4) == ":443") authority.resize(authority.size() - 4);
  std::string_view path = kid.substr(path_start + 1);
  if (auto q = path.find_first_of("?#"); q != std::string_view::npos) path = path.substr(0, q);
  std::vector<std::string_view> segs;
  while (!path.empty()) {
    auto s = path.find('/');
    segs.push_back(path.substr(0, s));
    path.remove_prefix(s == std::string_view::npos ? path.size() : s + 1);
  }
  if (segs.size() < 2 || segs.size() > 3 || (segs[0] != "keys" && segs[0] != "deletedkeys") || segs[1].empty())
    return std::nullopt;
  KeyId id{"https://" + to_lower(authority), std::string(segs[1]), segs.size() == 3 ? std::string(segs[2]) : ""};
  return id;
}

int JsonWebKey::rsa_bits() const {
  Bytes m = strip_zeros(n);
  if (m.empty()) return 0;
  int bits = static_cast<int>(m.size()) * 8;
  for (uint8_t top = m[0]; !(top & 0x80); top = static_cast<uint8_t>(top << 1)) --bits;
  return bits;
}

std::string KeyBundle::name() const { return last_segments_name(key.kid); }
std::string KeyBundle::version() const {
  auto id = parse_key_id(key.kid);
  return id ? id->version : std::string();
}
std::string KeyItem::name() const { return last_segments_name(kid); }

SecureBytes create_key_body(const CreateKeyOptions& o) {
  JsonBuffer b;
  JsonWriter w(b);
  w.StartObject();
  w.Key("kty"); write_string(w, o.kty);
  if (o.key_size) { w.Key("key_size"); w.Int(*o.key_size); }
  if (o.public_exponent) { w.Key("public_exponent"); w.Int(*o.public_exponent); }
  if (!o.crv.empty()) { w.Key("crv"); write_string(w, o.crv); }
  write_ops(w, o.key_ops);
  write_attributes(w, o.attributes);
  write_tags(w, o.tags);
  w.EndObject();
  return to_body(b);
}

Result<SecureBytes, Error> import_key_body(const ImportKeyOptions& o) {
  const bool byok = !o.byok_blob.empty();
  if (byok == o.jwk.has_value())
    return fail(make_error(ErrorKind::config, "import key", "An import needs either a JWK or a BYOK blob, not both"));
  JsonBuffer b;
  JsonWriter w(b);
  w.StartObject();
  w.Key("key");
  w.StartObject();
  if (byok) {
    if (o.byok_kty.empty())
      return fail(make_error(ErrorKind::config, "import key", "A BYOK import needs the target kty (RSA-HSM, EC-HSM, oct-HSM)"));
    w.Key("kty"); write_string(w, o.byok_kty);
    if (!o.byok_crv.empty()) { w.Key("crv"); write_string(w, o.byok_crv); }
    write_ops(w, o.key_ops);
    write_b64(w, "key_hsm", o.byok_blob);
  } else {
    const PrivateJwk& k = *o.jwk;
    w.Key("kty"); write_string(w, k.kty);
    write_ops(w, o.key_ops);
    if (!k.n.empty()) {
      write_b64(w, "n", strip_zeros(k.n));
      write_b64(w, "e", strip_zeros(k.e));
      write_b64_secret(w, "d", k.d);
      write_b64_secret(w, "p", k.p);
      write_b64_secret(w, "q", k.q);
      write_b64_secret(w, "dp", k.dp);
      write_b64_secret(w, "dq", k.dq);
      write_b64_secret(w, "qi", k.qi);
    } else if (!k.crv.empty()) {
      std::size_t len = field_len(k.crv);
      w.Key("crv"); write_string(w, k.crv);
      write_b64(w, "x", left_pad(k.x, len));
      write_b64(w, "y", left_pad(k.y, len));
      write_b64_secret(w, "d", left_pad(k.d, len));
    } else {
      write_b64_secret(w, "k", k.k);
    }
  }
  w.EndObject();
  if (o.hsm) { w.Key("Hsm"); w.Bool(*o.hsm); }
  write_attributes(w, o.attributes);
  write_tags(w, o.tags);
  w.EndObject();
  return to_body(b);
}

SecureBytes update_key_body(const UpdateKeyOptions& o) {
  JsonBuffer b;
  JsonWriter w(b);
  w.StartObject();
  if (o.key_ops) {
    w.Key("key_ops");
    w.StartArray();
    for (const auto& op : *o.key_ops) write_string(w, op);
    w.EndArray();
  }
  write_attributes(w, o.attributes);
  if (o.tags) write_tags(w, *o.tags);
  w.EndObject();
  return to_body(b);
}

bool parse_key_bundle(std::string_view json, KeyBundle& out, std::string* why) {
  JsonDocument doc;
  if (!parse_json(json, doc, why) || !doc.IsObject()) return false;
  const JsonValue* k = member(doc, "key");
  if (!k || !k->IsObject()) return false;
  out.key.kid = str_member(*k, "kid");
  out.key.kty = str_member(*k, "kty");
  if (const JsonValue* ops = member(*k, "key_ops"); ops && ops->IsArray())
    for (const auto& op : ops->GetArray())
      if (op.IsString()) out.key.key_ops.emplace_back(op.GetString());
  out.key.n = b64_member(*k, "n");
  out.key.e = b64_member(*k, "e");
  out.key.crv = str_member(*k, "crv");
  out.key.x = b64_member(*k, "x");
  out.key.y = b64_member(*k, "y");
  parse_attributes(doc, out.attributes);
  parse_tags(doc, out.tags);
  out.managed = bool_member(doc, "managed").value_or(false);
  parse_deleted(doc, out);
  return !out.key.kid.empty();
}

bool parse_key_items(std::string_view json, std::vector<KeyItem>& out, std::string& next_link, std::string* why) {
  JsonDocument doc;
  if (!parse_json(json, doc, why) || !doc.IsObject()) return false;
  const JsonValue* v = member(doc, "value");
  if (!v || !v->IsArray()) return false;
  for (const auto& it : v->GetArray()) {
    KeyItem item;
    item.kid = str_member(it, "kid");
    parse_attributes(it, item.attributes);
    parse_tags(it, item.tags);
    item.managed = bool_member(it, "managed").value_or(false);
    parse_deleted(it, item);
    out.push_back(std::move(item));
  }
  next_link = str_member(doc, "nextLink");
  return true;
}

bool public_material_matches(const JsonWebKey& k, const PublicKeyMaterial& m) {
  if (!m.n.empty()) return strip_zeros(k.n) == strip_zeros(m.n) && strip_zeros(k.e) == strip_zeros(m.e);
  if (!m.x.empty()) {
    std::size_t len = field_len(m.crv);
    return k.crv == m.crv && left_pad(k.x, len) == left_pad(m.x, len) && left_pad(k.y, len) == left_pad(m.y, len);
  }
  return false;
}

}  // namespace cdcp11::azure
