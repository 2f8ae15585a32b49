// What a refresh that finds nothing changed costs in system calls (issue #13: a soft-token
// operation refreshes first). Counted by interposing stat(2), pread(2) and ioctl(2) in this test
// program; the module's code calls them through the same symbols. Changes made by another
// instance are still seen.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <string_view>

#include "cdcp11/cdcp11.h"
#include "common/change_watch.h"
#include "core/token/metadata_store.h"
#include "core/token/vendor_state.h"
#include "tests/unit/core/soft_token_test_util.h"

namespace {
std::atomic<int> g_metadata_stats{0};
std::atomic<int> g_generation_reads{0};  // 8 bytes at offset 0: the store's DIR/lock generation
std::atomic<int> g_watch_polls{0};       // FIONREAD: a change watch asking for queued events

ssize_t counted_pread(int fd, void* buf, size_t n, off_t off) {
  if (n == 8 && off == 0) ++g_generation_reads;
  return ::syscall(SYS_pread64, fd, buf, n, off);
}
}  // namespace

// With _FILE_OFFSET_BITS=64 (meson's default) this defines the symbol pread64, which the store calls.
extern "C" ssize_t pread(int fd, void* buf, size_t n, off_t off) { return counted_pread(fd, buf, n, off); }

extern "C" int ioctl(int fd, unsigned long request, ...) noexcept {
  std::va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  if (request == FIONREAD) ++g_watch_polls;
  return static_cast<int>(::syscall(SYS_ioctl, fd, request, arg));
}

extern "C" int stat(const char* path, struct stat* st) {
  if (std::string_view(path).ends_with("/metadata.json")) ++g_metadata_stats;
  return ::fstatat(AT_FDCWD, path, st, 0);
}

using namespace cdcp11;
using namespace cdcp11::softtoken::test;

namespace {

std::unique_ptr<core::VendorState> open_vendor(const GroupConfig& g) {
  auto meta = core::MetadataStore::open(g.token.dir);
  REQUIRE(meta);
  return std::make_unique<core::VendorState>(open(g), std::move(*meta));
}

// f on the token, logged in, in another process: nothing of it shares this process's watches.
void in_child(const GroupConfig& g, const std::function<bool(core::VendorState&)>& f) {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    auto o = core::MetadataStore::open(g.token.dir);
    auto t = softtoken::SoftToken::open(g, crypto::default_backend());
    if (!o || !t) ::_exit(2);
    core::VendorState other(std::move(*t), std::move(*o));
    ::_exit(other.login(CKU_USER, pin("user-1")) && f(other) ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
}

// A vendor-state change (metadata.json, and the record if the backend rewrites it), in another process.
void set_mirror_state_in_child(const GroupConfig& g, const std::string& uid, CK_ULONG state) {
  in_child(g, [&](core::VendorState& o) {
    auto ch = o.refresh();
    if (!ch) return false;
    for (auto& obj : ch->upserted) {
      if (obj.uid != uid) continue;
      core::AttrMap a = obj.attrs;
      a.set_ulong(CKA_CDC_MIRROR_STATE, state);
      return static_cast<bool>(o.update_object(uid, a));
    }
    return false;
  });
}

}  // namespace

TEST_CASE("refresh cost: a soft token's refresh with nothing changed neither stats metadata.json nor reads the store's "
          "generation; changes are seen") {
  TempDir d;
  const auto g = initialised_group(d.path);
  auto v = open_vendor(g);
  auto other = open_vendor(g);
  // On a file system inotify cannot be trusted on (NFS, overlayfs) the watch is off by design
  // and the old checks run: only the visibility of changes is asserted there.
  const bool watched = ChangeWatch(d.path.string() + "/probe", ChangeWatch::Kind::entry).armed();
  if (!watched) MESSAGE("the test directory is not on a local file system: syscall counts not checked");
  REQUIRE(v->login(CKU_USER, pin("user-1")));
  REQUIRE(other->login(CKU_USER, pin("user-1")));
  auto made = other->create_object(aes_key(true));
  REQUIRE(made);
  REQUIRE(v->refresh());
  REQUIRE(v->refresh());

  g_metadata_stats = 0;
  g_generation_reads = 0;
  g_watch_polls = 0;
  for (int i = 0; i < 10; ++i) {
    auto ch = v->refresh();
    REQUIRE(ch);
    CHECK(ch->upserted.empty());
    CHECK(ch->vendor.empty());
  }
  if (watched) {
    CHECK(g_metadata_stats.load() == 0);
    CHECK(g_generation_reads.load() == 0);
    // One look for the object store's and the metadata store's watches together (they share an instance).
    CHECK(g_watch_polls.load() == 10);
  }

  core::AttrMap a = made->attrs;
  a.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_MIRRORED);
  REQUIRE(other->update_object(made->uid, a));
  auto seen = v->refresh();
  REQUIRE(seen);
  // Reported as a vendor change, or with the object when its record changed too.
  auto state = seen->vendor.count(made->uid) ? seen->vendor.at(made->uid).ulong(CKA_CDC_MIRROR_STATE) : std::nullopt;
  for (auto& o : seen->upserted)
    if (o.uid == made->uid) state = o.attrs.ulong(CKA_CDC_MIRROR_STATE);
  CHECK(state == CDC_MIRROR_STATE_MIRRORED);
}

TEST_CASE("refresh cost: a change watch reports writes, a file renamed over its name, and never trusts itself in a forked child") {
  TempDir d;
  const std::string dir = d.path.string();
  const std::string path = dir + "/watched";
  const auto put = [](const std::string& p, const char* s) {
    FILE* f = std::fopen(p.c_str(), "w");
    REQUIRE(f);
    std::fputs(s, f);
    std::fclose(f);
  };
  put(path, "1");
  ChangeWatch w(path, ChangeWatch::Kind::entry);
  if (!w.armed()) {
    // Off by design where inotify cannot be trusted: then it never claims "unchanged".
    MESSAGE("the test directory is not on a local file system: the watch is off");
    CHECK_FALSE(w.unchanged());
    w.settled();
    CHECK_FALSE(w.unchanged());
    CHECK_FALSE(w.quiet());
    return;
  }
  CHECK_FALSE(w.unchanged());  // nothing checked yet
  CHECK_FALSE(w.quiet());
  w.settled();
  CHECK(w.unchanged());
  CHECK(w.quiet());
  put(dir + "/other", "x");  // another name in the directory
  CHECK(w.unchanged());
  put(path, "2");
  CHECK_FALSE(w.quiet());  // the look it makes counts the change for unchanged() too
  CHECK_FALSE(w.unchanged());
  CHECK_FALSE(w.unchanged());  // until the caller's check
  CHECK_FALSE(w.quiet());
  w.settled();
  CHECK(w.quiet());
  put(dir + "/tmp", "3");
  REQUIRE(std::rename((dir + "/tmp").c_str(), path.c_str()) == 0);
  CHECK_FALSE(w.unchanged());
  w.settled();
  CHECK(w.unchanged());
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(w.quiet() || w.unchanged() ? 1 : 0);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  CHECK(w.unchanged());
}

TEST_CASE("refresh cost: watches share one instance; in a scope it is looked at once, and no change is lost to "
          "another watch's look") {
  TempDir d;
  const std::string dir = d.path.string();
  const auto put = [](const std::string& p, const char* s) {
    FILE* f = std::fopen(p.c_str(), "w");
    REQUIRE(f);
    std::fputs(s, f);
    std::fclose(f);
  };
  put(dir + "/lock", "0");
  ChangeWatch file(dir + "/lock", ChangeWatch::Kind::file);
  ChangeWatch entry(dir + "/metadata.json", ChangeWatch::Kind::entry);
  if (!file.armed() || !entry.armed()) {
    MESSAGE("the test directory is not on a local file system: the watches are off");
    CHECK_FALSE(file.unchanged());
    CHECK_FALSE(entry.unchanged());
    return;
  }
  CHECK_FALSE(file.unchanged());
  CHECK_FALSE(entry.unchanged());
  file.settled();
  entry.settled();

  // Changes made before a scope are seen by every watch in it, with one look.
  put(dir + "/lock", "1");
  put(dir + "/metadata.json", "{}");
  g_watch_polls = 0;
  {
    ChangeWatch::Scope scope;
    CHECK_FALSE(entry.unchanged());
    CHECK_FALSE(file.unchanged());
    CHECK_FALSE(entry.unchanged());
    CHECK(g_watch_polls.load() == 1);
    file.settled();
    entry.settled();
  }
  {
    ChangeWatch::Scope scope;
    CHECK(entry.unchanged());
    // Made after the scope's look: seen by the next scope (the operation may be ordered before it).
    put(dir + "/lock", "2");
    (void)file.unchanged();
  }
  {
    ChangeWatch::Scope scope;
    CHECK_FALSE(file.unchanged());
    CHECK(entry.unchanged());
    file.settled();
  }
  CHECK(g_watch_polls.load() == 3);

  // A change made while the owner checks (between its unchanged() and settled()) and taken off
  // the queue by another watch's look still counts for it afterwards.
  put(dir + "/lock", "3");
  CHECK_FALSE(file.unchanged());
  put(dir + "/lock", "4");          // during file's owner's check
  CHECK(entry.unchanged());          // drains the event for file
  file.settled();                    // the check saw "3", not necessarily "4"
  CHECK_FALSE(file.unchanged());
  file.settled();
  CHECK(file.unchanged());

  // Two watches on one name: removing one leaves the other watching.
  {
    ChangeWatch again(dir + "/metadata.json", ChangeWatch::Kind::entry);
    CHECK(again.armed());
  }
  put(dir + "/metadata.json", "{\"a\": 1}");
  CHECK_FALSE(entry.unchanged());
  entry.settled();
  CHECK(entry.unchanged());
}

TEST_CASE("refresh cost: after refreshes that skipped their checks, another process's change is seen at the next one") {
  TempDir d;
  const auto g = initialised_group(d.path);
  auto v = open_vendor(g);
  REQUIRE(v->login(CKU_USER, pin("user-1")));
  REQUIRE(v->refresh());
  std::string uid;
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    for (int i = 0; i < 3; ++i) REQUIRE(v->refresh());
    // A new object: the store only.
    in_child(g, [&](core::VendorState& o) {
      auto made = o.create_object(aes_key(true));
      if (!made) return false;
      std::FILE* f = std::fopen((d.path / "uid").c_str(), "w");
      std::fputs(made->uid.c_str(), f);
      std::fclose(f);
      return true;
    });
    {
      std::FILE* f = std::fopen((d.path / "uid").c_str(), "r");
      REQUIRE(f);
      char buf[64] = {};
      REQUIRE(std::fgets(buf, sizeof buf, f));
      std::fclose(f);
      uid = buf;
    }
    auto seen = v->refresh();
    REQUIRE(seen);
    bool found = false;
    for (auto& o : seen->upserted) found |= o.uid == uid;
    CHECK(found);
    for (int i = 0; i < 3; ++i) REQUIRE(v->refresh());
    // Its vendor state.
    const auto state = round % 2 ? CDC_MIRROR_STATE_MIRRORED : CDC_MIRROR_STATE_FAILED;
    set_mirror_state_in_child(g, uid, state);
    auto seen2 = v->refresh();
    REQUIRE(seen2);
    auto got = seen2->vendor.count(uid) ? seen2->vendor.at(uid).ulong(CKA_CDC_MIRROR_STATE) : std::nullopt;
    for (auto& o : seen2->upserted)
      if (o.uid == uid) got = o.attrs.ulong(CKA_CDC_MIRROR_STATE);
    CHECK(got == state);
  }
}

TEST_CASE("refresh cost: the soft token says nothing changed since its refresh, with one look and no read, only "
          "until another process changes an object or its vendor state, or a login changes what is served") {
  TempDir d;
  const auto g = initialised_group(d.path);
  auto v = open_vendor(g);
  const bool watched = ChangeWatch(d.path.string() + "/probe", ChangeWatch::Kind::entry).armed();
  REQUIRE(v->login(CKU_USER, pin("user-1")));
  CHECK_FALSE(v->unchanged_since_refresh());  // no refresh yet
  REQUIRE(v->refresh());
  REQUIRE(v->refresh());  // the first after a login may leave work for the next
  if (!watched) {
    MESSAGE("the test directory is not on a local file system: never unchanged");
    CHECK_FALSE(v->unchanged_since_refresh());
    return;
  }
  g_metadata_stats = 0;
  g_generation_reads = 0;
  g_watch_polls = 0;
  for (int i = 0; i < 10; ++i) CHECK(v->unchanged_since_refresh());
  CHECK(g_watch_polls.load() == 10);
  CHECK(g_generation_reads.load() == 0);
  CHECK(g_metadata_stats.load() == 0);

  in_child(g, [](core::VendorState& o) { return static_cast<bool>(o.create_object(aes_key(true))); });
  CHECK_FALSE(v->unchanged_since_refresh());
  CHECK_FALSE(v->unchanged_since_refresh());  // until the refresh that reports it
  auto seen = v->refresh();
  REQUIRE(seen);
  CHECK(seen->upserted.size() == 1);
  CHECK(v->unchanged_since_refresh());

  REQUIRE(seen->upserted.size() == 1);
  const std::string uid = seen->upserted.front().uid;
  set_mirror_state_in_child(g, uid, CDC_MIRROR_STATE_MIRRORED);
  CHECK_FALSE(v->unchanged_since_refresh());
  REQUIRE(v->refresh());
  CHECK(v->unchanged_since_refresh());

  // A logout changes which objects are served (the private key goes): the next refresh says so.
  v->logout();
  CHECK_FALSE(v->unchanged_since_refresh());
  auto after = v->refresh();
  REQUIRE(after);
  CHECK(after->removed.size() == 1);
  CHECK(v->unchanged_since_refresh());
}

TEST_CASE("refresh cost: after the watches' queue overflowed, every watch reports a change once, then is trusted again") {
  TempDir d;
  const std::string dir = d.path.string();
  ChangeWatch w(dir + "/metadata.json", ChangeWatch::Kind::entry);
  if (!w.armed()) {
    MESSAGE("the test directory is not on a local file system: the watch is off");
    return;
  }
  CHECK_FALSE(w.unchanged());
  w.settled();
  CHECK(w.unchanged());
  // Events for other names, distinct so that the kernel cannot merge them, past the queue's size.
  int limit = 16384;
  if (FILE* f = std::fopen("/proc/sys/fs/inotify/max_queued_events", "r")) {
    if (std::fscanf(f, "%d", &limit) != 1) limit = 16384;
    std::fclose(f);
  }
  if (limit > 100000) {
    MESSAGE("the inotify queue is too large to overflow here");
    return;
  }
  int made = 0;
  for (int i = 0; i <= limit / 2 + 10; ++i) {
    const std::string p = dir + "/f" + std::to_string(i);
    if (FILE* f = std::fopen(p.c_str(), "w")) {  // IN_CREATE, IN_CLOSE_WRITE
      std::fclose(f);
      ++made;
    }
  }
  REQUIRE(made == limit / 2 + 11);
  CHECK_FALSE(w.unchanged());
  CHECK(w.armed());
  w.settled();
  CHECK(w.unchanged());
}
