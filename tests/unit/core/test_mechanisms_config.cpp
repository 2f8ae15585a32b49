#include <doctest/doctest.h>

#include <set>
#include <sys/stat.h>
#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/atomic_file.h"
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

TEST_CASE("config: azure and mirror sections") {
  const std::string ok = R"({"groups":[{"name":"g","token":{"dir":"t"},
      "azure":{"cloud":"usgov","tenant_id":"7e57a000-0000-4000-8000-000000000001",
               "client_id":"c1e47000-0000-4000-8000-000000000001",
               "subscription_id":"5ab5c000-0000-4000-8000-000000000001",
               "credential":{"type":"secret","secret_env":"G_SECRET"},
               "tls":{"ca_file":"ca.pem","connect_to":["::127.0.0.1:8443"],"validate_host":false},
               "vault":{"name":"demo-premium","type":"managed_hsm"}},
      "mirror":{"trigger":"on_generate","mode":"async","on_destroy":"delete"}}]})";
  auto c = parse_config(ok, "/etc/x/c.json");
  REQUIRE(c);
  auto& g = c->groups.at(0);
  REQUIRE(g.azure);
  CHECK(g.azure_error.empty());
  CHECK(g.azure->cloud.authority_host == "login.microsoftonline.us");
  CHECK(g.azure->cloud.vault_suffix == ".vault.usgovcloudapi.net");
  CHECK(g.azure->credential.kind == CredentialConfig::Kind::secret);
  CHECK(g.azure->credential.secret_env == "G_SECRET");
  CHECK(g.azure->tls.ca_file == "/etc/x/ca.pem");
  CHECK_FALSE(g.azure->tls.validate_host);
  CHECK(g.azure->tls.connect_to.at(0) == "::127.0.0.1:8443");
  CHECK(g.azure->vault_type == VaultType::managed_hsm);
  CHECK(g.mirror.trigger == MirrorTrigger::on_generate);
  CHECK(g.mirror.mode == MirrorMode::async);
  CHECK(g.mirror.on_destroy == OnDestroy::remove);
}

TEST_CASE("config: a bad azure section keeps the group, says why, and never accepts an inline secret") {
  auto one = [](const std::string& azure) {
    auto c = parse_config(R"({"groups":[{"name":"g","token":{"dir":"t"},"azure":)" + azure + "}]}", "/c.json");
    REQUIRE(c);
    REQUIRE(c->groups.size() == 1);
    CHECK_FALSE(c->groups[0].azure);
    return c->groups[0].azure_error;
  };
  const std::string ids = R"("tenant_id":"7e57a000-0000-4000-8000-000000000001",
      "client_id":"c1e47000-0000-4000-8000-000000000001","subscription_id":"5ab5c000-0000-4000-8000-000000000001")";
  CHECK(one(R"({"tenant_id":"nope"})") == "/c.json: group 'g': azure.tenant_id: must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
  CHECK(one("{" + ids + R"(,"credential":{"secret":"abc"}})") ==
        "/c.json: group 'g': azure.credential.secret: a client secret may not be written in the configuration; "
        "use secret_file (mode 0600) or secret_env");
  CHECK(one("{" + ids + R"(,"credential":{"type":"secret"}})") ==
        "/c.json: group 'g': azure.credential.secret_file: give exactly one of secret_file and secret_env");
  CHECK(one("{" + ids + R"(,"cloud":"mars","credential":{"secret_env":"X"}})").find("azure.cloud: must be") !=
        std::string::npos);
  CHECK(one("{" + ids + R"(,"credential":{"secret_env":"X"},"vault":{"name":"x_y"}})") ==
        "/c.json: group 'g': azure.vault.name: must be 3 to 24 letters, digits or hyphens");
}

TEST_CASE("config: a secret file others can read is refused") {
  char tmpl[] = "/tmp/cdcp11-cfg-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  std::string secret = dir + "/s";
  FILE* f = std::fopen(secret.c_str(), "w");
  std::fputs("x", f);
  std::fclose(f);
  ::chmod(secret.c_str(), 0644);
  const std::string json = R"({"groups":[{"name":"g","token":{"dir":"t"},"azure":{"tenant_id":"7e57a000-0000-4000-8000-000000000001",
      "client_id":"c1e47000-0000-4000-8000-000000000001","subscription_id":"5ab5c000-0000-4000-8000-000000000001",
      "credential":{"secret_file":"s"}}}]})";
  auto c = parse_config(json, dir + "/c.json");
  REQUIRE(c);
  CHECK(c->groups[0].azure_error == "" + dir + "/c.json: group 'g': azure.credential.secret_file: " + secret +
                                         " is readable by group or others; chmod 600 it");
  ::chmod(secret.c_str(), 0600);
  auto c2 = parse_config(json, dir + "/c.json");
  REQUIRE(c2);
  CHECK(c2->groups[0].azure);
  std::remove(secret.c_str());
  ::rmdir(dir.c_str());
}

TEST_CASE("config: a proxy password is never inline and never echoed; it comes from a file or the environment") {
  const std::string head = R"({"groups":[{"name":"g","token":{"dir":"t"},"azure":{"tenant_id":"7e57a000-0000-4000-8000-000000000001",
      "client_id":"c1e47000-0000-4000-8000-000000000001","subscription_id":"5ab5c000-0000-4000-8000-000000000001",
      "credential":{"secret_env":"X"},"tls":)";
  auto azure_error = [&](const std::string& tls) {
    auto c = parse_config(head + tls + "}}]}", "/etc/x/c.json");
    REQUIRE(c);
    return c->groups.at(0).azure_error;
  };
  const std::string inline_pw = azure_error(R"({"proxy":"http://alice:pr0xy-pw-3141@proxy.example:3128"})");
  CHECK(inline_pw == "/etc/x/c.json: group 'g': azure.tls.proxy: a proxy password may not be written in the "
                     "configuration; use proxy_password_file (mode 0600) or proxy_password_env, and proxy_user");
  CHECK(inline_pw.find("pr0xy-pw-3141") == std::string::npos);
  CHECK(azure_error(R"({"proxy":"alice:pr0xy-pw-3141@proxy.example:3128"})") == inline_pw);
  CHECK(azure_error(R"({"proxy":"http://alice@proxy.example:3128"})") ==
        "/etc/x/c.json: group 'g': azure.tls.proxy: give the proxy user name in proxy_user, not in the URL");
  CHECK(azure_error(R"({"proxy":"http://proxy.example:3128","proxy_password_env":"P"})") ==
        "/etc/x/c.json: group 'g': azure.tls.proxy_user: a proxy password needs proxy_user");
  CHECK(azure_error(R"({"proxy":"http://proxy.example:3128","proxy_user":"alice","proxy_password_env":"P",
                        "proxy_password_file":"p"})") ==
        "/etc/x/c.json: group 'g': azure.tls.proxy_password_file: give at most one of proxy_password_file and "
        "proxy_password_env");
  CHECK(azure_error(R"({"proxy_user":"alice"})") ==
        "/etc/x/c.json: group 'g': azure.tls.proxy_user: is set but no proxy is");

  auto c = parse_config(head + R"({"proxy":"http://proxy.example:3128","proxy_user":"alice","proxy_password_file":"p"}}}]})",
                        "/etc/x/c.json");
  REQUIRE(c);
  REQUIRE(c->groups[0].azure);
  CHECK(c->groups[0].azure->tls.proxy_user == "alice");
  CHECK(c->groups[0].azure->tls.proxy_password_file == "/etc/x/p");
  CHECK(c->groups[0].azure->tls.proxy_password_env.empty());

  // A password file others can read is refused like a secret file.
  char tmpl[] = "/tmp/cdcp11-cfg-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  const std::string pw = dir + "/p";
  FILE* f = std::fopen(pw.c_str(), "w");
  std::fputs("x", f);
  std::fclose(f);
  ::chmod(pw.c_str(), 0644);
  auto open = parse_config(head + R"({"proxy":"http://proxy.example:3128","proxy_user":"alice","proxy_password_file":"p"}}}]})",
                           dir + "/c.json");
  REQUIRE(open);
  CHECK(open->groups[0].azure_error == dir + "/c.json: group 'g': azure.tls.proxy_password_file: " + pw +
                                           " is readable by group or others; chmod 600 it");
  std::remove(pw.c_str());
  ::rmdir(dir.c_str());
}

TEST_CASE("config: plain export of non-extractable keys is a group policy, off by default") {
  auto mirror = [](const std::string& m) {
    auto c = parse_config(R"({"groups":[{"name":"g","token":{"dir":"t"},"mirror":)" + m + "}]}", "/c.json");
    return c;
  };
  auto def = mirror("{}");
  REQUIRE(def);
  CHECK_FALSE(def->groups[0].mirror.allow_plain_export_of_non_extractable);
  auto on = mirror(R"({"allow_plain_export_of_non_extractable":true})");
  REQUIRE(on);
  CHECK(on->groups[0].mirror.allow_plain_export_of_non_extractable);
  auto bad = mirror(R"({"allow_plain_export_of_non_extractable":"yes"})");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message == "/c.json: group 'g': mirror.allow_plain_export_of_non_extractable: must be true or false");
}

TEST_CASE("atomic file: the file gets exactly the mode asked for, and a stale temp file does not block it") {
  char tmpl[] = "/tmp/cdcp11-atomic-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string path = dir + "/secret";
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs("old", f);
  std::fclose(f);
  ::chmod(path.c_str(), 0644);
  REQUIRE(cdcp11::write_file_atomically(path, "new", 0600));
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  REQUIRE(cdcp11::write_file_atomically(path, "wider", 0640));
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);
  // A temp file a crashed writer of this very PID left behind (the old name scheme).
  const std::string stale = dir + "/.secret.tmp." + std::to_string(::getpid());
  f = std::fopen(stale.c_str(), "w");
  std::fclose(f);
  auto r = cdcp11::write_file_atomically(path, "again", 0600);
  CHECK_MESSAGE(r, (r ? "" : r.error()));
  std::ifstream in(path);
  std::string content;
  std::getline(in, content);
  CHECK(content == "again");
  // Nothing of ours is left beside the target but that stale file.
  std::size_t entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++entries;
  }
  CHECK(entries == 2);
  std::filesystem::remove_all(dir);
}
