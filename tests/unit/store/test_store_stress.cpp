// Several processes at once, writers SIGKILLed mid-flight, and a full disk.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>

#include "store_test_util.h"

using namespace cdcp11;
using namespace cdcp11::store;
using namespace cdcp11::store::test;
using Code = Error::Code;

namespace {

std::string uid_for(unsigned a, unsigned b) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016x%016x", a, b);
  return buf;
}

// Every record on disk, read through a fresh instance (which must open cleanly).
std::map<std::string, Bytes> snapshot(const std::string& dir) {
  auto s = must_open(dir, false);
  auto ch = s->refresh();
  REQUIRE(ch);
  CHECK(ch->corrupt.empty());
  std::map<std::string, Bytes> out;
  for (auto& r : ch->upserted) out.emplace(r.uid, std::move(r.data));
  return out;
}

}  // namespace

TEST_CASE("multi-process: concurrent writers lose nothing and a reader sees exactly the changes") {
  constexpr unsigned kChildren = 4, kPuts = 40, kIncrements = 25, kPre = 10;
  TempDir t;
  auto parent = must_open(t.path());
  std::vector<std::string> pre;
  for (unsigned c = 0; c < kChildren; ++c)
    for (unsigned i = 0; i < kPre; ++i) {
      pre.push_back(uid_for(0xeeee0000u + c, i));
      REQUIRE(parent->put(pre.back(), payload_for(pre.back(), 1)));
    }
  auto reader = must_open(t.path(), false);
  REQUIRE(reader->refresh());
  const std::string counter = uid_for(0xc0c0c0c0u, 0);

  int barrier[2];
  REQUIRE(::pipe2(barrier, O_CLOEXEC) == 0);
  std::vector<pid_t> kids;
  for (unsigned c = 0; c < kChildren; ++c) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(barrier[1]);
      char x;
      (void)::read(barrier[0], &x, 1);  // returns 0 when the parent closes its end: go
      auto s = ObjectStore::open(t.path(), false);
      if (!s) ::_exit(10);
      ObjectStore& st = **s;
      for (unsigned j = 0; j < kPuts; ++j) {
        const std::string u = uid_for(c, j);
        if (!st.put(u, payload_for(u, 1))) ::_exit(11);
        if (j % 5 == 0 && !st.remove(u)) ::_exit(12);
        if (j < kIncrements) {
          auto r = st.locked([&]() -> R<void> {
            unsigned n = 0;
            auto cur = st.get(counter);
            if (cur) n = std::stoul(std::string(cur->begin(), cur->end()));
            else if (cur.error().code != Code::not_found) return fail(cur.error());
            return st.put(counter, view(std::to_string(n + 1)));
          });
          if (!r) ::_exit(13);
        }
      }
      for (unsigned i = 0; i < kPre; ++i) {
        const std::string& u = pre[c * kPre + i];
        if (i % 2 == 0 ? !st.remove(u) : !st.put(u, payload_for(u, 2))) ::_exit(14);
      }
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  ::close(barrier[0]);
  ::close(barrier[1]);

  // A live reader applies refresh() results to its own index while the children write.
  auto live = must_open(t.path(), false);
  std::map<std::string, Bytes> index;
  auto apply = [&] {
    auto ch = live->refresh();
    REQUIRE(ch);
    CHECK(ch->corrupt.empty());
    for (auto& r : ch->upserted) index[r.uid] = std::move(r.data);
    for (auto& u : ch->removed) index.erase(u);
  };
  for (;;) {
    apply();
    int status = 0;
    pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done > 0) {
      CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0), "child status " << status);
      kids.erase(std::find(kids.begin(), kids.end(), done));
      if (kids.empty()) break;
    }
    ::usleep(500);
  }
  for (pid_t pid : kids) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0), "child status " << status);
  }

  std::map<std::string, Bytes> expect;
  std::set<std::string> removed_pre;
  for (unsigned c = 0; c < kChildren; ++c) {
    for (unsigned j = 0; j < kPuts; ++j)
      if (j % 5 != 0) expect[uid_for(c, j)] = payload_for(uid_for(c, j), 1);
    for (unsigned i = 0; i < kPre; ++i) {
      const std::string& u = pre[c * kPre + i];
      if (i % 2 == 0) removed_pre.insert(u);
      else expect[u] = payload_for(u, 2);
    }
  }
  expect[counter] = to_bytes(view(std::to_string(kChildren * kIncrements)));
  CHECK(snapshot(t.path()) == expect);
  apply();
  CHECK(index == expect);

  auto ch = reader->refresh();
  REQUIRE(ch);
  CHECK_FALSE(ch->full_reload);
  CHECK(ch->corrupt.empty());
  std::map<std::string, Bytes> upserted;
  for (auto& r : ch->upserted) upserted.emplace(r.uid, std::move(r.data));
  CHECK(upserted == expect);  // every survivor is new or changed since the reader's refresh
  CHECK(std::set<std::string>(ch->removed.begin(), ch->removed.end()) == removed_pre);
  CHECK(entries(t.sub("objects"), ".tmp-").empty());
}

namespace {

// Child -> parent protocol of the crash test: an intent before each operation, an ack after
// it returned ok. Each message is one atomic pipe write.
struct Msg {
  char kind;  // 'P' put, 'R' remove, 'A' ack of the previous intent
  char uid[33];
  std::uint32_t version;
};

[[noreturn]] void crash_child(const std::string& dir, int out) {
  auto s = ObjectStore::open(dir, false);
  if (!s) ::_exit(20);
  auto first = (*s)->refresh();
  if (!first) ::_exit(21);
  std::vector<std::string> live;
  for (auto& r : first->upserted) live.push_back(r.uid);
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  auto send = [&](const Msg& m) {
    if (::write(out, &m, sizeof m) != sizeof m) ::_exit(22);
  };
  for (;;) {
    Msg m{};
    const unsigned dice = rng() % 4;
    std::string uid;
    if (dice <= 1 || live.empty()) {
      uid = ObjectStore::new_uid();
      m.kind = 'P';
    } else {
      std::size_t i = rng() % live.size();
      uid = live[i];
      m.kind = dice == 2 ? 'P' : 'R';
    }
    std::memcpy(m.uid, uid.c_str(), 33);
    m.version = rng() % 1000 + 1;
    send(m);
    if (m.kind == 'P') {
      if (!(*s)->put(uid, payload_for(uid, m.version))) ::_exit(23);
      if (std::find(live.begin(), live.end(), uid) == live.end()) live.push_back(uid);
    } else {
      if (!(*s)->remove(uid)) ::_exit(24);
      live.erase(std::find(live.begin(), live.end(), uid));
    }
    Msg ack{};
    ack.kind = 'A';
    send(ack);
  }
}

}  // namespace

TEST_CASE("crash: a writer SIGKILLed at a random instant loses no acknowledged record") {
  using clock = std::chrono::steady_clock;
  TempDir t;
  { auto s = must_open(t.path()); }
  std::map<std::string, std::uint32_t> acked;  // uid -> version acknowledged as present
  std::mt19937 rng(12345);
  const auto deadline = clock::now() + std::chrono::seconds(25);
  int iterations = 0, total_acks = 0, in_flight_seen = 0;

  for (; iterations < 200 && clock::now() < deadline; ++iterations) {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    std::fflush(nullptr);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(p[0]);
      crash_child(t.path(), p[1]);
    }
    ::close(p[1]);
    ::usleep(static_cast<useconds_t>(rng() % 15000));
    ::kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    // Anything but our SIGKILL means the child hit an error.
    REQUIRE_MESSAGE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL), "status " << status);

    std::optional<Msg> pending;
    Msg m;
    while (::read(p[0], &m, sizeof m) == sizeof m) {
      if (m.kind != 'A') {
        pending = m;
        continue;
      }
      REQUIRE(pending);
      if (pending->kind == 'P') acked[pending->uid] = pending->version;
      else acked.erase(pending->uid);
      pending.reset();
      ++total_acks;
    }
    ::close(p[0]);

    // The operation in flight at the kill may or may not have happened; all others must have.
    std::map<std::string, Bytes> disk = snapshot(t.path());
    CHECK(entries(t.sub("objects"), ".tmp-").empty());
    const std::string flying = pending ? pending->uid : "";
    if (pending) ++in_flight_seen;
    for (const auto& [uid, ver] : acked) {
      auto it = disk.find(uid);
      if (uid == flying) {
        if (pending->kind == 'R' && it == disk.end()) continue;
        REQUIRE(it != disk.end());
        CHECK((it->second == payload_for(uid, ver) ||
               (pending->kind == 'P' && it->second == payload_for(uid, pending->version))));
      } else {
        REQUIRE_MESSAGE(it != disk.end(), "acknowledged uid " << uid << " lost");
        CHECK(it->second == payload_for(uid, ver));
      }
    }
    for (const auto& [uid, data] : disk) {
      if (acked.contains(uid)) continue;
      REQUIRE_MESSAGE(uid == flying, "unexpected uid " << uid);
      CHECK(data == payload_for(uid, pending->version));
    }
    // Resolve the in-flight operation to what the disk says, for the next round.
    if (pending) {
      auto it = disk.find(flying);
      if (it == disk.end()) acked.erase(flying);
      else if (it->second == payload_for(flying, pending->version)) acked[flying] = pending->version;
    }
  }
  MESSAGE(iterations << " kills, " << total_acks << " acknowledged operations, " << in_flight_seen
                     << " interrupted mid-operation, " << acked.size() << " records at the end");
  CHECK(iterations >= 20);
  CHECK(total_acks > 0);
}

TEST_CASE("full disk: a failed write returns no_space, keeps the old record, leaves no temp") {
  TempDir t;
  const std::string x = ObjectStore::new_uid(), y = ObjectStore::new_uid();
  {
    auto s = must_open(t.path());
    REQUIRE(s->put(x, payload_for(x, 1)));
    REQUIRE(s->write_meta(view("meta v1")));
  }
  int rc = run_in_child([&]() -> int {
    auto s = must_open(t.path(), false);
    ::signal(SIGXFSZ, SIG_IGN);  // so write() fails with EFBIG instead of killing us
    rlimit lim{64 * 1024, 64 * 1024};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) return 1;
    const Bytes big(1024 * 1024, 0x5a);

    auto p = s->put(x, big);
    if (p || p.error().code != Code::no_space) return 2;
    if (p.error().message.find(t.sub("objects/.tmp-")) == std::string::npos ||
        p.error().message.find(std::strerror(EFBIG)) == std::string::npos) {
      std::fprintf(stderr, "message: %s\n", p.error().message.c_str());
      return 3;
    }
    auto old = s->get(x);
    if (!old || *old != payload_for(x, 1)) return 4;
    if (!entries(t.sub("objects"), ".tmp-").empty()) return 5;

    auto py = s->put(y, big);
    if (py || py.error().code != Code::no_space) return 6;
    if (s->get(y).error().code != Code::not_found) return 7;

    auto m = s->write_meta(big);
    if (m || m.error().code != Code::no_space) return 8;
    auto meta = s->read_meta();
    if (!meta || *meta != to_bytes(view("meta v1"))) return 9;
    if (!entries(t.path(), ".tmp-").empty()) return 10;

    // Small writes still fit, and a reader sees a consistent store.
    if (!s->put(y, view("small"))) return 11;
    auto ch = s->refresh();
    if (!ch || ch->upserted.size() != 2 || !ch->corrupt.empty()) return 12;
    return 0;
  });
  CHECK(rc == 0);
  auto s = must_open(t.path(), false);
  CHECK(*s->get(x) == payload_for(x, 1));
  CHECK(*s->get(y) == to_bytes(view("small")));
  CHECK(entries(t.sub("objects"), ".tmp-").empty());
}
