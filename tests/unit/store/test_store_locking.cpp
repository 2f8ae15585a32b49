// Lock semantics within one process: re-entrancy, one lock fd per instance, fork.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "store_test_util.h"

using namespace cdcp11;
using namespace cdcp11::store;
using namespace cdcp11::store::test;
using Code = Error::Code;
using namespace std::chrono_literals;

namespace {

// True when some open file description holds DIR/lock (probed through a fresh one).
bool lock_is_held(const std::string& dir) {
  int fd = ::open((dir + "/lock").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  if (!held) ::flock(fd, LOCK_UN);
  ::close(fd);
  return held;
}

}  // namespace

TEST_CASE("locked(): exclusive while fn runs, re-entrant for writes, released after") {
  TempDir t;
  auto s = must_open(t.path());
  const std::string a = ObjectStore::new_uid(), b = ObjectStore::new_uid();
  CHECK_FALSE(lock_is_held(t.path()));
  auto r = s->locked([&]() -> R<void> {
    CHECK(lock_is_held(t.path()));
    CDC_TRY(s->put(a, view("a")));
    CDC_TRY(s->put(b, view("b")));
    CDC_TRY(s->remove(b));
    CDC_TRY(s->write_meta(view("m")));
    CDC_TRY(s->locked([&]() -> R<void> { return s->put(a, view("a2")); }));
    // A refresh inside must not downgrade the exclusive lock to a shared one.
    auto ch = s->refresh();
    if (!ch) return fail(ch.error());
    CHECK(ch->upserted.size() == 1);
    CHECK(lock_is_held(t.path()));
    return {};
  });
  CHECK(r);
  CHECK_FALSE(lock_is_held(t.path()));
  CHECK(*s->get(a) == to_bytes(view("a2")));

  // An error from fn is returned as is, and the lock is still released.
  auto e = s->locked([]() -> R<void> { return fail(Error{Code::bad_argument, "from fn"}); });
  REQUIRE(!e);
  CHECK(e.error().message == "from fn");
  CHECK_FALSE(lock_is_held(t.path()));

  REQUIRE(s->locked([&]() -> R<void> { return s->wipe(); }));
  CHECK(s->get(a).error().code == Code::not_found);
}

TEST_CASE("two instances in one process exclude each other (each has its own lock fd)") {
  TempDir t;
  auto s1 = must_open(t.path());
  auto s2 = must_open(t.path(), false);
  const std::string u = ObjectStore::new_uid();
  REQUIRE(s1->put(u, view("0")));

  std::atomic<bool> inside{false};
  std::string seen;
  std::thread other;
  auto r = s1->locked([&]() -> R<void> {
    CDC_TRY(s1->put(u, view("1")));
    other = std::thread([&] {
      inside = true;
      // Must wait until s1 leaves locked(), so it reads the final value.
      auto rr = s2->locked([&]() -> R<void> {
        CDC_ASSIGN(Bytes v, s2->get(u));
        seen.assign(v.begin(), v.end());
        return s2->put(u, view("3"));
      });
      CHECK(rr);
    });
    while (!inside) std::this_thread::yield();
    std::this_thread::sleep_for(100ms);
    return s1->put(u, view("2"));
  });
  REQUIRE(r);
  other.join();
  CHECK(seen == "2");
  CHECK(*s1->get(u) == to_bytes(view("3")));
}

TEST_CASE("fork: a child's new instance works and does not share the parent's lock") {
  TempDir t;
  auto s = must_open(t.path());
  const std::string u = ObjectStore::new_uid();

  SUBCASE("child writes, parent sees it") {
    REQUIRE(s->refresh());
    int rc = run_in_child([&] {
      auto c = ObjectStore::open(t.path(), false);
      if (!c) return 1;
      return (*c)->put(u, view("from child")) ? 0 : 2;
    });
    CHECK(rc == 0);
    auto ch = s->refresh();
    REQUIRE(ch);
    REQUIRE(ch->upserted.size() == 1);
    CHECK(ch->upserted[0].uid == u);
  }

  SUBCASE("a child's write waits for the parent's locked() section") {
    int to_parent[2];
    REQUIRE(::pipe2(to_parent, O_CLOEXEC) == 0);
    pid_t pid = -1;
    auto r = s->locked([&]() -> R<void> {
      std::fflush(nullptr);
      pid = ::fork();
      if (pid == 0) {
        ::close(to_parent[0]);
        auto c = ObjectStore::open(t.path(), false);  // blocks on the lock held by the parent
        ::write(to_parent[1], "o", 1);
        bool ok = c && (*c)->put(u, view("child"));
        ::_exit(ok ? 0 : 1);
      }
      ::close(to_parent[1]);
      std::this_thread::sleep_for(200ms);
      // The child is still waiting: nothing was written.
      char ch;
      int fl = ::fcntl(to_parent[0], F_GETFL);
      ::fcntl(to_parent[0], F_SETFL, fl | O_NONBLOCK);
      CHECK(::read(to_parent[0], &ch, 1) < 0);
      CHECK(s->get(u).error().code == Code::not_found);
      return {};
    });
    REQUIRE(r);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    ::close(to_parent[0]);
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    CHECK(*s->get(u) == to_bytes(view("child")));
  }

  SUBCASE("the parent's instance refuses writes in the child") {
    int rc = run_in_child([&] {
      auto r = s->put(u, view("x"));
      return !r && r.error().code == Code::io ? 0 : 1;
    });
    CHECK(rc == 0);
  }
}

TEST_CASE("I/O errors are returned as io with the path and errno text") {
  TempDir t;
  auto s = must_open(t.path());
  REQUIRE(::rename(t.sub("objects").c_str(), t.sub("moved").c_str()) == 0);
  { std::FILE* f = std::fopen(t.sub("objects").c_str(), "w"); std::fclose(f); }
  auto p = s->put(ObjectStore::new_uid(), view("x"));
  REQUIRE(!p);
  CHECK(p.error().code == Code::io);
  CHECK(p.error().message.find(t.sub("objects")) != std::string::npos);
  CHECK(p.error().message.find("Not a directory") != std::string::npos);
  auto r = s->refresh();
  REQUIRE(!r);
  CHECK(r.error().code == Code::io);
}
