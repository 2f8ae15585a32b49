// Client-side rate limiter that keeps a busy caller under the limits Microsoft publishes,
// instead of running into 429s (or, on a Managed HSM, into its capacity).
//
// Key vaults (Learn service-limits; reference §9, §11): transactions per vault per 10 s.
// HSM key CREATE 10, software CREATE 20; key IMPORT 300 in its own bucket (shared in Azure
// with secret CREATE and certificate IMPORT, not CREATE's); other key transactions HSM 2000,
// software 4000, where an RSA-3072 operation costs 4 and an RSA-4096 one 8 RSA-2048 units (a list
// counts there too, as the emulator counts it); everything else (delete, purge, recover, backup,
// restore, rotation policy) 4000.
// Rotate makes a new version and is counted as a CREATE [I].
//
// Managed HSM (scaling-guidance.md): no 10-second windows but a capacity per HSM per second,
// measured on one partition: create 1; delete, purge, backup, restore 10 each; get 1100; the
// cryptographic operations by key type and size (RSA-2048 sign 900, EC P-256 sign 330, ...).
// Operations without a published number (import, list, update, recover, rotation policy) are
// not limited.
//
// Sliding windows per (vault, bucket). Requests that come back 429 are refunded, as Azure does
// not count them either.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <string>

#include "azure/util.h"

namespace cdcp11::azure {

// Where one request counts: its window (bucket), the published number per window, and its cost.
struct Limit {
  std::string bucket;                        // "create-hsm", "import", "mhsm sign RSA-2048", ...
  int published = 0;                         // units per window; 0 = no published limit
  std::chrono::milliseconds window{10'000};
  int units = 1;
};

enum class KeyOp { create, import, rotate, get, list, update, delete_, purge, recover, backup, restore,
                   sign, verify, encrypt, decrypt, wrap, unwrap, other };

// What the limits depend on: HSM or software, and the key's type (RSA, EC, oct), size and curve.
// Empty kty = not known yet.
struct KeyShape {
  bool hsm = false;
  std::string kty;  // without -HSM
  int bits = 0;     // RSA / oct
  std::string crv;  // EC
};

// Cost of a key operation of this RSA size relative to RSA-2048 / EC (1, 4 or 8).
int rsa_weight(int rsa_bits);
Limit vault_limit(KeyOp op, const KeyShape& key);
// With an unknown key shape, a cryptographic operation takes the op's lowest published capacity.
Limit mhsm_limit(KeyOp op, const KeyShape& key);

struct LimiterConfig {
  bool enabled = true;
  // The share of each published limit to use. All of it by default: a margin below it would cap
  // a mirror of many keys (one HSM CREATE each) under 0.9 of the rate the vault allows, and the
  // slack below already keeps requests from reaching the vault early. Another client using the
  // same vault still gets 429s, which are retried after Retry-After or a backoff.
  double fraction = 1.0;
  // Azure's windows are counted from when requests arrive; ours from when they are sent. A
  // window this much longer absorbs the latency between the two, so a request sent just as a
  // slot frees up does not reach the vault while the old one is still in its window.
  double slack = 0.05;
};

class RateLimiter {
 public:
  explicit RateLimiter(LimiterConfig cfg = {}, SteadyClock clock = default_steady_clock(),
                       Sleeper sleep = default_sleeper());

  // Takes the limit's units if its window has room and returns 0; otherwise takes nothing and
  // returns how long to wait until it would have room.
  std::chrono::milliseconds try_acquire(const std::string& vault, const Limit& l);
  // Waits (without holding the lock) until the units can be taken, then takes them. Returns the
  // total time waited.
  std::chrono::milliseconds acquire(const std::string& vault, const Limit& l);
  // Gives back the units of a request the service rejected with 429.
  void refund(const std::string& vault, const Limit& l);
  // Units currently counted in the limit's window (for tests and diagnostics).
  int in_window(const std::string& vault, const Limit& l);
  // Units a window may hold: the published number times `fraction`, at least 1.
  int capacity(const Limit& l) const;

 private:
  struct Spend {
    std::chrono::steady_clock::time_point at;
    int units;
  };
  std::chrono::milliseconds window(const Limit& l) const;
  std::deque<Spend>& queue(const std::string& vault, const Limit& l);
  static void expire(std::deque<Spend>& q, std::chrono::steady_clock::time_point now, std::chrono::milliseconds w);

  LimiterConfig cfg_;
  SteadyClock clock_;
  Sleeper sleep_;
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::deque<Spend>> windows_;
};

}  // namespace cdcp11::azure
