#include "azure/http.h"

#include <curl/curl.h>
#include <openssl/x509.h>

#include <array>
#include <cstring>
#include <mutex>

#include "azure/util.h"
#include "common/log.h"

namespace cdcp11::azure {
namespace {

constexpr const char* kLog = "azure.http";

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct EasyDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
using Easy = std::unique_ptr<CURL, EasyDeleter>;

// A curl_slist that zeroizes its strings before freeing them (they may hold a bearer token).
class SList {
 public:
  SList() = default;
  SList(const SList&) = delete;
  SList& operator=(const SList&) = delete;
  ~SList() {
    for (curl_slist* p = head_; p; p = p->next) secure_zero(p->data, std::strlen(p->data));
    curl_slist_free_all(head_);
  }
  bool append(const char* s) {
    curl_slist* n = curl_slist_append(head_, s);
    if (!n) return false;
    head_ = n;
    return true;
  }
  curl_slist* get() const { return head_; }

 private:
  curl_slist* head_ = nullptr;
};

// DNS cache and TLS sessions shared between the pooled handles.
class Share {
 public:
  Share() : sh_(curl_share_init()) {
    if (!sh_) return;
    curl_share_setopt(sh_, CURLSHOPT_LOCKFUNC, &Share::lock);
    curl_share_setopt(sh_, CURLSHOPT_UNLOCKFUNC, &Share::unlock);
    curl_share_setopt(sh_, CURLSHOPT_USERDATA, this);
    curl_share_setopt(sh_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(sh_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  }
  ~Share() {
    if (sh_) curl_share_cleanup(sh_);
  }
  Share(const Share&) = delete;
  Share& operator=(const Share&) = delete;
  CURLSH* get() const { return sh_; }

 private:
  static void lock(CURL*, curl_lock_data d, curl_lock_access, void* p) {
    static_cast<Share*>(p)->mu_[static_cast<std::size_t>(d) % kLocks].lock();
  }
  static void unlock(CURL*, curl_lock_data d, void* p) {
    static_cast<Share*>(p)->mu_[static_cast<std::size_t>(d) % kLocks].unlock();
  }
  static constexpr std::size_t kLocks = CURL_LOCK_DATA_LAST;
  CURLSH* sh_;
  std::array<std::mutex, kLocks> mu_;
};

struct Sink {
  HttpResponse* resp;
  std::size_t limit;
  bool overflow = false;
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<Sink*>(user);
  size_t len = size * n;
  if (s->resp->body.size() + len > s->limit) {
    s->overflow = true;
    return 0;
  }
  s->resp->body.insert(s->resp->body.end(), data, data + len);
  return len;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<Sink*>(user);
  size_t len = size * n;
  std::string_view line(data, len);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  // A new status line (after a proxy CONNECT or a 100 Continue) starts a new header set.
  if (line.substr(0, 5) == "HTTP/") {
    s->resp->headers.clear();
    return len;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return len;
  std::string name = to_lower(line.substr(0, colon));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  s->resp->headers.emplace_back(std::move(name), std::string(value));
  return len;
}

bool is_connect_phase(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
    case CURLE_PROXY:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

struct HttpClient::Impl {
  Share share;
  std::mutex mu;
  std::vector<Easy> idle;

  Easy acquire() {
    {
      std::lock_guard lk(mu);
      if (!idle.empty()) {
        Easy h = std::move(idle.back());
        idle.pop_back();
        return h;
      }
    }
    return Easy(curl_easy_init());
  }
  void release(Easy h, std::size_t max_idle) {
    curl_easy_reset(h.get());  // drops options, keeps the handle's live connections
    std::lock_guard lk(mu);
    if (idle.size() < max_idle) idle.push_back(std::move(h));
  }
};

HttpClient::HttpClient(HttpConfig config) : config_(std::move(config)) {
  global_init();
  impl_ = std::make_unique<Impl>();
  if (!config_.verify_host)
    log::warn(kLog, "TLS host name validation is switched off by configuration; any server with a "
                    "certificate from a trusted CA can impersonate Azure");
}

HttpClient::~HttpClient() = default;

Result<HttpResponse, Error> HttpClient::perform(const HttpRequest& req, std::string_view operation) {
  Error err;
  err.operation = std::string(operation);
  err.host = url_host(req.url);
  HttpResponse resp;
  resp.client_request_id = req.client_request_id.empty() ? new_uuid() : req.client_request_id;
  err.client_request_id = resp.client_request_id;

  Easy h = impl_->acquire();
  if (!h) {
    err.kind = ErrorKind::internal;
    err.message = "curl_easy_init failed";
    return fail(std::move(err));
  }
  CURL* c = h.get();
  char errbuf[CURL_ERROR_SIZE] = {0};
  Sink sink{&resp, config_.max_response_bytes};
  SList headers, connect_to, resolve;

  curl_easy_setopt(c, CURLOPT_SHARE, impl_->share.get());
  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_USERAGENT, config_.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config_.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(config_.total_timeout.count()));
  curl_easy_setopt(c, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, config_.verify_host ? 2L : 0L);
  // A CA file replaces the system CAs: libcurl's built-in CA directory would otherwise still be
  // trusted beside it.
  if (!config_.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, config_.ca_file.c_str());
    curl_easy_setopt(c, CURLOPT_CAPATH, nullptr);
  }
  if (!config_.client_cert_file.empty()) {
    curl_easy_setopt(c, CURLOPT_SSLCERT, config_.client_cert_file.c_str());
    curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(c, CURLOPT_SSLKEY,
                     (config_.client_key_file.empty() ? config_.client_cert_file : config_.client_key_file).c_str());
    curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
    // An (empty) passphrase keeps OpenSSL from prompting on the terminal should the key be
    // encrypted after all (Connection::open refuses encrypted keys).
    curl_easy_setopt(c, CURLOPT_KEYPASSWD, "");
  }
  if (!config_.proxy.empty()) {
    curl_easy_setopt(c, CURLOPT_PROXY, config_.proxy.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPPROXYTUNNEL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY_SSL_VERIFYHOST, config_.verify_host ? 2L : 0L);
    const std::string& pca = config_.proxy_ca_file.empty() ? config_.ca_file : config_.proxy_ca_file;
    if (!pca.empty()) {
      curl_easy_setopt(c, CURLOPT_PROXY_CAINFO, pca.c_str());
      curl_easy_setopt(c, CURLOPT_PROXY_CAPATH, nullptr);
    }
    if (!config_.no_proxy.empty()) curl_easy_setopt(c, CURLOPT_NOPROXY, config_.no_proxy.c_str());
    if (!config_.proxy_user.empty()) {
      curl_easy_setopt(c, CURLOPT_PROXYUSERNAME, config_.proxy_user.c_str());
      SecureBytes pw(config_.proxy_password.bytes());
      pw.push_back(0);
      curl_easy_setopt(c, CURLOPT_PROXYPASSWORD, reinterpret_cast<const char*>(pw.data()));  // libcurl copies it
    }
  } else {
    curl_easy_setopt(c, CURLOPT_PROXY, "");  // ignore http(s)_proxy from the environment
  }
  for (const auto& e : config_.connect_to) connect_to.append(e.c_str());
  if (connect_to.get()) curl_easy_setopt(c, CURLOPT_CONNECT_TO, connect_to.get());
  for (const auto& e : config_.resolve) resolve.append(e.c_str());
  if (resolve.get()) curl_easy_setopt(c, CURLOPT_RESOLVE, resolve.get());
  if (req.fresh_connection) curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);

  for (const auto& [k, v] : req.headers) headers.append((k + ": " + v).c_str());
  headers.append(("x-ms-client-request-id: " + resp.client_request_id).c_str());
  headers.append("Expect:");  // no 100-continue round trip for bodies
  if (req.bearer || req.basic) {
    const Secret* s = req.bearer ? req.bearer : req.basic;
    SecureBytes line;
    append(line, req.bearer ? "Authorization: Bearer " : "Authorization: Basic ");
    line.insert(line.end(), s->bytes().begin(), s->bytes().end());
    line.push_back(0);
    headers.append(reinterpret_cast<const char*>(line.data()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  if (req.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    if (req.method != "DELETE" || !req.body.empty()) {
      // Never a null pointer: libcurl would then read the body from stdin.
      static const char kEmpty[] = "";
      curl_easy_setopt(c, CURLOPT_POSTFIELDS,
                       req.body.empty() ? kEmpty : reinterpret_cast<const char*>(req.body.data()));
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    }
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &sink);

  CURLcode rc = curl_easy_perform(c);
  long connects = 0;
  curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
  resp.new_connections = connects;

  if (rc != CURLE_OK) {
    long verify = 0, request_size = 0, connect_code = 0;
    double connect_time = 0;
    curl_easy_getinfo(c, CURLINFO_SSL_VERIFYRESULT, &verify);
    curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &request_size);
    curl_easy_getinfo(c, CURLINFO_HTTP_CONNECTCODE, &connect_code);
    curl_easy_getinfo(c, CURLINFO_CONNECT_TIME, &connect_time);
    impl_->release(std::move(h), config_.max_idle_handles);
    err.curl_code = rc;
    err.tls_verify_result = verify;
    err.message = redact_url_credentials(errbuf[0] ? errbuf : curl_easy_strerror(rc));
    err.maybe_applied = !is_connect_phase(rc) && request_size > 0;
    const bool via_proxy = !config_.proxy.empty();
    switch (rc) {
      case CURLE_COULDNT_RESOLVE_HOST: err.kind = ErrorKind::dns; break;
      case CURLE_COULDNT_RESOLVE_PROXY:
        err.kind = ErrorKind::proxy;
        err.message = "its host name does not resolve";
        break;
      case CURLE_PROXY: err.kind = ErrorKind::proxy; break;
      case CURLE_COULDNT_CONNECT:
        err.kind = via_proxy ? ErrorKind::proxy : ErrorKind::connect_refused;
        if (via_proxy) err.message = "no connection to it could be made";
        break;
      case CURLE_OPERATION_TIMEDOUT:
        err.kind = ErrorKind::timeout;
        if (connect_time == 0 && via_proxy) err.kind = ErrorKind::proxy;
        break;
      case CURLE_PEER_FAILED_VERIFICATION:
      {
        // libcurl checks the name itself after OpenSSL accepted the chain; the verify result
        // then stays at its initial "unspecified" value.
        const std::string_view eb(errbuf);
        const bool name = verify == X509_V_OK || verify == X509_V_ERR_HOSTNAME_MISMATCH ||
                          (verify == X509_V_ERR_UNSPECIFIED &&
                           (eb.find("subject name") != eb.npos || eb.find("host name") != eb.npos));
        err.kind = name ? ErrorKind::tls_hostname : ErrorKind::tls_ca_untrusted;
        if (!name) err.message = X509_verify_cert_error_string(verify);
        break;
      }
      case CURLE_SSL_CACERT_BADFILE:
        err.kind = ErrorKind::config;
        err.message = "The CA file " + config_.ca_file + " could not be read (" + err.message + ")";
        break;
      case CURLE_SSL_CERTPROBLEM:
        err.kind = ErrorKind::certificate;
        err.message = "The TLS client certificate " + config_.client_cert_file + " could not be used (" +
                      err.message + ")";
        break;
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_SSL_CIPHER:
        err.kind = ErrorKind::tls_other;
        break;
      case CURLE_GOT_NOTHING:
      case CURLE_RECV_ERROR:
      case CURLE_SEND_ERROR:
      case CURLE_PARTIAL_FILE:
        err.kind = ErrorKind::connection_dropped;
        break;
      case CURLE_WRITE_ERROR:
        err.kind = ErrorKind::invalid_response;
        if (sink.overflow) err.message = "response larger than the configured limit";
        break;
      default:
        err.kind = ErrorKind::connection_dropped;
        break;
    }
    if (via_proxy && connect_code >= 300) {
      err.kind = ErrorKind::proxy;
      err.message = "the proxy answered HTTP " + std::to_string(connect_code) + " to CONNECT";
    }
    if (err.kind == ErrorKind::proxy) err.principal = redact_url_credentials(config_.proxy);
    log::debug(kLog, std::string(operation) + " " + req.method + " " + err.host + ": " + err.to_log_string());
    return fail(std::move(err));
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  impl_->release(std::move(h), config_.max_idle_handles);
  resp.status = status;
  resp.request_id = resp.header("x-ms-request-id");
  log::debug(kLog, std::string(operation) + " " + req.method + " " + err.host + " -> " + std::to_string(status) +
                       " x-ms-request-id=" + resp.request_id + " x-ms-client-request-id=" +
                       resp.client_request_id + (connects ? " (new connection)" : " (reused connection)"));
  return resp;
}

}  // namespace cdcp11::azure
