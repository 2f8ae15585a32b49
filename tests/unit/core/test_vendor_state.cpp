// Vendor state in the token's metadata store (core/token/vendor_state.h) over the soft token, and
// the move of an older soft token's vendor attributes out of its records
// (softtoken/soft_migrate.cpp).
#include <doctest/doctest.h>

#include <cstdlib>
#include <functional>
#include <fstream>
#include <sstream>
#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "cdcp11/cdcp11.h"
#include "common/log.h"
#include "core/attribute_policy.h"
#include "core/token/metadata_store.h"
#include "core/token/vendor_state.h"
#include "tests/unit/core/soft_token_test_util.h"

using namespace cdcp11;
using namespace cdcp11::softtoken::test;
using core::MetadataStore;
using core::VendorState;

namespace {

const char* const kKid = "https://v.vault.azure.net/keys/mirrored/0123456789abcdef";

// What the metadata store's files hold: the snapshot, then the changes appended since.
std::string store_files(const std::string& dir) { return slurp(dir + "/metadata.json") + slurp(dir + "/metadata.changes"); }

core::AttrMap vendor_of(const core::AttrMap& a) {
  core::AttrMap rest;
  return core::split_vendor(a, rest);
}

// What the store keeps and core reports of a key's vendor attributes: the values other than
// core's defaults (core fills those in).
core::AttrMap kept(const core::AttrMap& vendor, CK_OBJECT_CLASS cls) { return core::non_default_vendor(cls, vendor); }

// Edits the store as a hand on the file would: f changes a copy of the entries, the differences
// are the change.
void edit_store(const std::string& dir, const std::function<void(core::MetaData&)>& f) {
  auto meta = MetadataStore::open(dir);
  REQUIRE(meta);
  REQUIRE((*meta)->update([&](core::MetaChange& c) -> core::R<void> {
    core::MetaData d = c.before();
    f(d);
    for (auto& [uid, e] : d.objects) c.put(uid, e);  // the same entry again is no change
    for (auto& [uid, e] : c.before().objects)
      if (!d.objects.count(uid)) c.erase(uid);
    return {};
  }));
}

std::unique_ptr<VendorState> open_vendor(const GroupConfig& g) {
  auto meta = MetadataStore::open(g.token.dir);
  REQUIRE(meta);
  return std::make_unique<VendorState>(open(g), std::move(*meta));
}

std::map<std::string, core::AttrMap> objects_of(core::Backend& b) {
  auto ch = b.refresh();
  REQUIRE(ch);
  std::map<std::string, core::AttrMap> out;
  for (auto& o : ch->upserted) out[o.uid] = o.attrs;
  return out;
}

// A token as the build before the metadata store left it: store format 1, and objects whose
// vendor attributes (a mirrored private key, a mirrored public object, an Azure-resident key
// reference) are in their records, beside one object without any. The soft token is given them
// directly, as core gave them to it then. Returns each object's vendor attributes by uid.
std::map<std::string, core::AttrMap> old_format_token(const GroupConfig& g) {
  auto t = open(g);
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  std::map<std::string, core::AttrMap> vendor;

  core::AttrMap priv = aes_key(true);
  priv.set_string(CKA_LABEL, "mirrored");
  priv.set_bool(CKA_CDC_MIRROR, true);
  priv.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_MIRRORED);
  priv.set_string(CKA_CDC_AZURE_KEY_ID, kKid);
  priv.set_string(CKA_CDC_MIRROR_ERROR, "");
  priv.set_ulong(CKA_CDC_ORIGIN, CDC_ORIGIN_LOCAL);
  auto a = t->create_object(priv);
  REQUIRE(a);
  vendor[a->uid] = kept(vendor_of(priv), CKO_SECRET_KEY);

  core::AttrMap pub = aes_key(true);
  pub.set_bool(CKA_PRIVATE, false);
  pub.set_string(CKA_LABEL, "public and failed");
  pub.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_FAILED);
  pub.set_string(CKA_CDC_MIRROR_ERROR, "the vault refused the key");
  auto b = t->create_object(pub);
  REQUIRE(b);
  vendor[b->uid] = kept(vendor_of(pub), CKO_SECRET_KEY);

  core::AttrMap ref;
  ref.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  ref.set_ulong(CKA_KEY_TYPE, CKK_RSA);
  ref.set_bool(CKA_TOKEN, true);
  ref.set_bool(CKA_PRIVATE, true);
  ref.set_string(CKA_LABEL, "in the vault");
  ref.set_ulong(CKA_CDC_ORIGIN, CDC_ORIGIN_AZURE);
  ref.set_string(CKA_CDC_AZURE_KEY_ID, "https://v.vault.azure.net/keys/resident/1");
  auto c = t->create_key_reference(ref);
  REQUIRE(c);
  vendor[c->uid] = kept(vendor_of(ref), CKO_PRIVATE_KEY);

  // As the build before recorded every key it made: core's defaults only.
  core::AttrMap unmirrored = aes_key(true);
  unmirrored.set_string(CKA_LABEL, "never mirrored");
  core::apply_vendor_defaults(CKO_SECRET_KEY, unmirrored);
  REQUIRE_FALSE(vendor_of(unmirrored).empty());
  auto e = t->create_object(unmirrored);
  REQUIRE(e);
  vendor[e->uid] = {};

  auto plain = t->create_object(data_object("plain", true, "no vendor state"));
  REQUIRE(plain);
  vendor[plain->uid] = {};
  t->logout();
  t.reset();
  write_file(g.token.dir + "/format", "cdcp11-token-store 1\n");
  return vendor;
}

// Every object reads its vendor attributes as made; the records hold none; the store holds
// them, authenticated (a private object's sealed); the store format is 2.
void check_moved(const GroupConfig& g, const std::map<std::string, core::AttrMap>& vendor) {
  {
    auto v = open_vendor(g);
    REQUIRE(v->login(CKU_USER, pin("user-1")));
    auto objs = objects_of(*v);
    REQUIRE(objs.size() == vendor.size());
    for (auto& [uid, want] : vendor) {
      CAPTURE(uid);
      REQUIRE(objs.count(uid));
      CHECK(vendor_of(objs[uid]).map() == want.map());
    }
  }
  auto raw = open(g);
  REQUIRE(raw->login(CKU_USER, pin("user-1")));
  auto objs = objects_of(*raw);
  REQUIRE(objs.size() == vendor.size());
  for (auto& [uid, a] : objs) {
    CAPTURE(uid);
    CHECK(vendor_of(a).empty());
  }
  auto meta = MetadataStore::open(g.token.dir);
  REQUIRE(meta);
  for (auto& [uid, want] : vendor) {
    CAPTURE(uid);
    if (want.empty()) {
      CHECK_FALSE((*meta)->data().objects.count(uid));
      continue;
    }
    REQUIRE((*meta)->data().objects.count(uid));
    const core::MetaEntry& e = (*meta)->data().objects.at(uid);
    if (objs.at(uid).bool_or(CKA_PRIVATE, true)) {
      CHECK(e.vendor.empty());
      CHECK_FALSE(e.sealed.empty());
    } else {
      CHECK(e.vendor.map() == want.map());
      CHECK(e.mac.size() == 32);
    }
  }
  CHECK(slurp(g.token.dir + "/format") == "cdcp11-token-store 2\n");
}

}  // namespace

TEST_CASE("vendor state: an old-format soft token's vendor attributes move into the metadata store, once") {
  TempDir d;
  const auto g = group(d.path);
  const auto vendor = old_format_token(g);
  {
    // Before a login the records are not moved, and a public object reads as it did.
    auto v = open_vendor(g);
    auto objs = objects_of(*v);
    std::string pub_uid;
    for (auto& [uid, want] : vendor)
      if (want.has(CKA_CDC_MIRROR_STATE) && want.ulong(CKA_CDC_MIRROR_STATE) == CDC_MIRROR_STATE_FAILED) pub_uid = uid;
    REQUIRE(objs.count(pub_uid));
    CHECK(vendor_of(objs[pub_uid]).map() == vendor.at(pub_uid).map());
    CHECK(slurp(g.token.dir + "/format") == "cdcp11-token-store 1\n");
  }
  check_moved(g, vendor);
  // Once: a second login changes nothing.
  const std::string before = store_files(g.token.dir);
  check_moved(g, vendor);
  CHECK(store_files(g.token.dir) == before);
}

TEST_CASE("vendor state: a crash at any step of the move loses nothing and the next login completes it") {
  for (int step = 1; step <= 4; ++step) {
    CAPTURE(step);
    TempDir d;
    const auto g = group(d.path);
    const auto vendor = old_format_token(g);
    const int rc = run_in_child([&] {
      ::setenv("CDCP11_TEST_VENDOR_MOVE_EXIT_AT", std::to_string(step).c_str(), 1);
      auto v = open_vendor(g);
      if (!v->login(CKU_USER, pin("user-1"))) return 1;
      (void)v->refresh();
      return 0;
    });
    CHECK(rc == 86);  // it did stop at that step
    check_moved(g, vendor);
  }
}

TEST_CASE("vendor state: the store wins over a record's vendor attributes left by a crash") {
  TempDir d;
  const auto g = group(d.path);
  auto vendor = old_format_token(g);
  std::string uid;
  for (auto& [u, want] : vendor)
    if (want.string_or(CKA_CDC_AZURE_KEY_ID, "") == kKid) uid = u;
  REQUIRE(!uid.empty());
  // Written to the store (sealed under the token key, as the key is private) after a crash left
  // the record unchanged: newer than the record.
  {
    auto t = open(g);
    REQUIRE(t->login(CKU_USER, pin("user-1")));
    core::AttrMap a = vendor[uid];
    a.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_FAILED);
    auto entry = core::seal_entry(t->vendor_seal(), uid, true, a);
    REQUIRE(entry);
    edit_store(g.token.dir, [&](core::MetaData& m) { m.objects[uid] = *entry; });
  }
  vendor[uid].set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_FAILED);
  check_moved(g, vendor);
}

TEST_CASE("vendor state: a token written by this build is refused by the store format reader of the build before") {
  TempDir d;
  const auto g = group(d.path);
  auto t = open(g);
  init(*t);
  const std::string path = g.token.dir + "/format";
  const std::string content = slurp(path);
  // The build before read "cdcp11-token-store 1\n" only.
  CHECK(content != "cdcp11-token-store 1\n");
  auto old_reader = store::ObjectStore::parse_format(view(content), path, 1);
  REQUIRE_FALSE(old_reader);
  CHECK(old_reader.error().code == store::Error::Code::corrupt);
  CHECK(old_reader.error().message ==
        path + ": unsupported store format version '2' (this build reads 1 to 1): the token was written by a newer cdcp11");
  auto now = store::ObjectStore::parse_format(view(content), path);
  REQUIRE(now);
  CHECK(*now == 2);
}

// An initialised soft token and two logged-in instances of it, as two processes have.
struct TwoInstances {
  TempDir d;
  GroupConfig g = group(d.path);
  std::unique_ptr<VendorState> a, b;
  TwoInstances() {
    {
      auto t = open(g);
      init(*t);
    }
    a = open_vendor(g);
    b = open_vendor(g);
    REQUIRE(a->login(CKU_USER, pin("user-1")));
    REQUIRE(b->login(CKU_USER, pin("user-1")));
    (void)objects_of(*b);
  }
};

TEST_CASE("vendor state: written to the store, never to the record; destroy removes it; another instance sees it") {
  TwoInstances two;
  const auto& g = two.g;
  auto& v = two.a;
  auto& other = two.b;
  auto made = v->create_object(aes_key(true));
  REQUIRE(made);
  const std::string uid = made->uid;
  CHECK(objects_of(*other).count(uid));

  core::AttrMap a = made->attrs;
  a.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_MIRRORED);
  a.set_string(CKA_CDC_AZURE_KEY_ID, kKid);
  REQUIRE(v->update_object(uid, a));
  {
    auto meta = MetadataStore::open(g.token.dir);
    REQUIRE(meta);
    REQUIRE((*meta)->data().objects.count(uid));
    CHECK_FALSE((*meta)->data().objects.at(uid).sealed.empty());  // a private key's
    auto raw = open(g);
    REQUIRE(raw->login(CKU_USER, pin("user-1")));
    CHECK(vendor_of(objects_of(*raw).at(uid)).empty());
  }
  auto seen = other->refresh();
  REQUIRE(seen);
  bool told = seen->vendor.count(uid) && seen->vendor.at(uid).string_or(CKA_CDC_AZURE_KEY_ID, "") == kKid;
  for (auto& o : seen->upserted)
    if (o.uid == uid) told = o.attrs.string_or(CKA_CDC_AZURE_KEY_ID, "") == kKid;
  CHECK(told);

  // Metadata of an identity no object has is never read and breaks nothing.
  {
    edit_store(g.token.dir, [](core::MetaData& m) {
      m.objects["00000000000000000000000000000000"].vendor.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_MIRRORED);
    });
  }
  auto all = objects_of(*open_vendor(g));
  CHECK_FALSE(all.count("00000000000000000000000000000000"));

  REQUIRE(v->destroy_object(uid));
  auto meta = MetadataStore::open(g.token.dir);
  REQUIRE(meta);
  CHECK_FALSE((*meta)->data().objects.count(uid));
}

TEST_CASE("vendor state: a metadata store that cannot be read fails the refresh without losing the backend's changes") {
  TwoInstances two;
  const auto& g = two.g;
  auto& writer = two.a;
  auto& reader = two.b;
  core::AttrMap k = aes_key(true);
  k.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_MIRRORED);
  auto made = writer->create_object(k);
  REQUIRE(made);
  // The snapshot (absent yet) or the changes file.
  for (const std::string name : {"metadata.json", "metadata.changes"}) {
    CAPTURE(name);
    const std::string path = g.token.dir + "/" + name;
    const bool existed = std::filesystem::exists(path);
    const std::string good = slurp(path);
    write_file(path, "{ not json\n");
    CHECK_FALSE(reader->refresh());
    if (existed) write_file(path, good);
    else std::filesystem::remove(path);
  }
  auto ch = reader->refresh();
  REQUIRE(ch);
  bool seen = false;
  for (auto& o : ch->upserted)
    if (o.uid == made->uid) seen = o.attrs.ulong(CKA_CDC_MIRROR_STATE) == CDC_MIRROR_STATE_MIRRORED;
  CHECK(seen);
}

namespace {

// The log lines written while f runs that mention uid.
template <class F>
std::vector<std::string> log_lines_of(const std::string& dir, const std::string& uid, F&& f) {
  const std::string path = dir + "/test.log";
  ::setenv("CDCP11_LOG_FILE", path.c_str(), 1);
  log::configure_from_env();
  f();
  ::unsetenv("CDCP11_LOG_FILE");
  log::configure_from_env();
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string l; std::getline(in, l);)
    if (l.find(uid) != std::string::npos) lines.push_back(l);
  return lines;
}

// A logged-in VendorState over a new token, and a key made through it with an Azure key id.
struct Mirrored {
  TempDir d;
  GroupConfig g = group(d.path);
  std::string made(bool is_private, const std::string& kid) {
    auto v = open_vendor(g);
    REQUIRE(v->login(CKU_USER, pin("user-1")));
    core::AttrMap k = aes_key(true);
    k.set_bool(CKA_PRIVATE, is_private);
    auto o = v->create_object(k);
    REQUIRE(o);
    core::AttrMap a = o->attrs;
    a.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_MIRRORED);
    a.set_string(CKA_CDC_AZURE_KEY_ID, kid);
    REQUIRE(v->update_object(o->uid, a));
    return o->uid;
  }
  Mirrored() {
    auto t = open(g);
    init(*t);
  }
  // The objects as a logged-in VendorState reports them.
  std::map<std::string, core::AttrMap> logged_in() {
    auto v = open_vendor(g);
    REQUIRE(v->login(CKU_USER, pin("user-1")));
    return objects_of(*v);
  }
  void edit(const std::function<void(core::MetaData&)>& f) { edit_store(g.token.dir, f); }
};

bool mirrored_as(const core::AttrMap& a, const std::string& kid) {
  return a.ulong(CKA_CDC_MIRROR_STATE) == CDC_MIRROR_STATE_MIRRORED && a.string_or(CKA_CDC_AZURE_KEY_ID, "") == kid;
}

bool has_defaults(const core::AttrMap& a) {
  return kept(vendor_of(a), a.ulong(CKA_CLASS).value_or(CKO_DATA)).empty() && !a.has(CKA_CDC_AZURE_KEY_ID);
}

const char* const kOtherKid = "https://evil.vault.azure.net/keys/redirected/1";

}  // namespace

TEST_CASE("vendor state: an edited entry of a public token object is read before a login, refused after it with one log line") {
  Mirrored m;
  const std::string uid = m.made(false, kKid);
  REQUIRE(mirrored_as(m.logged_in().at(uid), kKid));
  m.edit([&](core::MetaData& d) { d.objects.at(uid).vendor.set_string(CKA_CDC_AZURE_KEY_ID, kOtherKid); });
  // Before a login a public object's entry is not authenticated (as a public record is not).
  CHECK(mirrored_as(objects_of(*open_vendor(m.g)).at(uid), kOtherKid));
  std::map<std::string, core::AttrMap> objs;
  const auto lines = log_lines_of(m.d.path, uid, [&] { objs = m.logged_in(); });
  REQUIRE(objs.count(uid));
  CHECK(has_defaults(objs.at(uid)));
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("vendor state fails its MAC") != std::string::npos);
  CHECK(lines[0].find("evil") == std::string::npos);  // no values
}

TEST_CASE("vendor state: an edited or forged entry of a private token object is refused after a login") {
  Mirrored m;
  const std::string uid = m.made(true, kKid);
  REQUIRE(mirrored_as(m.logged_in().at(uid), kKid));
  // Replaced by a clear entry that points elsewhere.
  m.edit([&](core::MetaData& d) {
    core::MetaEntry e;
    e.vendor.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_MIRRORED);
    e.vendor.set_string(CKA_CDC_AZURE_KEY_ID, kOtherKid);
    d.objects[uid] = e;
  });
  std::map<std::string, core::AttrMap> objs;
  const auto lines = log_lines_of(m.d.path, uid, [&] { objs = m.logged_in(); });
  CHECK(has_defaults(objs.at(uid)));
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("vendor state fails its MAC") != std::string::npos);
}

TEST_CASE("vendor state: an entry another process edits is checked when a logged-in instance reads that change alone") {
  Mirrored m;
  const std::string a = m.made(true, kKid), b = m.made(true, kOtherKid), pa = m.made(false, kKid);
  auto v = open_vendor(m.g);
  REQUIRE(v->login(CKU_USER, pin("user-1")));
  auto objs = objects_of(*v);
  REQUIRE(mirrored_as(objs.at(pa), kKid));
  // Appended changes, read on their own (not the whole store) by v's refresh: each entry they
  // touch is checked, the others keep what they gave.
  m.edit([&](core::MetaData& d) {
    d.objects.at(pa).vendor.set_string(CKA_CDC_AZURE_KEY_ID, kOtherKid);
    d.objects[b] = d.objects.at(a);
  });
  core::R<core::ObjectChanges> ch = core::ObjectChanges{};
  const auto lines = log_lines_of(m.d.path, pa, [&] { ch = v->refresh(); });
  REQUIRE(ch);
  REQUIRE(ch->vendor.count(pa));
  CHECK(has_defaults(ch->vendor.at(pa)));
  REQUIRE(ch->vendor.count(b));
  CHECK(has_defaults(ch->vendor.at(b)));
  CHECK_FALSE(ch->vendor.count(a));
  CHECK(lines.size() == 1);
  // A change made through v is checked alone too, and holds.
  core::AttrMap k = objs.at(a);
  k.set_string(CKA_CDC_MIRROR_ERROR, "throttled");
  REQUIRE(v->update_object(a, k));
  REQUIRE(v->refresh());
  auto fresh = m.logged_in();
  CHECK(fresh.at(a).string_or(CKA_CDC_MIRROR_ERROR, "") == "throttled");
  CHECK(has_defaults(fresh.at(pa)));
  CHECK(has_defaults(fresh.at(b)));
}

TEST_CASE("vendor state: an entry copied under another object's uid is refused") {
  Mirrored m;
  const std::string a = m.made(true, kKid), b = m.made(true, kOtherKid);
  const std::string pa = m.made(false, kKid), pb = m.made(false, kOtherKid);
  m.edit([&](core::MetaData& d) {
    d.objects[b] = d.objects.at(a);
    d.objects[pb] = d.objects.at(pa);
  });
  auto objs = m.logged_in();
  CHECK(mirrored_as(objs.at(a), kKid));
  CHECK(mirrored_as(objs.at(pa), kKid));
  CHECK(has_defaults(objs.at(b)));
  CHECK(has_defaults(objs.at(pb)));
}

TEST_CASE("vendor state: a private object's Azure key id is not in the metadata store; a public object's is, authenticated") {
  Mirrored m;
  const std::string priv = m.made(true, kKid), pub = m.made(false, kOtherKid);
  const std::string json = store_files(m.g.token.dir);
  CHECK(json.find(priv) != std::string::npos);
  CHECK(json.find(kKid) == std::string::npos);
  CHECK(json.find(to_hex(view(std::string(kKid)))) == std::string::npos);
  CHECK(json.find(to_hex(view(std::string(kOtherKid)))) != std::string::npos);
  auto objs = m.logged_in();
  CHECK(mirrored_as(objs.at(priv), kKid));
  CHECK(mirrored_as(objs.at(pub), kOtherKid));
}

TEST_CASE("vendor state: the move of an old-format token writes authenticated entries") {
  TempDir d;
  const auto g = group(d.path);
  const auto vendor = old_format_token(g);
  check_moved(g, vendor);
  const std::string json = store_files(g.token.dir);
  CHECK(json.find(to_hex(view(std::string(kKid)))) == std::string::npos);  // a private key's
  // Every moved entry, edited, is refused.
  {
    edit_store(g.token.dir, [](core::MetaData& m) {
      for (auto& [uid, e] : m.objects) e.vendor.set_string(CKA_CDC_MIRROR_ERROR, "edited");
    });
  }
  auto v = open_vendor(g);
  REQUIRE(v->login(CKU_USER, pin("user-1")));
  for (auto& [uid, a] : objects_of(*v)) {
    CAPTURE(uid);
    CHECK(a.string_or(CKA_CDC_MIRROR_ERROR, "") != "edited");
  }
}

TEST_CASE("vendor state: writing a token object's vendor state needs a login; nothing is written without one") {
  Mirrored m;
  const std::string uid = m.made(false, kKid);
  const std::string before = store_files(m.g.token.dir);
  auto v = open_vendor(m.g);  // a public session: nobody logged in
  auto objs = objects_of(*v);
  REQUIRE(mirrored_as(objs.at(uid), kKid));
  core::AttrMap a = objs.at(uid);
  a.set_string(CKA_CDC_AZURE_KEY_ID, kOtherKid);
  auto r = v->update_object(uid, a);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == core::Errc::user_not_logged_in);
  CHECK(store_files(m.g.token.dir) == before);
  // After a logout as well.
  REQUIRE(v->login(CKU_USER, pin("user-1")));
  (void)objects_of(*v);
  v->logout();
  CHECK_FALSE(v->update_object(uid, a));
  CHECK(store_files(m.g.token.dir) == before);
  // Unchanged vendor state needs nothing written: the other attributes change as before.
  core::AttrMap same = objs.at(uid);
  same.set_string(CKA_LABEL, "renamed in a public session");
  CHECK(v->update_object(uid, same));
  CHECK(store_files(m.g.token.dir) == before);
}

TEST_CASE("vendor state: a key whose state the mirror writes while its engine uses the backend is never reported removed") {
  TempDir d;
  const auto g = initialised_group(d.path);
  auto v = open_vendor(g);
  REQUIRE(v->login(CKU_USER, pin("user-1")));
  REQUIRE(v->refresh());
  auto made = v->create_object(aes_key(true));
  REQUIRE(made);
  const std::string uid = made->uid;
  // The Token's lock: its refreshes and the worker's state writes (Service::record) take it; the
  // engine's backend calls (session objects, the key's material) do not.
  std::mutex token_lock;
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread refresher([&] {
    while (!stop) {
      std::lock_guard l(token_lock);
      auto ch = v->refresh();
      if (!ch || ch->full_reload || std::ranges::count(ch->removed, uid)) ++bad;
    }
  });
  std::thread engine([&] {
    while (!stop) {
      auto tmp = v->create_object(aes_key(false));
      if (!tmp || !v->secret_attribute(uid, CKA_VALUE) || !v->destroy_object(tmp->uid)) ++bad;
    }
  });
  for (int i = 0; i < 300; ++i) {
    std::lock_guard l(token_lock);
    core::AttrMap a = made->attrs;
    a.set_ulong(CKA_CDC_MIRROR_STATE, i % 2 ? CDC_MIRROR_STATE_PENDING : CDC_MIRROR_STATE_MIRRORED);
    a.set_string(CKA_CDC_AZURE_KEY_ID, std::string(kKid) + std::to_string(i));
    if (!v->update_object(uid, a)) ++bad;
  }
  stop = true;
  refresher.join();
  engine.join();
  CHECK(bad == 0);
}
