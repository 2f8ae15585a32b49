#include "azure/limiter.h"

#include <algorithm>
#include <cmath>

namespace cdcp11::azure {

int published_limit(LimitBucket b) {
  switch (b) {
    case LimitBucket::create_hsm: return 10;
    case LimitBucket::create_sw: return 20;
    case LimitBucket::other_hsm: return 2000;
    case LimitBucket::other_sw: return 4000;
    case LimitBucket::vault: return 4000;
  }
  return 10;
}

int rsa_weight(int bits) {
  if (bits > 3072) return 8;
  if (bits > 2048) return 4;
  return 1;
}

RateLimiter::RateLimiter(LimiterConfig cfg, SteadyClock clock, Sleeper sleep)
    : cfg_(cfg), clock_(std::move(clock)), sleep_(std::move(sleep)) {}

int RateLimiter::capacity(LimitBucket b) const {
  return std::max(1, static_cast<int>(std::floor(published_limit(b) * cfg_.fraction)));
}

void RateLimiter::expire(std::deque<Spend>& q, std::chrono::steady_clock::time_point now) {
  while (!q.empty() && q.front().at + cfg_.window <= now) q.pop_front();
}

std::chrono::milliseconds RateLimiter::try_acquire(const std::string& vault, LimitBucket b, int units) {
  using std::chrono::milliseconds;
  if (!cfg_.enabled) return milliseconds(0);
  const int cap = capacity(b);
  units = std::clamp(units, 1, cap);  // a single request larger than the window still has to go
  auto now = clock_();
  std::lock_guard lk(mu_);
  auto& q = windows_[{to_lower(vault), static_cast<int>(b)}];
  expire(q, now);
  int used = 0;
  for (const auto& s : q) used += s.units;
  if (used + units <= cap) {
    q.push_back({now, units});
    return milliseconds(0);
  }
  // Room appears once enough of the oldest spends have left the window.
  int need = used + units - cap;
  for (const auto& s : q) {
    need -= s.units;
    if (need <= 0) {
      auto wait = std::chrono::ceil<milliseconds>(s.at + cfg_.window - now);
      return std::max(wait, milliseconds(1));
    }
  }
  return cfg_.window;
}

std::chrono::milliseconds RateLimiter::acquire(const std::string& vault, LimitBucket b, int units) {
  std::chrono::milliseconds total{0};
  for (;;) {
    auto w = try_acquire(vault, b, units);
    if (w.count() == 0) return total;
    sleep_(w);
    total += w;
  }
}

void RateLimiter::refund(const std::string& vault, LimitBucket b, int units) {
  if (!cfg_.enabled) return;
  units = std::clamp(units, 1, capacity(b));
  std::lock_guard lk(mu_);
  auto& q = windows_[{to_lower(vault), static_cast<int>(b)}];
  // Drop the newest matching spend: that is the request that was just rejected.
  for (auto it = q.rbegin(); it != q.rend(); ++it) {
    if (it->units == units) {
      q.erase(std::next(it).base());
      return;
    }
  }
}

int RateLimiter::in_window(const std::string& vault, LimitBucket b) {
  std::lock_guard lk(mu_);
  auto& q = windows_[{to_lower(vault), static_cast<int>(b)}];
  expire(q, clock_());
  int used = 0;
  for (const auto& s : q) used += s.units;
  return used;
}

}  // namespace cdcp11::azure
