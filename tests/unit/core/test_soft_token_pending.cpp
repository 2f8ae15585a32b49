// Token objects written without a login (a public R/W session): written pending, served and
// usable before a login, authenticated by the next login if a public session could have written
// them through the API, refused otherwise (planted on disk).
#include <doctest/doctest.h>

#include "cdcp11/cdcp11.h"
#include "core/attribute_policy.h"
#include "core/mechanisms.h"
#include "soft_token_test_util.h"

using namespace cdcp11;
using namespace cdcp11::core;
using namespace cdcp11::softtoken::test;
using cdcp11::softtoken::SoftToken;

namespace {

const Bytes kP256{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
constexpr std::uint8_t kKindPublic = 0, kKindPending = 2;  // object_record.h, byte 5

// What core stores for C_CreateObject: the template with its defaults.
AttrMap as_created(AttrMap a) {
  const auto cls = a.ulong(CKA_CLASS).value_or(CKO_DATA);
  apply_defaults(cls, a.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION), a);
  if (cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY) {
    a.set_bool(CKA_ALWAYS_SENSITIVE, false);
    a.set_bool(CKA_NEVER_EXTRACTABLE, false);
  }
  return a;
}

AttrMap public_aes(const std::string& label) {
  AttrMap a = aes_key(true);
  a.set_bool(CKA_PRIVATE, false);
  a.set_string(CKA_LABEL, label);
  return as_created(a);
}

AttrMap public_data(const std::string& label) { return as_created(data_object(label, false, "value")); }

// A public EC key pair as C_GenerateKeyPair in a public session makes it.
std::pair<StoredObject, StoredObject> public_ec_pair(SoftToken& t, const std::string& label) {
  AttrMap pub, priv;
  for (AttrMap* a : {&pub, &priv}) {
    a->set_ulong(CKA_KEY_TYPE, CKK_EC);
    a->set_bool(CKA_TOKEN, true);
    a->set_bool(CKA_PRIVATE, false);
    a->set_string(CKA_LABEL, label);
  }
  pub.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
  pub.set(CKA_EC_PARAMS, kP256);
  priv.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  apply_defaults(CKO_PUBLIC_KEY, CKK_EC, pub);
  apply_defaults(CKO_PRIVATE_KEY, CKK_EC, priv);
  for (AttrMap* a : {&pub, &priv}) {
    a->set_bool(CKA_LOCAL, true);
    a->set_ulong(CKA_KEY_GEN_MECHANISM, CKM_EC_KEY_PAIR_GEN);
  }
  priv.set_bool(CKA_ALWAYS_SENSITIVE, true);
  priv.set_bool(CKA_NEVER_EXTRACTABLE, true);
  auto pair = t.generate_key_pair(Mechanism{find_mechanism(CKM_EC_KEY_PAIR_GEN), {}}, pub, priv);
  REQUIRE(pair);
  return std::move(*pair);
}

std::uint8_t kind_on_disk(const GroupConfig& g, const std::string& uid) {
  auto rec = raw_store(g)->get(uid);
  REQUIRE(rec);
  REQUIRE(rec->size() > 5);
  return (*rec)[5];
}

void edit_on_disk(const GroupConfig& g, const std::string& uid, CK_ATTRIBUTE_TYPE t, std::size_t len,
                  const std::function<void(std::uint8_t*)>& f) {
  auto st = raw_store(g);
  auto rec = st->get(uid);
  REQUIRE(rec);
  edit_attr(*rec, t, len, f);
  REQUIRE(st->put(uid, *rec));
}

// A token whose user logs in now (another process): is the object served and usable after it?
bool taken_in_at_login(const GroupConfig& g, const std::string& uid, CK_USER_TYPE who = CKU_USER) {
  auto t = open(g);
  REQUIRE(t->refresh());
  REQUIRE(t->login(who, pin(who == CKU_SO ? "so-pin-1" : "user-1")));
  auto ch = t->refresh();
  REQUIRE(ch);
  return !contains(ch->removed, uid) && t->object_size(uid).ok();
}

}  // namespace

TEST_CASE("made without a login: pending, usable, and authenticated by the next login; later edits are found") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  auto key = t->create_object(public_aes("pub-aes"));
  REQUIRE(key);
  auto pair = public_ec_pair(*t, "pub-ec");
  auto data = t->create_object(public_data("pub-data"));
  REQUIRE(data);
  for (auto* uid : {&key->uid, &pair.first.uid, &pair.second.uid, &data->uid})
    CHECK(kind_on_disk(g, *uid) == kKindPending);
  // Served and usable without a login, here and in another process.
  CHECK(t->secret_attribute(key->uid, CKA_VALUE));
  auto other = open(g);
  auto seen = other->refresh();
  REQUIRE(seen);
  CHECK(upserts(*seen, key->uid));
  CHECK(upserts(*seen, pair.second.uid));
  CHECK(other->secret_attribute(key->uid, CKA_VALUE));
  CHECK(other->secret_attribute(pair.second.uid, CKA_VALUE));
  // A change in a public session: still pending.
  AttrMap renamed = key->attrs;
  renamed.set_string(CKA_LABEL, "renamed");
  REQUIRE(t->update_object(key->uid, renamed));
  CHECK(kind_on_disk(g, key->uid) == kKindPending);

  // The next login (the SO's as well as the user's) takes them in as authenticated records.
  SUBCASE("user login") {
    REQUIRE(other->login(CKU_USER, pin("user-1")));
  }
  SUBCASE("SO login") {
    REQUIRE(other->login(CKU_SO, pin("so-pin-1")));
  }
  auto after = other->refresh();
  REQUIRE(after);
  for (auto* uid : {&key->uid, &pair.first.uid, &pair.second.uid, &data->uid}) {
    CHECK_FALSE(contains(after->removed, *uid));
    CHECK(kind_on_disk(g, *uid) == kKindPublic);
  }
  auto v = other->secret_attribute(key->uid, CKA_VALUE);
  REQUIRE(v);
  CHECK(Bytes(v->begin(), v->end()) == Bytes(32, 0x5a));
  REQUIRE(t->refresh());
  CHECK(t->secret_attribute(key->uid, CKA_VALUE));

  // From now on an edit on disk fails the MAC, as for any record written while logged in.
  edit_on_disk(g, key->uid, CKA_LABEL, 7, [](std::uint8_t* l) { l[0] = 'R'; });
  auto edited = other->refresh();
  REQUIRE(edited);
  CHECK(contains(edited->removed, key->uid));
  CHECK_FALSE(taken_in_at_login(g, key->uid));
  CHECK(taken_in_at_login(g, data->uid));
}

TEST_CASE("a pending record planted on disk that a public session could not have written is refused at login") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  auto key = t->create_object(public_aes("k"));
  REQUIRE(key);
  auto pair = public_ec_pair(*t, "pair");
  auto data = t->create_object(public_data("d"));
  REQUIRE(data);
  std::string target;
  SUBCASE("CKA_TRUSTED true (only the SO sets it)") {
    target = pair.first.uid;
    edit_on_disk(g, target, CKA_TRUSTED, 1, [](std::uint8_t* v) { *v = CK_TRUE; });
  }
  SUBCASE("CKA_PRIVATE true") {
    target = data->uid;
    edit_on_disk(g, target, CKA_PRIVATE, 1, [](std::uint8_t* v) { *v = CK_TRUE; });
  }
  SUBCASE("CKA_LOCAL true on a created key") {
    target = key->uid;
    edit_on_disk(g, target, CKA_LOCAL, 1, [](std::uint8_t* v) { *v = CK_TRUE; });
  }
  SUBCASE("CKA_NEVER_EXTRACTABLE true on an extractable key") {
    target = key->uid;
    edit_on_disk(g, target, CKA_NEVER_EXTRACTABLE, 1, [](std::uint8_t* v) { *v = CK_TRUE; });
  }
  SUBCASE("a mirror state (written only while logged in)") {
    target = key->uid;
    edit_on_disk(g, target, CKA_CDC_MIRROR_STATE, sizeof(CK_ULONG),
                 [](std::uint8_t* v) { *v = static_cast<std::uint8_t>(CDC_MIRROR_STATE_MIRRORED); });
  }
  SUBCASE("CKA_VALUE_LEN that is not the key's") {
    target = key->uid;
    edit_on_disk(g, target, CKA_VALUE_LEN, sizeof(CK_ULONG), [](std::uint8_t* v) { *v = 16; });
  }
  SUBCASE("the record copied under another object id") {
    target = store::ObjectStore::new_uid();
    auto st = raw_store(g);
    auto rec = st->get(data->uid);
    REQUIRE(rec);
    REQUIRE(st->put(target, *rec));
  }
  auto before = open(g);  // unauthenticated before a login, as public objects are
  REQUIRE(before->refresh());
  CHECK_FALSE(taken_in_at_login(g, target));
  CHECK_FALSE(taken_in_at_login(g, target, CKU_SO));
  // The others are taken in.
  for (auto* uid : {&key->uid, &pair.first.uid, &pair.second.uid, &data->uid})
    if (*uid != target) CHECK(taken_in_at_login(g, *uid));
}

TEST_CASE("a change without a login keeps its authenticated base; only what a public session may change is taken in") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  AttrMap k = public_aes("k");
  k.set_bool(CKA_SENSITIVE, true);
  k.set_bool(CKA_EXTRACTABLE, false);
  auto key = t->create_object(k);
  REQUIRE(key);
  auto pair = public_ec_pair(*t, "pair");
  t->logout();
  CHECK(kind_on_disk(g, key->uid) == kKindPublic);

  // Through the API: C_SetAttributeValue of CKA_LABEL in a public session.
  AttrMap renamed = key->attrs;
  renamed.set_string(CKA_LABEL, "x");
  REQUIRE(t->update_object(key->uid, renamed));
  CHECK(kind_on_disk(g, key->uid) == kKindPending);
  // What only a logged-in token writes is refused now, with the reason.
  AttrMap mirrored = pair.second.attrs;
  mirrored.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_MIRRORED);
  auto w = t->update_object(pair.second.uid, mirrored);
  REQUIRE_FALSE(w);
  CHECK(err_of(w) == Errc::user_not_logged_in);
  CHECK(w.error().message.find("CKA_CDC_MIRROR_STATE") != std::string::npos);
  CHECK(kind_on_disk(g, pair.second.uid) == kKindPublic);

  std::string target = key->uid;
  bool accepted = false;
  SUBCASE("the change itself") { accepted = true; }
  SUBCASE("a read-only attribute edited into the change") {
    edit_on_disk(g, key->uid, CKA_LOCAL, 1, [](std::uint8_t* v) { *v = CK_TRUE; });
  }
  SUBCASE("a sticky attribute turned back (CKA_EXTRACTABLE)") {
    edit_on_disk(g, key->uid, CKA_EXTRACTABLE, 1, [](std::uint8_t* v) { *v = CK_TRUE; });
  }
  SUBCASE("CKA_TRUSTED true edited into the change") {
    edit_on_disk(g, key->uid, CKA_TRUSTED, 1, [](std::uint8_t* v) { *v = CK_TRUE; });
  }
  SUBCASE("the authenticated record replaced by a new object's record under its id") {
    // What destroying it and making another through the API would give, but keeping its id.
    auto made = t->create_object(public_data("impostor"));
    REQUIRE(made);
    auto st = raw_store(g);
    auto rec = st->get(made->uid);
    REQUIRE(rec);
    target = pair.first.uid;
    const std::string& from = made->uid;
    std::copy(target.begin(), target.end(), std::search(rec->begin(), rec->end(), from.begin(), from.end()));
    auto watcher = open(g);  // a process that has seen the authenticated record
    REQUIRE(watcher->login(CKU_USER, pin("user-1")));
    REQUIRE(watcher->refresh());
    REQUIRE(st->put(target, *rec));
    auto ch = watcher->refresh();
    REQUIRE(ch);
    CHECK(contains(ch->removed, target));
    return;  // a process that never saw the original cannot tell (README: what this does not protect)
  }
  CHECK(taken_in_at_login(g, target) == accepted);
  if (accepted) {
    auto u = open(g);
    REQUIRE(u->login(CKU_USER, pin("user-1")));
    auto ch = u->refresh();
    REQUIRE(ch);
    auto it = std::find_if(ch->upserted.begin(), ch->upserted.end(), [&](auto& o) { return o.uid == key->uid; });
    REQUIRE(it != ch->upserted.end());
    CHECK(it->attrs.string_or(CKA_LABEL, "") == "x");
    CHECK(kind_on_disk(g, key->uid) == kKindPublic);
  }
}

TEST_CASE("without a login nothing private is written, and destroying needs no key") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  AttrMap priv_key = aes_key(true);  // CKA_PRIVATE true
  CHECK(err_of(t->create_object(priv_key)) == Errc::user_not_logged_in);
  CHECK(err_of(t->create_object(data_object("p", true, "v"))) == Errc::user_not_logged_in);
  AttrMap ref = public_ec_pair(*t, "x").second.attrs;  // a key reference (Azure-resident) is the token's to make
  ref.erase(CKA_UNIQUE_ID);
  ref.set_ulong(CKA_CDC_ORIGIN, CDC_ORIGIN_AZURE);
  CHECK(err_of(t->create_key_reference(ref)) == Errc::user_not_logged_in);
  auto pub = t->create_object(public_data("gone"));
  REQUIRE(pub);
  CHECK(t->destroy_object(pub->uid));
  CHECK_FALSE(raw_store(g)->get(pub->uid));
}

// An object's record turned public on disk (kind byte rewritten) is no public object: its sealed
// part does not open under the public sealing key, and a login refuses it.
TEST_CASE("a private record rewritten as public does not open, and is refused at login") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  auto obj = t->create_object(aes_key(true));
  REQUIRE(obj);
  auto st = raw_store(g);
  auto raw = st->get(obj->uid);
  REQUIRE(raw);
  for (std::uint8_t kind : {kKindPublic, kKindPending}) {
    CAPTURE(int(kind));
    Bytes rec = *raw;
    rec[5] = kind;
    REQUIRE(st->put(obj->uid, rec));
    auto other = open(g);
    REQUIRE(other->refresh());
    CHECK(err_of(other->secret_attribute(obj->uid, CKA_VALUE)));
    CHECK_FALSE(taken_in_at_login(g, obj->uid));
  }
}
