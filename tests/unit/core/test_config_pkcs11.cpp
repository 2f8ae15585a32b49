// The "pkcs11" token backend's configuration: a module and exactly one way to pick its token.
#include <doctest/doctest.h>

#include <string>

#include "core/config.h"

using namespace cdcp11::core;

namespace {

R<Config> with_token(const std::string& token) {
  return parse_config(R"({"groups":[{"name":"g","token":)" + token + "}]}", "/etc/x/c.json");
}

std::string error_of(const std::string& token) {
  auto c = with_token(token);
  REQUIRE_FALSE(c);
  return c.error().message;
}

}  // namespace

TEST_CASE("config pkcs11: module and one token selector; the metadata directory defaults beside the config") {
  auto c = with_token(R"({"backend":"pkcs11","module":"/usr/lib/softhsm/libsofthsm2.so","token_label":"hsm1"})");
  REQUIRE(c);
  const auto& t = c->groups[0].token;
  CHECK(t.backend == "pkcs11");
  CHECK(t.module == "/usr/lib/softhsm/libsofthsm2.so");
  CHECK(t.selector == TokenConfig::Select::label);
  CHECK(t.token_label == "hsm1");
  CHECK_FALSE(t.module_args);
  CHECK(t.dir == "/etc/x/g.hsm");

  auto s = with_token(R"({"backend":"pkcs11","module":"lib/p11.so","token_serial":"0123abcd","module_args":"configdir='x'","dir":"meta"})");
  REQUIRE(s);
  CHECK(s->groups[0].token.module == "/etc/x/lib/p11.so");  // relative to the config, like every path
  CHECK(s->groups[0].token.selector == TokenConfig::Select::serial);
  CHECK(s->groups[0].token.token_serial == "0123abcd");
  CHECK(*s->groups[0].token.module_args == "configdir='x'");
  CHECK(s->groups[0].token.dir == "/etc/x/meta");

  auto i = with_token(R"({"backend":"pkcs11","module":"/m.so","slot_id":7})");
  REQUIRE(i);
  CHECK(i->groups[0].token.selector == TokenConfig::Select::slot_id);
  CHECK(i->groups[0].token.hsm_slot_id == 7);
}

TEST_CASE("config pkcs11: bad combinations are precise errors") {
  CHECK(error_of(R"({"backend":"pkcs11","token_label":"a"})") == "/etc/x/c.json: group 'g': token.module: is required");
  CHECK(error_of(R"({"backend":"pkcs11","module":"","token_label":"a"})") ==
        "/etc/x/c.json: group 'g': token.module: must not be empty");
  CHECK(error_of(R"({"backend":"pkcs11","module":"/m.so"})") ==
        "/etc/x/c.json: group 'g': token: give exactly one of token_label, token_serial and slot_id");
  CHECK(error_of(R"({"backend":"pkcs11","module":"/m.so","token_label":"a","slot_id":1})") ==
        "/etc/x/c.json: group 'g': token: give exactly one of token_label, token_serial and slot_id");
  CHECK(error_of(R"({"backend":"pkcs11","module":"/m.so","token_label":""})") ==
        "/etc/x/c.json: group 'g': token.token_label: must be 1 to 32 characters");
  CHECK(error_of(R"({"backend":"pkcs11","module":"/m.so","token_serial":"01234567890123456"})") ==
        "/etc/x/c.json: group 'g': token.token_serial: must be 1 to 16 characters");
  CHECK(error_of(R"({"backend":"pkcs11","module":"/m.so","slot_id":-1})") ==
        "/etc/x/c.json: group 'g': token.slot_id: must be a non-negative integer");
  CHECK(error_of(R"({"backend":"pkcs11","module":"/m.so","token_label":"a","module_args":5})") ==
        "/etc/x/c.json: group 'g': token.module_args: must be a string");
  // The soft token's settings are not the HSM's, and the other way round.
  CHECK(error_of(R"({"backend":"pkcs11","module":"/m.so","token_label":"a","max_pin_retries":3})") ==
        "/etc/x/c.json: group 'g': token.max_pin_retries: is not a setting of the pkcs11 backend");
  CHECK(error_of(R"({"dir":"t","module":"/m.so"})") ==
        "/etc/x/c.json: group 'g': token.module: is not a setting of the soft backend");
  CHECK(error_of(R"({"backend":"hsm","dir":"t"})") ==
        "/etc/x/c.json: group 'g': token.backend: must be one of: soft, pkcs11");
}
