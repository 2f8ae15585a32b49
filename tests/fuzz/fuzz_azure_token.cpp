// Entra ID token answers. The first byte picks the path:
//   below 0xF0: a token endpoint answer (status from the byte, JSON body from the rest) served
//               over TLS by an in-process server to a real TokenProvider, so the answer goes
//               through the client's own transport and parsing (access_token, expires_in, the
//               token's claims, or an Entra error);
//   0xF0 and up: the rest as a token's claims (read_token_claims on header.claims.signature).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "azure/auth.h"
#include "azure/base64url.h"
#include "azure/cloud.h"
#include "azure/json.h"
#include "tests/fuzz/fuzz_common.h"

using namespace cdcp11;

namespace {

constexpr const char* kLoginHost = "login.microsoftonline.com";
constexpr long kStatuses[] = {200, 400, 401, 403, 429, 500, 503};

// One HTTPS server on 127.0.0.1 that answers every request with the current answer.
class Server {
 public:
  Server() {
    dir_ = fuzz::scratch_dir("token");
    make_certificate();
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      fuzz::violated("token server: cannot listen on 127.0.0.1");
    port_ = ntohs(a.sin_port);
    std::thread([this] { serve(); }).detach();
  }

  int port() const { return port_; }
  std::string ca_file() const { return dir_ + "/ca.pem"; }

  void answer(long status, std::string_view body) {
    std::string r = "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\n";
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    r += body;
    std::lock_guard lk(mu_);
    answer_ = std::move(r);
  }

 private:
  void make_certificate() {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* x = X509_new();
    if (!key || !x) fuzz::violated("token server: cannot make a key");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -86400);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 3650);
    X509_NAME* n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(kLoginHost), -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, key);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
    const std::string san = std::string("DNS:") + kLoginHost;
    for (auto [nid, value] : {std::pair{NID_subject_alt_name, san.c_str()},
                              std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
      X509_add_ext(x, ext, -1);
      X509_EXTENSION_free(ext);
    }
    if (!X509_sign(x, key, EVP_sha256())) fuzz::violated("token server: cannot sign the certificate");
    FILE* f = std::fopen(ca_file().c_str(), "w");
    if (!f || !PEM_write_X509(f, x)) fuzz::violated("token server: cannot write the certificate");
    std::fclose(f);
    ctx_ = SSL_CTX_new(TLS_server_method());
    if (!ctx_ || SSL_CTX_use_certificate(ctx_, x) != 1 || SSL_CTX_use_PrivateKey(ctx_, key) != 1)
      fuzz::violated("token server: cannot set up TLS");
    X509_free(x);
    EVP_PKEY_free(key);
  }

  void serve() {
    for (;;) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      SSL* ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, c);
      if (SSL_accept(ssl) == 1)
        while (read_request(ssl)) {
          std::string r;
          {
            std::lock_guard lk(mu_);
            r = answer_;
          }
          if (SSL_write(ssl, r.data(), static_cast<int>(r.size())) <= 0) break;
        }
      SSL_free(ssl);
      ::close(c);
    }
  }

  // Reads one request (headers, then Content-Length bytes of body); false when the client is gone.
  static bool read_request(SSL* ssl) {
    std::string in;
    char buf[4096];
    std::size_t end;
    while ((end = in.find("\r\n\r\n")) == std::string::npos) {
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n <= 0) return false;
      in.append(buf, static_cast<std::size_t>(n));
    }
    std::size_t body = 0;
    for (const char* h : {"Content-Length:", "content-length:"})
      if (auto p = in.find(h); p != std::string::npos) body = std::strtoul(in.c_str() + p + std::strlen(h), nullptr, 10);
    std::size_t have = in.size() - end - 4;
    while (have < body) {
      int n = SSL_read(ssl, buf, static_cast<int>(std::min(sizeof buf, body - have)));
      if (n <= 0) return false;
      have += static_cast<std::size_t>(n);
    }
    return true;
  }

  std::string dir_;
  SSL_CTX* ctx_ = nullptr;
  int fd_ = -1;
  int port_ = 0;
  std::mutex mu_;
  std::string answer_;
};

struct Client {
  Server server;
  std::shared_ptr<azure::HttpClient> http;
};

Client& client() {
  static Client* c = [] {
    fuzz::quiet_logs();
    auto* c = new Client;
    azure::HttpConfig hc;
    hc.ca_file = c->server.ca_file();
    hc.connect_to = {std::string(kLoginHost) + ":443:127.0.0.1:" + std::to_string(c->server.port())};
    hc.connect_timeout = std::chrono::milliseconds(5000);
    hc.total_timeout = std::chrono::milliseconds(10000);
    c->http = std::make_shared<azure::HttpClient>(hc);
    return c;
  }();
  return *c;
}

void through_the_client(long status, std::string_view body) {
  Client& c = client();
  c.server.answer(status, body);
  azure::ClientCredential cred;
  cred.tenant_id = "7e57a000-0000-4000-8000-000000000001";
  cred.client_id = "c1e47000-0000-4000-8000-000000000001";
  cred.client_secret = azure::Secret(std::string_view("fuzz-secret"));
  azure::RetryContext retry;
  retry.policy.max_retries = 0;
  retry.sleep = [](std::chrono::milliseconds) {};
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));
  azure::TokenProvider p(c.http, azure::global_cloud(), std::move(cred), retry, [now] { return now; },
                         std::make_shared<azure::TokenCache>());
  auto t = p.token("https://vault.azure.net/.default");
  // A 200 answer with an access token that lives between a second and a day is a usable token.
  azure::JsonDocument doc;
  if (status == 200 && azure::parse_json(body, doc) && doc.IsObject()) {
    const azure::JsonValue* at = azure::member(doc, "access_token");
    const azure::JsonValue* ei = azure::member(doc, "expires_in");
    if (at && at->IsString() && at->GetStringLength() > 0 && ei && ei->IsInt64() && ei->GetInt64() > 0 &&
        ei->GetInt64() <= 86400 && !t)
      fuzz::violated("a valid token answer was refused: " + t.error().to_log_string());
  }
  if (t) {
    if ((*t)->token.empty()) fuzz::violated("an empty access token was accepted");
    if ((*t)->expires_on <= (*t)->obtained) fuzz::violated("a token that is already expired was accepted");
  } else if (t.error().kind == azure::ErrorKind::internal) {
    fuzz::violated("a token answer gave an internal error: " + t.error().to_log_string());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Reader in(data, size);
  const std::uint8_t mode = in.u8();
  const std::string_view rest = in.text(in.left());
  if (mode < 0xF0) {
    through_the_client(kStatuses[mode % std::size(kStatuses)], rest);
  } else {
    const std::string jwt = "eyJhbGciOiJSUzI1NiJ9." + azure::b64url_encode(view(rest)) + ".c2ln";
    azure::AccessToken t;
    (void)azure::read_token_claims(azure::Secret(std::string_view(jwt)), t);
  }
  return 0;
}
