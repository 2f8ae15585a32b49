#include "azure/retry.h"

#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>

#include "common/log.h"

namespace cdcp11::azure {
namespace {

constexpr const char* kLog = "azure.retry";

// Longer than any wait we honour (RetryPolicy::max_retry_after caps it): values past it mean
// "a long time" and are clamped, so the arithmetic on them cannot overflow.
constexpr long long kMaxWaitSeconds = 10LL * 365 * 86400;

// A non-negative number of seconds or milliseconds, at most kMaxWaitSeconds * 1000.
std::optional<long long> parse_number(std::string_view v) {
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  if (v.empty()) return std::nullopt;
  // Fractional seconds are rounded up (a few services send "1.5").
  std::size_t dot = v.find('.');
  std::string_view ip = v.substr(0, dot);
  constexpr long long kMax = kMaxWaitSeconds * 1000;
  long long n = 0;
  auto [p, ec] = std::from_chars(ip.data(), ip.data() + ip.size(), n);
  if (ec == std::errc::result_out_of_range && p == ip.data() + ip.size() && ip.front() != '-') n = kMax;
  else if (ec != std::errc() || p != ip.data() + ip.size() || n < 0) return std::nullopt;
  n = std::min(n, kMax);
  if (dot != std::string_view::npos) {
    std::string_view frac = v.substr(dot + 1);
    if (frac.empty() || !std::all_of(frac.begin(), frac.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return std::nullopt;
    if (n < kMax && std::any_of(frac.begin(), frac.end(), [](char c) { return c != '0'; })) ++n;
  }
  return n;
}

// RFC 7231 IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), plus the obsolete RFC 850 and asctime
// forms through strptime.
std::optional<std::time_t> parse_http_date(std::string_view v) {
  std::string s(v);
  static const char* formats[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y"};
  for (const char* f : formats) {
    std::tm tm{};
    const char* end = strptime(s.c_str(), f, &tm);
    if (end && *end == '\0') return timegm(&tm);
  }
  return std::nullopt;
}

double random01() {
  uint32_t r = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&r), sizeof r) != 1) return 0.5;
  return static_cast<double>(r) / 4294967296.0;
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_retry_after_value(std::string_view name, std::string_view value,
                                                                 std::chrono::system_clock::time_point now) {
  using std::chrono::milliseconds;
  if (iequals(name, "retry-after-ms") || iequals(name, "x-ms-retry-after-ms")) {
    auto n = parse_number(value);
    if (!n) return std::nullopt;
    return milliseconds(*n);
  }
  if (iequals(name, "retry-after")) {
    if (auto n = parse_number(value)) return milliseconds(std::min(*n, kMaxWaitSeconds) * 1000);
    if (auto t = parse_http_date(value)) {
      // In seconds first: a far date is past what the clock's nanoseconds can hold.
      const long long ahead = static_cast<long long>(*t) - std::chrono::system_clock::to_time_t(now);
      if (ahead <= 0) return milliseconds(0);
      if (ahead >= kMaxWaitSeconds) return milliseconds(kMaxWaitSeconds * 1000);
      auto when = std::chrono::system_clock::from_time_t(*t);
      return std::max(std::chrono::duration_cast<milliseconds>(when - now), milliseconds(0));
    }
  }
  return std::nullopt;
}

std::optional<std::chrono::milliseconds> parse_retry_after(const HttpResponse& r,
                                                           std::chrono::system_clock::time_point now) {
  for (const char* h : {"retry-after-ms", "x-ms-retry-after-ms", "retry-after"}) {
    std::string v = r.header(h);
    if (v.empty()) continue;
    if (auto d = parse_retry_after_value(h, v, now)) return d;
  }
  return std::nullopt;
}

std::chrono::milliseconds backoff_delay(const RetryPolicy& p, int retry, double r01) {
  double base = static_cast<double>(p.base_delay.count());
  double cap = static_cast<double>(p.max_delay.count());
  double d = std::min(cap, base * std::pow(2.0, std::clamp(retry, 0, 30)));
  double factor = 1.0 + p.jitter * (2.0 * std::clamp(r01, 0.0, 1.0) - 1.0);
  d = std::min(cap, d * factor);
  return std::chrono::milliseconds(static_cast<long long>(std::max(0.0, d)));
}

bool permission_propagating(const HttpResponse& r) {
  if (r.status != 403) return false;
  const std::string_view body = r.text();
  return body.find("ForbiddenByRbac") != std::string_view::npos &&
         body.find("please observe propagation time") != std::string_view::npos;
}

Outcome classify(const Result<HttpResponse, Error>& r) {
  if (!r) {
    switch (r.error().kind) {
      case ErrorKind::connect_refused:
        return Outcome::retry_not_applied;
      case ErrorKind::timeout:
      case ErrorKind::connection_dropped:
        return r.error().maybe_applied ? Outcome::retry_maybe_applied : Outcome::retry_not_applied;
      default:
        return Outcome::done;
    }
  }
  long s = r->status;
  if (s == 429 || s == 503) return Outcome::retry_not_applied;
  if (s == 408 || s == 500 || s == 502 || s == 504) return Outcome::retry_maybe_applied;
  return Outcome::done;
}

Result<HttpResponse, Error> run_with_retries(const RetryContext& ctx, std::string_view operation, Repeat repeat,
                                             const Attempt& attempt, const AlreadyApplied& already_applied,
                                             int* attempts_out) {
  int attempts = 0, propagation = 0;
  bool check_pending = false;
  for (int retry = 0;; ++retry) {
    if (check_pending && already_applied) {
      auto seen = already_applied();
      if (!seen) return fail(std::move(seen).error());
      if (*seen) {
        log::info(kLog, std::string(operation) + ": the earlier attempt took effect; not repeating it");
        if (attempts_out) *attempts_out = attempts;
        return std::move(**seen);
      }
    }
    ++attempts;
    auto r = attempt();
    if (r && propagation < ctx.policy.propagation_retries && permission_propagating(*r)) {
      ++propagation;
      const std::chrono::milliseconds delay = backoff_delay(ctx.policy, propagation, random01());
      log::info(kLog, std::string(operation) + ": HTTP 403 ForbiddenByRbac: the permission may still be propagating "
                          "after a recent role change; retry " + std::to_string(propagation) + " of " +
                          std::to_string(ctx.policy.propagation_retries) + " in " + std::to_string(delay.count()) +
                          " ms" + (r->request_id.empty() ? "" : ", x-ms-request-id=" + r->request_id));
      ctx.sleep(delay);
      --retry;  // a 403 does not use up a throttling retry
      continue;
    }
    Outcome o = classify(r);
    if (o == Outcome::done || retry >= ctx.policy.max_retries) {
      if (attempts_out) *attempts_out = attempts;
      if (!r) {
        Error e = std::move(r).error();
        e.attempts = std::max(e.attempts, attempts);
        return fail(std::move(e));
      }
      return r;
    }
    if (o == Outcome::retry_maybe_applied && repeat == Repeat::check_first) {
      if (!already_applied) {
        // Nothing can tell whether it happened: report instead of risking a duplicate.
        if (!r) {
          Error e = std::move(r).error();
          e.attempts = std::max(e.attempts, attempts);
          return fail(std::move(e));
        }
        return r;
      }
      check_pending = true;
    }
    std::chrono::milliseconds delay = backoff_delay(ctx.policy, retry, random01());
    std::string why;
    if (r) {
      why = "HTTP " + std::to_string(r->status);
      if (auto ra = parse_retry_after(*r, ctx.now())) {
        delay = std::min(*ra, ctx.policy.max_retry_after);
        why += ", server asked to wait " + std::to_string(ra->count()) + " ms";
      }
      if (!r->request_id.empty()) why += ", x-ms-request-id=" + r->request_id;
    } else {
      why = kind_name(r.error().kind);
    }
    log::info(kLog, std::string(operation) + ": attempt " + std::to_string(attempts) + " failed (" + why +
                        "); retrying in " + std::to_string(delay.count()) + " ms");
    ctx.sleep(delay);
  }
}

}  // namespace cdcp11::azure
