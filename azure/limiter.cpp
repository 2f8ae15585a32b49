#include "azure/limiter.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace cdcp11::azure {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds kVaultWindow{10'000};
constexpr milliseconds kMhsmWindow{1'000};

Limit vault_bucket(const char* bucket, int published, int units = 1) { return {bucket, published, kVaultWindow, units}; }

// Managed HSM capacity per second for RSA-2048 / 3072 / 4096 (scaling-guidance.md).
struct RsaRow {
  KeyOp op;
  const char* name;
  std::array<int, 3> per_size;
};
constexpr RsaRow kMhsmRsa[] = {
    {KeyOp::encrypt, "encrypt", {2800, 2700, 2300}}, {KeyOp::decrypt, "decrypt", {1100, 360, 160}},
    {KeyOp::wrap, "wrap", {2200, 1900, 1900}},       {KeyOp::unwrap, "unwrap", {1100, 360, 160}},
    {KeyOp::sign, "sign", {900, 340, 150}},          {KeyOp::verify, "verify", {3400, 3400, 3700}},
};
// EC: P-256, P-256K, P-384, P-521.
struct EcRow {
  KeyOp op;
  const char* name;
  std::array<int, 4> per_curve;
};
constexpr const char* kCurves[] = {"P-256", "P-256K", "P-384", "P-521"};
constexpr EcRow kMhsmEc[] = {
    {KeyOp::sign, "sign", {330, 330, 160, 200}},
    {KeyOp::verify, "verify", {130, 130, 82, 28}},
};
// AES: 128, 192, 256 bits (encrypt/decrypt are not in the table).
struct AesRow {
  KeyOp op;
  const char* name;
  std::array<int, 3> per_size;
};
constexpr AesRow kMhsmAes[] = {
    {KeyOp::wrap, "wrap", {2100, 2100, 2100}},
    {KeyOp::unwrap, "unwrap", {1800, 1900, 2200}},
};

Limit mhsm_bucket(std::string bucket, int published) { return {std::move(bucket), published, kMhsmWindow, 1}; }

}  // namespace

int rsa_weight(int bits) {
  if (bits > 3072) return 8;
  if (bits > 2048) return 4;
  return 1;
}

Limit vault_limit(KeyOp op, const KeyShape& key) {
  switch (op) {
    case KeyOp::create:
    case KeyOp::rotate:
      return key.hsm ? vault_bucket("create-hsm", 10) : vault_bucket("create-sw", 20);
    case KeyOp::import:
      return vault_bucket("import", 300);
    case KeyOp::get:
    case KeyOp::list:
    case KeyOp::update:
    case KeyOp::sign:
    case KeyOp::verify:
    case KeyOp::encrypt:
    case KeyOp::decrypt:
    case KeyOp::wrap:
    case KeyOp::unwrap: {
      const int units = key.kty == "RSA" ? rsa_weight(key.bits) : 1;
      return key.hsm ? vault_bucket("other-hsm", 2000, units) : vault_bucket("other-sw", 4000, units);
    }
    default:
      return vault_bucket("vault", 4000);
  }
}

Limit mhsm_limit(KeyOp op, const KeyShape& key) {
  switch (op) {
    case KeyOp::create:
    case KeyOp::rotate:
      return mhsm_bucket("create", 1);
    case KeyOp::delete_: return mhsm_bucket("delete", 10);
    case KeyOp::purge: return mhsm_bucket("purge", 10);
    case KeyOp::backup: return mhsm_bucket("backup", 10);
    case KeyOp::restore: return mhsm_bucket("restore", 10);
    case KeyOp::get: return mhsm_bucket("get", 1100);
    default: break;
  }
  // Cryptographic operations: by key type and size or curve. Without the key's shape, the
  // operation's lowest published capacity keeps us under every one of them.
  int lowest = 0;
  auto consider = [&](int v) { lowest = lowest ? std::min(lowest, v) : v; };
  for (const auto& row : kMhsmRsa) {
    if (row.op != op) continue;
    if (key.kty == "RSA") {
      const int i = key.bits <= 2048 ? 0 : key.bits <= 3072 ? 1 : 2;
      return mhsm_bucket(std::string(row.name) + " RSA-" + std::to_string(key.bits), row.per_size[i]);
    }
    for (int v : row.per_size) consider(v);
  }
  for (const auto& row : kMhsmEc) {
    if (row.op != op) continue;
    for (std::size_t i = 0; i < row.per_curve.size(); ++i)
      if (key.kty == "EC" && key.crv == kCurves[i]) return mhsm_bucket(std::string(row.name) + " " + key.crv, row.per_curve[i]);
    for (int v : row.per_curve) consider(v);
  }
  for (const auto& row : kMhsmAes) {
    if (row.op != op) continue;
    if (key.kty == "oct") {
      const int i = key.bits <= 128 ? 0 : key.bits <= 192 ? 1 : 2;
      return mhsm_bucket(std::string(row.name) + " AES-" + std::to_string(key.bits), row.per_size[i]);
    }
    for (int v : row.per_size) consider(v);
  }
  if (key.kty.empty() && lowest > 0) return mhsm_bucket("unknown key " + std::to_string(static_cast<int>(op)), lowest);
  return mhsm_bucket("unlimited", 0);
}

RateLimiter::RateLimiter(LimiterConfig cfg, SteadyClock clock, Sleeper sleep)
    : cfg_(cfg), clock_(std::move(clock)), sleep_(std::move(sleep)) {}

int RateLimiter::capacity(const Limit& l) const {
  return std::max(1, static_cast<int>(std::floor(l.published * cfg_.fraction)));
}

milliseconds RateLimiter::window(const Limit& l) const {
  return milliseconds(static_cast<long long>(std::llround(static_cast<double>(l.window.count()) * (1.0 + cfg_.slack))));
}

std::deque<RateLimiter::Spend>& RateLimiter::queue(const std::string& vault, const Limit& l) {
  return windows_[{to_lower(vault), l.bucket}];
}

void RateLimiter::expire(std::deque<Spend>& q, std::chrono::steady_clock::time_point now, milliseconds w) {
  while (!q.empty() && q.front().at + w <= now) q.pop_front();
}

milliseconds RateLimiter::try_acquire(const std::string& vault, const Limit& l) {
  if (!cfg_.enabled || l.published <= 0) return milliseconds(0);
  const int cap = capacity(l);
  const int units = std::clamp(l.units, 1, cap);  // a single request larger than the window still has to go
  const milliseconds w = window(l);
  auto now = clock_();
  std::lock_guard lk(mu_);
  auto& q = queue(vault, l);
  expire(q, now, w);
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
      auto wait = std::chrono::ceil<milliseconds>(s.at + w - now);
      return std::max(wait, milliseconds(1));
    }
  }
  return w;
}

milliseconds RateLimiter::acquire(const std::string& vault, const Limit& l) {
  milliseconds total{0};
  for (;;) {
    auto w = try_acquire(vault, l);
    if (w.count() == 0) return total;
    sleep_(w);
    total += w;
  }
}

void RateLimiter::refund(const std::string& vault, const Limit& l) {
  if (!cfg_.enabled || l.published <= 0) return;
  const int units = std::clamp(l.units, 1, capacity(l));
  std::lock_guard lk(mu_);
  auto& q = queue(vault, l);
  // Drop the newest matching spend: that is the request that was just rejected.
  for (auto it = q.rbegin(); it != q.rend(); ++it) {
    if (it->units == units) {
      q.erase(std::next(it).base());
      return;
    }
  }
}

int RateLimiter::in_window(const std::string& vault, const Limit& l) {
  std::lock_guard lk(mu_);
  auto& q = queue(vault, l);
  expire(q, clock_(), window(l));
  int used = 0;
  for (const auto& s : q) used += s.units;
  return used;
}

}  // namespace cdcp11::azure
