#include "azure/error.h"

namespace cdcp11::azure {
namespace {

std::string or_default(const std::string& s, const char* d) { return s.empty() ? std::string(d) : s; }

std::string status_part(const Error& e) {
  std::string s;
  if (e.http_status) s = "HTTP " + std::to_string(e.http_status);
  std::string code = e.inner_code.empty() ? e.code : e.inner_code;
  if (!code.empty()) s += (s.empty() ? "" : " ") + code;
  return s;
}

}  // namespace

const char* kind_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::config: return "config";
    case ErrorKind::secret_file: return "secret_file";
    case ErrorKind::certificate: return "certificate";
    case ErrorKind::invalid_response: return "invalid_response";
    case ErrorKind::internal: return "internal";
    case ErrorKind::dns: return "dns";
    case ErrorKind::connect_refused: return "connect_refused";
    case ErrorKind::timeout: return "timeout";
    case ErrorKind::tls_ca_untrusted: return "tls_ca_untrusted";
    case ErrorKind::tls_hostname: return "tls_hostname";
    case ErrorKind::tls_other: return "tls_other";
    case ErrorKind::proxy: return "proxy";
    case ErrorKind::connection_dropped: return "connection_dropped";
    case ErrorKind::bad_secret: return "bad_secret";
    case ErrorKind::unknown_client: return "unknown_client";
    case ErrorKind::unknown_tenant: return "unknown_tenant";
    case ErrorKind::assertion_rejected: return "assertion_rejected";
    case ErrorKind::assertion_expired: return "assertion_expired";
    case ErrorKind::token_endpoint_unavailable: return "token_endpoint_unavailable";
    case ErrorKind::auth_failed: return "auth_failed";
    case ErrorKind::challenge_mismatch: return "challenge_mismatch";
    case ErrorKind::unauthorized: return "unauthorized";
    case ErrorKind::vault_not_found: return "vault_not_found";
    case ErrorKind::subscription_not_found: return "subscription_not_found";
    case ErrorKind::not_found: return "not_found";
    case ErrorKind::forbidden: return "forbidden";
    case ErrorKind::firewall: return "firewall";
    case ErrorKind::purge_protected: return "purge_protected";
    case ErrorKind::forbidden_other: return "forbidden_other";
    case ErrorKind::conflict: return "conflict";
    case ErrorKind::bad_request: return "bad_request";
    case ErrorKind::throttled: return "throttled";
    case ErrorKind::server_error: return "server_error";
    case ErrorKind::http_other: return "http_other";
  }
  return "?";
}

Error make_error(ErrorKind kind, std::string operation, std::string message) {
  Error e;
  e.kind = kind;
  e.operation = std::move(operation);
  e.message = std::move(message);
  return e;
}

std::string Error::describe() const {
  const std::string op = or_default(operation, "request");
  const std::string h = or_default(host, "the server");
  switch (kind) {
    case ErrorKind::config:
    case ErrorKind::secret_file:
    case ErrorKind::certificate:
    case ErrorKind::internal:
      return message + ".";
    case ErrorKind::invalid_response:
      return "Unexpected answer from " + h + " to " + op + " (" + message +
             "): check that the endpoint configuration points at Azure.";
    case ErrorKind::dns:
      return "The host name " + h + " could not be resolved: check the name and this machine's DNS settings.";
    case ErrorKind::connect_refused:
      return "The connection to " + h + " was refused: check the host, the port and any firewall in between.";
    case ErrorKind::timeout:
      return "The request to " + h + " timed out: check network connectivity, or raise the timeout.";
    case ErrorKind::tls_ca_untrusted:
      return "The TLS certificate of " + h + " is not trusted (" + message +
             "): configure the CA file that issued it, or check for a TLS-intercepting proxy.";
    case ErrorKind::tls_hostname:
      return "The TLS certificate presented for " + h +
             " does not match that host name: check the host name, any connect-to mapping and the proxy.";
    case ErrorKind::tls_other:
      return "The TLS handshake with " + h + " failed (" + message +
             "): check the TLS settings and the client certificate.";
    case ErrorKind::proxy:
      return "The proxy " + or_default(principal, "") + " failed (" + message +
             "): check the proxy setting and that the proxy is reachable.";
    case ErrorKind::connection_dropped:
      return "The connection to " + h + " was closed before an answer to " + op +
             " arrived: check the network path, then retry.";
    case ErrorKind::bad_secret:
      return "Entra ID rejected the client secret of application " + principal +
             " (AADSTS7000215): configure the secret's value (not its ID) and check that it has not expired.";
    case ErrorKind::unknown_client:
      return "Entra ID does not know application " + principal +
             " in this tenant (AADSTS700016): check the client ID and the tenant ID.";
    case ErrorKind::unknown_tenant:
      return "Entra ID does not know tenant " + principal +
             " (AADSTS90002): check the tenant ID and that the right cloud is configured.";
    case ErrorKind::assertion_rejected:
      return "Entra ID rejected the certificate credential of application " + principal + " (AADSTS" +
             inner_code + "): register this certificate on the application, or configure the one that is.";
    case ErrorKind::assertion_expired:
      return "Entra ID rejected the certificate assertion as outside its validity period (AADSTS700024): "
             "check this machine's clock.";
    case ErrorKind::token_endpoint_unavailable:
      return "The Entra ID token endpoint " + h + " is unavailable (" +
             (http_status ? "HTTP " + std::to_string(http_status) : message) +
             (inner_code.empty() ? "" : ", AADSTS" + inner_code) + ") after " + std::to_string(attempts) +
             (attempts == 1 ? " attempt" : " attempts") + ": try again later.";
    case ErrorKind::auth_failed:
      return "Entra ID refused a token (" + status_part(*this) + ": " + message + ").";
    case ErrorKind::challenge_mismatch:
      return "The authentication challenge from " + h + " names resource " + message +
             ", which does not belong to that host: refusing to send a token there.";
    case ErrorKind::unauthorized:
      return h + " rejected the access token (" + message +
             "): check that the vault belongs to the configured tenant and cloud.";
    case ErrorKind::vault_not_found:
      return "Key vault " + h + " does not exist (" + message + "): check the vault name and the cloud.";
    case ErrorKind::subscription_not_found:
      return "Subscription " + principal + " was not found: check the subscription ID and tenant.";
    case ErrorKind::not_found:
      return "Not found: " + op + " on " + h + " (" + message + ").";
    case ErrorKind::forbidden:
      if (inner_code == "ForbiddenByRbac")
        return "The application is not allowed to " + op + " on " + h + ": assign it a role with the data action '" +
               permission + "' (for example Key Vault Crypto Officer).";
      if (code == "AuthorizationFailed")
        return "The application may not read the subscription's vaults: assign it the Reader role (action '" +
               permission + "').";
      return "The application is missing the '" + permission + "' permission on " + h +
             ": add it to the vault's access policy for this application.";
    case ErrorKind::firewall:
      return "The firewall of " + h +
             " rejected this machine's address (ForbiddenByFirewall): allow it in the vault's network settings.";
    case ErrorKind::purge_protected:
      return "Purge is not possible on " + h + " because purge protection is enabled: the key is purged "
             "automatically after the retention period; recover it or use another name.";
    case ErrorKind::forbidden_other:
      return h + " refused " + op + " (" + message + ").";
    case ErrorKind::conflict:
      return h + " refused " + op + " because of a conflict (" + message + ").";
    case ErrorKind::bad_request:
      return h + " rejected " + op + " as invalid (" + message + ").";
    case ErrorKind::throttled:
      return h + " kept throttling requests (HTTP 429) after " + std::to_string(attempts) +
             " attempts: lower the request rate and retry later.";
    case ErrorKind::server_error:
      return h + " failed with a server error (" + status_part(*this) + ") after " + std::to_string(attempts) +
             " attempts: try again later.";
    case ErrorKind::http_other:
      return h + " answered " + status_part(*this) + " to " + op + " (" + message + ").";
  }
  return message;
}

std::string Error::to_log_string() const {
  std::string s = describe();
  s += " [kind=";
  s += kind_name(kind);
  if (!operation.empty()) s += " op=\"" + operation + "\"";
  if (http_status) s += " status=" + std::to_string(http_status);
  if (!code.empty()) s += " code=" + code;
  if (!inner_code.empty()) s += " inner=" + inner_code;
  if (curl_code) s += " curl=" + std::to_string(curl_code);
  if (!message.empty()) s += " detail=\"" + message + "\"";
  if (!request_id.empty()) s += " x-ms-request-id=" + request_id;
  if (!client_request_id.empty()) s += " x-ms-client-request-id=" + client_request_id;
  if (attempts > 1) s += " attempts=" + std::to_string(attempts);
  s += "]";
  return s;
}

}  // namespace cdcp11::azure
