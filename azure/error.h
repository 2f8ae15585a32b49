// Errors as values: what went wrong talking to Entra ID, ARM or Key Vault, with everything a
// person needs to act on it (HTTP status, Azure's code and inner code, message, request ids).
// Nothing secret is ever stored here.
#pragma once

#include <string>

namespace cdcp11::azure {

enum class ErrorKind {
  // local
  config,             // bad or missing setting
  secret_file,        // secret/key file unreadable or too permissive
  certificate,        // client certificate/key could not be loaded or used
  invalid_response,   // the service answered something we cannot parse
  internal,
  // transport
  dns,                // host name did not resolve
  connect_refused,
  timeout,
  tls_ca_untrusted,   // chain does not verify against the configured/system CAs
  tls_hostname,       // certificate does not cover the host name
  tls_other,          // other handshake failure (protocol, client certificate refused, ...)
  proxy,              // the configured proxy failed
  connection_dropped, // connection closed before a complete answer
  // Entra ID
  bad_secret,                  // AADSTS7000215
  unknown_client,              // AADSTS700016
  unknown_tenant,              // AADSTS90002
  assertion_rejected,          // AADSTS700027/700023/700021: certificate not registered, bad signature
  assertion_expired,           // AADSTS700024: assertion outside its time window (clock)
  token_endpoint_unavailable,  // 5xx/429/AADSTS90033 after retries
  auth_failed,                 // any other token endpoint error
  // Key Vault / ARM
  challenge_mismatch,  // 401 challenge names a resource that does not belong to the host
  unauthorized,        // 401 with a token
  vault_not_found,     // DNS failure on a vault host, or 404 for the vault itself (ARM/emulator)
  subscription_not_found,
  not_found,           // key/deleted key not found (KeyNotFound) or other 404
  forbidden,           // 403 AccessDenied / ForbiddenByRbac / AuthorizationFailed: permission named
  firewall,            // 403 ForbiddenByFirewall
  purge_protected,     // 403 purge under purge protection
  forbidden_other,     // other 403 (disabled key, operation not permitted on key, ...)
  conflict,            // 409 (ObjectIsDeletedButRecoverable, being deleted, name in use)
  bad_request,         // 400 BadParameter etc.
  throttled,           // 429 after retries
  server_error,        // 5xx after retries
  http_other,
};

struct Error {
  ErrorKind kind = ErrorKind::internal;
  std::string operation;  // "get token", "create key k1", "list vaults", ...
  std::string host;       // host contacted (vault, login, ARM)
  int http_status = 0;    // 0 = no HTTP answer
  std::string code;       // Azure's error code (e.g. Forbidden, invalid_client)
  std::string inner_code; // innererror.code (e.g. AccessDenied) or AADSTS number
  std::string message;    // Azure's message (first line), or transport detail
  std::string request_id; // x-ms-request-id (or Entra trace id)
  std::string client_request_id;  // our x-ms-client-request-id
  std::string permission; // missing permission or RBAC data action, when known
  std::string principal;  // client id / tenant / proxy the sentence names, when relevant
  int curl_code = 0;
  long tls_verify_result = 0;
  int attempts = 1;
  bool maybe_applied = false;  // transport failed after the request was sent

  // The error as one sentence a person can act on (no ids, no secrets).
  std::string describe() const;
  // describe() plus status/codes/request ids, for logs.
  std::string to_log_string() const;
};

const char* kind_name(ErrorKind k);

// Helper to construct simple local errors.
Error make_error(ErrorKind kind, std::string operation, std::string message);

}  // namespace cdcp11::azure
