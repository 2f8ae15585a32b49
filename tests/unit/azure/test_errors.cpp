// Every Not-Connected reason produced for real against the emulator, with the exact sentence a
// person sees; and a final check that no secret, token or private key reached any log line or
// error string.
#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <curl/curl.h>
#include <sched.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "azure/base64url.h"
#include "azure/connection.h"
#include "support.h"

using namespace cdcp11;
using namespace cdcp11::azure;
using namespace cdcp11::azure::test;

namespace {

constexpr const char* kWrongSecret = "wrong-secret-value-7c1d9e";
constexpr const char* kProxyPassword = "pr0xy-pass-1618";

// Every error string the tests saw, for the leak check at the end.
std::vector<std::string>& seen() {
  static std::vector<std::string> v;
  return v;
}

std::string sentence(const Error& e) {
  seen().push_back(e.describe());
  seen().push_back(e.to_log_string());
  return e.describe();
}

ConnectionConfig fast(ConnectionConfig c) {
  c.retry.max_retries = 2;
  c.retry.base_delay = std::chrono::milliseconds(10);
  c.retry.max_delay = std::chrono::milliseconds(20);
  return c;
}

std::string not_connected(const ConnectionConfig& c, ConnectionHooks hooks = {}) {
  auto conn = shared_emulator().connect(fast(c), std::move(hooks));
  auto r = conn->check();
  REQUIRE_FALSE(r.ok());
  return sentence(r.error());
}

std::string port() { return std::to_string(shared_emulator().port()); }

}  // namespace

TEST_CASE("bad client secret (AADSTS7000215)") {
  ConnectionConfig c = shared_emulator().config();
  c.client_secret = Secret(std::string_view(kWrongSecret));
  CHECK(not_connected(c) == "Entra ID rejected the client secret of application c1e47000-0000-4000-8000-000000000001 "
                            "(AADSTS7000215): configure the secret's value (not its ID) and check that it has not expired.");
}

TEST_CASE("unknown application (AADSTS700016)") {
  ConnectionConfig c = shared_emulator().config();
  c.client_id = "c1e47000-0000-4000-8000-0000000000ff";
  CHECK(not_connected(c) == "Entra ID does not know application c1e47000-0000-4000-8000-0000000000ff in this tenant "
                            "(AADSTS700016): check the client ID and the tenant ID.");
}

TEST_CASE("unknown tenant (AADSTS90002), and a vault of another tenant") {
  ConnectionConfig c = shared_emulator().config();
  c.tenant_id = "nosuch-tenant.onmicrosoft.com";
  CHECK(not_connected(c) == "Entra ID does not know tenant nosuch-tenant.onmicrosoft.com (AADSTS90002): check the "
                            "tenant ID and that the right cloud is configured.");
  c.tenant_id = "7e57a000-0000-4000-8000-0000000000ff";
  CHECK(not_connected(c) == "Vault demo-premium.vault.azure.net belongs to tenant 7e57a000-0000-4000-8000-000000000001, "
                            "but the connection is configured for tenant 7e57a000-0000-4000-8000-0000000000ff: configure "
                            "the vault's tenant.");
  auto arm = shared_emulator().connect(fast(c))->arm().list_vaults();
  REQUIRE_FALSE(arm);
  CHECK(sentence(arm.error()) == "Entra ID does not know tenant 7e57a000-0000-4000-8000-0000000000ff (AADSTS90002): "
                                 "check the tenant ID and that the right cloud is configured.");
}

TEST_CASE("certificate not registered (AADSTS700027) and assertion outside its time (AADSTS700024)") {
  Emulator& emu = shared_emulator();
  std::string dir = make_temp_dir("cdcp11-azure-cert-");
  TestCert tc = make_test_cert("not-registered");
  write_file(dir + "/other.pem", tc.cert_pem + tc.key_pem, 0600);
  ConnectionConfig c = emu.config();
  c.client_id = kCertApp;
  c.client_secret = Secret();
  c.client_certificate_file = dir + "/other.pem";
  CHECK(not_connected(c) == "Entra ID rejected the certificate credential of application "
                            "c1e47000-0000-4000-8000-000000000002 (AADSTS700027): register this certificate on the "
                            "application, or configure the one that is.");
  c.client_certificate_file = emu.cert_app_pem();
  ConnectionHooks skewed;
  skewed.now = [] { return std::chrono::system_clock::now() - std::chrono::hours(2); };
  CHECK(not_connected(c, skewed) == "Entra ID rejected the certificate assertion as outside its validity period "
                                    "(AADSTS700024): check this machine's clock.");
  // A key file others may read is refused before anything is sent.
  write_file(dir + "/loose.pem", tc.cert_pem + tc.key_pem, 0644);
  c.client_certificate_file = dir + "/loose.pem";
  auto open = Connection::open(c);
  REQUIRE_FALSE(open);
  CHECK(sentence(open.error()) == "The client certificate file " + dir + "/loose.pem may be read by its group and by "
                                  "others; refusing to use it: run chmod 600 " + dir + "/loose.pem.");
  CHECK(std::system(("rm -rf '" + dir + "'").c_str()) == 0);
}

TEST_CASE("TLS: CA not trusted, and host name validation failure") {
  ConnectionConfig c = shared_emulator().config();
  c.http.ca_file = "/etc/ssl/certs/ca-certificates.crt";  // the system CAs do not know the emulator's CA
  CHECK(not_connected(c) == "The TLS certificate of demo-premium.vault.azure.net is not trusted (unable to get "
                            "local issuer certificate): configure the CA file that issued it, or check for a "
                            "TLS-intercepting proxy.");
  // A name the server certificate does not cover (not in its SANs), mapped to the emulator.
  c = shared_emulator().config();
  c.vault_url = "https://demo-premium.vault.example.org";
  CHECK(not_connected(c) == "The TLS certificate presented for demo-premium.vault.example.org does not match that host "
                            "name: check the host name, any connect-to mapping and the proxy.");
  // Switching validation off is possible (and logged), and then the same name connects.
  c.http.verify_host = false;
  c.verify_challenge_resource = false;
  auto conn = shared_emulator().connect(fast(c));
  auto r = conn->vault().check_access();
  // The emulator routes by Host, so it answers "no such vault" for the unknown name, but TLS passed.
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == ErrorKind::vault_not_found);
  CHECK(captured_log().find("TLS host name validation is switched off by configuration") != std::string::npos);
}

TEST_CASE("vault does not exist: DNS failure, 404, and not in ARM") {
  Emulator& emu = shared_emulator();
  ConnectionConfig c = emu.config();
  c.vault_url = "https://nosuchvault-cdcp11.vault.azure.net";
  // Only the login host goes to the emulator; the vault name goes to real DNS and fails there.
  c.http.connect_to = {"login.microsoftonline.com:443:127.0.0.1:" + port()};
  CHECK(not_connected(c) == "Key vault nosuchvault-cdcp11.vault.azure.net does not exist (the DNS lookup of "
                            "nosuchvault-cdcp11.vault.azure.net failed): check the vault name and the cloud.");
  c = emu.config();
  c.vault_url = "https://nosuchvault-cdcp11.vault.azure.net";
  CHECK(not_connected(c) == "Key vault nosuchvault-cdcp11.vault.azure.net does not exist (no vault answers at this "
                            "name: HTTP 404 to an unauthenticated request): check the vault name and the cloud.");
  auto arm = emu.connect(emu.config())->arm().find_vault("nosuchvault-cdcp11");
  REQUIRE_FALSE(arm);
  CHECK(sentence(arm.error()) == "Key vault nosuchvault-cdcp11 does not exist (ARM lists no vault or managed HSM named "
                                 "nosuchvault-cdcp11 in the subscription): check the vault name and the cloud.");
  auto sub = emu.connect(emu.config())->arm().list_vaults("5ab5c000-0000-4000-8000-0000000000ff");
  REQUIRE_FALSE(sub);
  CHECK(sentence(sub.error()) == "Subscription 5ab5c000-0000-4000-8000-0000000000ff was not found: check the "
                                 "subscription ID and tenant.");
  // A login host that does not resolve.
  c = emu.config();
  c.cloud = "custom";
  c.custom_cloud = global_cloud();
  c.custom_cloud.authority_host = "login.cdcp11-nowhere.invalid";
  c.http.connect_to = {"demo-premium.vault.azure.net:443:127.0.0.1:" + port()};
  c.verify_challenge_resource = true;
  CHECK(not_connected(c) == "The host name login.cdcp11-nowhere.invalid could not be resolved: check the name and "
                            "this machine's DNS settings.");
}

TEST_CASE("missing permission with the reader app: access policy and RBAC") {
  Emulator& emu = shared_emulator();
  ConnectionConfig c = emu.config("demo-protected");
  c.client_id = kReaderApp;
  c.client_secret = Secret(std::string_view(kReaderSecret));
  CHECK(not_connected(c) == "The application is missing the 'list' permission on demo-protected.vault.azure.net: add "
                            "it to the vault's access policy for this application.");
  c.vault_url = "https://demo-premium.vault.azure.net";
  auto conn = emu.connect(fast(c));
  CHECK(conn->check());  // get + list are granted
  auto k = conn->vault().create_key("reader-create", {"RSA", 2048, {}, "", {}, {}, {}});
  REQUIRE_FALSE(k);
  CHECK(sentence(k.error()) == "The application is missing the 'create' permission on demo-premium.vault.azure.net: "
                               "add it to the vault's access policy for this application.");
  CHECK(k.error().http_status == 403);
  CHECK(k.error().code == "Forbidden");
  CHECK(k.error().inner_code == "AccessDenied");
  CHECK(k.error().request_id.size() == 36);
  auto rb = conn->vault("https://demo-rbac.vault.azure.net").create_key("reader-create", {"RSA", 2048, {}, "", {}, {}, {}});
  REQUIRE_FALSE(rb);
  CHECK(sentence(rb.error()) == "The application is not allowed to create key reader-create on demo-rbac.vault.azure.net: "
                                "assign it a role with the data action 'Microsoft.KeyVault/vaults/keys/create/action' "
                                "(for example Key Vault Crypto Officer).");
}

TEST_CASE("token endpoint down, firewall, throttled") {
  Emulator& emu = shared_emulator();
  REQUIRE(emu.add_fault(R"({"match":{"service":"entra"},"action":"status","status":503})") == 201);
  std::string down = not_connected(emu.config());
  emu.clear_faults();
  CHECK(down == "The Entra ID token endpoint login.microsoftonline.com is unavailable (HTTP 503, AADSTS90033) after 3 "
                "attempts: try again later.");

  REQUIRE(emu.add_fault(R"({"match":{"service":"keyvault","host":"demo-standard.*"},"action":"status","status":403,
      "code":"Forbidden","message":"Client address is not authorized and caller is not a trusted service.\r\nClient address: 203.0.113.9"})") == 201);
  std::string fw = not_connected(emu.config("demo-standard"));
  emu.clear_faults();
  CHECK(fw == "The firewall of demo-standard.vault.azure.net rejected this machine's address (ForbiddenByFirewall): "
              "allow it in the vault's network settings.");

  REQUIRE(emu.add_fault(R"({"match":{"service":"keyvault","host":"demo-standard.*"},"action":"status","status":429})") == 201);
  std::string th = not_connected(emu.config("demo-standard"));
  emu.clear_faults();
  CHECK(th == "demo-standard.vault.azure.net kept throttling requests (HTTP 429) after 3 attempts: lower the request "
              "rate and retry later.");
}

TEST_CASE("connection refused, timeout, proxy failure") {
  Emulator& emu = shared_emulator();
  ConnectionConfig c = emu.config();
  c.http.connect_to = {"::127.0.0.1:1"};
  CHECK(not_connected(c) == "The connection to demo-premium.vault.azure.net was refused: check the host, the port and "
                            "any firewall in between.");

  c = emu.config();
  c.http.total_timeout = std::chrono::milliseconds(700);
  c.retry.max_retries = 0;
  REQUIRE(emu.add_fault(R"({"match":{"service":"keyvault"},"action":"latency","delayMs":2000,"count":1})") == 201);
  auto conn = emu.connect(c);
  auto r = conn->check();
  emu.clear_faults();
  REQUIRE_FALSE(r);
  CHECK(sentence(r.error()) == "The request to demo-premium.vault.azure.net timed out: check network connectivity, or "
                               "raise the timeout.");

  c = emu.config();
  c.http.proxy = "http://127.0.0.1:1";
  CHECK(not_connected(c) == "The proxy http://127.0.0.1:1 failed (no connection to it could be made): check the proxy "
                            "setting and that the proxy is reachable.");
  {
    auto deny = Proxy::start(true);
    c.http.proxy = deny->url();
    CHECK(not_connected(c) == "The proxy " + deny->url() + " failed (the proxy answered HTTP 403 to CONNECT): check "
                              "the proxy setting and that the proxy is reachable.");
  }
  c.http.proxy = "http://proxy.cdcp11-nowhere.invalid:3128";
  CHECK(not_connected(c) == "The proxy http://proxy.cdcp11-nowhere.invalid:3128 failed (its host name does not "
                            "resolve): check the proxy setting and that the proxy is reachable.");
}

TEST_CASE("through an HTTP CONNECT proxy, and a client certificate that cannot be loaded") {
  Emulator& emu = shared_emulator();
  auto proxy = Proxy::start();
  ConnectionConfig c = emu.config();
  c.http.proxy = proxy->url();
  auto conn = emu.connect(c);
  auto r = conn->check();
  REQUIRE_MESSAGE(r, r.error().describe());
  // Every tunnel went through the proxy (connect-to still picks the emulator as the target).
  auto tunnels = proxy->log_lines();
  REQUIRE(tunnels.size() >= 2);
  for (auto& t : tunnels) CHECK(t == "CONNECT 127.0.0.1:" + port() + " 200");

  c = emu.config();
  c.http.client_cert_file = "/nonexistent/client.pem";
  std::string s = not_connected(c);
  CHECK(s.rfind("The TLS client certificate /nonexistent/client.pem could not be used (", 0) == 0);
}

namespace {

// OpenSSL's CApath file name for a CA certificate: <subject hash>.0.
std::string capath_name(const std::string& pem) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  REQUIRE(x);
  char name[16];
  std::snprintf(name, sizeof name, "%08lx.0", X509_subject_name_hash(x));
  X509_free(x);
  return name;
}

}  // namespace

TEST_CASE("tls.ca_file replaces the system CAs instead of adding to them") {
  Emulator& emu = shared_emulator();
  const char* capath = curl_version_info(CURLVERSION_NOW)->capath;
  if (!capath) {
    MESSAGE("skipped: this libcurl has no built-in CA path");
    return;
  }
  // A system CA store that trusts the emulator: the emulator's CA under its hashed name (and as
  // the bundle), put over libcurl's built-in CA path in a private mount namespace.
  const std::string dir = make_temp_dir("cdcp11-azure-sysca-");
  const std::string ca_pem = read_file(emu.ca());
  write_file(dir + "/" + capath_name(ca_pem), ca_pem, 0644);
  write_file(dir + "/ca-certificates.crt", ca_pem, 0644);
  // ca_file: a CA that issued nothing the emulator presents.
  const std::string other_ca = dir + "-other.pem";
  write_file(other_ca, make_test_cert("unrelated CA").cert_pem, 0644);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) try {
    const uid_t uid = ::getuid();
    const gid_t gid = ::getgid();
    if (::unshare(CLONE_NEWNS) != 0) {
      if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) ::_exit(77);
      write_file("/proc/self/setgroups", "deny", 0644);
      write_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1", 0644);
      write_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1", 0644);
    }
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount(dir.c_str(), capath, nullptr, MS_BIND, nullptr) != 0)
      ::_exit(77);
    // The stand-in system store works: with no ca_file the emulator is trusted through it.
    ConnectionConfig sys = fast(emu.config());
    sys.http.ca_file.clear();
    if (!emu.connect(sys)->check()) ::_exit(78);
    ConnectionConfig own = fast(emu.config());
    own.http.ca_file = other_ca;
    auto r = emu.connect(own)->check();
    ::_exit(r ? 1 : r.error().kind == ErrorKind::tls_ca_untrusted ? 0 : 2);
  } catch (...) {
    ::_exit(77);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  std::string cmd = "rm -rf '" + dir + "' '" + other_ca + "'";
  CHECK(std::system(cmd.c_str()) == 0);
  REQUIRE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) {
    MESSAGE("skipped: no private mount namespace here (needs root or user namespaces)");
    return;
  }
  CHECK_MESSAGE(WEXITSTATUS(status) != 78, "the stand-in system CA store was not used by libcurl");
  CHECK_MESSAGE(WEXITSTATUS(status) != 1, "with tls.ca_file set, a server trusted only by the system CAs was accepted");
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("proxy credentials: sent to the proxy, never shown in an error or a log line") {
  Emulator& emu = shared_emulator();
  auto proxy = Proxy::start(false, std::string("alice:") + kProxyPassword);
  ConnectionConfig c = emu.config();
  c.http.proxy = proxy->url();
  c.http.proxy_user = "alice";
  c.http.proxy_password = Secret(std::string_view(kProxyPassword));
  auto conn = emu.connect(c);
  auto r = conn->check();
  REQUIRE_MESSAGE(r, sentence(r.error()));
  auto tunnels = proxy->log_lines();
  REQUIRE_FALSE(tunnels.empty());
  for (auto& t : tunnels) CHECK(t == "CONNECT 127.0.0.1:" + port() + " 200");

  c.http.proxy_password = Secret(std::string_view("not-the-proxy-password"));
  CHECK(not_connected(c) == "The proxy " + proxy->url() + " failed (the proxy answered HTTP 407 to CONNECT): check "
                            "the proxy setting and that the proxy is reachable.");

  // Credentials written into the proxy URL (the configuration refuses them; the API redacts them).
  c = emu.config();
  c.http.proxy = std::string("http://alice:") + kProxyPassword + "@127.0.0.1:1";
  CHECK(not_connected(c) == "The proxy http://***@127.0.0.1:1 failed (no connection to it could be made): check the "
                            "proxy setting and that the proxy is reachable.");
  c.http.proxy = std::string("http://alice:") + kProxyPassword + "@proxy.cdcp11-nowhere.invalid:3128";
  CHECK(not_connected(c) == "The proxy http://***@proxy.cdcp11-nowhere.invalid:3128 failed (its host name does not "
                            "resolve): check the proxy setting and that the proxy is reachable.");
}

TEST_CASE("an encrypted client key never makes OpenSSL prompt on the terminal") {
  Emulator& emu = shared_emulator();
  const std::string dir = make_temp_dir("cdcp11-azure-tty-");
  auto tc = make_test_cert("tty-test");
  const std::string encrypted = encrypt_key_pem(tc.key_pem, "tty-passphrase-577");
  write_file(dir + "/client.pem", tc.cert_pem, 0644);
  write_file(dir + "/client.key", encrypted, 0600);
  // A pseudo-terminal as the controlling terminal of a child: what a prompt would write shows
  // up on its master side.
  int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) {
    MESSAGE("skipped: no pseudo-terminal here");
    if (master >= 0) ::close(master);
    std::string rm = "rm -rf '" + dir + "'";
    CHECK(std::system(rm.c_str()) == 0);
    return;
  }
  const std::string slave = ::ptsname(master);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) try {
    ::setsid();
    int s = ::open(slave.c_str(), O_RDWR);
    if (s < 0 || ::ioctl(s, TIOCSCTTY, 0) != 0) ::_exit(77);
    // The Entra certificate credential ...
    bool ok = !ClientCertificate::from_pem(Secret(tc.cert_pem + encrypted));
    // ... and libcurl given the key directly (past Connection::open's check).
    HttpConfig h = emu.http();
    h.client_cert_file = dir + "/client.pem";
    h.client_key_file = dir + "/client.key";
    HttpClient http(h);
    HttpRequest req;
    req.url = "https://demo-premium.vault.azure.net/keys?api-version=7.4";
    ok = ok && !http.perform(req, "probe");
    ::_exit(ok ? 0 : 1);
  } catch (...) {
    ::_exit(2);
  }
  std::string seen_on_tty;
  int status = 0;
  bool exited = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!exited && std::chrono::steady_clock::now() < deadline) {
    // With no slave open the master only reports a hang-up: then wait a little, not spin.
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 100) > 0 && (p.revents & POLLIN)) {
      char buf[256];
      ssize_t n = ::read(master, buf, sizeof buf);
      if (n > 0) seen_on_tty.append(buf, static_cast<std::size_t>(n));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (seen_on_tty.find("pass phrase") != std::string::npos) break;  // it prompted: it would wait forever
    exited = ::waitpid(pid, &status, WNOHANG) == pid;
  }
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  ::close(master);
  std::string cmd = "rm -rf '" + dir + "'";
  CHECK(std::system(cmd.c_str()) == 0);
  CHECK_MESSAGE(seen_on_tty.find("pass phrase") == std::string::npos, "prompted: " << seen_on_tty);
  REQUIRE(exited);
  REQUIRE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) {
    MESSAGE("skipped: no pseudo-terminal could become the controlling terminal");
    return;
  }
  CHECK(WEXITSTATUS(status) == 0);
}

// Last in this file (doctest runs a file's cases in order): everything logged or reported above
// and here must be free of secrets, tokens and private keys.
TEST_CASE("no secret, token or private key in any log line or error string") {
  Emulator& emu = shared_emulator();
  // Produce tokens and use them, with a secret and with the certificate.
  auto conn = emu.connect(emu.config());
  auto tok = conn->tokens().token("https://vault.azure.net/.default");
  REQUIRE(tok);
  REQUIRE(conn->check());
  ConnectionConfig cc = emu.config();
  cc.client_id = kCertApp;
  cc.client_secret = Secret();
  cc.client_certificate_file = emu.cert_app_pem();
  auto cconn = emu.connect(cc);
  auto ctok = cconn->tokens().token("https://vault.azure.net/.default");
  REQUIRE(ctok);
  REQUIRE(cconn->check());
  // A JWK import (private key in the body) and a decrypt (plaintext in the answer).
  EVP_PKEY* ec = EVP_EC_gen("P-256");
  BIGNUM* d = nullptr;
  EVP_PKEY_get_bn_param(ec, OSSL_PKEY_PARAM_PRIV_KEY, &d);
  SecureBytes dbytes(32);
  BN_bn2binpad(d, dbytes.data(), 32);
  BIGNUM *x = nullptr, *y = nullptr;
  EVP_PKEY_get_bn_param(ec, OSSL_PKEY_PARAM_EC_PUB_X, &x);
  EVP_PKEY_get_bn_param(ec, OSSL_PKEY_PARAM_EC_PUB_Y, &y);
  PrivateJwk j;
  j.kty = "EC";
  j.crv = "P-256";
  j.x.resize(32);
  j.y.resize(32);
  BN_bn2binpad(x, j.x.data(), 32);
  BN_bn2binpad(y, j.y.data(), 32);
  j.d = dbytes;
  ImportKeyOptions io;
  io.jwk = j;
  io.key_ops = {"sign"};
  REQUIRE(conn->vault().import_key(unique_name("leak"), io));
  // A failed import too: errors must not echo the body.
  auto bad = conn->vault("https://demo-mhsm.managedhsm.azure.net").import_key("bad name!", io);
  REQUIRE_FALSE(bad);
  sentence(bad.error());
  const std::string d_b64 = b64url_encode(dbytes);
  BN_free(d);
  BN_free(x);
  BN_free(y);
  EVP_PKEY_free(ec);

  std::vector<std::string> needles = {kSecret, kReaderSecret, kWrongSecret, kProxyPassword, std::string((*tok)->token.view()),
                                      std::string((*ctok)->token.view()), d_b64, "eyJ", "client_secret=",
                                      "client_assertion="};
  // Every line of the app certificate's private key.
  std::istringstream pem(read_file(emu.cert_app_pem()));
  bool in_key = false;
  for (std::string line; std::getline(pem, line);) {
    if (line.find("PRIVATE KEY-----") != std::string::npos) {
      in_key = line.find("BEGIN") != std::string::npos;
      continue;
    }
    if (in_key && line.size() > 16) needles.push_back(line);
  }
  CHECK(needles.size() > 12);

  std::string haystack = captured_log();
  CHECK(haystack.find("obtained a token") != std::string::npos);  // the log was captured
  for (const auto& s : seen()) haystack += s + "\n";
  for (const auto& l : emu.log_lines()) haystack += l + "\n";
  for (const auto& n : needles) {
    INFO("leaked: " << n.substr(0, 12) << "...");
    CHECK(haystack.find(n) == std::string::npos);
  }
}
