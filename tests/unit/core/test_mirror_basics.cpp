#include <doctest/doctest.h>

#include <filesystem>

#include "core/mirror/journal.h"
#include "core/mirror/naming.h"

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
