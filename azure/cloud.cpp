#include "azure/cloud.h"

#include "azure/util.h"

namespace cdcp11::azure {

std::string Cloud::token_url(std::string_view tenant) const {
  return "https://" + authority_host + "/" + std::string(tenant) + "/oauth2/v2.0/token";
}
std::string Cloud::vault_url(std::string_view n) const { return "https://" + std::string(n) + vault_suffix; }
std::string Cloud::mhsm_url(std::string_view n) const { return "https://" + std::string(n) + mhsm_suffix; }
bool Cloud::is_vault_host(std::string_view host) const {
  return host.size() > vault_suffix.size() && ends_with_icase(host, vault_suffix);
}
bool Cloud::is_mhsm_host(std::string_view host) const {
  return host.size() > mhsm_suffix.size() && ends_with_icase(host, mhsm_suffix);
}

Cloud global_cloud() {
  return {"AzureCloud",           "login.microsoftonline.com",  "https://management.azure.com",
          "https://management.azure.com/.default", ".vault.azure.net", ".managedhsm.azure.net",
          "https://vault.azure.net", "https://managedhsm.azure.net"};
}

Cloud usgov_cloud() {
  return {"AzureUSGovernment", "login.microsoftonline.us", "https://management.usgovcloudapi.net",
          "https://management.usgovcloudapi.net/.default", ".vault.usgovcloudapi.net",
          ".managedhsm.usgovcloudapi.net", "https://vault.usgovcloudapi.net",
          "https://managedhsm.usgovcloudapi.net"};
}

Cloud china_cloud() {
  return {"AzureChinaCloud", "login.chinacloudapi.cn", "https://management.chinacloudapi.cn",
          "https://management.chinacloudapi.cn/.default", ".vault.azure.cn", ".managedhsm.azure.cn",
          "https://vault.azure.cn", "https://managedhsm.azure.cn"};
}

std::optional<Cloud> cloud_by_name(std::string_view n) {
  if (iequals(n, "global") || iequals(n, "public") || iequals(n, "AzureCloud")) return global_cloud();
  if (iequals(n, "usgov") || iequals(n, "AzureUSGovernment")) return usgov_cloud();
  if (iequals(n, "china") || iequals(n, "AzureChinaCloud")) return china_cloud();
  return std::nullopt;
}

std::optional<Cloud> cloud_for_vault_host(std::string_view host) {
  for (const Cloud& c : {global_cloud(), usgov_cloud(), china_cloud()})
    if (c.is_vault_host(host) || c.is_mhsm_host(host)) return c;
  return std::nullopt;
}

}  // namespace cdcp11::azure
