// The Key Vault / Managed HSM 401 challenge (reference §5.1):
//   WWW-Authenticate: Bearer authorization="https://login.windows.net/{tenant}", resource="https://vault.azure.net"
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cdcp11::azure {

struct Challenge {
  std::string authorization;  // authorization or authorization_uri
  std::string resource;
  std::string scope;
  std::string tenant;         // first path segment of the authorization URL

  // The scope to request: `scope` when present, else resource + "/.default".
  std::string token_scope() const;
  // Host of the resource (or scope) the token will be for, lower case.
  std::string resource_host() const;
};

// Bearer challenges only; comma- or space-separated k="v" (or k=v) pairs.
std::optional<Challenge> parse_challenge(std::string_view www_authenticate);

// The SDKs' resource verification: a token may only go to a host that ends with
// "." + the resource's host (demo.vault.azure.net for https://vault.azure.net).
bool challenge_matches_host(const Challenge& c, std::string_view request_host);

}  // namespace cdcp11::azure
