#include "core/azure_link.h"

namespace cdcp11::core {

std::string vault_url(const AzureConfig& a) {
  if (a.vault_name.empty()) return {};
  const std::string& suffix = a.vault_type == VaultType::managed_hsm ? a.cloud.mhsm_suffix : a.cloud.vault_suffix;
  return "https://" + a.vault_name + suffix;
}

namespace {

// ".vault.azure.net" -> "https://vault.azure.net" (the resource a token is asked for).
std::string resource_of(const std::string& suffix) {
  return "https://" + (suffix.size() > 1 && suffix[0] == '.' ? suffix.substr(1) : suffix);
}

}  // namespace

Result<std::shared_ptr<azure::Connection>, std::string> open_azure(const GroupConfig& g) {
  const std::string who = "group '" + g.name + "'";
  if (!g.azure) return fail(who + " has no Azure connection configured" + (g.azure_error.empty() ? "" : ": " + g.azure_error));
  const AzureConfig& a = *g.azure;
  azure::ConnectionConfig c;
  if (a.cloud.name == "custom") {
    c.cloud = "custom";
    c.custom_cloud.name = "custom";
    c.custom_cloud.authority_host = a.cloud.authority_host;
    c.custom_cloud.arm_endpoint = a.cloud.arm_endpoint;
    c.custom_cloud.arm_scope = a.cloud.arm_endpoint + "/.default";
    c.custom_cloud.vault_suffix = a.cloud.vault_suffix;
    c.custom_cloud.mhsm_suffix = a.cloud.mhsm_suffix;
    c.custom_cloud.vault_resource = resource_of(a.cloud.vault_suffix);
    c.custom_cloud.mhsm_resource = resource_of(a.cloud.mhsm_suffix);
  } else {
    c.cloud = a.cloud.name;
  }
  c.tenant_id = a.tenant_id;
  c.client_id = a.client_id;
  c.subscription_id = a.subscription_id;
  c.vault_url = vault_url(a);
  if (a.credential.kind == CredentialConfig::Kind::secret) {
    auto s = a.credential.secret_file.empty() ? azure::load_secret_env(a.credential.secret_env)
                                              : azure::load_secret_file(a.credential.secret_file);
    if (!s) return fail(who + ": " + s.error().describe());
    c.client_secret = std::move(*s);
  } else {
    c.client_certificate_file = a.credential.certificate_file;
    c.client_key_file = a.credential.key_file;
  }
  c.http.ca_file = a.tls.ca_file;
  c.http.verify_host = a.tls.validate_host;
  c.http.client_cert_file = a.tls.client_cert_file;
  c.http.client_key_file = a.tls.client_key_file;
  c.http.proxy = a.tls.proxy;
  c.http.proxy_user = a.tls.proxy_user;
  if (!a.tls.proxy_password_file.empty() || !a.tls.proxy_password_env.empty()) {
    auto pw = a.tls.proxy_password_file.empty() ? azure::load_secret_env(a.tls.proxy_password_env, "proxy password")
                                                : azure::load_secret_file(a.tls.proxy_password_file, "proxy password");
    if (!pw) return fail(who + ": " + pw.error().describe());
    c.http.proxy_password = std::move(*pw);
  }
  c.http.connect_to = a.tls.connect_to;
  c.http.connect_timeout = std::chrono::seconds(a.tls.connect_timeout_s);
  c.http.total_timeout = std::chrono::seconds(a.tls.total_timeout_s);
  auto conn = azure::Connection::open(std::move(c));
  if (!conn) return fail(who + ": " + conn.error().describe());
  return std::move(*conn);
}

}  // namespace cdcp11::core
