#include "azure/auth.h"

#include <algorithm>

#include "azure/base64url.h"
#include "azure/json.h"
#include "azure/util.h"
#include "common/log.h"

namespace cdcp11::azure {
namespace {

constexpr const char* kLog = "azure.auth";
constexpr std::chrono::seconds kMaxTokenLifetime{31 * 86400};

std::string first_line(std::string_view s) {
  auto e = s.find_first_of("\r\n");
  return std::string(s.substr(0, e));
}

}  // namespace

TokenProvider::TokenProvider(std::shared_ptr<HttpClient> http, Cloud cloud, ClientCredential cred, RetryContext retry,
                             SystemClock clock, std::shared_ptr<TokenCache> cache)
    : http_(std::move(http)),
      cloud_(std::move(cloud)),
      cred_(std::move(cred)),
      retry_(std::move(retry)),
      clock_(std::move(clock)),
      cache_(cache ? std::move(cache) : std::make_shared<TokenCache>()) {}

std::string TokenProvider::cache_key(std::string_view scope) const {
  return to_lower(cloud_.authority_host) + "|" + to_lower(cred_.tenant_id) + "|" + to_lower(cred_.client_id) + "|" +
         to_lower(scope);
}

bool TokenProvider::due(const AccessToken& t, std::chrono::system_clock::time_point now) const {
  auto lifetime = t.expires_on - t.obtained;
  auto margin = std::min<std::chrono::system_clock::duration>(kRefreshMargin, lifetime / 2);
  return now >= t.expires_on - margin;
}

Result<std::shared_ptr<const AccessToken>, Error> TokenProvider::token(std::string_view scope) {
  const std::string key = cache_key(scope);
  std::shared_ptr<const AccessToken> current;
  {
    std::unique_lock lk(cache_->mu);
    for (;;) {
      auto& e = cache_->entries[key];
      current = e.token;
      auto now = clock_();
      if (current && !due(*current, now)) return current;
      if (!e.fetching) {
        e.fetching = true;
        break;
      }
      // Someone else is refreshing: keep using a still-valid token rather than waiting.
      if (current && now < current->expires_on) return current;
      cache_->cv.wait(lk);
    }
  }
  // The network call runs without the cache lock.
  auto fresh = fetch(scope);
  std::lock_guard lk(cache_->mu);
  auto& e = cache_->entries[key];
  e.fetching = false;
  cache_->cv.notify_all();
  if (fresh) {
    e.token = *fresh;
    return fresh;
  }
  if (current && clock_() < current->expires_on) {
    log::warn(kLog, "token refresh failed, using the cached token until it expires: " + fresh.error().to_log_string());
    return current;
  }
  return fail(std::move(fresh).error());
}

void TokenProvider::invalidate(std::string_view scope, const AccessToken& seen) {
  std::lock_guard lk(cache_->mu);
  auto it = cache_->entries.find(cache_key(scope));
  if (it != cache_->entries.end() && it->second.token.get() == &seen) it->second.token.reset();
}

Result<std::shared_ptr<const AccessToken>, Error> TokenProvider::fetch(std::string_view scope) {
  const std::string url = cloud_.token_url(cred_.tenant_id);
  const std::string op = "get token for " + std::string(scope);
  if (cred_.client_secret.empty() && !cred_.certificate)
    return fail(make_error(ErrorKind::config, op, "No client secret or certificate is configured for application " +
                                                      cred_.client_id));
  auto attempt = [&]() -> Result<HttpResponse, Error> {
    HttpRequest req;
    req.method = "POST";
    req.url = url;
    req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    req.headers.emplace_back("Accept", "application/json");
    SecureBytes& b = req.body;
    append(b, "grant_type=client_credentials&client_id=");
    url_encode_append(cred_.client_id, b);
    append(b, "&scope=");
    url_encode_append(scope, b);
    if (cred_.certificate) {
      // A fresh assertion per attempt: each needs its own jti and a current time window.
      AssertionClaims c{cred_.client_id, url, clock_(), std::chrono::seconds(600)};
      CDC_ASSIGN(Secret assertion, make_client_assertion(*cred_.certificate, c));
      append(b, "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer");
      append(b, "&client_assertion=");
      url_encode_append(assertion.view(), b);
    } else {
      append(b, "&client_secret=");
      url_encode_append(cred_.client_secret.view(), b);
    }
    return http_->perform(req, op);
  };
  int attempts = 1;
  auto r = run_with_retries(retry_, op, Repeat::safe, attempt, {}, &attempts);
  if (!r) {
    Error e = std::move(r).error();
    if (e.operation.empty()) e.operation = op;
    return fail(std::move(e));
  }
  HttpResponse& resp = *r;
  if (resp.status != 200) {
    Error e = entra_error(resp, cred_, cloud_.authority_host);
    e.operation = op;
    e.attempts = attempts;
    return fail(std::move(e));
  }
  JsonDocument doc;
  std::string why;
  if (!parse_json(resp.text(), doc, &why) || !doc.IsObject())
    return fail(make_error(ErrorKind::invalid_response, op,
                           "the token response is not a JSON object" + (why.empty() ? "" : " (" + why + ")")));
  const JsonValue* at = member(doc, "access_token");
  if (!at || !at->IsString())
    return fail(make_error(ErrorKind::invalid_response, op, "the token response has no access_token"));
  auto tok = std::make_shared<AccessToken>();
  tok->token = Secret(std::string_view(at->GetString(), at->GetStringLength()));
  tok->obtained = clock_();
  read_token_claims(tok->token, *tok);
  std::optional<int64_t> expires_in = int_member(doc, "expires_in");
  if (!expires_in) {
    // Some proxies send it as a string.
    std::string s = str_member(doc, "expires_in");
    if (!s.empty()) expires_in = std::strtoll(s.c_str(), nullptr, 10);
  }
  // Entra tokens live an hour or a day; a bound also keeps the time arithmetic from overflowing.
  if (expires_in && *expires_in > 0 && *expires_in <= kMaxTokenLifetime.count())
    tok->expires_on = tok->obtained + std::chrono::seconds(*expires_in);
  if (tok->expires_on <= tok->obtained)
    return fail(make_error(ErrorKind::invalid_response, op, "the token response has no usable expires_in"));
  ++fetches_;
  log::info(kLog, "obtained a token for " + std::string(scope) + " (client " + cred_.client_id + ", tenant " +
                      cred_.tenant_id + ", valid " + std::to_string(expires_in.value_or(0)) + " s)");
  return std::shared_ptr<const AccessToken>(std::move(tok));
}

bool read_token_claims(const Secret& jwt, AccessToken& out) {
  std::string_view t = jwt.view();
  auto d1 = t.find('.');
  if (d1 == std::string_view::npos) return false;
  auto d2 = t.find('.', d1 + 1);
  if (d2 == std::string_view::npos) return false;
  SecureBytes claims;
  if (!b64url_decode(t.substr(d1 + 1, d2 - d1 - 1), claims)) return false;
  JsonDocument doc;
  if (!parse_json(std::string_view(reinterpret_cast<const char*>(claims.data()), claims.size()), doc) ||
      !doc.IsObject())
    return false;
  out.oid = str_member(doc, "oid");
  out.tid = str_member(doc, "tid");
  out.appid = str_member(doc, "appid");
  if (out.appid.empty()) out.appid = str_member(doc, "azp");
  // Only what the clock can hold: system_clock counts nanoseconds in 64 bits, up to April 2262.
  constexpr auto kLatest =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::duration::max()).count();
  if (auto exp = int_member(doc, "exp");
      exp && *exp > 0 && *exp < kLatest && out.expires_on.time_since_epoch().count() == 0)
    out.expires_on = std::chrono::system_clock::time_point(std::chrono::seconds(*exp));
  return true;
}

Error entra_error(const HttpResponse& r, const ClientCredential& cred, std::string_view host) {
  Error e;
  e.http_status = static_cast<int>(r.status);
  e.host = std::string(host);
  e.request_id = r.request_id;
  e.client_request_id = r.client_request_id;
  long aadsts = 0;
  JsonDocument doc;
  if (parse_json(r.text(), doc) && doc.IsObject()) {
    e.code = str_member(doc, "error");
    e.message = first_line(str_member(doc, "error_description"));
    if (const JsonValue* codes = member(doc, "error_codes"); codes && codes->IsArray() && !codes->Empty() &&
                                                              (*codes)[0].IsInt64())
      aadsts = static_cast<long>((*codes)[0].GetInt64());
    if (e.request_id.empty()) e.request_id = str_member(doc, "trace_id");
  }
  if (aadsts == 0 && e.message.rfind("AADSTS", 0) == 0) aadsts = std::strtol(e.message.c_str() + 6, nullptr, 10);
  if (aadsts) e.inner_code = std::to_string(aadsts);
  e.principal = cred.client_id;
  switch (aadsts) {
    case 7000215: e.kind = ErrorKind::bad_secret; break;
    case 700016: e.kind = ErrorKind::unknown_client; break;
    case 90002:
      e.kind = ErrorKind::unknown_tenant;
      e.principal = cred.tenant_id;
      break;
    case 700027:
    case 700023:
    case 700021:
    case 50027: e.kind = ErrorKind::assertion_rejected; break;
    case 700024: e.kind = ErrorKind::assertion_expired; break;
    case 90033: e.kind = ErrorKind::token_endpoint_unavailable; break;
    default:
      e.kind = (r.status >= 500 || r.status == 429) ? ErrorKind::token_endpoint_unavailable : ErrorKind::auth_failed;
  }
  return e;
}

}  // namespace cdcp11::azure
