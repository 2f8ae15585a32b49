// Test support for the azure/ suite: the akv-emulator as a subprocess, its admin API and log,
// captured cdcp11 log output, and throwaway certificates.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "azure/connection.h"

namespace cdcp11::azure::test {

constexpr const char* kTenant = "7e57a000-0000-4000-8000-000000000001";
constexpr const char* kSubscription = "5ab5c000-0000-4000-8000-000000000001";
constexpr const char* kSecretApp = "c1e47000-0000-4000-8000-000000000001";
constexpr const char* kSecretAppOid = "0b1ec700-0000-4000-8000-000000000001";
constexpr const char* kSecret = "demo-secret-not-real";
constexpr const char* kCertApp = "c1e47000-0000-4000-8000-000000000002";
constexpr const char* kCertAppOid = "0b1ec700-0000-4000-8000-000000000002";
constexpr const char* kReaderApp = "c1e47000-0000-4000-8000-000000000003";
constexpr const char* kReaderSecret = "demo-reader-secret-not-real";

std::string source_root();
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data, int mode = 0600);
std::string make_temp_dir(const std::string& prefix);

class Emulator {
 public:
  // Starts the emulator on port 0 with the demo config, or with the demo config after
  // `edit` replaced text in it (e.g. the token lifetime).
  static std::unique_ptr<Emulator> start(const std::vector<std::pair<std::string, std::string>>& edits = {});
  ~Emulator();

  int port() const { return port_; }
  const std::string& ca() const { return ca_; }
  const std::string& state() const { return state_; }
  std::string cert_app_pem() const { return state_ + "/demo-app-cert.pem"; }

  // HTTP settings that route every Azure host name to the emulator.
  HttpConfig http() const;
  // A connection config for the secret app and demo-premium.
  ConnectionConfig config(const std::string& vault = "demo-premium") const;
  std::shared_ptr<Connection> connect(ConnectionConfig cfg, ConnectionHooks hooks = {}) const;

  // Admin API: returns the HTTP status.
  long admin(const std::string& method, const std::string& path, const std::string& body = "") const;
  long add_fault(const std::string& rule_json) const { return admin("POST", "/_admin/faults", rule_json); }
  void clear_faults() const { admin("DELETE", "/_admin/faults"); }

  // The emulator's request log (one line per request).
  std::vector<std::string> log_lines() const;
  // Log lines after `mark` (a size returned by log_mark()).
  std::size_t log_mark() const { return log_lines().size(); }
  std::vector<std::string> log_since(std::size_t mark) const;

 private:
  Emulator() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_, state_, ca_, log_path_;
  std::shared_ptr<HttpClient> admin_http_;
};

// tests/unit/azure/connect_proxy.py as a subprocess: an HTTP CONNECT proxy that logs tunnels.
class Proxy {
 public:
  // auth "user:password": tunnels need that Proxy-Authorization (Basic), else 407.
  static std::unique_ptr<Proxy> start(bool deny_all = false, const std::string& auth = "");
  ~Proxy();
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> log_lines() const;

 private:
  Proxy() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
};

// One emulator shared by the test cases of an executable.
Emulator& shared_emulator();

// Everything cdcp11's log wrote during this process (CDCP11_LOG_FILE is set by main()).
std::string captured_log();

// A self-signed RSA-2048 certificate and its key (PEM), for assertion tests.
struct TestCert {
  std::string cert_pem, key_pem;
};
TestCert make_test_cert(const std::string& cn);
// key_pem encrypted (PKCS#8, AES-256-CBC) under passphrase.
std::string encrypt_key_pem(const std::string& key_pem, const std::string& passphrase);

// Parses the emulator log's timestamp (seconds of the day, 10 ms resolution): when the request
// was answered.
double log_time(const std::string& line);
// When the request arrived: log_time less the time it took (the line's "<n>ms"). A limiter
// spaces requests' sends, and a loaded machine may be slow to answer the first of two.
double log_arrival(const std::string& line);
// "GET demo-premium.vault.azure.net/keys/x 200" part of a log line.
std::string log_request(const std::string& line);

std::string unique_name(const std::string& prefix);

}  // namespace cdcp11::azure::test
