#include <doctest/doctest.h>

#include <set>

#include "core/config.h"
#include "core/mechanisms.h"

using namespace cdcp11::core;

TEST_CASE("mechanism table: unique types, key types and flags coherent") {
  std::set<CK_MECHANISM_TYPE> seen;
  for (auto& m : mechanism_table()) {
    INFO(m.name);
    CHECK(seen.insert(m.type).second);
    CHECK(find_mechanism(m.type) == &m);
    if (m.family == MechFamily::digest) {
      CHECK(m.key_types.empty());
      CHECK(m.flags == CKF_DIGEST);
    } else {
      CHECK_FALSE(m.key_types.empty());
      CHECK(m.min_key <= m.max_key);
    }
    // Only mechanisms that hash (or stream, like AES modes and HMAC) are multi-part.
    if (m.family == MechFamily::rsa_pkcs1 || m.family == MechFamily::rsa_pss || m.family == MechFamily::ecdsa)
      CHECK(m.multipart == (m.hash != 0));
  }
  CHECK(find_mechanism(CKM_AES_KEY_WRAP_KWP));
  CHECK(find_mechanism(CKM_RSA_AES_KEY_WRAP));
  CHECK(find_mechanism(CKM_DES3_CBC) == nullptr);
  CHECK(std::string(mechanism_name(CKM_DES3_CBC)) == "0x133");
}

TEST_CASE("config: a valid file parses with defaults and resolved paths") {
  auto c = parse_config(R"({"version":1,"groups":[{"name":"g1","token":{"dir":"t/g1"}},
                            {"name":"g2","slot_id":9,"token":{"dir":"/abs/g2","max_pin_retries":0}}]})",
                        "/etc/x/conf.json");
  REQUIRE(c);
  REQUIRE(c->groups.size() == 2);
  CHECK(c->groups[0].token.dir == "/etc/x/t/g1");
  CHECK(c->groups[0].slot_id == default_slot_id("g1"));
  CHECK(c->groups[0].token.max_pin_retries == 10);
  CHECK(c->groups[0].token.kdf_scrypt_log2_n == 15);
  CHECK(c->groups[1].slot_id == 9);
  CHECK(c->groups[1].token.dir == "/abs/g2");
  CHECK(c->groups[1].token.max_pin_retries == 0);
  CHECK(default_slot_id("g1") == default_slot_id("g1"));
  CHECK(default_slot_id("g1") != default_slot_id("g2"));
}

TEST_CASE("config: errors name the file, the group and the field") {
  auto msg = [](const char* json) {
    auto c = parse_config(json, "/c.json");
    REQUIRE_FALSE(c);
    return c.error().message;
  };
  CHECK(msg("{") .find("/c.json: invalid JSON") == 0);
  CHECK(msg(R"({"groups":[{"token":{"dir":"x"}}]})") == "/c.json: group #1: name: is required");
  CHECK(msg(R"({"groups":[{"name":"a","token":{"dir":"x"}},{"name":"a","token":{"dir":"y"}}]})") ==
        "/c.json: group 'a': name: is used by another group");
  CHECK(msg(R"({"groups":[{"name":"a","tokn":{}}]})") == "/c.json: group 'a': tokn: is not a known setting");
  CHECK(msg(R"({"groups":[{"name":"a","token":{"dir":"x","max_pin_retries":-1}}]})") ==
        "/c.json: group 'a': token.max_pin_retries: must be a non-negative integer");
  CHECK(msg(R"({"groups":[{"name":"a","token":{"dir":"x","backend":"hsm"}}]})").find("token.backend") !=
        std::string::npos);
  CHECK(msg(R"({"groups":[{"name":"a","slot_id":1,"token":{"dir":"x"}},{"name":"b","slot_id":1,"token":{"dir":"y"}}]})") ==
        "/c.json: group 'b': slot_id: is used by another group");
  CHECK(msg(R"({"version":2,"groups":[]})").find("version") != std::string::npos);
}
