// One CDC group's link to Azure: cloud, identity, HTTP settings, retries, rate limits and the
// vault. This is what the group configuration fills in; everything else is built from it.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "azure/arm.h"
#include "azure/auth.h"
#include "azure/cloud.h"
#include "azure/error.h"
#include "azure/http.h"
#include "azure/keyvault.h"
#include "azure/limiter.h"
#include "azure/retry.h"
#include "azure/secret.h"
#include "common/result.h"

namespace cdcp11::azure {

struct ConnectionConfig {
  std::string cloud = "global";  // global | usgov | china | custom
  Cloud custom_cloud;            // explicit endpoints, used when cloud == "custom"
  std::string tenant_id;         // GUID or verified domain
  std::string client_id;         // application (client) id
  // Credential: exactly one of a client secret (load it with load_secret_file/_env) or a
  // client certificate (PEM; the key may sit in the same file, which must then be 0600).
  Secret client_secret;
  std::string client_certificate_file;
  std::string client_key_file;
  std::string vault_url;         // https://NAME.vault.azure.net or https://NAME.managedhsm.azure.net
  std::string subscription_id;   // for ARM discovery; optional
  HttpConfig http;               // CA file, mTLS, proxy, timeouts, connect-to
  RetryPolicy retry;
  LimiterConfig limiter;
  std::string api_version = "7.4";
  std::string arm_api_version = "2024-11-01";
  bool verify_challenge_resource = true;  // false logs a warning
};

// Test seams: clocks, sleeping, a shared token cache.
struct ConnectionHooks {
  SystemClock now;
  SteadyClock steady;
  Sleeper sleep;
  std::shared_ptr<TokenCache> token_cache;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // Validates the configuration and loads the certificate; makes no network call.
  static Result<std::shared_ptr<Connection>, Error> open(ConnectionConfig cfg, ConnectionHooks hooks = {});

  KeyVaultClient vault();                        // the configured vault
  KeyVaultClient vault(const std::string& url);  // another vault, same identity
  ArmClient arm();

  // Token for the vault, then one authenticated list request: empty on success, otherwise
  // the reason the group is not connected (Error::describe() is the sentence to show).
  Result<void, Error> check();

  const ConnectionConfig& config() const { return cfg_; }
  const Cloud& cloud() const { return cloud_; }
  HttpClient& http() { return *http_; }
  TokenProvider& tokens() { return *tokens_; }
  RateLimiter& limiter() { return *limiter_; }
  const RetryContext& retry() const { return retry_; }

  // The last 401 challenge seen per vault host, shared by every KeyVaultClient of this
  // connection so that only the first request to a vault makes the extra round trip.
  std::optional<Challenge> challenge(const std::string& host);
  void remember_challenge(const std::string& host, const Challenge& c);

 private:
  Connection() = default;
  ConnectionConfig cfg_;
  Cloud cloud_;
  RetryContext retry_;
  std::shared_ptr<HttpClient> http_;
  std::unique_ptr<TokenProvider> tokens_;
  std::unique_ptr<RateLimiter> limiter_;
  std::mutex mu_;
  std::map<std::string, Challenge> challenges_;
};

}  // namespace cdcp11::azure
