#include <doctest/doctest.h>

#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "core/mirror/engine.h"
#include "core/mirror/journal.h"
#include "core/mirror/naming.h"
#include "common/log.h"
#include "softtoken/store/object_store.h"

using namespace cdcp11::core::mirror;
namespace fs = std::filesystem;

TEST_CASE("Azure key names from labels") {
  CHECK(key_name_from_label("payments signing key", "fb") == "payments-signing-key");
  CHECK(key_name_from_label("a__b..c", "fb") == "a-b-c");
  CHECK(key_name_from_label("--x--", "fb") == "x");
  CHECK(key_name_from_label("", "key-0102") == "key-0102");
  CHECK(key_name_from_label("\xc3\xa9t\xc3\xa9", "fb") == "t");
  CHECK(key_name_from_label("___", "key-x") == "key-x");
  const std::string long_label(300, 'a');
  auto n = key_name_from_label(long_label, "fb");
  CHECK(n.size() == 123);
  CHECK(valid_key_name(candidate_name(n, 999)));
  CHECK(candidate_name("k", 1) == "k");
  CHECK(candidate_name("k", 2) == "k-2");
  CHECK(valid_key_name("Abc-123"));
  CHECK_FALSE(valid_key_name("a_b"));
  CHECK_FALSE(valid_key_name(""));
  CHECK_FALSE(valid_key_name(std::string(128, 'a')));
}

TEST_CASE("mirror journal: jobs survive reopening; done jobs are not unfinished") {
  char tmpl[] = "/tmp/cdcp11-journal-XXXXXX";
  fs::path dir = ::mkdtemp(tmpl);
  const std::string uid1(32, 'a'), uid2(32, 'b');
  {
    auto j = Journal::open((dir / "j").string());
    REQUIRE(j);
    Job a{.object_uid = uid1, .azure_name = "key-a", .step = Step::kek_created,
          .kek_kid = "https://v.vault.azure.net/keys/kek/01", .kek_name = "kek", .attempts = 1};
    Job b{.object_uid = uid2, .azure_name = "key-b", .step = Step::done,
          .key_kid = "https://v.vault.azure.net/keys/key-b/02", .attempts = 1};
    REQUIRE((*j)->put(a));
    REQUIRE((*j)->put(b));
  }
  auto j = Journal::open((dir / "j").string());
  REQUIRE(j);
  auto open = (*j)->unfinished();
  REQUIRE(open);
  REQUIRE(open->size() == 1);
  CHECK(open->at(0).object_uid == uid1);
  CHECK(open->at(0).step == Step::kek_created);
  CHECK(open->at(0).kek_kid == "https://v.vault.azure.net/keys/kek/01");
  CHECK(open->at(0).kek_name == "kek");
  CHECK(open->at(0).updated > 0);
  auto got = (*j)->get(uid2);
  REQUIRE(got);
  REQUIRE(got->has_value());
  CHECK((*got)->key_kid == "https://v.vault.azure.net/keys/key-b/02");
  REQUIRE((*j)->remove(uid1));
  CHECK((*j)->unfinished()->empty());
  CHECK_FALSE((*j)->get(uid1)->has_value());
  CHECK_FALSE(decode_job("{\"version\":1,\"step\":\"bogus\",\"object_uid\":\"x\"}"));
  fs::remove_all(dir);
}

TEST_CASE("mirror journal: a job's lock excludes every other holder until released") {
  char tmpl[] = "/tmp/cdcp11-journal-XXXXXX";
  fs::path dir = ::mkdtemp(tmpl);
  const std::string uid1(32, 'a'), uid2(32, 'b');
  // Two journals on one directory stand for two processes: flock excludes across open files.
  auto a = Journal::open((dir / "j").string());
  auto b = Journal::open((dir / "j").string());
  REQUIRE(a);
  REQUIRE(b);
  {
    auto held = (*a)->lock(uid1, std::chrono::milliseconds(0));
    REQUIRE(held);
    auto other = (*b)->lock(uid1, std::chrono::milliseconds(100));
    REQUIRE_FALSE(other);
    CHECK(other.error().message.find("another process has been mirroring this key") != std::string::npos);
    CHECK((*b)->lock(uid2, std::chrono::milliseconds(0)));  // other keys are not held up
  }
  CHECK((*b)->lock(uid1, std::chrono::milliseconds(0)));
  CHECK_FALSE((*a)->lock("not-a-uid", std::chrono::milliseconds(0)));
  fs::remove_all(dir);
}

namespace {

std::string uid_of(unsigned thread, unsigned i) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%08x%024x", thread + 1, i);
  return buf;
}

std::set<std::string> uids(const std::vector<Job>& jobs) {
  std::set<std::string> out;
  for (auto& j : jobs) out.insert(j.object_uid);
  return out;
}

}  // namespace

TEST_CASE("mirror journal: application threads enqueue and abandon while the worker resumes") {
  char tmpl[] = "/tmp/cdcp11-journal-XXXXXX";
  fs::path dir = ::mkdtemp(tmpl);
  const std::string jdir = (dir / "j").string();
  auto opened = Journal::open(jdir);
  REQUIRE(opened);
  // No KEK is ever journaled here, so abandon() makes no remote call: no connection is needed.
  Engine engine("g", cdcp11::core::AzureConfig{}, nullptr, std::move(*opened), cdcp11::core::MirrorConfig{});
  // Another process's view of the same journal, looked at once before the threads start.
  auto other = Journal::open(jdir);
  REQUIRE(other);
  REQUIRE((*other)->unfinished());

  constexpr unsigned kThreads = 4, kJobs = 30;  // 120 puts + 60 removes: within the store's change ring
  std::atomic<bool> done{false};
  std::atomic<unsigned> failures{0};
  std::thread resumer([&] {
    while (!done)
      if (!engine.journal().unfinished()) ++failures;
  });
  std::vector<std::thread> apps;
  for (unsigned t = 0; t < kThreads; ++t)
    apps.emplace_back([&, t] {
      for (unsigned i = 0; i < kJobs; ++i) {
        cdcp11::core::StoredObject key;
        key.uid = uid_of(t, i);
        key.attrs.set_string(CKA_LABEL, "k" + std::to_string(t) + "-" + std::to_string(i));
        if (!engine.enqueue(key)) ++failures;
        if (i % 2) engine.abandon(key.uid);
      }
    });
  for (auto& a : apps) a.join();
  done = true;
  resumer.join();
  CHECK(failures == 0);

  std::set<std::string> expected;
  for (unsigned t = 0; t < kThreads; ++t)
    for (unsigned i = 0; i < kJobs; i += 2) expected.insert(uid_of(t, i));
  // The store's flock is released once every call has returned ...
  int fd = ::open((jdir + "/lock").c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  CHECK(::flock(fd, LOCK_EX | LOCK_NB) == 0);
  ::close(fd);
  // ... and no change was lost, for this process or for another one.
  auto mine = engine.journal().unfinished();
  REQUIRE(mine);
  CHECK(uids(*mine) == expected);
  auto theirs = (*other)->unfinished();
  REQUIRE(theirs);
  CHECK(uids(*theirs) == expected);
  fs::remove_all(dir);
}

TEST_CASE("mirror journal: a record that does not decode is reported once and skipped") {
  char tmpl[] = "/tmp/cdcp11-journal-XXXXXX";
  fs::path dir = ::mkdtemp(tmpl);
  const std::string jdir = (dir / "j").string();
  const std::string good1(32, 'a'), bad(32, 'b'), good2(32, 'c');
  {
    auto j = Journal::open(jdir);
    REQUIRE(j);
    REQUIRE((*j)->put(Job{.object_uid = good1, .azure_name = "k1", .step = Step::failed}));
    REQUIRE((*j)->put(Job{.object_uid = good2, .azure_name = "k2", .step = Step::pending}));
    // What a newer version, or a damaged write behind the checksum, could leave.
    auto s = cdcp11::store::ObjectStore::open(jdir, false);
    REQUIRE(s);
    const std::string junk = "{\"version\":1,\"step\":\"teleported\",\"object_uid\":\"" + bad + "\"}";
    REQUIRE((*s)->put(bad, cdcp11::view(junk)));
  }
  const std::string log_path = (dir / "log").string();
  ::setenv("CDCP11_LOG_FILE", log_path.c_str(), 1);
  cdcp11::log::configure_from_env();
  auto j = Journal::open(jdir);
  REQUIRE(j);
  for (int round = 0; round < 2; ++round) {
    auto open = (*j)->unfinished();
    REQUIRE_MESSAGE(open, open.error().message);
    CHECK(uids(*open) == std::set<std::string>{good1, good2});
  }
  ::unsetenv("CDCP11_LOG_FILE");
  std::ifstream in(log_path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);)
    if (l.find(bad) != std::string::npos) lines.push_back(l);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("skipped") != std::string::npos);
  auto one = (*j)->get(bad);
  REQUIRE_FALSE(one);
  CHECK(one.error().message.find(bad) != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("mirror journal: vault sync's skipped keys are kept beside the jobs, for every process") {
  char tmpl[] = "/tmp/cdcp11-journal-XXXXXX";
  fs::path dir = ::mkdtemp(tmpl);
  const std::string jdir = (dir / "j").string();
  auto a = Journal::open(jdir);
  auto b = Journal::open(jdir);
  REQUIRE(a);
  REQUIRE(b);
  CHECK((*a)->sync_skips()->empty());
  const Journal::SyncSkips skips{{"impostor", "1700000000/1700000000/uid/here"}, {"odd", "1/2//absent"}};
  REQUIRE((*a)->put(Job{.object_uid = std::string(32, 'a'), .azure_name = "k", .step = Step::pending}));
  REQUIRE((*a)->set_sync_skips(skips));
  CHECK(*(*b)->sync_skips() == skips);
  // Not a job: the journal's listing is unchanged.
  REQUIRE((*b)->unfinished()->size() == 1);
  REQUIRE((*b)->set_sync_skips({}));
  CHECK((*a)->sync_skips()->empty());
  // Unreadable (a newer format, say): nothing is remembered, so sync reads those keys again.
  auto s = cdcp11::store::ObjectStore::open(jdir, false);
  REQUIRE(s);
  REQUIRE((*s)->write_meta(cdcp11::view(std::string("[\"not an object\"]"))));
  CHECK((*a)->sync_skips()->empty());
  fs::remove_all(dir);
}
