// Rotation's pure parts: the journaled rotation record, the mirror.rotation config, the per-key
// policy and its schedule arithmetic, and the names of former versions.
#include <doctest/doctest.h>

#include <cstdlib>

#include "cdcp11/cdcp11.h"
#include "core/config.h"
#include "core/mirror/journal.h"
#include "core/mirror/rotation.h"

using namespace cdcp11;
using namespace cdcp11::core;
using namespace cdcp11::core::mirror;

namespace {
constexpr std::int64_t kDay = 86400;

R<Config> with_rotation(const std::string& rotation) {
  return parse_config(R"({"version":1,"groups":[{"name":"g","token":{"dir":"t"},"mirror":{"rotation":)" + rotation +
                          "}}]}",
                      "/c.json");
}
}  // namespace

TEST_CASE("rotation journal: a rotation under way survives encoding; bad records are refused") {
  Job j{.object_uid = std::string(32, 'a'), .azure_name = "k", .step = Step::done, .key_kid = "kid/1"};
  j.rotation = Rotation{RotationStep::made, "payments key", "0102", 3, std::string(32, 'b'), "HTTP 400"};
  auto back = decode_job(encode_job(j));
  REQUIRE(back);
  CHECK(back->rotation.step == RotationStep::made);
  CHECK(back->rotation.label == "payments key");
  CHECK(back->rotation.id_hex == "0102");
  CHECK(back->rotation.version == 3);
  CHECK(back->rotation.new_uid == std::string(32, 'b'));
  CHECK(back->rotation.error == "HTTP 400");
  CHECK(back->new_version_of.empty());

  Job n{.object_uid = std::string(32, 'b'), .azure_name = "k"};
  n.new_version_of = std::string(32, 'a');
  auto nb = decode_job(encode_job(n));
  REQUIRE(nb);
  CHECK(nb->new_version_of == std::string(32, 'a'));
  CHECK(nb->rotation.step == RotationStep::none);
  // Records written before rotation existed have neither.
  auto old = decode_job(R"({"version":1,"object_uid":"x","azure_name":"k","step":"done"})");
  REQUIRE(old);
  CHECK(old->rotation.step == RotationStep::none);

  const std::string base = R"({"version":1,"object_uid":"x","azure_name":"k","step":"done","rotation":)";
  CHECK_FALSE(decode_job(base + R"({"step":"bogus","version":1}})"));
  CHECK_FALSE(decode_job(base + R"({"step":"made","version":0}})"));
  CHECK_FALSE(decode_job(base + R"({"step":"made"}})"));
  CHECK_FALSE(decode_job(base + R"("made"})"));
}

TEST_CASE("mirror.rotation: parsed with defaults; errors name the field") {
  auto none = parse_config(R"({"version":1,"groups":[{"name":"g","token":{"dir":"t"}}]})", "/c.json");
  REQUIRE(none);
  CHECK(none->groups[0].mirror.rotation.every_days == 0);
  CHECK(none->groups[0].mirror.rotation.retire_former == RetireFormer::keep);

  auto c = with_rotation(R"({"every_days":90,"retire_former":"disable","retire_former_after_days":30})");
  REQUIRE(c);
  const auto& r = c->groups[0].mirror.rotation;
  CHECK(r.every_days == 90);
  CHECK(r.retire_former == RetireFormer::disable);
  CHECK(r.retire_former_after_days == 30);
  CHECK(with_rotation(R"({"retire_former":"destroy"})")->groups[0].mirror.rotation.retire_former ==
        RetireFormer::destroy);

  auto bad = with_rotation(R"({"every_days":-1})");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("mirror.rotation.every_days") != std::string::npos);
  bad = with_rotation(R"({"retire_former":"delete"})");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("mirror.rotation.retire_former") != std::string::npos);
  bad = with_rotation(R"({"every":1})");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("mirror.rotation.every") != std::string::npos);
  CHECK_FALSE(with_rotation(R"({"every_days":36501})"));
  CHECK_FALSE(with_rotation("7"));
}

TEST_CASE("rotation policy: the key's attributes override the group's; when versions are due") {
  RotationConfig g{30, RetireFormer::disable, 10};
  AttrMap key;
  auto p = policy_for(g, key);
  CHECK(p.every_days == 30);
  CHECK(p.retire == RetireFormer::disable);
  CHECK(p.retire_after_days == 10);
  key.set_ulong(CKA_CDC_ROTATE_EVERY_DAYS, 0);
  key.set_ulong(CKA_CDC_RETIRE_FORMER_AFTER_DAYS, 5);
  p = policy_for(g, key);
  CHECK(p.every_days == 0);
  CHECK(p.retire_after_days == 5);

  // No version attributes: version 1, current, age unknown (never due by age).
  VersionInfo v = version_of(AttrMap{});
  CHECK(v.version == 1);
  CHECK(v.state == CDC_VERSION_CURRENT);
  KeyRotationPolicy every30{30, RetireFormer::keep, 0};
  CHECK_FALSE(next_rotation(every30, v));
  v.since = 1000;
  CHECK(next_rotation(every30, v) == 1000 + 30 * kDay);
  CHECK_FALSE(next_rotation(KeyRotationPolicy{0, RetireFormer::keep, 0}, v));
  CHECK_FALSE(retirement_due(every30, v));  // a current version is never retired

  VersionInfo f;
  f.state = CDC_VERSION_FORMER;
  f.former_since = 5000;
  CHECK_FALSE(next_rotation(every30, f));
  CHECK_FALSE(retirement_due(KeyRotationPolicy{30, RetireFormer::keep, 10}, f));
  CHECK_FALSE(retirement_due(KeyRotationPolicy{30, RetireFormer::disable, 0}, f));
  CHECK(retirement_due(KeyRotationPolicy{30, RetireFormer::destroy, 10}, f) == 5000 + 10 * kDay);
  f.state = CDC_VERSION_FORMER_DISABLED;  // retired already
  CHECK_FALSE(retirement_due(KeyRotationPolicy{30, RetireFormer::disable, 10}, f));
  CHECK(std::string(version_state_name(CDC_VERSION_FORMER_DISABLED)) == "former-disabled");
}

TEST_CASE("rotation: former names, CK_DATEs and the test clock") {
  CHECK(former_label("payments", 3) == "payments@v3");
  CHECK(former_id(Bytes{0x01, 0x02}, 1) == Bytes{0x01, 0x02, '@', 'v', '1'});
  CHECK(former_id(Bytes{}, 1).empty());

  AttrMap a;
  a.set_string(CKA_END_DATE, "20300115");
  a.set_string(CKA_START_DATE, "        ");  // blank: unset
  CHECK(date_value(a, CKA_END_DATE) == 1894665600);
  CHECK_FALSE(date_value(a, CKA_START_DATE));
  a.set_string(CKA_START_DATE, "20301399");
  CHECK_FALSE(date_value(a, CKA_START_DATE));
  CHECK(ck_date(1894665600 + 3600) == "20300115");

  ::setenv("CDCP11_TEST_NOW", "1234567", 1);
  CHECK(now_seconds() == 1234567);
  ::setenv("CDCP11_TEST_NOW", "soon", 1);
  CHECK(now_seconds() > 1700000000);
  ::unsetenv("CDCP11_TEST_NOW");
}
