// The token's metadata store (core/token/metadata_store.h): a snapshot and the changes appended
// since, shared by instances and processes.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/token/metadata_store.h"
#include "tests/unit/core/soft_token_test_util.h"

using namespace cdcp11;
using namespace cdcp11::softtoken::test;
using core::MetaChange;
using core::MetadataStore;

namespace {

std::unique_ptr<MetadataStore> opened(const std::string& dir) {
  auto m = MetadataStore::open(dir);
  REQUIRE(m);
  return std::move(*m);
}

core::MetaEntry entry(const std::string& locator) {
  core::MetaEntry e;
  e.locator = locator;
  e.created = 1;
  return e;
}

void put(MetadataStore& m, const std::string& uid, const std::string& locator = "") {
  REQUIRE(m.update([&](MetaChange& c) -> core::R<void> {
    c.put(uid, entry(locator.empty() ? "at " + uid : locator));
    return {};
  }));
}

void erase(MetadataStore& m, const std::string& uid) {
  REQUIRE(m.update([&](MetaChange& c) -> core::R<void> {
    c.erase(uid);
    return {};
  }));
}

std::string uids(const core::MetaData& d) {
  std::string out;
  for (auto& [uid, e] : d.objects) out += uid + " ";
  return out;
}

std::string described(const core::MetaData& d) {
  std::string out;
  for (auto& [uid, e] : d.objects) out += uid + "=" + e.locator + " ";
  for (auto& [uid, a] : d.refs) out += "ref " + uid + " ";
  return out;
}

std::uint64_t size_of(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

std::uint64_t inode_of(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
}

// Puts entries with long locators until the changes were folded into a new snapshot; the number put.
int put_until_folded(MetadataStore& m, const std::string& prefix) {
  const std::uint64_t snapshot = inode_of(m.path());
  for (int i = 0; i < 10000; ++i) {
    put(m, prefix + std::to_string(i), std::string(200, 'x'));
    if (inode_of(m.path()) != snapshot) return i + 1;
  }
  FAIL("no fold after 10,000 changes");
  return 0;
}

}  // namespace

TEST_CASE("metadata store: an update builds on every other instance's; a failed or empty one writes nothing") {
  TempDir d;
  const std::string dir = d.path.string();
  auto a = opened(dir);
  auto b = opened(dir);
  put(*a, "x");
  put(*b, "y");
  CHECK(uids(b->data()) == "x y ");
  put(*a, "z");  // a last wrote itself, but b has written since: a builds on b's
  CHECK(uids(a->data()) == "x y z ");
  const std::string before = slurp(a->changes_path());
  CHECK_FALSE(a->update([](MetaChange& c) -> core::R<void> {
    c.put("w", entry("half done"));
    return core::err(core::Errc::device_error, "failed midway");
  }));
  REQUIRE(a->update([](MetaChange& c) -> core::R<void> {
    c.put("x", c.before().objects.at("x"));  // the entry it has: no change
    c.erase("nothing-here");
    return {};
  }));
  CHECK(slurp(a->changes_path()) == before);
  CHECK(uids(a->data()) == "x y z ");
  erase(*b, "y");
  CHECK(uids(b->data()) == "x z ");
  CHECK(uids(opened(dir)->data()) == "x z ");
  REQUIRE(a->reload());
  CHECK(uids(a->data()) == "x z ");
}

TEST_CASE("metadata store: a change appends what it changes and leaves the snapshot and the other entries alone") {
  TempDir d;
  const std::string dir = d.path.string();
  auto a = opened(dir);
  REQUIRE(a->update([](MetaChange& c) -> core::R<void> {
    for (int i = 0; i < 2000; ++i) c.put("k" + std::to_string(i), entry(std::string(100, 'y')));
    return {};
  }));
  put_until_folded(*a, "fold");  // the entries are in the snapshot now
  auto b = opened(dir);
  (void)b->take_changed();
  const std::string snapshot = slurp(a->path());
  const std::uint64_t changes = size_of(a->changes_path());
  put(*a, "k7", "moved");
  CHECK(slurp(a->path()) == snapshot);
  CHECK(size_of(a->changes_path()) - changes < 200);
  // Another instance reads that change alone, and can tell which entry it changed.
  auto got = b->reload();
  REQUIRE(got);
  CHECK(*got);
  const auto changed = b->take_changed();
  CHECK_FALSE(changed.all);
  CHECK(changed.uids == std::set<std::string>{"k7"});
  CHECK(b->data().objects.at("k7").locator == "moved");
  CHECK(described(b->data()) == described(a->data()));
  auto again = b->reload();
  REQUIRE(again);
  CHECK_FALSE(*again);
}

TEST_CASE("metadata store: folding the changes into a new snapshot; an instance that read before it reads it all again") {
  TempDir d;
  const std::string dir = d.path.string();
  auto a = opened(dir);
  auto b = opened(dir);
  put(*a, "first");
  for (int i = 0; i < 50; ++i) put(*a, "early" + std::to_string(i), std::string(200, 'e'));
  REQUIRE(b->reload());
  CHECK(described(b->data()) == described(a->data()));
  const std::uint64_t b_read = size_of(a->changes_path());
  put_until_folded(*a, "fold");
  CHECK(size_of(a->changes_path()) < b_read);  // emptied by the fold
  // The changes grow past where b stopped reading: b must not read on from there.
  while (size_of(a->changes_path()) <= b_read + 1000) put(*a, "later" + std::to_string(size_of(a->changes_path())), "l");
  auto got = b->reload();
  REQUIRE(got);
  CHECK(*got);
  CHECK(b->take_changed().all);
  CHECK(described(b->data()) == described(a->data()));
  CHECK(described(opened(dir)->data()) == described(a->data()));
}

TEST_CASE("metadata store: a change a killed writer left half written is skipped by readers and cut off by the next") {
  TempDir d;
  const std::string dir = d.path.string();
  auto a = opened(dir);
  put(*a, "x");
  auto b = opened(dir);
  const std::string whole = slurp(a->changes_path());
  write_file(a->changes_path(), whole + R"({"objects":{"y":{"locator":"half)");
  CHECK(uids(opened(dir)->data()) == "x ");
  auto got = b->reload();
  REQUIRE(got);
  CHECK_FALSE(*got);
  put(*a, "z");
  const std::string after = slurp(a->changes_path());
  CHECK(after.find("half") == std::string::npos);
  CHECK(after.substr(0, whole.size()) == whole);
  CHECK(uids(opened(dir)->data()) == "x z ");
  REQUIRE(b->reload());
  CHECK(uids(b->data()) == "x z ");
}

TEST_CASE("metadata store: changes read again over the snapshot they were folded into change nothing") {
  // A writer killed between writing the new snapshot and emptying the changes file.
  TempDir d;
  const std::string dir = d.path.string();
  auto a = opened(dir);
  put(*a, "kept", "one");
  put(*a, "gone");
  put(*a, "back");
  erase(*a, "back");
  put(*a, "back", "again");
  put(*a, "kept", "two");
  erase(*a, "gone");
  std::string folded = slurp(a->changes_path());
  REQUIRE_FALSE(folded.empty());
  const std::uint64_t snapshot = inode_of(a->path());
  for (int i = 0; inode_of(a->path()) == snapshot; ++i) {
    folded = slurp(a->changes_path());
    put(*a, "pad" + std::to_string(i), std::string(200, 'p'));
  }
  // The changes file put back as it was before the change that folded (which touched only an
  // entry of its own), all of it in the new snapshot.
  write_file(a->changes_path(), folded);
  auto fresh = opened(dir);
  CHECK(described(fresh->data()) == described(a->data()));
  CHECK(fresh->data().objects.at("kept").locator == "two");
  CHECK(fresh->data().objects.at("back").locator == "again");
  CHECK_FALSE(fresh->data().objects.count("gone"));
  // And the next change builds on it.
  put(*fresh, "next");
  REQUIRE(a->reload());
  CHECK(a->data().objects.count("next"));
  CHECK(described(opened(dir)->data()) == described(a->data()));
}

TEST_CASE("metadata store: a snapshot replaced by a writer that knows no changes file is read again") {
  TempDir d;
  const std::string dir = d.path.string();
  auto a = opened(dir);
  put_until_folded(*a, "f");
  put(*a, "x");
  // An older build rewrites metadata.json whole, with an entry of its own.
  const std::string theirs = R"({"version":1,"objects":{"old":{"locator":"o","created":1}},"refs":{}})";
  write_file(a->path() + ".tmp", theirs + "\n");
  REQUIRE(::rename((a->path() + ".tmp").c_str(), a->path().c_str()) == 0);
  put(*a, "y");
  // Its entry, and the changes appended since, replayed over it.
  CHECK(uids(a->data()) == "old x y ");
  CHECK(uids(opened(dir)->data()) == "old x y ");
}

TEST_CASE("metadata store: processes writing at once, with folds, lose no change; a reader never sees one undone") {
  TempDir d;
  const std::string dir = d.path.string();
  (void)opened(dir);
  constexpr int kEach = 250;
  std::vector<pid_t> kids;
  for (const char* who : {"a", "b"}) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      auto m = MetadataStore::open(dir);
      if (!m) _exit(2);
      for (int i = 0; i < kEach; ++i) {
        auto u = (*m)->update([&](MetaChange& c) -> core::R<void> {
          c.put(std::string(who) + std::to_string(i), entry(std::string(300, who[0])));
          return {};
        });
        if (!u) _exit(3);
      }
      _exit(0);
    }
    kids.push_back(pid);
  }
  // Writers only add: a reader's entries may only grow.
  const pid_t reader = ::fork();
  REQUIRE(reader >= 0);
  if (reader == 0) {
    auto m = MetadataStore::open(dir);
    if (!m) _exit(2);
    std::size_t seen = 0;
    for (int i = 0; i < 5000 && seen < 2 * kEach; ++i) {
      auto r = (*m)->reload();
      if (!r) _exit(4);
      if ((*m)->data().objects.size() < seen) _exit(5);
      seen = (*m)->data().objects.size();
    }
    _exit(0);
  }
  kids.push_back(reader);
  for (pid_t k : kids) {
    int status = 0;
    REQUIRE(::waitpid(k, &status, 0) == k);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  auto all = opened(dir);
  CHECK(all->data().objects.size() == 2 * kEach);
  CHECK(all->data().objects.at("a17").locator == std::string(300, 'a'));
}

TEST_CASE("metadata store: a writer killed at any moment, folds included, loses no change it reported made") {
  for (int round = 0; round < 8; ++round) {
    CAPTURE(round);
    TempDir d;
    const std::string dir = d.path.string();
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      auto m = MetadataStore::open(dir);
      if (!m) _exit(2);
      for (int i = 0;; ++i) {
        auto u = (*m)->update([&](MetaChange& c) -> core::R<void> {
          c.put("k" + std::to_string(i), entry(std::string(300, 'k')));
          if (i > 0) c.erase("k" + std::to_string(i - 1) + "-gone");
          c.put("k" + std::to_string(i) + "-gone", entry("soon erased"));
          return {};
        });
        if (!u) _exit(3);
        if (::write(fds[1], &i, sizeof i) != sizeof i) _exit(4);
      }
    }
    ::close(fds[1]);
    // Killed after a number of changes that moves with the round, some with a fold under way.
    int last = -1, got;
    while (last < 150 + 37 * round && ::read(fds[0], &got, sizeof got) == sizeof got) last = got;
    ::kill(pid, SIGKILL);
    while (::read(fds[0], &got, sizeof got) == sizeof got) last = got;
    ::close(fds[0]);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));
    auto m = opened(dir);
    const auto& objects = m->data().objects;
    for (int i = 0; i <= last; ++i) REQUIRE(objects.count("k" + std::to_string(i)));
    // Each change whole or not at all: one "-gone" entry left, of the last change made.
    int gone = 0;
    for (auto& [uid, e] : objects) gone += uid.ends_with("-gone");
    CHECK(gone == 1);
    put(*m, "after");  // and the next writer goes on from there
    CHECK(opened(dir)->data().objects.count("after"));
  }
}

TEST_CASE("metadata store: a change the disk has no room for fails as device memory and leaves nothing behind") {
  TempDir d;
  const std::string dir = d.path.string();
  auto a = opened(dir);
  put(*a, "x");
  const std::string before = slurp(a->changes_path());
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // A file size limit a few bytes past the changes file: the change is written in part, then
    // refused with EFBIG, as a full disk refuses with ENOSPC.
    ::signal(SIGXFSZ, SIG_IGN);
    const rlimit lim{before.size() + 10, before.size() + 10};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(2);
    auto u = a->update([](MetaChange& c) -> core::R<void> {
      c.put("y", entry(std::string(500, 'y')));
      return {};
    });
    if (u) _exit(3);
    if (u.error().code != core::Errc::device_memory) _exit(4);
    if (u.error().message.find("metadata.changes") == std::string::npos) _exit(5);
    if (a->data().objects.count("y")) _exit(6);
    _exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(slurp(a->changes_path()) == before);
  CHECK(uids(opened(dir)->data()) == "x ");
  put(*a, "z");
  CHECK(uids(opened(dir)->data()) == "x z ");
}
