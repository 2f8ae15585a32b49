#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <fstream>

#include "softtoken/store/record_format.h"
#include "store_test_util.h"

using namespace cdcp11;
using namespace cdcp11::store;
using namespace cdcp11::store::test;
using Code = Error::Code;

namespace {

void flip_byte(const std::string& path, off_t off) {
  int fd = ::open(path.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  std::uint8_t b = 0;
  REQUIRE(::pread(fd, &b, 1, off) == 1);
  b ^= 0x40;
  REQUIRE(::pwrite(fd, &b, 1, off) == 1);
  ::close(fd);
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << content;
  REQUIRE(f.good());
}

// A UNIX socket at path: open() on it fails with ENXIO, for root as well.
void make_socket(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof a.sun_path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  ::close(fd);
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

TEST_CASE("a damaged object file is reported corrupt, never returned as data") {
  TempDir t;
  auto s = must_open(t.path());
  const std::string good = ObjectStore::new_uid(), bad = ObjectStore::new_uid();
  REQUIRE(s->put(good, payload_for(good, 1)));
  REQUIRE(s->put(bad, payload_for(bad, 1)));
  const std::string path = t.sub("objects/" + bad);

  SUBCASE("flipped payload byte") { flip_byte(path, 30); }
  SUBCASE("flipped header byte") { flip_byte(path, 9); }
  SUBCASE("truncated inside the header") { REQUIRE(::truncate(path.c_str(), 10) == 0); }
  SUBCASE("truncated payload") {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    REQUIRE(::truncate(path.c_str(), st.st_size - 1) == 0);
  }
  SUBCASE("empty file") { REQUIRE(::truncate(path.c_str(), 0) == 0); }

  auto g = s->get(bad);
  REQUIRE(!g);
  CHECK(g.error().code == Code::corrupt);
  CHECK(g.error().message.find(path) != std::string::npos);
  CHECK(*s->get(good) == payload_for(good, 1));

  auto r = must_open(t.path(), false);
  auto ch = r->refresh();
  REQUIRE(ch);
  CHECK(ch->corrupt == std::vector<std::string>{bad});
  REQUIRE(ch->upserted.size() == 1);
  CHECK(ch->upserted[0].uid == good);

  // Reported once; it stays on disk and is not re-reported while unchanged.
  REQUIRE(s->put(ObjectStore::new_uid(), view("bump")));
  auto again = r->refresh();
  REQUIRE(again);
  CHECK(again->corrupt.empty());
  CHECK(::access(path.c_str(), F_OK) == 0);

  // Repairing it by a put makes it data again.
  REQUIRE(s->put(bad, payload_for(bad, 2)));
  auto fixed = r->refresh();
  REQUIRE(fixed);
  REQUIRE(fixed->upserted.size() == 1);
  CHECK(fixed->upserted[0].uid == bad);
  CHECK(fixed->upserted[0].data == payload_for(bad, 2));
}

TEST_CASE("damage behind the store's back: found by get() and by a full listing") {
  TempDir t;
  auto s = must_open(t.path());
  const std::string u = ObjectStore::new_uid();
  REQUIRE(s->put(u, payload_for(u, 1)));
  auto r = must_open(t.path(), false);
  REQUIRE(r->refresh());
  flip_byte(t.sub("objects/" + u), 25);
  CHECK(r->get(u).error().code == Code::corrupt);

  // A few changes are picked up from the journal, which names only the files written.
  REQUIRE(s->put(ObjectStore::new_uid(), view("bump")));
  auto few = r->refresh();
  REQUIRE(few);
  CHECK(few->upserted.size() == 1);
  CHECK(few->corrupt.empty());

  // More changes than the journal holds force a full listing, which checks every identity.
  std::vector<std::string> added;
  for (int i = 0; i < 300; ++i) {
    added.push_back(ObjectStore::new_uid());
    REQUIRE(s->put(added.back(), payload_for(added.back(), 1)));
  }
  REQUIRE(s->remove(added.front()));
  auto many = r->refresh();
  REQUIRE(many);
  CHECK_FALSE(many->full_reload);
  CHECK(many->corrupt == std::vector<std::string>{u});
  CHECK(many->upserted.size() == added.size() - 1);
  CHECK(many->removed.empty());  // added.front() came and went between two refreshes
}

TEST_CASE("a record file copied under another uid is corrupt") {
  TempDir t;
  auto s = must_open(t.path());
  const std::string a = ObjectStore::new_uid(), b = ObjectStore::new_uid();
  REQUIRE(s->put(a, view("a")));
  REQUIRE(::link(t.sub("objects/" + a).c_str(), t.sub("objects/" + b).c_str()) == 0);
  auto g = s->get(b);
  REQUIRE(!g);
  CHECK(g.error().code == Code::corrupt);
}

TEST_CASE("a damaged meta record is corrupt") {
  TempDir t;
  auto s = must_open(t.path());
  REQUIRE(s->write_meta(view("token meta")));
  flip_byte(t.sub("meta"), 22);
  auto m = s->read_meta();
  REQUIRE(!m);
  CHECK(m.error().code == Code::corrupt);
}

TEST_CASE("odd entries in objects/: symlinks and directories are corrupt, others ignored") {
  TempDir t;
  auto s = must_open(t.path());
  const std::string link = ObjectStore::new_uid(), dir = ObjectStore::new_uid();
  const std::string good = ObjectStore::new_uid();
  REQUIRE(s->put(good, view("g")));
  REQUIRE(::symlink("/etc/passwd", t.sub("objects/" + link).c_str()) == 0);
  REQUIRE(::mkdir(t.sub("objects/" + dir).c_str(), 0700) == 0);
  write_file(t.sub("objects/README"), "not a record");

  auto ch = must_open(t.path(), false)->refresh();
  REQUIRE(ch);
  CHECK(ch->corrupt.size() == 2);
  CHECK(contains(ch->corrupt, link));
  CHECK(contains(ch->corrupt, dir));
  REQUIRE(ch->upserted.size() == 1);
  CHECK(ch->upserted[0].uid == good);
  auto g = s->get(link);
  REQUIRE(!g);
  CHECK(g.error().code == Code::corrupt);
}

TEST_CASE("unknown or garbage format file: open fails with corrupt") {
  TempDir t;
  { auto s = must_open(t.path()); }
  SUBCASE("future version") { write_file(t.sub("format"), "cdcp11-token-store 3\n"); }
  SUBCASE("garbage") { write_file(t.sub("format"), "hello"); }
  SUBCASE("empty") { write_file(t.sub("format"), ""); }
  for (bool create : {false, true}) {
    auto r = ObjectStore::open(t.path(), create);
    REQUIRE(!r);
    CHECK(r.error().code == Code::corrupt);
    CHECK(r.error().message.find(t.sub("format")) != std::string::npos);
  }
}

TEST_CASE("open removes stale temp files and an interrupted wipe's directory") {
  TempDir t;
  const std::string u = ObjectStore::new_uid();
  {
    auto s = must_open(t.path());
    REQUIRE(s->put(u, view("kept")));
  }
  write_file(t.sub("objects/.tmp-" + u + "-abcdef"), "half written");
  write_file(t.sub("objects/.tmp-" + ObjectStore::new_uid() + "-123456"), "");
  write_file(t.sub(".tmp-meta-aaaaaa"), "half meta");
  REQUIRE(::mkdir(t.sub("objects.wipe").c_str(), 0700) == 0);
  write_file(t.sub("objects.wipe/" + ObjectStore::new_uid()), "old");

  auto s = must_open(t.path(), false);
  CHECK(entries(t.sub("objects"), ".tmp-").empty());
  CHECK(entries(t.path(), ".tmp-").empty());
  CHECK(entries(t.path(), "objects.wipe").empty());
  CHECK(*s->get(u) == to_bytes(view("kept")));
  auto ch = s->refresh();
  REQUIRE(ch);
  CHECK(ch->upserted.size() == 1);
  CHECK(ch->corrupt.empty());
}

TEST_CASE("an unreadable object file is reported once and skipped, the others are served; it comes back once it reads") {
  TempDir t;
  auto s = must_open(t.path());
  const std::string good = ObjectStore::new_uid(), bad = ObjectStore::new_uid();
  REQUIRE(s->put(good, payload_for(good, 1)));
  make_socket(t.sub("objects/" + bad));

  auto r = must_open(t.path(), false);
  auto ch = r->refresh();
  REQUIRE(ch);
  CHECK(ch->unreadable == std::vector<std::string>{bad});
  CHECK(ch->corrupt.empty());
  REQUIRE(ch->upserted.size() == 1);
  CHECK(ch->upserted[0].uid == good);

  // Tried again at every refresh, but reported only once.
  const std::string more = ObjectStore::new_uid();
  REQUIRE(s->put(more, payload_for(more, 1)));
  auto again = r->refresh();
  REQUIRE(again);
  CHECK(again->unreadable.empty());
  REQUIRE(again->upserted.size() == 1);
  CHECK(again->upserted[0].uid == more);
  auto idle = r->refresh();
  REQUIRE(idle);
  CHECK(idle->unreadable.empty());
  CHECK(idle->upserted.empty());

  // Replaced by a readable record: served again, without any journal entry naming it.
  REQUIRE(::unlink(t.sub("objects/" + bad).c_str()) == 0);
  const Bytes file = encode_record(bad, payload_for(bad, 1));
  write_file(t.sub("objects/" + bad), std::string(file.begin(), file.end()));
  auto fixed = r->refresh();
  REQUIRE(fixed);
  REQUIRE(fixed->upserted.size() == 1);
  CHECK(fixed->upserted[0].uid == bad);
  CHECK(fixed->removed.empty());
}

TEST_CASE("refresh reads the meta record under its lock: present, absent, corrupt") {
  TempDir t;
  auto s = must_open(t.path());
  auto r = must_open(t.path(), false);
  auto first = r->refresh();
  REQUIRE(first);
  CHECK(first->meta_changed);
  CHECK(first->meta.state == MetaSnapshot::State::absent);

  REQUIRE(s->write_meta(view("meta v1")));
  auto written = r->refresh();
  REQUIRE(written);
  CHECK(written->meta_changed);
  CHECK(written->meta.state == MetaSnapshot::State::present);
  CHECK(written->meta.data == to_bytes(view("meta v1")));

  const std::string u = ObjectStore::new_uid();
  REQUIRE(s->put(u, view("x")));
  auto unchanged = r->refresh();
  REQUIRE(unchanged);
  CHECK_FALSE(unchanged->meta_changed);

  flip_byte(t.sub("meta"), 22);
  REQUIRE(s->put(u, view("y")));
  auto damaged = r->refresh();
  REQUIRE(damaged);
  CHECK(damaged->meta_changed);
  CHECK(damaged->meta.state == MetaSnapshot::State::corrupt);
  CHECK(damaged->meta.reason.find("checksum") != std::string::npos);
}
