// Retries, Retry-After, unsafe operations after a dropped connection, token refresh, the
// per-vault limiter, and concurrent use, all against the emulator. Waits are checked in the
// emulator's own request log, not by timing the client.
#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include <atomic>
#include <set>
#include <sstream>
#include <thread>

#include "azure/base64url.h"
#include "azure/connection.h"
#include "support.h"

using namespace cdcp11;
using namespace cdcp11::azure;
using namespace cdcp11::azure::test;
using namespace std::chrono_literals;

namespace {

// Requests (without timestamp/client) since `mark` whose text contains `needle`.
std::vector<std::string> requests(const Emulator& emu, std::size_t mark, const std::string& needle) {
  // The emulator writes a request's log line just after sending its answer.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::vector<std::string> out;
  for (auto& l : emu.log_since(mark))
    if (l.find(needle) != std::string::npos) out.push_back(l);
  return out;
}

// "METHOD host/path STATUS" of each line, joined with " | " (so failures print readably).
std::string shapes(const std::vector<std::string>& lines) {
  std::string out;
  for (auto& l : lines) out += (out.empty() ? "" : " | ") + log_request(l);
  return out;
}
std::string seq(std::initializer_list<std::string> parts) {
  std::string out;
  for (auto& p : parts) out += (out.empty() ? "" : " | ") + p;
  return out;
}

// A fresh EC P-256 private key as a JWK, for imports.
PrivateJwk ec_jwk() {
  EVP_PKEY* k = EVP_EC_gen("P-256");
  auto param = [&](const char* name) {
    BIGNUM* bn = nullptr;
    EVP_PKEY_get_bn_param(k, name, &bn);
    Bytes out(32);
    BN_bn2binpad(bn, out.data(), 32);
    BN_clear_free(bn);
    return out;
  };
  PrivateJwk j;
  j.kty = "EC";
  j.crv = "P-256";
  j.x = param(OSSL_PKEY_PARAM_EC_PUB_X);
  j.y = param(OSSL_PKEY_PARAM_EC_PUB_Y);
  Bytes d = param(OSSL_PKEY_PARAM_PRIV_KEY);
  j.d.assign(d.begin(), d.end());
  secure_zero(d.data(), d.size());
  EVP_PKEY_free(k);
  return j;
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("429 burst with Retry-After: retried after the server's wait") {
  Emulator& emu = shared_emulator();
  auto conn = emu.connect(emu.config());
  auto kv = conn->vault();
  const std::string name = unique_name("ra");
  REQUIRE(kv.create_key(name, {"EC", {}, {}, "P-256", {"sign", "verify"}, {}, {}}));
  REQUIRE(emu.add_fault(R"({"match":{"service":"keyvault","method":"GET","path":"/keys/)" + name +
                        R"("},"action":"status","status":429,"retryAfter":1,"count":2})") == 201);
  std::size_t mark = emu.log_mark();
  auto k = kv.get_key(name);
  REQUIRE_MESSAGE(k, k.error().describe());
  auto lines = requests(emu, mark, "/keys/" + name);
  const std::string req = "GET demo-premium.vault.azure.net/keys/" + name;
  REQUIRE(shapes(lines) == seq({req + " 429", req + " 429", req + " 200"}));
  // The client's own backoff is 50 ms here; the gaps show it waited the 1 s the server asked.
  CHECK(log_arrival(lines[1]) - log_time(lines[0]) >= 0.95);
  CHECK(log_arrival(lines[2]) - log_time(lines[1]) >= 0.95);
  // All three attempts carried the same x-ms-client-request-id, and each answer's
  // x-ms-request-id was logged.
  std::set<std::string> ids;
  int logged = 0;
  std::istringstream log(captured_log());
  for (std::string l; std::getline(log, l);) {
    if (l.find("get key " + name + " GET") == std::string::npos) continue;
    ++logged;
    CHECK(l.find("x-ms-request-id=") != std::string::npos);
    auto p = l.find("x-ms-client-request-id=");
    REQUIRE(p != std::string::npos);
    ids.insert(l.substr(p + 23, 36));
  }
  CHECK(logged == 3);
  CHECK(ids.size() == 1);
}

TEST_CASE("429 without Retry-After and 503: exponential backoff, then success") {
  Emulator& emu = shared_emulator();
  auto conn = emu.connect(emu.config());
  auto kv = conn->vault();
  const std::string name = unique_name("bo");
  REQUIRE(kv.create_key(name, {"EC", {}, {}, "P-256", {"sign", "verify"}, {}, {}}));
  REQUIRE(emu.add_fault(R"({"match":{"service":"keyvault","method":"GET","path":"/keys/)" + name +
                        R"("},"action":"status","status":429,"count":2})") == 201);
  std::size_t mark = emu.log_mark();
  REQUIRE(kv.get_key(name));
  auto lines = requests(emu, mark, "/keys/" + name);
  REQUIRE(lines.size() == 3);
  double g1 = log_arrival(lines[1]) - log_time(lines[0]), g2 = log_arrival(lines[2]) - log_time(lines[1]);
  CHECK(g1 >= 0.03);  // 50 ms +-20 % (log resolution 10 ms)
  CHECK(g1 < 0.5);
  CHECK(g2 >= 0.07);  // 100 ms +-20 %
  CHECK(g2 < 0.6);

  REQUIRE(emu.add_fault(R"({"match":{"service":"keyvault","method":"POST","path":"/keys/)" + name +
                        R"(/sign"},"action":"status","status":503,"count":2})") == 201);
  mark = emu.log_mark();
  auto sig = kv.sign(name, "", "ES256", Bytes(32, 1));
  REQUIRE_MESSAGE(sig, sig.error().describe());
  const std::string req = "POST demo-premium.vault.azure.net/keys/" + name + "/sign";
  CHECK(shapes(requests(emu, mark, "/sign")) == seq({req + " 503", req + " 503", req + " 200"}));

  // The token endpoint failing once is retried too.
  auto fresh = emu.connect(emu.config());
  REQUIRE(emu.add_fault(R"({"match":{"service":"entra"},"action":"status","status":503,"count":1})") == 201);
  mark = emu.log_mark();
  REQUIRE(fresh->check());
  auto tok = requests(emu, mark, "/oauth2/v2.0/token");
  REQUIRE(tok.size() == 2);
  CHECK(log_request(tok[0]).find(" 503") != std::string::npos);
  CHECK(log_request(tok[1]).find(" 200") != std::string::npos);
}

TEST_CASE("create/import/delete whose connection dropped: checked, never duplicated") {
  Emulator& emu = shared_emulator();
  auto conn = emu.connect(emu.config());
  auto kv = conn->vault();
  REQUIRE(conn->check());  // challenge and token in place

  SUBCASE("create applied, answer lost: the GET finds it, no second create") {
    const std::string name = unique_name("dropa");
    REQUIRE(emu.add_fault(R"({"match":{"path":"/keys/)" + name + R"(/create"},"action":"drop_after","count":1})") == 201);
    std::size_t mark = emu.log_mark();
    auto k = kv.create_key(name, {"RSA", 2048, {}, "", {"sign", "verify"}, {}, {{"origin", "pkcs11"}}});
    REQUIRE_MESSAGE(k, k.error().describe());
    CHECK(k->name() == name);
    const std::string base = "demo-premium.vault.azure.net/keys/" + name;
    CHECK(shapes(requests(emu, mark, name)) ==
          seq({"POST " + base + "/create DROP", "GET " + base + " 200"}));
    CHECK(kv.list_key_versions(name)->size() == 1);
  }
  SUBCASE("create not applied: the GET finds nothing, the create is repeated once") {
    const std::string name = unique_name("dropb");
    REQUIRE(emu.add_fault(R"({"match":{"path":"/keys/)" + name + R"(/create"},"action":"drop_before","count":1})") == 201);
    std::size_t mark = emu.log_mark();
    auto k = kv.create_key(name, {"RSA", 2048, {}, "", {}, {}, {}});
    REQUIRE_MESSAGE(k, k.error().describe());
    const std::string base = "demo-premium.vault.azure.net/keys/" + name;
    CHECK(shapes(requests(emu, mark, name)) == seq({
                                                   "POST " + base + "/create DROP", "GET " + base + " 404",
                                                   "POST " + base + "/create 200"}));
    CHECK(kv.list_key_versions(name)->size() == 1);
  }
  SUBCASE("import applied, answer lost: public key compared, no second version") {
    const std::string name = unique_name("dropi");
    // Import an EC key by JWK: the client compares x/y with the vault's copy.
    REQUIRE(emu.add_fault(R"({"match":{"method":"PUT","path":"/keys/)" + name + R"("},"action":"drop_after","count":1})") == 201);
    ImportKeyOptions o;
    PrivateJwk j;
    // P-256 test key (RFC 7515 A.3).
    auto b = [](const char* s) { return *b64url_decode(s); };
    j.kty = "EC";
    j.crv = "P-256";
    j.x = b("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU");
    j.y = b("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0");
    Bytes d = b("jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI");
    j.d = SecureBytes(d.begin(), d.end());
    o.jwk = j;
    o.key_ops = {"sign", "verify"};
    std::size_t mark = emu.log_mark();
    auto k = kv.import_key(name, o);
    REQUIRE_MESSAGE(k, k.error().describe());
    const std::string base = "demo-premium.vault.azure.net/keys/" + name;
    CHECK(shapes(requests(emu, mark, name)) == seq({"PUT " + base + " DROP", "GET " + base + " 200"}));
    CHECK(kv.list_key_versions(name)->size() == 1);
  }
  SUBCASE("delete applied, answer lost: found deleted, reported as done") {
    const std::string name = unique_name("dropd");
    REQUIRE(kv.create_key(name, {"RSA", 2048, {}, "", {}, {}, {}}));
    REQUIRE(emu.add_fault(R"({"match":{"method":"DELETE","path":"/keys/)" + name + R"("},"action":"drop_after","count":1})") == 201);
    std::size_t mark = emu.log_mark();
    auto d = kv.delete_key(name);
    REQUIRE_MESSAGE(d, d.error().describe());
    CHECK(d->name() == name);
    auto lines = requests(emu, mark, name);
    REQUIRE(lines.size() >= 2);
    CHECK(log_request(lines[0]) == "DELETE demo-premium.vault.azure.net/keys/" + name + " DROP");
    int deletes = 0;
    for (auto& l : lines) deletes += log_request(l).rfind("DELETE", 0) == 0;
    CHECK(deletes == 1);
  }
  SUBCASE("a dropped GET is simply repeated") {
    const std::string name = unique_name("dropg");
    REQUIRE(kv.create_key(name, {"RSA", 2048, {}, "", {}, {}, {}}));
    REQUIRE(emu.add_fault(R"({"match":{"method":"GET","path":"/keys/)" + name + R"("},"action":"drop_after","count":1})") == 201);
    std::size_t mark = emu.log_mark();
    REQUIRE(kv.get_key(name));
    const std::string req = "GET demo-premium.vault.azure.net/keys/" + name;
    CHECK(shapes(requests(emu, mark, name)) == seq({req + " DROP", req + " 200"}));
  }
  emu.clear_faults();
}

TEST_CASE("tokens are refreshed before they expire (injected clock)") {
  Emulator& emu = shared_emulator();
  auto now = std::make_shared<std::atomic<long long>>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  ConnectionHooks hooks;
  hooks.now = [now] { return std::chrono::system_clock::time_point(std::chrono::seconds(now->load())); };
  auto conn = emu.connect(emu.config(), hooks);
  const std::string scope = "https://vault.azure.net/.default";
  auto t1 = conn->tokens().token(scope);
  REQUIRE(t1);
  *now += 3599 - 301;  // not yet within 300 s of expiry
  CHECK(conn->tokens().token(scope)->get() == t1->get());
  CHECK(conn->tokens().fetch_count() == 1);
  *now += 2;  // now within the refresh margin
  auto t2 = conn->tokens().token(scope);
  REQUIRE(t2);
  CHECK(t2->get() != t1->get());
  CHECK(conn->tokens().fetch_count() == 2);
  CHECK(conn->check());
}

TEST_CASE("short-lived tokens from the emulator: refreshed, and a refused token is replaced once") {
  auto emu = Emulator::start({{"\"tokenLifetimeSeconds\": 3599", "\"tokenLifetimeSeconds\": 2"}});
  auto conn = emu->connect(emu->config());
  REQUIRE(conn->check());
  std::this_thread::sleep_for(2200ms);  // the first token has expired at the emulator
  REQUIRE(conn->check());
  CHECK(conn->tokens().fetch_count() == 2);
  // Only the unauthenticated challenge request got a 401; no token was ever refused.
  int refused = 0;
  for (auto& l : emu->log_lines())
    if (log_request(l).find("/keys 401") != std::string::npos && l.find("client=-") == std::string::npos) ++refused;
  CHECK(refused == 0);

  // A cache whose clock stands still keeps offering the old token: the vault's 401 makes the
  // client drop it, take a new one and succeed.
  auto frozen = std::chrono::system_clock::now();
  ConnectionHooks hooks;
  hooks.now = [frozen] { return frozen; };
  auto stale = emu->connect(emu->config(), hooks);
  REQUIRE(stale->check());
  std::this_thread::sleep_for(2200ms);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::size_t mark = emu->log_mark();
  auto r = stale->check();
  REQUIRE_MESSAGE(r, r.error().describe());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(shapes(emu->log_since(mark)) == seq({"GET demo-premium.vault.azure.net/keys 401",
                                             "POST login.microsoftonline.com/" + std::string(kTenant) +
                                                 "/oauth2/v2.0/token 200",
                                             "GET demo-premium.vault.azure.net/keys 200"}));
}

TEST_CASE("per-vault limiter keeps a busy caller under the vault's limit (no 429)") {
  Emulator& emu = shared_emulator();
  ConnectionConfig c = emu.config("demo-standard");
  c.limiter.fraction = 0.00075;  // other-sw: 4000 * 0.00075 = 3 per 10 s, as the emulator below
  auto conn = emu.connect(c);
  auto kv = conn->vault();
  const std::string name = unique_name("rl");
  REQUIRE(kv.create_key(name, {"EC", {}, {}, "P-256", {"sign", "verify"}, {}, {}}));
  REQUIRE(emu.admin("PUT", "/_admin/ratelimit", R"({"enabled":true,"scale":0.00075})") == 200);
  std::size_t mark = emu.log_mark();
  for (int i = 0; i < 5; ++i) {
    auto k = kv.get_key(name);
    REQUIRE_MESSAGE(k, k.error().describe());
  }
  // Control: without the client-side limiter the same burst runs into the vault's 429s.
  emu.clear_faults();  // also empties the emulator's rate windows
  ConnectionConfig nc = c;
  nc.limiter.enabled = false;
  nc.retry.max_retries = 1;
  auto unlimited = emu.connect(nc)->vault();
  std::size_t control = emu.log_mark();
  int throttled = 0;
  for (int i = 0; i < 5; ++i) {
    auto k = unlimited.get_key(name);
    if (!k && k.error().kind == ErrorKind::throttled) ++throttled;
  }
  emu.admin("PUT", "/_admin/ratelimit", R"({"enabled":false,"scale":1.0})");
  CHECK(throttled >= 1);
  CHECK(shapes(requests(emu, control, "/keys/" + name)).find(" 429") != std::string::npos);
  auto lines = requests(emu, mark, "/keys/" + name);
  lines.resize(std::min<std::size_t>(lines.size(), 5));
  REQUIRE(lines.size() == 5);
  for (auto& l : lines) CHECK(log_request(l).find(" 200") != std::string::npos);
  // The 4th request waited for the first to leave the 10 s window.
  CHECK(log_time(lines[3]) - log_time(lines[0]) >= 9.9);
  CHECK(log_time(lines[2]) - log_time(lines[0]) < 5);
}

TEST_CASE("limiter: a key import counts in the IMPORT bucket, not in the HSM CREATE bucket") {
  Emulator& emu = shared_emulator();
  ConnectionConfig c = emu.config("demo-premium");
  c.limiter.fraction = 0.1;  // HSM CREATE: 1 per 10 s; IMPORT (300 per 10 s): 30
  auto kv = emu.connect(c)->vault();
  const std::string created = unique_name("li-c"), imported = unique_name("li-i");
  REQUIRE(kv.create_key(created, {"EC-HSM", {}, {}, "P-256", {"sign", "verify"}, {}, {}}));
  ImportKeyOptions o;
  o.jwk = ec_jwk();
  o.hsm = true;
  o.key_ops = {"sign", "verify"};
  auto r = kv.import_key(imported, o);
  REQUIRE_MESSAGE(r, r.error().describe());
  auto c_lines = requests(emu, 0, "/keys/" + created + "/create 200");
  auto i_lines = requests(emu, 0, "PUT demo-premium.vault.azure.net/keys/" + imported + " 200");
  REQUIRE(c_lines.size() == 1);
  REQUIRE(i_lines.size() == 1);
  // The import went at once: it did not wait for the create to leave a 10 s window.
  CHECK(log_time(i_lines[0]) - log_time(c_lines[0]) < 2.0);
}

TEST_CASE("limiter: a Managed HSM is limited per second (its published capacity), not per 10 s") {
  Emulator& emu = shared_emulator();
  ConnectionConfig c = emu.config();
  c.vault_url = "https://demo-mhsm.managedhsm.azure.net";
  c.limiter.fraction = 0.1;  // a vault's HSM CREATE would be 1 per 10 s; a Managed HSM creates 1 per s
  auto kv = emu.connect(c)->vault();
  const std::string a = unique_name("lh-a"), b = unique_name("lh-b");
  REQUIRE(kv.create_key(a, {"EC-HSM", {}, {}, "P-256", {"sign", "verify"}, {}, {}}));
  REQUIRE(kv.create_key(b, {"EC-HSM", {}, {}, "P-256", {"sign", "verify"}, {}, {}}));
  auto la = requests(emu, 0, "/keys/" + a + "/create 200");
  auto lb = requests(emu, 0, "/keys/" + b + "/create 200");
  REQUIRE(la.size() == 1);
  REQUIRE(lb.size() == 1);
  const double gap = log_arrival(lb[0]) - log_arrival(la[0]);
  CHECK(gap >= 0.9);  // one create per second
  CHECK(gap < 3.0);   // not one per 10 s
}

TEST_CASE("a 403 that Azure marks as a grant still propagating is retried a bounded number of times") {
  auto emu = Emulator::start();
  ConnectionConfig c = emu->config("demo-rbac");
  c.client_id = kReaderApp;  // Key Vault Crypto User on demo-rbac: may not create
  c.client_secret = Secret(std::string_view(kReaderSecret));
  c.retry.max_delay = std::chrono::milliseconds(800);
  auto kv = emu->connect(c)->vault();

  // Not granted at all: the RBAC 403 (which always asks to observe propagation time) is retried
  // a bounded number of times, then reported.
  const std::string denied = unique_name("pd");
  auto d = kv.create_key(denied, {"EC-HSM", {}, {}, "P-256", {}, {}, {}});
  REQUIRE_FALSE(d);
  CHECK(d.error().kind == ErrorKind::forbidden);
  CHECK(requests(*emu, 0, "/keys/" + denied + "/create 403").size() == 4);  // 1 + 3 retries

  // Granted just now: the role propagates in 0.5 s, and the create goes through.
  REQUIRE(emu->admin("POST", "/_admin/grants",
                     std::string(R"({"vault":"demo-rbac","principalId":")") + kReaderApp +
                         R"(","role":"Key Vault Crypto Officer","propagationSeconds":0.5})") == 201);
  const std::string granted = unique_name("pg");
  auto g = kv.create_key(granted, {"EC-HSM", {}, {}, "P-256", {}, {}, {}});
  REQUIRE_MESSAGE(g, g.error().describe());
  CHECK(requests(*emu, 0, "/keys/" + granted + "/create 403").size() >= 1);
  CHECK(requests(*emu, 0, "/keys/" + granted + "/create 200").size() == 1);
  const std::string log = captured_log();
  CHECK(count_of(log, "create key " + granted + ": HTTP 403 ForbiddenByRbac") >= 1);
  CHECK(log.find("may still be propagating") != std::string::npos);

  // An access-policy 403 carries no such mark: it is final at once.
  ConnectionConfig ap = c;
  ap.vault_url = "https://demo-premium.vault.azure.net";
  const std::string ap_name = unique_name("pa");
  auto a = emu->connect(ap)->vault().create_key(ap_name, {"EC", {}, {}, "P-256", {}, {}, {}});
  REQUIRE_FALSE(a);
  CHECK(a.error().inner_code == "AccessDenied");
  CHECK(requests(*emu, 0, "/keys/" + ap_name + "/create 403").size() == 1);
}

TEST_CASE("one connection used from many threads") {
  Emulator& emu = shared_emulator();
  auto conn = emu.connect(emu.config());
  auto kv = conn->vault();
  const std::string name = unique_name("mt");
  REQUIRE(kv.create_key(name, {"EC", {}, {}, "P-256", {"sign", "verify"}, {}, {}}));
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 6; ++t)
    ts.emplace_back([&] {
      auto own = conn->vault();  // each thread its own client, same connection and cache
      for (int i = 0; i < 8; ++i) {
        auto s = (i % 2 ? own : kv).sign(name, "", "ES256", Bytes(32, static_cast<uint8_t>(i)));
        if (s && s->value.size() == 64) ++ok;
      }
    });
  for (auto& t : ts) t.join();
  CHECK(ok == 48);
  CHECK(conn->tokens().fetch_count() == 1);
}
