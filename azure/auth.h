// Entra ID client-credentials tokens (reference §5.2) with a client secret or a certificate,
// cached per authority/tenant/client/scope and refreshed before they expire.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "azure/cloud.h"
#include "azure/error.h"
#include "azure/http.h"
#include "azure/jwt.h"
#include "azure/retry.h"
#include "azure/secret.h"
#include "common/result.h"

namespace cdcp11::azure {

struct ClientCredential {
  std::string tenant_id;
  std::string client_id;
  Secret client_secret;                          // either a secret ...
  std::optional<ClientCertificate> certificate;  // ... or a certificate
};

struct AccessToken {
  Secret token;
  std::chrono::system_clock::time_point obtained;
  std::chrono::system_clock::time_point expires_on;
  // Claims read from the token (public information, used to find our access policy).
  std::string oid, tid, appid;
};

// Shared by every TokenProvider that should share tokens (same process, same identities).
class TokenCache {
 public:
  struct Entry {
    std::shared_ptr<const AccessToken> token;
    bool fetching = false;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, Entry> entries;
};

class TokenProvider {
 public:
  // Refresh this long before expiry (or at half the lifetime for tokens shorter than twice it).
  static constexpr std::chrono::seconds kRefreshMargin{300};

  TokenProvider(std::shared_ptr<HttpClient> http, Cloud cloud, ClientCredential cred, RetryContext retry = {},
                SystemClock clock = default_system_clock(), std::shared_ptr<TokenCache> cache = nullptr);

  // A valid token for `scope` (e.g. "https://vault.azure.net/.default"), from the cache when
  // it is not yet due for refresh. If a refresh fails while the cached token is still valid,
  // the cached one is returned and the failure logged.
  Result<std::shared_ptr<const AccessToken>, Error> token(std::string_view scope);
  // Drop `seen` from the cache (after a 401 with it), so the next call fetches a new one.
  void invalidate(std::string_view scope, const AccessToken& seen);

  const ClientCredential& credential() const { return cred_; }
  const Cloud& cloud() const { return cloud_; }
  int fetch_count() const { return fetches_.load(); }

 private:
  std::string cache_key(std::string_view scope) const;
  Result<std::shared_ptr<const AccessToken>, Error> fetch(std::string_view scope);
  bool due(const AccessToken& t, std::chrono::system_clock::time_point now) const;

  std::shared_ptr<HttpClient> http_;
  Cloud cloud_;
  ClientCredential cred_;
  RetryContext retry_;
  SystemClock clock_;
  std::shared_ptr<TokenCache> cache_;
  std::atomic<int> fetches_{0};
};

// The Entra error in a token endpoint answer, mapped to an ErrorKind (AADSTS codes).
Error entra_error(const HttpResponse& r, const ClientCredential& cred, std::string_view host);

// Reads oid/tid/appid/exp from a JWT's claims without verifying it.
bool read_token_claims(const Secret& jwt, AccessToken& out);

}  // namespace cdcp11::azure
