#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "store_test_util.h"

using namespace cdcp11;
using namespace cdcp11::store;
using namespace cdcp11::store::test;
using Code = Error::Code;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::set<std::string> uids_of(const std::vector<Record>& v) {
  std::set<std::string> s;
  for (const auto& r : v) s.insert(r.uid);
  return s;
}
std::set<std::string> as_set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

std::uint64_t gen(ObjectStore& s) {
  auto g = s.generation();
  REQUIRE(g);
  return *g;
}

}  // namespace

TEST_CASE("open: not_found without create, creates the versioned layout with create") {
  TempDir t;
  const std::string dir = t.sub("a/b/token");
  auto missing = ObjectStore::open(dir, false);
  REQUIRE(!missing);
  CHECK(missing.error().code == Code::not_found);

  auto s = must_open(dir, true);
  CHECK(s->dir() == dir);
  CHECK(slurp(dir + "/format") == "cdcp11-token-store 2\n");
  struct stat st {};
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  REQUIRE(::stat((dir + "/objects").c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  REQUIRE(::stat((dir + "/lock").c_str(), &st) == 0);
  CHECK(st.st_size == 8 + 256 * 40);  // generation + change journal, allocated up front
  CHECK(gen(*s) == 0);

  // Reopening without create works once the layout exists.
  auto again = ObjectStore::open(dir, false);
  CHECK(again);
}

TEST_CASE("open: an I/O error names the path and the errno text") {
  TempDir t;
  std::ofstream(t.sub("file")) << "x";
  auto r = ObjectStore::open(t.sub("file/token"), true);
  REQUIRE(!r);
  CHECK(r.error().code == Code::io);
  CHECK(r.error().message.find(t.sub("file")) != std::string::npos);
  CHECK(r.error().message.find("Not a directory") != std::string::npos);
}

TEST_CASE("uids: new_uid is 32 lowercase hex and random; malformed uids are bad_argument") {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string u = ObjectStore::new_uid();
    CHECK(ObjectStore::is_valid_uid(u));
    seen.insert(u);
  }
  CHECK(seen.size() == 100);

  TempDir t;
  auto s = must_open(t.path());
  for (std::string bad : {std::string(""), std::string(31, 'a'), std::string(33, 'a'),
                          std::string(32, 'A'), std::string("../") + std::string(29, 'a'),
                          std::string(31, 'a') + "g", std::string(31, 'a') + '\0'}) {
    CHECK_FALSE(ObjectStore::is_valid_uid(bad));
    auto p = s->put(bad, view("x"));
    REQUIRE(!p);
    CHECK(p.error().code == Code::bad_argument);
    auto g = s->get(bad);
    REQUIRE(!g);
    CHECK(g.error().code == Code::bad_argument);
    auto r = s->remove(bad);
    REQUIRE(!r);
    CHECK(r.error().code == Code::bad_argument);
  }
  CHECK(entries(t.sub("objects")).empty());
}

TEST_CASE("put/get/remove semantics and generation bumps") {
  TempDir t;
  auto s = must_open(t.path());
  const std::string a = ObjectStore::new_uid(), b = ObjectStore::new_uid();

  auto g0 = gen(*s);
  auto missing = s->get(a);
  REQUIRE(!missing);
  CHECK(missing.error().code == Code::not_found);

  REQUIRE(s->put(a, payload_for(a, 1)));
  CHECK(gen(*s) == g0 + 1);
  auto got = s->get(a);
  REQUIRE(got);
  CHECK(*got == payload_for(a, 1));

  REQUIRE(s->put(a, payload_for(a, 2)));  // overwrite
  CHECK(*s->get(a) == payload_for(a, 2));
  REQUIRE(s->put(b, {}));                 // empty payload is a valid record
  CHECK(s->get(b)->empty());
  CHECK(gen(*s) == g0 + 3);

  auto rm_missing = s->remove(ObjectStore::new_uid());
  REQUIRE(!rm_missing);
  CHECK(rm_missing.error().code == Code::not_found);
  CHECK(gen(*s) == g0 + 3);  // a failed remove changes nothing

  REQUIRE(s->remove(a));
  CHECK(gen(*s) == g0 + 4);
  auto gone = s->get(a);
  REQUIRE(!gone);
  CHECK(gone.error().code == Code::not_found);
  CHECK(entries(t.sub("objects")) == std::vector<std::string>{b});
  CHECK(entries(t.path(), ".tmp-").empty());
}

TEST_CASE("meta record") {
  TempDir t;
  auto s = must_open(t.path());
  auto none = s->read_meta();
  REQUIRE(!none);
  CHECK(none.error().code == Code::not_found);
  auto g0 = gen(*s);
  REQUIRE(s->write_meta(view("token info v1")));
  CHECK(gen(*s) == g0 + 1);
  CHECK(*s->read_meta() == to_bytes(view("token info v1")));
  REQUIRE(s->write_meta(view("v2")));
  CHECK(*s->read_meta() == to_bytes(view("v2")));
  // Visible to another instance.
  auto other = must_open(t.path(), false);
  CHECK(*other->read_meta() == to_bytes(view("v2")));
}

TEST_CASE("refresh: full reload first, then exactly the changes") {
  TempDir t;
  auto w = must_open(t.path());
  std::vector<std::string> u;
  for (int i = 0; i < 5; ++i) {
    u.push_back(ObjectStore::new_uid());
    REQUIRE(w->put(u.back(), payload_for(u.back(), 1)));
  }
  REQUIRE(w->write_meta(view("m")));

  auto r = must_open(t.path(), false);
  auto first = r->refresh();
  REQUIRE(first);
  CHECK(first->full_reload);
  CHECK(first->meta_changed);
  CHECK(uids_of(first->upserted) == as_set(u));
  for (const auto& rec : first->upserted) CHECK(rec.data == payload_for(rec.uid, 1));
  CHECK(first->removed.empty());
  CHECK(first->corrupt.empty());

  auto idle = r->refresh();
  REQUIRE(idle);
  CHECK_FALSE(idle->full_reload);
  CHECK_FALSE(idle->meta_changed);
  CHECK(idle->upserted.empty());
  CHECK(idle->removed.empty());

  const std::string fresh = ObjectStore::new_uid();
  REQUIRE(w->put(fresh, payload_for(fresh, 1)));
  REQUIRE(w->put(u[0], payload_for(u[0], 2)));
  REQUIRE(w->remove(u[1]));
  auto ch = r->refresh();
  REQUIRE(ch);
  CHECK_FALSE(ch->full_reload);
  CHECK_FALSE(ch->meta_changed);
  CHECK(uids_of(ch->upserted) == std::set<std::string>{fresh, u[0]});
  for (const auto& rec : ch->upserted)
    CHECK(rec.data == payload_for(rec.uid, rec.uid == u[0] ? 2 : 1));
  CHECK(ch->removed == std::vector<std::string>{u[1]});

  // The same content rewritten is still a change (a new file version).
  REQUIRE(w->put(u[2], payload_for(u[2], 1)));
  auto same = r->refresh();
  REQUIRE(same);
  CHECK(uids_of(same->upserted) == std::set<std::string>{u[2]});

  REQUIRE(w->write_meta(view("m2")));
  auto meta = r->refresh();
  REQUIRE(meta);
  CHECK(meta->meta_changed);
  CHECK(meta->upserted.empty());

  // The writer's own refresh sees its own changes too (full reload first).
  auto own = w->refresh();
  REQUIRE(own);
  CHECK(own->full_reload);
  CHECK(own->upserted.size() == 5);
}

TEST_CASE("refresh with an unchanged generation does not touch the objects directory") {
  TempDir t;
  auto s = must_open(t.path());
  REQUIRE(s->put(ObjectStore::new_uid(), view("x")));
  REQUIRE(s->refresh());
  // Hide the objects directory: a refresh that listed it would fail.
  REQUIRE(::rename(t.sub("objects").c_str(), t.sub("hidden").c_str()) == 0);
  auto idle = s->refresh();
  CHECK(idle);
  REQUIRE(::rename(t.sub("hidden").c_str(), t.sub("objects").c_str()) == 0);
}

TEST_CASE("wipe removes every object and the meta record") {
  TempDir t;
  auto s = must_open(t.path());
  std::set<std::string> all;
  for (int i = 0; i < 10; ++i) {
    const std::string u = ObjectStore::new_uid();
    all.insert(u);
    REQUIRE(s->put(u, view("x")));
  }
  REQUIRE(s->write_meta(view("m")));
  auto r = must_open(t.path(), false);
  REQUIRE(r->refresh());

  auto g0 = gen(*s);
  REQUIRE(s->wipe());
  CHECK(gen(*s) > g0);
  CHECK(s->read_meta().error().code == Code::not_found);
  CHECK(entries(t.sub("objects")).empty());
  CHECK(entries(t.path(), "objects.").empty());

  auto ch = r->refresh();
  REQUIRE(ch);
  CHECK(ch->meta_changed);
  CHECK(as_set(ch->removed) == all);
  CHECK(ch->upserted.empty());

  // The store is usable afterwards, by both instances.
  const std::string u = ObjectStore::new_uid();
  REQUIRE(s->put(u, view("after")));
  CHECK(*r->get(u) == to_bytes(view("after")));
}
