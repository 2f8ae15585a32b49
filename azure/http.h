// HTTPS transport on libcurl.
//
// One HttpClient is shared by every caller of a connection. It keeps a pool of easy handles,
// each with its own keep-alive connections, and hands one to a single thread at a time, so
// connections are reused across calls and threads without sharing a handle concurrently.
// DNS results and TLS sessions are shared between the handles through a share handle.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "azure/error.h"
#include "azure/secret.h"
#include "common/bytes.h"
#include "common/result.h"

namespace cdcp11::azure {

struct HttpConfig {
  std::string ca_file;              // PEM bundle to trust; empty = the system CAs
  bool verify_host = true;          // false is for experiments only and logs a warning
  std::string client_cert_file;     // mutual TLS: PEM certificate ...
  std::string client_key_file;      // ... and its PEM key (may be the same file)
  std::string proxy;                // "http://host:3128" or "https://host:443"; empty = none
  std::string proxy_user;           // proxy authentication (Basic), with ...
  Secret proxy_password;            // ... this password; never part of `proxy`
  std::string proxy_ca_file;        // CA for an https:// proxy; empty = ca_file / system
  std::string no_proxy;             // comma-separated hosts that bypass the proxy
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds total_timeout{60'000};
  // libcurl CONNECT_TO entries ("HOST:PORT:CONNECT-TO-HOST:CONNECT-TO-PORT", "::127.0.0.1:8443"):
  // keeps Azure's real host names in URLs, SNI and Host while connecting elsewhere.
  std::vector<std::string> connect_to;
  // libcurl RESOLVE entries ("HOST:PORT:ADDRESS").
  std::vector<std::string> resolve;
  std::string user_agent = "cdcp11-azure/0.1";
  std::size_t max_idle_handles = 16;
  std::size_t max_response_bytes = 32u << 20;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;  // never secrets
  SecureBytes body;
  const Secret* bearer = nullptr;  // sent as "Authorization: Bearer ..."
  const Secret* basic = nullptr;   // sent as "Authorization: Basic ..." (already encoded)
  // Use a new connection: libcurl silently re-sends a request whose reused connection died
  // before any answer byte, which is wrong for requests that are unsafe to repeat.
  bool fresh_connection = false;
  std::string client_request_id;  // x-ms-client-request-id; generated when empty
};

struct HttpResponse {
  long status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  SecureBytes body;
  std::string request_id;         // x-ms-request-id (Azure's id for support cases)
  std::string client_request_id;  // what we sent
  long new_connections = 0;       // 0 = a kept-alive connection was reused

  // First header with this (case-insensitive) name, or "".
  std::string header(std::string_view name) const;
  std::string_view text() const { return {reinterpret_cast<const char*>(body.data()), body.size()}; }
};

class HttpClient {
 public:
  explicit HttpClient(HttpConfig config);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // One HTTP exchange, no retries. A transport failure is an Error (kind dns, tls_*, proxy,
  // connect_refused, timeout, connection_dropped) with maybe_applied set when the request
  // may have reached the server.
  Result<HttpResponse, Error> perform(const HttpRequest& request, std::string_view operation);

  const HttpConfig& config() const { return config_; }

 private:
  struct Impl;
  HttpConfig config_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cdcp11::azure
