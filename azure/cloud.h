// Azure clouds: where to log in, where ARM lives, vault DNS suffixes and token scopes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cdcp11::azure {

struct Cloud {
  std::string name;             // "AzureCloud", "AzureUSGovernment", "AzureChinaCloud", "custom"
  std::string authority_host;   // "login.microsoftonline.com"
  std::string arm_endpoint;     // "https://management.azure.com" (no trailing slash)
  std::string arm_scope;        // "https://management.azure.com/.default"
  std::string vault_suffix;     // ".vault.azure.net"
  std::string mhsm_suffix;      // ".managedhsm.azure.net"
  std::string vault_resource;   // "https://vault.azure.net"
  std::string mhsm_resource;    // "https://managedhsm.azure.net"

  std::string vault_scope() const { return vault_resource + "/.default"; }
  std::string mhsm_scope() const { return mhsm_resource + "/.default"; }
  std::string token_url(std::string_view tenant) const;
  std::string vault_url(std::string_view vault_name) const;  // https://{name}{vault_suffix}
  std::string mhsm_url(std::string_view hsm_name) const;
  // Whether the host is a vault or managed HSM of this cloud.
  bool is_vault_host(std::string_view host) const;
  bool is_mhsm_host(std::string_view host) const;
};

Cloud global_cloud();
Cloud usgov_cloud();
Cloud china_cloud();
// "global"/"AzureCloud"/"public", "usgov"/"AzureUSGovernment", "china"/"AzureChinaCloud".
std::optional<Cloud> cloud_by_name(std::string_view name);
// Cloud for a vault host (by DNS suffix), among the three known clouds.
std::optional<Cloud> cloud_for_vault_host(std::string_view host);

}  // namespace cdcp11::azure
