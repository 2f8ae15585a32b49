#include "core/mirror/rotation.h"

#include <cstdlib>
#include <ctime>
#include <span>

#include "cdcp11/cdcp11.h"
#include "common/log.h"
#include "core/cloud/key_attrs.h"
#include "core/cloud/sync.h"
#include "core/mirror/service.h"
#include "core/session/session.h"
#include "core/token/token.h"

namespace cdcp11::core::mirror {

namespace {

constexpr const char* kLog = "rotation";
constexpr std::int64_t kDay = 86400;
// How long a rotation waits for another process rotating the same key.
constexpr std::chrono::milliseconds kLockWait{300'000};

std::string temp_label(const std::string& label) { return label + "@rotating"; }

// The attributes a new version copies from the one it replaces (beside type, size and curve).
constexpr CK_ATTRIBUTE_TYPE kPrivateCopied[] = {
    CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_SIGN, CKA_SIGN_RECOVER, CKA_DECRYPT, CKA_UNWRAP, CKA_DERIVE,
    CKA_ALWAYS_AUTHENTICATE, CKA_WRAP_WITH_TRUSTED, CKA_ALLOWED_MECHANISMS, CKA_SUBJECT, CKA_MODIFIABLE,
    CKA_COPYABLE, CKA_DESTROYABLE, CKA_CDC_ROTATE_EVERY_DAYS, CKA_CDC_RETIRE_FORMER_AFTER_DAYS};
constexpr CK_ATTRIBUTE_TYPE kSecretCopied[] = {
    CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_VERIFY, CKA_WRAP,
    CKA_UNWRAP, CKA_DERIVE, CKA_WRAP_WITH_TRUSTED, CKA_ALLOWED_MECHANISMS, CKA_MODIFIABLE, CKA_COPYABLE,
    CKA_DESTROYABLE, CKA_CDC_ROTATE_EVERY_DAYS, CKA_CDC_RETIRE_FORMER_AFTER_DAYS};
constexpr CK_ATTRIBUTE_TYPE kPublicCopied[] = {CKA_PRIVATE, CKA_VERIFY, CKA_VERIFY_RECOVER, CKA_ENCRYPT, CKA_WRAP,
                                               CKA_DERIVE, CKA_SUBJECT, CKA_ALLOWED_MECHANISMS, CKA_MODIFIABLE,
                                               CKA_COPYABLE, CKA_DESTROYABLE};
// What a former version may no longer do: make anything new.
constexpr CK_ATTRIBUTE_TYPE kFormerOff[] = {CKA_SIGN, CKA_SIGN_RECOVER, CKA_ENCRYPT, CKA_WRAP, CKA_DERIVE};

bool is_key_class(CK_OBJECT_CLASS c) { return c == CKO_PRIVATE_KEY || c == CKO_SECRET_KEY; }

struct Found {
  CK_OBJECT_HANDLE h = 0;
  StoredObject obj;
};

// A visible object's stored form.
std::optional<Found> object_at(Token& token, CK_OBJECT_HANDLE h) {
  auto t = token.lock();
  auto o = t.visible(h);
  if (!o) return std::nullopt;
  return Found{h, (*o)->obj};
}

std::vector<Found> find_objects(Token& token, Session& s, const AttrMap& tmpl) {
  std::vector<Found> out;
  auto hs = token.find(s, tmpl);
  if (!hs) return out;
  for (auto h : *hs)
    if (auto f = object_at(token, h)) out.push_back(std::move(*f));
  return out;
}

// The public key object of a private key: same label, id and type, token object.
std::optional<Found> public_of(Token& token, Session& s, const AttrMap& priv, const std::string& label,
                               const Bytes& id) {
  if (priv.ulong(CKA_CLASS) != CKO_PRIVATE_KEY) return std::nullopt;
  AttrMap t;
  t.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
  t.set_string(CKA_LABEL, label);
  if (!id.empty()) t.set(CKA_ID, id);
  t.set_ulong(CKA_KEY_TYPE, priv.ulong(CKA_KEY_TYPE).value_or(0));
  t.set_bool(CKA_TOKEN, true);
  for (auto& f : find_objects(token, s, t)) {
    const Bytes* m = priv.find(CKA_MODULUS);
    const Bytes* pm = f.obj.attrs.find(CKA_MODULUS);
    if (m && pm && *m != *pm) continue;
    return f;
  }
  return std::nullopt;
}

void copy_attrs(const AttrMap& from, AttrMap& to, std::span<const CK_ATTRIBUTE_TYPE> types) {
  for (auto t : types)
    if (auto* v = from.find(t)) to.set(t, *v);
}

// A former version's dates moved to today, with the same length; others copied as they are.
void set_dates(const AttrMap& from, AttrMap& to, std::int64_t now) {
  auto start = date_value(from, CKA_START_DATE), end = date_value(from, CKA_END_DATE);
  if (start && end && *end >= *start) {
    const std::int64_t today = now - now % kDay;
    to.set_string(CKA_START_DATE, ck_date(today));
    to.set_string(CKA_END_DATE, ck_date(today + (*end - *start)));
    return;
  }
  constexpr CK_ATTRIBUTE_TYPE kDates[] = {CKA_START_DATE, CKA_END_DATE};
  copy_attrs(from, to, kDates);
}

// Makes the new key under the temporary label; its handle.
R<CK_OBJECT_HANDLE> make_new_key(Token& token, Session& s, const StoredObject& key, const std::optional<Found>& pub,
                                 const std::string& azure_name, const std::string& label) {
  const AttrMap& a = key.attrs;
  const auto cls = a.ulong(CKA_CLASS).value_or(0);
  const auto kt = a.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  const std::int64_t now = now_seconds();
  AttrMap priv;
  priv.set_ulong(CKA_CLASS, cls);
  priv.set_ulong(CKA_KEY_TYPE, kt);
  priv.set_bool(CKA_TOKEN, true);
  if (cls == CKO_SECRET_KEY) copy_attrs(a, priv, kSecretCopied);
  else copy_attrs(a, priv, kPrivateCopied);
  set_dates(a, priv, now);
  priv.set_string(CKA_LABEL, temp_label(label));
  // Mirrored by the rotation, as the next version: never by the key-made observer.
  priv.set_bool(CKA_CDC_MIRROR, false);
  priv.set_string(CKA_CDC_AZURE_KEY_NAME, azure_name);
  if (cls == CKO_SECRET_KEY) {
    if (kt != CKK_AES) return err(Errc::key_function_not_permitted, "only AES secret keys are rotated");
    priv.set_ulong(CKA_VALUE_LEN, a.ulong(CKA_VALUE_LEN).value_or(32));
    CK_MECHANISM m{CKM_AES_KEY_GEN, nullptr, 0};
    return token.generate_key(s, &m, priv);
  }
  AttrMap pt;
  pt.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
  pt.set_ulong(CKA_KEY_TYPE, kt);
  pt.set_bool(CKA_TOKEN, true);
  if (pub) {
    copy_attrs(pub->obj.attrs, pt, kPublicCopied);
  } else {
    pt.set_bool(CKA_VERIFY, true);
  }
  set_dates(a, pt, now);
  pt.set_string(CKA_LABEL, temp_label(label));
  CK_MECHANISM m{};
  if (kt == CKK_RSA) {
    const Bytes* n = a.find(CKA_MODULUS);
    std::size_t i = 0;
    while (n && i < n->size() && (*n)[i] == 0) ++i;
    pt.set_ulong(CKA_MODULUS_BITS, n ? (n->size() - i) * 8 : 2048);
    if (auto* e = a.find(CKA_PUBLIC_EXPONENT)) pt.set(CKA_PUBLIC_EXPONENT, *e);
    else if (pub && pub->obj.attrs.find(CKA_PUBLIC_EXPONENT)) pt.set(CKA_PUBLIC_EXPONENT, *pub->obj.attrs.find(CKA_PUBLIC_EXPONENT));
    m.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
  } else if (kt == CKK_EC) {
    auto* params = a.find(CKA_EC_PARAMS);
    if (!params) return err(Errc::key_function_not_permitted, "the key's curve (CKA_EC_PARAMS) is unknown");
    pt.set(CKA_EC_PARAMS, *params);
    m.mechanism = CKM_EC_KEY_PAIR_GEN;
  } else {
    return err(Errc::key_function_not_permitted, "only RSA, EC and AES keys are rotated");
  }
  CDC_ASSIGN(auto pair, token.generate_key_pair(s, &m, pt, priv));
  return pair.second;
}

// The uid's handle in the token, if the session sees it.
std::optional<CK_OBJECT_HANDLE> handle_of(Token& token, const std::string& uid) {
  auto t = token.lock();
  (void)t.refresh();
  return t.cache().handle_of(uid);
}

void set_rotation_error(Service& svc, const std::string& uid, const std::string& why) {
  if (auto r = svc.update_key(uid, [&](AttrMap& a) { a.set_string(CKA_CDC_ROTATION_ERROR, why); }); !r)
    log::error(kLog, "recording the rotation error of " + uid + " failed: " + r.error().message);
}

// An Azure-resident key: Key Vault makes its next version (its rotate operation, per the key's
// rotation policy), and a sync makes the token follow it.
R<Rotated> rotate_resident(Token& token, Session& s, CK_OBJECT_HANDLE h, const StoredObject& key) {
  const std::string kid = key.attrs.string_or(CKA_CDC_AZURE_KEY_ID, "");
  auto id = azure::parse_key_id(kid);
  if (!id) return err(Errc::function_failed, "the key's Azure key id '" + kid + "' cannot be read");
  auto conn = token.vault_connection();
  if (!conn) return err(Errc::function_failed, "group '" + token.name() + "' cannot reach Azure: " + token.azure_unavailable());
  auto made = conn->vault().rotate_key(id->name);
  if (!made)
    return err(Errc::function_failed, "Key Vault did not rotate '" + id->name + "': " + made.error().describe());
  CDC_TRY(cloud::sync_keys(token, s));
  log::info(kLog, "group '" + token.name() + "': Azure-resident key '" + id->name + "' rotated in Key Vault: " +
                      made->key.kid);
  Rotated out;
  out.new_key = h;
  out.label = key.attrs.string_or(CKA_LABEL, "");
  out.version = 0;  // Key Vault numbers its versions by id only
  out.azure_kid = made->key.kid;
  out.former_kid = kid;
  return out;
}

}  // namespace

std::int64_t now_seconds() {
  if (const char* t = std::getenv("CDCP11_TEST_NOW"); t && *t) {
    char* end = nullptr;
    const long long v = std::strtoll(t, &end, 10);
    if (end && *end == '\0' && v > 0) return v;
  }
  return static_cast<std::int64_t>(std::time(nullptr));
}

std::optional<std::int64_t> date_value(const AttrMap& a, CK_ATTRIBUTE_TYPE t) {
  auto* v = a.find(t);
  if (!v || v->size() != 8) return std::nullopt;
  std::string s(v->begin(), v->end());
  if (s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  std::tm tm{};
  tm.tm_year = std::stoi(s.substr(0, 4)) - 1900;
  tm.tm_mon = std::stoi(s.substr(4, 2)) - 1;
  tm.tm_mday = std::stoi(s.substr(6, 2));
  if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31) return std::nullopt;
  return static_cast<std::int64_t>(timegm(&tm));
}

std::string ck_date(std::int64_t t) {
  const auto tt = static_cast<std::time_t>(t);
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y%m%d", &tm);
  return buf;
}

KeyRotationPolicy policy_for(const RotationConfig& g, const AttrMap& key) {
  KeyRotationPolicy p{g.every_days, g.retire_former, g.retire_former_after_days};
  if (auto v = key.ulong(CKA_CDC_ROTATE_EVERY_DAYS)) p.every_days = *v;
  if (auto v = key.ulong(CKA_CDC_RETIRE_FORMER_AFTER_DAYS)) p.retire_after_days = *v;
  return p;
}

VersionInfo version_of(const AttrMap& key) {
  VersionInfo v;
  v.version = key.ulong(CKA_CDC_KEY_VERSION).value_or(1);
  v.state = key.ulong(CKA_CDC_VERSION_STATE).value_or(CDC_VERSION_CURRENT);
  if (auto s = key.ulong(CKA_CDC_VERSION_SINCE)) v.since = static_cast<std::int64_t>(*s);
  if (auto s = key.ulong(CKA_CDC_FORMER_SINCE)) v.former_since = static_cast<std::int64_t>(*s);
  return v;
}

const char* version_state_name(CK_ULONG s) {
  switch (s) {
    case CDC_VERSION_CURRENT: return "current";
    case CDC_VERSION_FORMER: return "former";
    case CDC_VERSION_FORMER_DISABLED: return "former-disabled";
  }
  return "?";
}

std::optional<std::int64_t> next_rotation(const KeyRotationPolicy& p, const VersionInfo& v) {
  if (v.state != CDC_VERSION_CURRENT || p.every_days == 0 || !v.since) return std::nullopt;
  return *v.since + static_cast<std::int64_t>(p.every_days) * kDay;
}

std::optional<std::int64_t> retirement_due(const KeyRotationPolicy& p, const VersionInfo& v) {
  if (v.state != CDC_VERSION_FORMER || p.retire == RetireFormer::keep || p.retire_after_days == 0 || !v.former_since)
    return std::nullopt;
  return *v.former_since + static_cast<std::int64_t>(p.retire_after_days) * kDay;
}

std::string former_label(const std::string& label, unsigned long n) { return label + "@v" + std::to_string(n); }

Bytes former_id(const Bytes& id, unsigned long n) {
  if (id.empty()) return id;
  Bytes out = id;
  const std::string suffix = "@v" + std::to_string(n);
  out.insert(out.end(), suffix.begin(), suffix.end());
  return out;
}

bool rotation_unfinished(Token& token, const std::string& uid) {
  auto* svc = token.mirror();
  if (!svc || !svc->engine()) return false;
  auto j = svc->engine()->journal().get(uid);
  return j && *j && (*j)->rotation.step != RotationStep::none;
}

R<Rotated> rotate_key(Token& token, Session& s, CK_OBJECT_HANDLE h) {
  if (!s.read_write()) return err(Errc::session_read_only, "a rotation makes token objects: it needs a R/W session");
  if (token.login_state() != LoginState::user) return err(Errc::user_not_logged_in, "a rotation needs the user logged in");
  Service* svc = token.mirror();
  if (!svc || !svc->engine())
    return err(Errc::function_failed, "group '" + token.name() + "' cannot rotate: it has no mirror (" +
                                          (svc ? svc->unavailable() : std::string("no token")) + ")");
  Engine& eng = *svc->engine();
  auto read_key = [&]() -> R<StoredObject> {
    auto t = token.lock();
    CDC_TRY(t.refresh());
    CDC_ASSIGN(Object * o, t.visible(h, Errc::key_handle_invalid));
    if (!is_key_class(o->cls()) || !o->token)
      return err(Errc::key_handle_invalid, "only private and secret token keys are rotated");
    return o->obj;
  };
  CDC_ASSIGN(StoredObject key, read_key());
  if (cloud::azure_resident(key.attrs)) return rotate_resident(token, s, h, key);
  // Another process may be rotating this key: what it left is read under the key's lock.
  CDC_ASSIGN(auto held, eng.journal().lock(key.uid, kLockWait));
  CDC_ASSIGN(key, read_key());
  const AttrMap& a = key.attrs;
  const VersionInfo ver = version_of(a);
  // A rotation stopped between renaming the former and the new key resumes on the former.
  if (ver.state != CDC_VERSION_CURRENT && !rotation_unfinished(token, key.uid))
    return err(Errc::key_function_not_permitted, "the key is former version " + std::to_string(ver.version) +
                                                     "; rotate the current version");
  const std::string kid = a.string_or(CKA_CDC_AZURE_KEY_ID, "");
  if (a.ulong(CKA_CDC_MIRROR_STATE) != CDC_MIRROR_STATE_MIRRORED || kid.empty())
    return err(Errc::key_function_not_permitted, "the key is not mirrored: mirror it before rotating it");
  auto id = azure::parse_key_id(kid);
  if (!id) return err(Errc::function_failed, "the key's Azure key id '" + kid + "' cannot be read");
  const auto kt = a.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  if (kt != CKK_RSA && kt != CKK_EC && kt != CKK_AES)
    return err(Errc::key_function_not_permitted, "only RSA, EC and AES keys are rotated");

  CDC_ASSIGN(auto found, eng.journal().get(key.uid));
  Job job;
  if (found) {
    job = std::move(*found);
  } else {  // linked to its copy without a journaled mirror (sync): its job is done
    job.object_uid = key.uid;
    job.azure_name = id->name;
    job.key_kid = kid;
    job.step = Step::done;
  }
  Rotation& rot = job.rotation;
  if (rot.abandoning)
    return err(Errc::key_function_not_permitted, "its rotation is being abandoned; finish that with cdcctl key "
                                                 "rotate --abandon");
  if (rot.step == RotationStep::none) {
    rot = Rotation{};
    rot.step = RotationStep::planned;
    rot.label = a.string_or(CKA_LABEL, "");
    rot.id_hex = a.find(CKA_ID) ? to_hex(*a.find(CKA_ID)) : "";
    rot.version = ver.version;
    CDC_TRY(eng.journal().put(job));
    log::info(kLog, "group '" + token.name() + "': rotating key " + key.uid + " ('" + rot.label + "', version " +
                        std::to_string(rot.version) + ")");
  }
  Bytes key_id;
  (void)from_hex(rot.id_hex, key_id);
  const std::string azure_name = id->name;
  auto failed = [&](Error e) -> R<Rotated> {
    rot.error = e.message;
    (void)eng.journal().put(job);
    set_rotation_error(*svc, key.uid, e.message);
    log::warn(kLog, "group '" + token.name() + "': rotating key " + key.uid + " ('" + rot.label +
                        "') failed; it stays current: " + e.message);
    return fail(std::move(e));
  };

  // 1. The new key: found under the temporary label when an earlier attempt made it.
  std::optional<CK_OBJECT_HANDLE> new_h;
  if (!rot.new_uid.empty()) new_h = handle_of(token, rot.new_uid);
  if (!new_h && rot.step != RotationStep::mirrored) {
    AttrMap t;
    t.set_ulong(CKA_CLASS, a.ulong(CKA_CLASS).value_or(0));
    t.set_string(CKA_LABEL, temp_label(rot.label));
    t.set_string(CKA_CDC_AZURE_KEY_NAME, azure_name);
    auto left = find_objects(token, s, t);
    if (!left.empty()) {
      new_h = left.front().h;
    } else {
      auto pub = public_of(token, s, a, rot.label, key_id);
      auto made = make_new_key(token, s, key, pub, azure_name, rot.label);
      if (!made) return failed(made.error());
      new_h = *made;
    }
    auto obj = object_at(token, *new_h);
    if (!obj) return failed(Error{Errc::function_failed, "the new key vanished"});
    rot.new_uid = obj->obj.uid;
    rot.step = RotationStep::made;
    CDC_TRY(eng.journal().put(job));
  }
  if (!new_h) return failed(Error{Errc::function_failed, "the rotation's new key " + rot.new_uid + " is gone"});

  // 2. Mirrored as the next version of the Azure key.
  if (rot.step == RotationStep::made) {
    CDC_ASSIGN(auto nj, eng.journal().get(rot.new_uid));
    if (!nj) {
      Job j;
      j.object_uid = rot.new_uid;
      j.azure_name = azure_name;
      j.new_version_of = key.uid;
      CDC_TRY(eng.journal().put(j));
    }
    if (auto m = svc->mirror_new_version(s, *new_h); !m) return failed(m.error());
    rot.step = RotationStep::mirrored;
    CDC_TRY(eng.journal().put(job));
  }

  // 3. The switch: the former first (never two keys under the label), then the new key.
  const std::int64_t now = now_seconds();
  const unsigned long n = rot.version;
  auto new_obj = object_at(token, *new_h);
  if (!new_obj) return failed(Error{Errc::function_failed, "the rotation's new key is gone"});
  auto former_pub = public_of(token, s, a, rot.label, key_id);
  auto new_pub = public_of(token, s, new_obj->obj.attrs, temp_label(rot.label), {});
  auto to_former = [&](AttrMap& x) {
    x.set_string(CKA_LABEL, former_label(rot.label, n));
    x.set(CKA_ID, former_id(key_id, n));
    x.set_ulong(CKA_CDC_KEY_VERSION, n);
    x.set_ulong(CKA_CDC_VERSION_STATE, CDC_VERSION_FORMER);
    x.set_ulong(CKA_CDC_FORMER_SINCE, static_cast<CK_ULONG>(now));
    for (auto t : kFormerOff)
      if (x.has(t)) x.set_bool(t, false);
    if (x.ulong(CKA_CLASS) != CKO_PUBLIC_KEY) {
      x.set_string(CKA_CDC_ROTATION_ERROR, "");
      x.set_string(CKA_CDC_AZURE_KEY_NAME, azure_name);
    }
  };
  auto to_current = [&](AttrMap& x) {
    x.set_string(CKA_LABEL, rot.label);
    x.set(CKA_ID, key_id);
    x.set_ulong(CKA_CDC_KEY_VERSION, n + 1);
    x.set_ulong(CKA_CDC_VERSION_STATE, CDC_VERSION_CURRENT);
    x.set_ulong(CKA_CDC_VERSION_SINCE, static_cast<CK_ULONG>(now));
    if (x.ulong(CKA_CLASS) != CKO_PUBLIC_KEY) {
      x.set_bool(CKA_CDC_MIRROR, true);
      x.set_string(CKA_CDC_ROTATION_ERROR, "");
    }
  };
  CDC_TRY(svc->update_key(key.uid, to_former));
  if (former_pub) CDC_TRY(svc->update_key(former_pub->obj.uid, to_former));
  CDC_TRY(svc->update_key(rot.new_uid, to_current));
  if (new_pub) CDC_TRY(svc->update_key(new_pub->obj.uid, to_current));

  Rotated out;
  out.new_key = *new_h;
  out.label = rot.label;
  out.version = n + 1;
  out.former_kid = kid;
  // The new key is now a key like any other (mirrored again, rotated in its turn): then the
  // rotation record goes.
  if (auto nj = eng.journal().get(rot.new_uid); nj && *nj) {
    Job& j = **nj;
    out.azure_kid = j.key_kid;
    j.new_version_of.clear();
    CDC_TRY(eng.journal().put(j));
  }
  job.rotation = Rotation{};
  CDC_TRY(eng.journal().put(job));
  log::info(kLog, "group '" + token.name() + "': key '" + out.label + "' rotated: version " +
                      std::to_string(out.version) + " is " + out.azure_kid + "; version " + std::to_string(n) +
                      " is former");
  return out;
}

R<Abandoned> abandon_rotation(Token& token, Session& s, CK_OBJECT_HANDLE h) {
  if (!s.read_write()) return err(Errc::session_read_only, "abandoning a rotation destroys token objects: it needs a R/W session");
  if (token.login_state() != LoginState::user) return err(Errc::user_not_logged_in, "abandoning a rotation needs the user logged in");
  Service* svc = token.mirror();
  if (!svc || !svc->engine()) return err(Errc::function_failed, "group '" + token.name() + "' has no mirror");
  Engine& eng = *svc->engine();
  auto key = object_at(token, h);
  if (!key || !is_key_class(key->obj.attrs.ulong(CKA_CLASS).value_or(0)))
    return err(Errc::key_handle_invalid, "only private and secret token keys are rotated");
  CDC_ASSIGN(auto held, eng.journal().lock(key->obj.uid, kLockWait));
  CDC_ASSIGN(auto found, eng.journal().get(key->obj.uid));
  if (!found || found->rotation.step == RotationStep::none)
    return err(Errc::key_function_not_permitted, "the key has no rotation under way to abandon");
  Job job = std::move(*found);
  Rotation& rot = job.rotation;
  if (rot.step == RotationStep::mirrored && !rot.abandoning)
    return err(Errc::key_function_not_permitted, "the new version is already the Azure key's current version and "
                                                 "the switch may have begun: resume the rotation instead");
  if (!rot.abandoning) {
    rot.abandoning = true;
    CDC_TRY(eng.journal().put(job));
    log::info(kLog, "group '" + token.name() + "': abandoning the rotation of key " + job.object_uid + " ('" +
                        rot.label + "')");
  }
  Abandoned out;
  out.label = rot.label;
  // The new key: recorded, or made before the record (found as the rotation finds it).
  std::optional<Found> fresh;
  if (!rot.new_uid.empty()) {
    if (auto nh = handle_of(token, rot.new_uid)) fresh = object_at(token, *nh);
  } else {
    AttrMap t;
    t.set_ulong(CKA_CLASS, key->obj.attrs.ulong(CKA_CLASS).value_or(0));
    t.set_string(CKA_LABEL, temp_label(rot.label));
    t.set_string(CKA_CDC_AZURE_KEY_NAME, job.azure_name);
    if (auto left = find_objects(token, s, t); !left.empty()) fresh = std::move(left.front());
  }
  const std::string new_uid = fresh ? fresh->obj.uid : rot.new_uid;
  out.new_uid = new_uid;
  // Its Azure version, if imported (recorded, or the vault's latest version tagged with its uid):
  // disabled, since Azure deletes only whole keys.
  if (!new_uid.empty()) {
    std::string kid;
    if (auto nj = eng.journal().get(new_uid); nj && *nj) kid = (*nj)->key_kid;
    auto kv = eng.connection()->vault();
    if (kid.empty()) {
      auto got = kv.get_key(job.azure_name);
      if (!got && got.error().kind != azure::ErrorKind::not_found)
        return err(Errc::function_failed, "the rotation is left half abandoned: reading vault key '" + job.azure_name +
                                              "' failed: " + got.error().describe());
      if (got)
        if (auto tag = got->tags.find("cdcp11-uid"); tag != got->tags.end() && tag->second == new_uid) kid = got->key.kid;
    }
    if (auto id = azure::parse_key_id(kid); id && !id->version.empty()) {
      azure::UpdateKeyOptions o;
      o.attributes.enabled = false;
      if (auto r = kv.update_key(id->name, id->version, o); !r)
        return err(Errc::function_failed, "the rotation is left half abandoned: disabling Azure version " +
                                              id->version + " of '" + id->name + "' failed: " + r.error().describe());
      out.azure_version = kid;
      log::info(kLog, "group '" + token.name() + "': Azure version " + id->version + " of '" + id->name +
                          "' (the abandoned new version) disabled");
    }
  }
  if (fresh) {
    // Without its kid, destroying it applies no on_destroy policy to the vault key it shares.
    auto pub = public_of(token, s, fresh->obj.attrs, temp_label(rot.label), {});
    CDC_TRY(svc->update_key(fresh->obj.uid, [](AttrMap& a) { a.set_string(CKA_CDC_AZURE_KEY_ID, ""); }));
    CDC_TRY(token.destroy_object(s, fresh->h));
    if (pub) CDC_TRY(token.destroy_object(s, pub->h));
  }
  if (!new_uid.empty()) CDC_TRY(eng.journal().remove(new_uid));
  job.rotation = Rotation{};
  CDC_TRY(eng.journal().put(job));
  if (auto r = svc->update_key(job.object_uid, [](AttrMap& a) { a.set_string(CKA_CDC_ROTATION_ERROR, ""); }); !r)
    log::warn(kLog, "clearing the rotation error of " + job.object_uid + " failed: " + r.error().message);
  log::info(kLog, "group '" + token.name() + "': the rotation of key '" + rot.label + "' is abandoned; version " +
                      std::to_string(version_of(key->obj.attrs).version) + " stays current");
  return out;
}

R<void> retire_former(Token& token, Session& s, CK_OBJECT_HANDLE h, RetireFormer how) {
  Service* svc = token.mirror();
  if (!svc || !svc->engine()) return err(Errc::function_failed, "group '" + token.name() + "' has no mirror");
  auto f = object_at(token, h);
  if (!f) return err(Errc::key_handle_invalid, "the key is gone");
  const AttrMap& a = f->obj.attrs;
  if (version_of(a).state != CDC_VERSION_FORMER)
    return err(Errc::key_function_not_permitted, "only former versions are retired");
  const std::string label = a.string_or(CKA_LABEL, "");
  const Bytes id = a.find(CKA_ID) ? *a.find(CKA_ID) : Bytes{};
  if (how == RetireFormer::destroy) {
    auto pub = public_of(token, s, a, label, id);
    CDC_TRY(token.destroy_object(s, h));
    if (pub) CDC_TRY(token.destroy_object(s, pub->h));
    log::info(kLog, "group '" + token.name() + "': former version '" + label + "' destroyed");
    return {};
  }
  if (how != RetireFormer::disable) return {};
  auto kid = azure::parse_key_id(a.string_or(CKA_CDC_AZURE_KEY_ID, ""));
  if (!kid || kid->version.empty())
    return err(Errc::function_failed, "the former version has no Azure version to disable");
  azure::UpdateKeyOptions o;
  o.attributes.enabled = false;
  auto r = svc->engine()->connection()->vault().update_key(kid->name, kid->version, o);
  if (!r) return err(Errc::function_failed, "disabling Azure version " + kid->version + " of '" + kid->name +
                                                "' failed: " + r.error().describe());
  auto mark = [](AttrMap& x) { x.set_ulong(CKA_CDC_VERSION_STATE, CDC_VERSION_FORMER_DISABLED); };
  CDC_TRY(svc->update_key(f->obj.uid, mark));
  if (auto pub = public_of(token, s, a, label, id)) CDC_TRY(svc->update_key(pub->obj.uid, mark));
  log::info(kLog, "group '" + token.name() + "': former version '" + label + "' disabled in Azure");
  return {};
}

R<std::vector<DueItem>> due_items(Token& token, Session& s, std::int64_t now) {
  Service* svc = token.mirror();
  std::vector<DueItem> out;
  for (CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_SECRET_KEY}) {
    AttrMap t;
    t.set_ulong(CKA_CLASS, cls);
    t.set_bool(CKA_TOKEN, true);
    for (auto& f : find_objects(token, s, t)) {
      const AttrMap& a = f.obj.attrs;
      if (cloud::azure_resident(a) || a.ulong(CKA_CDC_MIRROR_STATE) != CDC_MIRROR_STATE_MIRRORED) continue;
      const auto p = policy_for(token.config().mirror.rotation, a);
      VersionInfo v = version_of(a);
      const std::string label = a.string_or(CKA_LABEL, "");
      std::optional<Job> job;
      if (svc && svc->engine())
        if (auto j = svc->engine()->journal().get(f.obj.uid); j) job = std::move(*j);
      if (job && !job->new_version_of.empty()) continue;  // a rotation's new key: its rotation resumes it
      if (v.state == CDC_VERSION_CURRENT) {
        // A key mirrored before versions were recorded: its age counts from its mirror's end.
        if (!v.since && job && job->step == Step::done) v.since = job->updated;
        auto next = next_rotation(p, v);
        if ((next && *next <= now) || (job && job->rotation.step != RotationStep::none))
          out.push_back(DueItem{f.h, label, v.version, false, RetireFormer::keep});
      } else if (job && job->rotation.step != RotationStep::none) {
        out.push_back(DueItem{f.h, label, v.version, false, RetireFormer::keep});
      } else if (auto due = retirement_due(p, v); due && *due <= now) {
        out.push_back(DueItem{f.h, label, v.version, true, p.retire});
      }
    }
  }
  return out;
}

}  // namespace cdcp11::core::mirror
