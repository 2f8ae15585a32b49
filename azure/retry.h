// Retries with exponential backoff and jitter, honouring the server's Retry-After.
//
// Which failures are retried: HTTP 429, 5xx (408 too) and connection failures (refused,
// timed out, dropped). Never retried: DNS and TLS failures, 4xx other than 408/429.
//
// Safe vs unsafe to repeat: an attempt that certainly was not applied (429, 503, a
// connection that failed before the request was sent) is always repeated. An attempt that
// may have been applied (connection dropped or timed out after sending, 500/502/504) is
// repeated directly only for operations that are idempotent (Repeat::safe). For the others
// (Repeat::check_first: key create and import, delete, purge, recover, restore) the caller's
// `already_applied` hook runs first; it looks at the vault (e.g. GET the key and compare) and
// either returns the answer to use or says "not applied", and only then is the request sent
// again. keyvault.h documents the check per operation.
//
// A 403 is final, except one that Azure marks as possibly a grant still propagating: Key
// Vault's RBAC denial (innererror ForbiddenByRbac) says "If role assignments, deny assignments
// or role definitions were changed recently, please observe propagation time." That sentence
// is the only sign Azure gives (no header, no code of its own), and it is in every RBAC
// denial, so such a 403 is retried a bounded number of times (propagation_retries, with longer
// waits than a throttling retry) and then reported. Access-policy denials carry no such
// sentence and are final at once, like ARM's. A 403 was not applied, so any operation may be
// repeated after it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "azure/error.h"
#include "azure/http.h"
#include "azure/util.h"
#include "common/result.h"

namespace cdcp11::azure {

struct RetryPolicy {
  int max_retries = 5;                            // attempts = 1 + max_retries
  std::chrono::milliseconds base_delay{1000};     // 1, 2, 4, 8, 16 s (Microsoft's guidance)
  std::chrono::milliseconds max_delay{16000};
  std::chrono::milliseconds max_retry_after{60000};  // cap on a server-requested wait
  double jitter = 0.2;                            // +-20 % of the exponential delay
  // Retries of a 403 marked as a permission possibly still propagating (0 = none). The waits
  // are the backoff one step further on (2, 4, 8 s with the defaults), so a grant made moments
  // ago gets about 14 s; a real denial costs the same before it is reported.
  int propagation_retries = 3;
};

// Delay from Retry-After (delta-seconds or HTTP-date), retry-after-ms or x-ms-retry-after-ms,
// in that order of precedence: the millisecond headers first, as azure-core does.
std::optional<std::chrono::milliseconds> parse_retry_after(const HttpResponse& r,
                                                           std::chrono::system_clock::time_point now);
std::optional<std::chrono::milliseconds> parse_retry_after_value(std::string_view header_name,
                                                                 std::string_view value,
                                                                 std::chrono::system_clock::time_point now);

// Backoff before retry number `retry` (0 = first retry): min(max_delay, base*2^retry) scaled by a
// factor in [1-jitter, 1+jitter] from `random01` in [0,1), capped again at max_delay.
std::chrono::milliseconds backoff_delay(const RetryPolicy& p, int retry, double random01);

// Whether the answer is a 403 that Azure marks as possibly a grant still propagating.
bool permission_propagating(const HttpResponse& r);

enum class Repeat { safe, check_first };

enum class Outcome { done, retry_not_applied, retry_maybe_applied };
Outcome classify(const Result<HttpResponse, Error>& r);

struct RetryContext {
  RetryPolicy policy;
  Sleeper sleep = default_sleeper();
  SystemClock now = default_system_clock();
};

using Attempt = std::function<Result<HttpResponse, Error>()>;
// nullopt = the earlier attempt did not take effect, send again.
using AlreadyApplied = std::function<Result<std::optional<HttpResponse>, Error>()>;

// Runs `attempt` until it is done or the retries are used up. The last answer is returned as
// is (a 429 stays a 429 response; the caller maps it to an Error); a transport failure comes
// back as an Error with `attempts` set.
Result<HttpResponse, Error> run_with_retries(const RetryContext& ctx, std::string_view operation, Repeat repeat,
                                             const Attempt& attempt, const AlreadyApplied& already_applied = {},
                                             int* attempts_out = nullptr);

}  // namespace cdcp11::azure
