// azure/ without the emulator: codecs, parsers, backoff, limiter accounting, JWT assertions.
#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include "azure/base64url.h"
#include "azure/byok_blob.h"
#include "azure/challenge.h"
#include "azure/json.h"
#include "azure/jwt.h"
#include "azure/keyvault.h"
#include "azure/limiter.h"
#include "azure/retry.h"
#include "azure/rotation_policy.h"
#include "azure/secret.h"
#include "azure/service_error.h"
#include "azure/util.h"
#include "support.h"

using namespace cdcp11;
using namespace cdcp11::azure;
using namespace std::chrono_literals;

TEST_CASE("base64url: RFC 4648 vectors, no padding, strict decoding") {
  const char* plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char* enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  for (int i = 0; i < 7; ++i) {
    CHECK(b64url_encode(view(plain[i])) == enc[i]);
    auto d = b64url_decode(enc[i]);
    REQUIRE(d);
    CHECK(std::string(d->begin(), d->end()) == plain[i]);
  }
  Bytes all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
  std::string e = b64url_encode(all);
  CHECK(e.find_first_of("+/=") == std::string::npos);
  CHECK(*b64url_decode(e) == all);
  CHECK(b64url_encode(Bytes{0xfb, 0xff}) == "-_8");
  CHECK(*b64url_decode("Zm9vYg==") == to_bytes(view("foob")));  // padding tolerated
  CHECK_FALSE(b64url_decode("Zm9v+g"));                          // standard alphabet rejected
  CHECK_FALSE(b64url_decode("Z"));                               // impossible length
  CHECK_FALSE(b64url_decode("Zh"));                              // non-zero leftover bits
  SecureBytes s;
  CHECK(b64url_decode("Zm9v", s));
  CHECK(s.size() == 3);
  CHECK(b64_encode(view("foob")) == "Zm9vYg==");
}

TEST_CASE("Retry-After: seconds, HTTP date, milliseconds headers") {
  auto now = std::chrono::system_clock::from_time_t(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  CHECK(parse_retry_after_value("Retry-After", "2", now) == 2000ms);
  CHECK(parse_retry_after_value("retry-after", " 0 ", now) == 0ms);
  CHECK(parse_retry_after_value("Retry-After", "1.5", now) == 2000ms);
  CHECK(parse_retry_after_value("Retry-After", "Sun, 06 Nov 1994 08:49:47 GMT", now) == 10000ms);
  CHECK(parse_retry_after_value("Retry-After", "Sunday, 06-Nov-94 08:49:40 GMT", now) == 3000ms);
  CHECK(parse_retry_after_value("Retry-After", "Sun Nov  6 08:49:38 1994", now) == 1000ms);
  CHECK(parse_retry_after_value("Retry-After", "Sun, 06 Nov 1994 08:00:00 GMT", now) == 0ms);  // past
  CHECK_FALSE(parse_retry_after_value("Retry-After", "soon", now));
  CHECK_FALSE(parse_retry_after_value("Retry-After", "-3", now));
  CHECK(parse_retry_after_value("retry-after-ms", "250", now) == 250ms);
  CHECK(parse_retry_after_value("x-ms-retry-after-ms", "1200", now) == 1200ms);

  HttpResponse r;
  r.headers = {{"retry-after", "7"}, {"x-ms-retry-after-ms", "300"}};
  CHECK(parse_retry_after(r, now) == 300ms);  // the millisecond header wins
  r.headers = {{"retry-after", "7"}};
  CHECK(parse_retry_after(r, now) == 7000ms);
  r.headers = {};
  CHECK_FALSE(parse_retry_after(r, now));
}

TEST_CASE("Retry-After: absurd values do not overflow, they mean a long wait") {
  auto now = std::chrono::system_clock::from_time_t(784111777);
  for (const char* v : {"9999999999999999", "9223372036854775807", "9223372036854775807.5"}) {
    INFO(v);
    auto d = parse_retry_after_value("Retry-After", v, now);
    REQUIRE(d);
    CHECK(*d >= 24h);
  }
  auto ms = parse_retry_after_value("retry-after-ms", "9223372036854775807.1", now);
  REQUIRE(ms);
  CHECK(*ms >= 24h);
  auto far = parse_retry_after_value("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT", now);
  REQUIRE(far);
  CHECK(*far >= 24h);
  CHECK(parse_retry_after_value("Retry-After", "Mon, 01 Jan 0001 00:00:00 GMT", now) == 0ms);
}

TEST_CASE("backoff: exponential, jittered within bounds, capped") {
  RetryPolicy p;  // 1 s base, 16 s cap, +-20 %
  for (int retry = 0; retry < 8; ++retry) {
    double nominal = std::min(16000.0, 1000.0 * (1 << retry));
    for (double r : {0.0, 0.25, 0.5, 0.75, 0.999999}) {
      auto d = backoff_delay(p, retry, r).count();
      CHECK(d >= static_cast<long long>(nominal * 0.8) - 1);
      CHECK(d <= static_cast<long long>(std::min(16000.0, nominal * 1.2)));
    }
  }
  CHECK(backoff_delay(p, 0, 0.5).count() == 1000);
  CHECK(backoff_delay(p, 3, 0.5).count() == 8000);
  CHECK(backoff_delay(p, 30, 0.999).count() == 16000);
  CHECK(backoff_delay(p, 4, 0.0).count() == 12800);  // 16 s - 20 %
}

TEST_CASE("retry loop: what is retried, and unsafe operations are checked first") {
  RetryContext ctx;
  std::vector<std::chrono::milliseconds> slept;
  ctx.sleep = [&](std::chrono::milliseconds d) { slept.push_back(d); };
  ctx.policy.max_retries = 3;
  auto response = [](long status, std::vector<std::pair<std::string, std::string>> h = {}) {
    HttpResponse r;
    r.status = status;
    r.headers = std::move(h);
    return r;
  };
  SUBCASE("429 then 200, Retry-After honoured") {
    int n = 0;
    auto r = run_with_retries(ctx, "t", Repeat::safe, [&]() -> Result<HttpResponse, Error> {
      return ++n == 1 ? response(429, {{"retry-after", "3"}}) : response(200);
    });
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(slept == std::vector<std::chrono::milliseconds>{3000ms});
  }
  SUBCASE("404 is final") {
    int n = 0;
    auto r = run_with_retries(ctx, "t", Repeat::safe, [&]() -> Result<HttpResponse, Error> {
      ++n;
      return response(404);
    });
    CHECK(n == 1);
  }
  SUBCASE("retries run out: the last answer comes back") {
    int n = 0, attempts = 0;
    auto r = run_with_retries(
        ctx, "t", Repeat::safe, [&]() -> Result<HttpResponse, Error> { ++n; return response(503); }, {}, &attempts);
    REQUIRE(r);
    CHECK(r->status == 503);
    CHECK(n == 4);
    CHECK(attempts == 4);
  }
  SUBCASE("DNS and TLS failures are not retried") {
    int n = 0;
    auto r = run_with_retries(ctx, "t", Repeat::safe, [&]() -> Result<HttpResponse, Error> {
      ++n;
      return fail(make_error(ErrorKind::tls_ca_untrusted, "t", "x"));
    });
    CHECK(n == 1);
  }
  SUBCASE("a dropped, maybe applied, unsafe request is checked before it is repeated") {
    int sent = 0, checks = 0;
    auto attempt = [&]() -> Result<HttpResponse, Error> {
      ++sent;
      Error e = make_error(ErrorKind::connection_dropped, "t", "x");
      e.maybe_applied = true;
      return fail(e);
    };
    auto applied = [&]() -> Result<std::optional<HttpResponse>, Error> {
      ++checks;
      return std::optional<HttpResponse>(response(200));
    };
    auto r = run_with_retries(ctx, "t", Repeat::check_first, attempt, applied);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(sent == 1);
    CHECK(checks == 1);
  }
  SUBCASE("check says not applied: repeat; without a check: report, never repeat") {
    int sent = 0;
    auto attempt = [&]() -> Result<HttpResponse, Error> { return ++sent == 1 ? response(500) : response(200); };
    auto not_applied = [&]() -> Result<std::optional<HttpResponse>, Error> { return std::optional<HttpResponse>(); };
    auto r = run_with_retries(ctx, "t", Repeat::check_first, attempt, not_applied);
    CHECK(r->status == 200);
    CHECK(sent == 2);
    sent = 0;
    auto r2 = run_with_retries(ctx, "t", Repeat::check_first, attempt, {});
    CHECK(r2->status == 500);
    CHECK(sent == 1);
  }
  SUBCASE("429 on an unsafe request is repeated without a check (not applied)") {
    int sent = 0, checks = 0;
    auto attempt = [&]() -> Result<HttpResponse, Error> { return ++sent == 1 ? response(429) : response(200); };
    auto check = [&]() -> Result<std::optional<HttpResponse>, Error> { ++checks; return std::optional<HttpResponse>(); };
    auto r = run_with_retries(ctx, "t", Repeat::check_first, attempt, check);
    CHECK(r->status == 200);
    CHECK(checks == 0);
  }
}

TEST_CASE("retry loop: a 403 Azure marks as a permission still propagating is retried, bounded") {
  RetryContext ctx;
  std::vector<std::chrono::milliseconds> slept;
  ctx.sleep = [&](std::chrono::milliseconds d) { slept.push_back(d); };
  ctx.policy.max_retries = 5;
  ctx.policy.propagation_retries = 3;
  ctx.policy.jitter = 0;
  auto forbidden = [](std::string_view body) {
    HttpResponse r;
    r.status = 403;
    r.body.assign(body.begin(), body.end());
    return r;
  };
  const std::string rbac =
      R"({"error":{"code":"Forbidden","message":"Caller is not authorized to perform action on resource.
If role )"
      R"(assignments, deny assignments or role definitions were changed recently, please observe propagation time.
)"
      R"(Caller: appid=x
Action: 'Microsoft.KeyVault/vaults/keys/create/action'
","innererror":)"
      R"({"code":"ForbiddenByRbac"}}})";
  const std::string policy =
      R"({"error":{"code":"Forbidden","message":"The user, group or application 'appid=x' does not have keys create )"
      R"(permission on key vault 'v;location=westeurope'.","innererror":{"code":"AccessDenied"}}})";
  CHECK(permission_propagating(forbidden(rbac)));
  CHECK_FALSE(permission_propagating(forbidden(policy)));
  HttpResponse ok;
  ok.status = 200;
  ok.body.assign(rbac.begin(), rbac.end());
  CHECK_FALSE(permission_propagating(ok));

  SUBCASE("propagated after two retries: the third attempt succeeds, even for an unsafe request") {
    int sent = 0;
    auto r = run_with_retries(ctx, "create key k", Repeat::check_first, [&]() -> Result<HttpResponse, Error> {
      if (++sent <= 2) return forbidden(rbac);
      HttpResponse o;
      o.status = 200;
      return o;
    });
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(sent == 3);
    // Longer waits than a throttling retry: propagation takes seconds.
    CHECK(slept == std::vector<std::chrono::milliseconds>{2000ms, 4000ms});
  }
  SUBCASE("never propagates: 1 + propagation_retries attempts, then the 403 comes back") {
    int sent = 0, attempts = 0;
    auto r = run_with_retries(
        ctx, "t", Repeat::safe, [&]() -> Result<HttpResponse, Error> { ++sent; return forbidden(rbac); }, {}, &attempts);
    REQUIRE(r);
    CHECK(r->status == 403);
    CHECK(sent == 4);
    CHECK(attempts == 4);
  }
  SUBCASE("an access-policy 403 carries no mark: final at once") {
    int sent = 0;
    auto r = run_with_retries(ctx, "t", Repeat::safe, [&]() -> Result<HttpResponse, Error> { ++sent; return forbidden(policy); });
    CHECK(r->status == 403);
    CHECK(sent == 1);
    CHECK(slept.empty());
  }
  SUBCASE("switched off") {
    ctx.policy.propagation_retries = 0;
    int sent = 0;
    auto r = run_with_retries(ctx, "t", Repeat::safe, [&]() -> Result<HttpResponse, Error> { ++sent; return forbidden(rbac); });
    CHECK(r->status == 403);
    CHECK(sent == 1);
  }
}

TEST_CASE("challenge parsing and resource verification") {
  auto c = parse_challenge(
      R"(Bearer authorization="https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47", resource="https://vault.azure.net")");
  REQUIRE(c);
  CHECK(c->tenant == "72f988bf-86f1-41af-91ab-2d7cd011db47");
  CHECK(c->token_scope() == "https://vault.azure.net/.default");
  CHECK(challenge_matches_host(*c, "demo.vault.azure.net"));
  CHECK_FALSE(challenge_matches_host(*c, "vault.azure.net.evil.example"));
  CHECK_FALSE(challenge_matches_host(*c, "evilvault.azure.net"));
  CHECK_FALSE(challenge_matches_host(*c, "demo.managedhsm.azure.net"));

  auto h = parse_challenge(
      R"(Bearer authorization_uri="https://login.microsoftonline.com/t1/" scope="https://managedhsm.azure.net/.default")");
  REQUIRE(h);
  CHECK(h->tenant == "t1");
  CHECK(h->token_scope() == "https://managedhsm.azure.net/.default");
  CHECK(challenge_matches_host(*h, "x.managedhsm.azure.net"));

  auto u = parse_challenge(R"(Bearer authorization="https://login.microsoftonline.us/t", resource="https://vault.usgovcloudapi.net/")");
  REQUIRE(u);
  CHECK(u->token_scope() == "https://vault.usgovcloudapi.net/.default");
  CHECK(challenge_matches_host(*u, "demo-usgov.vault.usgovcloudapi.net"));

  CHECK_FALSE(parse_challenge("Basic realm=\"x\""));
  CHECK_FALSE(parse_challenge("Bearer error=\"invalid_token\""));
  CHECK_FALSE(parse_challenge(""));
}

TEST_CASE("limiter: sliding window per vault and bucket, weights, refunds") {
  auto t0 = std::chrono::steady_clock::time_point(std::chrono::seconds(1000));
  auto now = t0;
  std::vector<std::chrono::milliseconds> slept;
  LimiterConfig cfg;
  cfg.fraction = 1.0;
  cfg.slack = 0.0;
  RateLimiter lim(cfg, [&] { return now; }, [&](std::chrono::milliseconds d) { slept.push_back(d); now += d; });
  const KeyShape hsm_ec{true, "EC", 0, "P-256"};
  const Limit create_hsm = vault_limit(KeyOp::create, hsm_ec);
  CHECK(lim.capacity(create_hsm) == 10);
  CHECK(lim.capacity(vault_limit(KeyOp::create, {false, "EC", 0, "P-256"})) == 20);
  CHECK(lim.capacity(vault_limit(KeyOp::get, hsm_ec)) == 2000);
  CHECK(rsa_weight(2048) == 1);
  CHECK(rsa_weight(3072) == 4);
  CHECK(rsa_weight(4096) == 8);

  for (int i = 0; i < 10; ++i) {
    CHECK(lim.try_acquire("v1.vault.azure.net", create_hsm).count() == 0);
    now += 100ms;
  }
  CHECK(lim.in_window("v1.vault.azure.net", create_hsm) == 10);
  // The 11th must wait until the first leaves the window: 10 s after t0.
  auto wait = lim.try_acquire("v1.vault.azure.net", create_hsm);
  CHECK(wait == std::chrono::milliseconds(10000 - 1000));
  CHECK(lim.in_window("v1.vault.azure.net", create_hsm) == 10);  // nothing taken
  // Other vaults and buckets are independent.
  CHECK(lim.try_acquire("v2.vault.azure.net", create_hsm).count() == 0);
  CHECK(lim.try_acquire("v1.vault.azure.net", vault_limit(KeyOp::create, {false, "EC", 0, "P-256"})).count() == 0);
  // A 429 is refunded.
  lim.refund("v1.vault.azure.net", create_hsm);
  CHECK(lim.in_window("v1.vault.azure.net", create_hsm) == 9);
  CHECK(lim.try_acquire("v1.vault.azure.net", create_hsm).count() == 0);
  // acquire() sleeps exactly until there is room.
  auto waited = lim.acquire("v1.vault.azure.net", create_hsm);
  CHECK(waited == std::chrono::milliseconds(9000));
  CHECK(now == t0 + 10s);
  CHECK(lim.in_window("v1.vault.azure.net", create_hsm) == 10);

  // Weighted units: 250 RSA-4096 operations fill the 2000-unit HSM window.
  const Limit sign4096 = vault_limit(KeyOp::sign, {true, "RSA", 4096, ""});
  CHECK(sign4096.units == 8);
  for (int i = 0; i < 250; ++i) CHECK(lim.try_acquire("w", sign4096).count() == 0);
  CHECK(lim.try_acquire("w", vault_limit(KeyOp::get, {true, "EC", 0, "P-256"})).count() > 0);

  LimiterConfig off;
  off.enabled = false;
  RateLimiter none(off, [&] { return now; });
  for (int i = 0; i < 100; ++i) CHECK(none.try_acquire("x", create_hsm).count() == 0);
  LimiterConfig ninety;
  ninety.fraction = 0.9;
  RateLimiter margin(ninety, [&] { return now; });
  CHECK(margin.capacity(create_hsm) == 9);
  CHECK(margin.capacity(vault_limit(KeyOp::get, {false, "RSA", 2048, ""})) == 3600);
}

TEST_CASE("limiter: by default a vault's full published number per window, in a window 5 % longer") {
  // Mirroring binds on HSM CREATE (one KEK per key): 10 per 10 s. Kept below the published
  // number the client could reach only 0.86 of it; the longer window alone keeps it from 429s.
  auto t0 = std::chrono::steady_clock::time_point(std::chrono::seconds(7000));
  auto now = t0;
  RateLimiter lim(LimiterConfig{}, [&] { return now; }, [&](std::chrono::milliseconds d) { now += d; });
  const Limit create_hsm = vault_limit(KeyOp::create, {true, "RSA", 4096, ""});
  CHECK(lim.capacity(create_hsm) == 10);
  // 110 creates: ten at once, then ten more each time the first of the window leaves it.
  for (int i = 0; i < 110; ++i) {
    lim.acquire("v.vault.azure.net", create_hsm);
    CHECK(now - t0 == std::chrono::milliseconds(10'500) * (i / 10));
  }
  // 100 creates after the first ten in 105 s: 0.95 of the published 1 per second.
  CHECK(now - t0 == 105s);
}

TEST_CASE("limiter: the published model (vault buckets, key import, Managed HSM per second)") {
  const KeyShape hsm_rsa{true, "RSA", 2048, ""}, sw_ec{false, "EC", 0, "P-256"}, unknown{};
  // Key vault: import has its own 300-per-10-s bucket, whatever the key; rotate is a create.
  for (const KeyShape& k : {hsm_rsa, sw_ec}) {
    Limit imp = vault_limit(KeyOp::import, k);
    CHECK(imp.bucket == "import");
    CHECK(imp.published == 300);
    CHECK(imp.window == 10s);
  }
  CHECK(vault_limit(KeyOp::create, hsm_rsa).bucket == "create-hsm");
  CHECK(vault_limit(KeyOp::rotate, hsm_rsa).bucket == "create-hsm");
  CHECK(vault_limit(KeyOp::rotate, sw_ec).bucket == "create-sw");
  CHECK(vault_limit(KeyOp::decrypt, {true, "RSA", 3072, ""}).units == 4);
  CHECK(vault_limit(KeyOp::purge, hsm_rsa).bucket == "vault");
  CHECK(vault_limit(KeyOp::list, unknown).published == 4000);
  // Listing keys is a key transaction, counted with the gets (as the emulator counts it): apart,
  // a sync's pages and gets together went past the key bucket and drew 429s.
  CHECK(vault_limit(KeyOp::list, unknown).bucket == vault_limit(KeyOp::get, unknown).bucket);
  // Managed HSM: per second, by operation and key type.
  Limit c = mhsm_limit(KeyOp::create, hsm_rsa);
  CHECK(c.published == 1);
  CHECK(c.window == 1s);
  CHECK(mhsm_limit(KeyOp::rotate, hsm_rsa).bucket == c.bucket);
  for (KeyOp op : {KeyOp::delete_, KeyOp::purge, KeyOp::backup, KeyOp::restore}) CHECK(mhsm_limit(op, hsm_rsa).published == 10);
  CHECK(mhsm_limit(KeyOp::get, unknown).published == 1100);
  CHECK(mhsm_limit(KeyOp::sign, hsm_rsa).published == 900);
  CHECK(mhsm_limit(KeyOp::sign, {true, "RSA", 3072, ""}).published == 340);
  CHECK(mhsm_limit(KeyOp::sign, {true, "RSA", 4096, ""}).published == 150);
  CHECK(mhsm_limit(KeyOp::decrypt, hsm_rsa).published == 1100);
  CHECK(mhsm_limit(KeyOp::sign, {true, "EC", 0, "P-256"}).published == 330);
  CHECK(mhsm_limit(KeyOp::sign, {true, "EC", 0, "P-256K"}).published == 330);
  CHECK(mhsm_limit(KeyOp::verify, {true, "EC", 0, "P-521"}).published == 28);
  CHECK(mhsm_limit(KeyOp::unwrap, {true, "oct", 256, ""}).published == 2200);
  CHECK(mhsm_limit(KeyOp::sign, unknown).published == 150);  // unknown key: the lowest sign capacity
  CHECK(mhsm_limit(KeyOp::sign, hsm_rsa).bucket != mhsm_limit(KeyOp::sign, {true, "EC", 0, "P-256"}).bucket);
  for (KeyOp op : {KeyOp::import, KeyOp::list, KeyOp::update, KeyOp::recover, KeyOp::other})
    CHECK(mhsm_limit(op, hsm_rsa).published == 0);  // nothing published: not limited

  // A Managed HSM create waits a second, not ten.
  auto now = std::chrono::steady_clock::time_point(std::chrono::seconds(50));
  LimiterConfig cfg;
  cfg.fraction = 1.0;
  cfg.slack = 0.0;
  RateLimiter lim(cfg, [&] { return now; }, [&](std::chrono::milliseconds d) { now += d; });
  CHECK(lim.acquire("h.managedhsm.azure.net", c).count() == 0);
  CHECK(lim.acquire("h.managedhsm.azure.net", c) == 1000ms);
  // Not limited: never waits.
  for (int i = 0; i < 1000; ++i) CHECK(lim.try_acquire("h", mhsm_limit(KeyOp::import, hsm_rsa)).count() == 0);
  // slack lengthens every window by the same fraction.
  LimiterConfig slack;
  slack.fraction = 1.0;
  slack.slack = 0.05;
  RateLimiter s(slack, [&] { return now; }, [&](std::chrono::milliseconds d) { now += d; });
  CHECK(s.try_acquire("h", c).count() == 0);
  CHECK(s.try_acquire("h", c) == 1050ms);
}

namespace {
std::string decode_part(std::string_view p) {
  auto b = b64url_decode(p);
  REQUIRE(b);
  return std::string(b->begin(), b->end());
}
}  // namespace

TEST_CASE("client assertion: PS256, x5t#S256, claims, signature verifies") {
  auto tc = test::make_test_cert("assertion-test");
  auto cert = ClientCertificate::from_pem(Secret(tc.cert_pem + tc.key_pem));
  REQUIRE(cert);
  auto now = std::chrono::system_clock::from_time_t(1767225600);
  const std::string aud = "https://login.microsoftonline.com/tenant-x/oauth2/v2.0/token";
  auto a = make_client_assertion(*cert, {"client-x", aud, now, 600s});
  REQUIRE(a);
  std::string jwt(a->view());
  auto d1 = jwt.find('.'), d2 = jwt.rfind('.');
  REQUIRE(d1 != d2);

  JsonDocument header, claims;
  REQUIRE(parse_json(decode_part(jwt.substr(0, d1)), header));
  REQUIRE(parse_json(decode_part(jwt.substr(d1 + 1, d2 - d1 - 1)), claims));
  CHECK(str_member(header, "alg") == "PS256");
  CHECK(str_member(header, "typ") == "JWT");
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_Digest(cert->cert_der().data(), cert->cert_der().size(), md, &mdlen, EVP_sha256(), nullptr);
  CHECK(str_member(header, "x5t#S256") == b64url_encode(ByteView(md, mdlen)));
  CHECK(str_member(claims, "aud") == aud);
  CHECK(str_member(claims, "iss") == "client-x");
  CHECK(str_member(claims, "sub") == "client-x");
  CHECK(str_member(claims, "jti").size() == 36);
  CHECK(int_member(claims, "iat") == 1767225600);
  CHECK(int_member(claims, "nbf") == 1767225600);
  CHECK(int_member(claims, "exp") == 1767225600 + 600);

  // A fresh jti each time.
  auto a2 = make_client_assertion(*cert, {"client-x", aud, now, 600s});
  JsonDocument claims2;
  std::string jwt2(a2->view());
  REQUIRE(parse_json(decode_part(jwt2.substr(jwt2.find('.') + 1, jwt2.rfind('.') - jwt2.find('.') - 1)), claims2));
  CHECK(str_member(claims2, "jti") != str_member(claims, "jti"));

  // Verify the RSA-PSS (SHA-256, MGF1-SHA-256, salt = 32) signature with the certificate.
  BIO* bio = BIO_new_mem_buf(tc.cert_pem.data(), static_cast<int>(tc.cert_pem.size()));
  X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  REQUIRE(x);
  EVP_PKEY* pub = X509_get_pubkey(x);
  auto sig = b64url_decode(jwt.substr(d2 + 1));
  REQUIRE(sig);
  std::string input = jwt.substr(0, d2);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  REQUIRE(EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), nullptr, pub) == 1);
  EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
  EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32);
  EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256());
  CHECK(EVP_DigestVerify(ctx, sig->data(), sig->size(), reinterpret_cast<const unsigned char*>(input.data()),
                         input.size()) == 1);
  // And a tampered input does not verify.
  input[5] ^= 1;
  EVP_MD_CTX_reset(ctx);
  REQUIRE(EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), nullptr, pub) == 1);
  EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
  EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32);
  CHECK(EVP_DigestVerify(ctx, sig->data(), sig->size(), reinterpret_cast<const unsigned char*>(input.data()),
                         input.size()) != 1);
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pub);
  X509_free(x);
}

TEST_CASE("secret files: group/world-readable files are refused, saying which") {
  std::string dir = test::make_temp_dir("cdcp11-azure-secret-");
  test::write_file(dir + "/ok", "s3cret-value\n", 0600);
  auto ok = load_secret_file(dir + "/ok");
  REQUIRE(ok);
  CHECK(ok->view() == "s3cret-value");
  test::write_file(dir + "/g", "x", 0640);
  auto g = load_secret_file(dir + "/g");
  REQUIRE_FALSE(g);
  CHECK(g.error().kind == ErrorKind::secret_file);
  CHECK(g.error().describe() == "The client secret file " + dir + "/g may be read by its group; refusing to use it: "
                                "run chmod 600 " + dir + "/g.");
  test::write_file(dir + "/o", "x", 0604);
  CHECK(load_secret_file(dir + "/o").error().describe().find("may be read by others;") != std::string::npos);
  test::write_file(dir + "/go", "x", 0644);
  CHECK(load_secret_file(dir + "/go").error().describe().find("may be read by its group and by others;") !=
        std::string::npos);
  CHECK(load_secret_file(dir + "/missing").error().describe().find("cannot be opened") != std::string::npos);
  test::write_file(dir + "/empty", "\n", 0600);
  CHECK_FALSE(load_secret_file(dir + "/empty"));

  setenv("CDCP11_TEST_SECRET", "from-env", 1);
  CHECK(load_secret_env("CDCP11_TEST_SECRET")->view() == "from-env");
  unsetenv("CDCP11_TEST_SECRET");
  CHECK(load_secret_env("CDCP11_TEST_SECRET").error().describe() ==
        "The environment variable CDCP11_TEST_SECRET that should hold the client secret is not set.");
  std::string cmd = "rm -rf '" + dir + "'";
  CHECK(std::system(cmd.c_str()) == 0);
}

TEST_CASE("BYOK transfer blob") {
  Bytes ct(256 + 40, 0xab);
  const std::string kid = "https://demo-premium.vault.azure.net/keys/kek/eba63d27e4e34e028839b53fac905621";
  auto blob = build_byok_blob(kid, ct, "cdcp11 test");
  REQUIRE(blob);
  JsonDocument d;
  REQUIRE(parse_json(std::string(blob->begin(), blob->end()), d));
  CHECK(str_member(d, "schema_version") == "1.0.0");
  const JsonValue* h = member(d, "header");
  REQUIRE(h);
  CHECK(str_member(*h, "kid") == kid);
  CHECK(str_member(*h, "alg") == "dir");
  CHECK(str_member(*h, "enc") == "CKM_RSA_AES_KEY_WRAP");
  CHECK(str_member(d, "ciphertext") == b64url_encode(ct));
  CHECK(str_member(d, "ciphertext").find('=') == std::string::npos);
  CHECK(str_member(d, "generator") == "cdcp11 test");
  CHECK_FALSE(build_byok_blob("https://demo-premium.vault.azure.net/keys/kek", ct));       // no version
  CHECK_FALSE(build_byok_blob(kid, Bytes(100)));                                           // too short
  CHECK_FALSE(build_byok_blob(kid, Bytes(256 + 17)));                                      // not KWP-sized
}

TEST_CASE("key ids and JSON shapes") {
  auto id = parse_key_id("https://myvault.vault.azure.net:443/keys/K1/78deebed173b48e48f55abf87ed4cf71");
  REQUIRE(id);
  CHECK(id->vault_url == "https://myvault.vault.azure.net");
  CHECK(id->name == "K1");
  CHECK(id->version == "78deebed173b48e48f55abf87ed4cf71");
  CHECK(parse_key_id("https://v.vault.azure.net/keys/K1")->version.empty());
  CHECK(parse_key_id("https://v.vault.azure.net/deletedkeys/K1")->name == "K1");
  CHECK_FALSE(parse_key_id("http://v.vault.azure.net/keys/K1"));
  CHECK_FALSE(parse_key_id("https://v.vault.azure.net/secrets/K1"));

  // EC import: x, y, d padded to the field length; private parts only in the body.
  ImportKeyOptions o;
  PrivateJwk k;
  k.kty = "EC";
  k.crv = "P-256";
  k.x = Bytes(31, 1);
  k.y = Bytes(32, 2);
  k.d = SecureBytes(30, 3);
  o.jwk = k;
  o.tags = {{"origin", "pkcs11"}};
  auto body = import_key_body(o);
  REQUIRE(body);
  JsonDocument d;
  REQUIRE(parse_json(std::string(body->begin(), body->end()), d));
  const JsonValue* key = member(d, "key");
  CHECK(b64url_decode(str_member(*key, "x"))->size() == 32);
  CHECK(b64url_decode(str_member(*key, "d"))->size() == 32);
  CHECK((*b64url_decode(str_member(*key, "x")))[0] == 0);
  CHECK_FALSE(member(d, "Hsm"));
  CHECK(str_member(*member(d, "tags"), "origin") == "pkcs11");

  ImportKeyOptions b;
  b.byok_blob = Bytes{'{', '}'};
  b.byok_kty = "RSA-HSM";
  b.key_ops = {"sign", "verify"};
  auto bb = import_key_body(b);
  REQUIRE(bb);
  JsonDocument bd;
  REQUIRE(parse_json(std::string(bb->begin(), bb->end()), bd));
  CHECK(str_member(*member(bd, "key"), "key_hsm") == "e30");
  CHECK(str_member(*member(bd, "key"), "kty") == "RSA-HSM");
  ImportKeyOptions both = b;
  both.jwk = k;
  CHECK_FALSE(import_key_body(both));

  KeyBundle kb;
  REQUIRE(parse_key_bundle(R"({"recoveryId":"https://myvault.vault.azure.net/deletedkeys/K1","deletedDate":1493942452,
    "scheduledPurgeDate":1501718452,"key":{"kid":"https://myvault.vault.azure.net/keys/K1/78deebed173b48e48f55abf87ed4cf71",
    "kty":"RSA","key_ops":["encrypt","decrypt"],"n":"AQAB","e":"AQAB"},
    "attributes":{"enabled":true,"created":1493942451,"updated":1493942451,"recoveryLevel":"Recoverable+Purgeable"},"tags":{}})",
                           kb));
  CHECK(kb.name() == "K1");
  CHECK(kb.version() == "78deebed173b48e48f55abf87ed4cf71");
  CHECK(kb.recovery_id == "https://myvault.vault.azure.net/deletedkeys/K1");
  CHECK(kb.scheduled_purge_date == 1501718452);
  CHECK(kb.attributes.recovery_level == "Recoverable+Purgeable");
  CHECK(kb.key.key_ops == std::vector<std::string>{"encrypt", "decrypt"});
}

TEST_CASE("service errors: codes, permissions, one sentence each") {
  auto resp = [](long status, const std::string& body) {
    HttpResponse r;
    r.status = status;
    r.body.assign(body.begin(), body.end());
    r.request_id = "rid-1";
    return r;
  };
  auto e = service_error(resp(403, R"({"error":{"code":"Forbidden","message":"The user, group or application 'appid=a;oid=b;iss=c' does not have keys get permission on key vault 'v;location=westeurope'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287","innererror":{"code":"AccessDenied"}}})"),
                         "get key k", "v.vault.azure.net", "get", 1);
  CHECK(e.kind == ErrorKind::forbidden);
  CHECK(e.permission == "get");
  CHECK(e.request_id == "rid-1");
  CHECK(e.describe() == "The application is missing the 'get' permission on v.vault.azure.net: add it to the vault's "
                        "access policy for this application.");
  e = service_error(resp(403, R"({"error":{"code":"Forbidden","message":"Caller is not authorized to perform action on resource.\r\nAction: 'Microsoft.KeyVault/vaults/keys/read'\r\n","innererror":{"code":"ForbiddenByRbac"}}})"),
                    "get key k", "v.vault.azure.net", "get", 1);
  CHECK(e.permission == "Microsoft.KeyVault/vaults/keys/read");
  CHECK(e.describe() == "The application is not allowed to get key k on v.vault.azure.net: assign it a role with the "
                        "data action 'Microsoft.KeyVault/vaults/keys/read' (for example Key Vault Crypto Officer).");
  e = service_error(resp(403, R"({"error":{"code":"Forbidden","message":"Client address is not authorized and caller is not a trusted service.\r\nClient address: 1.2.3.4","innererror":{"code":"ForbiddenByFirewall"}}})"),
                    "list keys", "v.vault.azure.net", "list", 1);
  CHECK(e.kind == ErrorKind::firewall);
  CHECK(e.describe() == "The firewall of v.vault.azure.net rejected this machine's address (ForbiddenByFirewall): "
                        "allow it in the vault's network settings.");
  e = service_error(resp(429, R"({"error":{"code":"Throttled","message":"Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"}})"),
                    "get key k", "v.vault.azure.net", "get", 6);
  CHECK(e.kind == ErrorKind::throttled);
  CHECK(e.describe() == "v.vault.azure.net kept throttling requests (HTTP 429) after 6 attempts: lower the request "
                        "rate and retry later.");
  e = service_error(resp(409, R"({"error":{"code":"Conflict","message":"Key k is currently in a deleted but recoverable state","innererror":{"code":"ObjectIsDeletedButRecoverable"}}})"),
                    "create key k", "v.vault.azure.net", "create", 1);
  CHECK(e.kind == ErrorKind::conflict);
  CHECK(e.inner_code == "ObjectIsDeletedButRecoverable");
  e = service_error(resp(403, R"({"error":{"code":"Forbidden","message":"Operation \"purge\" is not allowed because purge protection is enabled for this vault."}})"),
                    "purge deleted key k", "v.vault.azure.net", "purge", 1);
  CHECK(e.kind == ErrorKind::purge_protected);
  e = service_error(resp(401, ""), "get key k", "h.managedhsm.azure.net", "get", 1);  // MHSM: empty body
  CHECK(e.kind == ErrorKind::unauthorized);
  CHECK(e.to_log_string().find("x-ms-request-id=rid-1") != std::string::npos);
}

TEST_CASE("rotation policy JSON: shape in and out") {
  RotationPolicy p;
  p.expiry_time = "P2Y";
  p.lifetime_actions = {{RotationAction::rotate, "P18M", ""}, {RotationAction::notify, "", "P30D"}};
  auto body = rotation_policy_body(p);
  REQUIRE(body);
  CHECK(std::string(body->begin(), body->end()) ==
        R"({"lifetimeActions":[{"trigger":{"timeAfterCreate":"P18M"},"action":{"type":"Rotate"}},)"
        R"({"trigger":{"timeBeforeExpiry":"P30D"},"action":{"type":"Notify"}}],"attributes":{"expiryTime":"P2Y"}})");
  auto empty = rotation_policy_body(RotationPolicy{});
  REQUIRE(empty);
  CHECK(std::string(empty->begin(), empty->end()) == R"({"lifetimeActions":[],"attributes":{}})");
  RotationPolicy out;
  REQUIRE(parse_rotation_policy(R"({"id":"https://v.vault.azure.net/keys/k/rotationpolicy","lifetimeActions":[
      {"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"rotate"}},
      {"trigger":{"timeBeforeExpiry":"P30D"},"action":{"type":"Notify"}}],
      "attributes":{"expiryTime":"P2Y","created":1482188947,"updated":1482188948}})", out));
  CHECK(out.id == "https://v.vault.azure.net/keys/k/rotationpolicy");
  REQUIRE(out.lifetime_actions.size() == 2);
  CHECK(out.lifetime_actions[0].action == RotationAction::rotate);  // the spec's enum is lower case
  CHECK(out.lifetime_actions[1].action == RotationAction::notify);
  CHECK(out.created == 1482188947);
  CHECK(out.updated == 1482188948);
  CHECK_FALSE(parse_rotation_policy(R"({"lifetimeActions":[{"action":{"type":"Explode"},"trigger":{}}]})", out));
  CHECK_FALSE(parse_rotation_policy("[]", out));
  CHECK(iso8601_duration_valid("P1Y2M3W4DT5H6M7S"));
  CHECK(iso8601_duration_valid("PT48H"));
  CHECK_FALSE(iso8601_duration_valid("P"));
  CHECK_FALSE(iso8601_duration_valid("PT"));
  CHECK_FALSE(iso8601_duration_valid("P1H"));
  CHECK_FALSE(iso8601_duration_valid("90D"));
}

TEST_CASE("JSON from the network: nesting is bounded, numbers out of int64 range are refused") {
  // Far deeper than any Azure answer; a recursive parser would run off the stack.
  const std::size_t depth = 1'000'000;
  std::string deep = std::string(depth, '[') + std::string(depth, ']');
  JsonDocument d;
  std::string why;
  CHECK_FALSE(parse_json(deep, d, &why));
  CHECK(why == "JSON nested deeper than 64 levels");
  KeyBundle kb;
  CHECK_FALSE(parse_key_bundle("{\"key\":" + deep + "}", kb));
  // Brackets inside strings are text, not nesting.
  JsonDocument s;
  CHECK(parse_json("{\"a\":\"" + std::string(100, '[') + "\"}", s));
  CHECK(parse_json(std::string(64, '[') + std::string(64, ']'), s));
  CHECK_FALSE(parse_json(std::string(65, '[') + std::string(65, ']'), s));
  CHECK_FALSE(parse_json("{\"a\":", s, &why));
  CHECK(why.rfind("invalid JSON", 0) == 0);

  JsonDocument n;
  REQUIRE(parse_json(R"({"big":1e300,"neg":-1e300,"edge":9223372036854775808.0,"u":18446744073709551615,
                         "ok":1.5e9,"frac":12.75,"min":-9223372036854775808,"minf":-9223372036854775808.0})", n));
  CHECK_FALSE(int_member(n, "big"));
  CHECK_FALSE(int_member(n, "neg"));
  CHECK_FALSE(int_member(n, "edge"));
  CHECK_FALSE(int_member(n, "u"));
  CHECK(int_member(n, "ok") == 1500000000);
  CHECK(int_member(n, "frac") == 12);
  CHECK(int_member(n, "min") == INT64_MIN);
  CHECK(int_member(n, "minf") == INT64_MIN);
}

TEST_CASE("an encrypted client key is refused with a precise error, never prompted for") {
  auto tc = test::make_test_cert("encrypted-key-test");
  const std::string encrypted = test::encrypt_key_pem(tc.key_pem, "key-passphrase-2718");
  REQUIRE(encrypted.find("ENCRYPTED") != std::string::npos);

  // The Entra certificate credential.
  auto cert = ClientCertificate::from_pem(Secret(tc.cert_pem + encrypted));
  REQUIRE_FALSE(cert);
  CHECK(cert.error().kind == ErrorKind::certificate);
  CHECK(cert.error().describe() ==
        "The client certificate's private key is encrypted; cdcp11 cannot ask for its passphrase: store the key "
        "unencrypted in a file only its owner can read (openssl pkey -in KEY -out PLAIN-KEY; chmod 600 PLAIN-KEY).");

  // The mutual-TLS client key.
  const std::string dir = test::make_temp_dir("cdcp11-azure-enckey-");
  test::write_file(dir + "/client.pem", tc.cert_pem, 0644);
  test::write_file(dir + "/client.key", encrypted, 0600);
  ConnectionConfig c;
  c.tenant_id = test::kTenant;
  c.client_id = test::kSecretApp;
  c.client_secret = Secret(std::string_view("x"));
  c.vault_url = "https://demo-premium.vault.azure.net";
  c.http.client_cert_file = dir + "/client.pem";
  c.http.client_key_file = dir + "/client.key";
  auto conn = Connection::open(c);
  REQUIRE_FALSE(conn);
  CHECK(conn.error().describe() ==
        "The TLS client key file " + dir + "/client.key is encrypted; cdcp11 cannot ask for its passphrase: store "
        "the key unencrypted in a file only its owner can read (openssl pkey -in KEY -out PLAIN-KEY; chmod 600 "
        "PLAIN-KEY).");
  // The key inside the certificate file, as tls.client_key_file may be left empty.
  test::write_file(dir + "/both.pem", tc.cert_pem + encrypted, 0600);
  c.http.client_cert_file = dir + "/both.pem";
  c.http.client_key_file = "";
  auto both = Connection::open(c);
  REQUIRE_FALSE(both);
  CHECK(both.error().describe().find("The TLS client key file " + dir + "/both.pem is encrypted;") == 0);
  std::string cmd = "rm -rf '" + dir + "'";
  CHECK(std::system(cmd.c_str()) == 0);
}

TEST_CASE("credentials in URLs are redacted") {
  CHECK(redact_url_credentials("http://alice:s3cret@proxy.example:3128") == "http://***@proxy.example:3128");
  CHECK(redact_url_credentials("alice:s3cret@proxy.example:3128") == "***@proxy.example:3128");
  CHECK(redact_url_credentials("https://tok3n@proxy.example/") == "https://***@proxy.example/");
  CHECK(redact_url_credentials("http://proxy.example:3128") == "http://proxy.example:3128");
  CHECK(redact_url_credentials("https://v.vault.azure.net/keys/a@b") == "https://v.vault.azure.net/keys/a@b");
  CHECK(redact_url_credentials("Failed to connect to http://u:p%40ss@h:1 and https://x:y@z/ today") ==
        "Failed to connect to http://***@h:1 and https://***@z/ today");
  CHECK(redact_url_credentials("") == "");
}
