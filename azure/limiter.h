// Client-side per-vault rate limiter that keeps a busy caller under Azure's published
// per-vault limits (reference §9: transactions per 10 s per vault) instead of running into
// 429s. Sliding 10-second window per (vault, bucket); weighted RSA operations (RSA-3072 costs
// 4, RSA-4096 costs 8 RSA-2048 units). Requests that come back 429 are refunded, as Azure does
// not count them either.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <string>

#include "azure/util.h"

namespace cdcp11::azure {

enum class LimitBucket { create_hsm, create_sw, other_hsm, other_sw, vault };

struct LimiterConfig {
  bool enabled = true;
  double fraction = 0.9;  // stay this far below the published limits
  // Azure's windows are 10 s, counted from when requests arrive; ours count from when they are
  // sent. Half a second more absorbs the latency between the two, so a request sent just as
  // a slot frees up does not reach the vault while the old one is still in its window.
  std::chrono::milliseconds window{10'500};
};

// Published limit per window for a bucket (current Learn table).
int published_limit(LimitBucket b);
// Cost of a key operation of this RSA size relative to RSA-2048 / EC (1, 4 or 8).
int rsa_weight(int rsa_bits);

class RateLimiter {
 public:
  explicit RateLimiter(LimiterConfig cfg = {}, SteadyClock clock = default_steady_clock(),
                       Sleeper sleep = default_sleeper());

  // Takes `units` if the window has room and returns 0; otherwise takes nothing and returns how
  // long to wait until it would have room.
  std::chrono::milliseconds try_acquire(const std::string& vault, LimitBucket b, int units = 1);
  // Waits (without holding the lock) until `units` can be taken, then takes them. Returns the
  // total time waited.
  std::chrono::milliseconds acquire(const std::string& vault, LimitBucket b, int units = 1);
  // Gives back units of a request the service rejected with 429.
  void refund(const std::string& vault, LimitBucket b, int units = 1);
  // Units currently counted in the window (for tests and diagnostics).
  int in_window(const std::string& vault, LimitBucket b);
  int capacity(LimitBucket b) const;

 private:
  struct Spend {
    std::chrono::steady_clock::time_point at;
    int units;
  };
  void expire(std::deque<Spend>& q, std::chrono::steady_clock::time_point now);

  LimiterConfig cfg_;
  SteadyClock clock_;
  Sleeper sleep_;
  std::mutex mu_;
  std::map<std::pair<std::string, int>, std::deque<Spend>> windows_;
};

}  // namespace cdcp11::azure
