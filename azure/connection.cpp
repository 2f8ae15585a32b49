#include "azure/connection.h"

#include "azure/pem.h"
#include "azure/util.h"
#include "common/log.h"

namespace cdcp11::azure {

Result<std::shared_ptr<Connection>, Error> Connection::open(ConnectionConfig cfg, ConnectionHooks hooks) {
  const std::string op = "open Azure connection";
  auto conn = std::shared_ptr<Connection>(new Connection());
  if (iequals(cfg.cloud, "custom")) {
    if (cfg.custom_cloud.authority_host.empty() || cfg.custom_cloud.vault_resource.empty())
      return fail(make_error(ErrorKind::config, op,
                             "A custom cloud needs at least its authority host and vault resource"));
    conn->cloud_ = cfg.custom_cloud;
    if (conn->cloud_.name.empty()) conn->cloud_.name = "custom";
  } else if (auto c = cloud_by_name(cfg.cloud)) {
    conn->cloud_ = *c;
  } else {
    return fail(make_error(ErrorKind::config, op,
                           "Unknown cloud '" + cfg.cloud + "' (use global, usgov, china or custom)"));
  }
  if (cfg.tenant_id.empty()) return fail(make_error(ErrorKind::config, op, "No tenant ID is configured"));
  if (cfg.client_id.empty()) return fail(make_error(ErrorKind::config, op, "No client (application) ID is configured"));
  const bool have_secret = !cfg.client_secret.empty();
  const bool have_cert = !cfg.client_certificate_file.empty();
  if (have_secret == have_cert)
    return fail(make_error(ErrorKind::config, op,
                           have_secret ? "Both a client secret and a client certificate are configured; choose one"
                                       : "Neither a client secret nor a client certificate is configured"));
  if (!cfg.vault_url.empty() && cfg.vault_url.rfind("https://", 0) != 0)
    return fail(make_error(ErrorKind::config, op, "The vault URL " + cfg.vault_url + " does not start with https://"));
  if (!cfg.vault_url.empty()) {
    std::string h = url_host(cfg.vault_url);
    if (!conn->cloud_.is_vault_host(h) && !conn->cloud_.is_mhsm_host(h))
      log::warn("azure", "vault host " + h + " does not belong to the " + conn->cloud_.name +
                             " cloud; its challenge will decide where tokens go");
  }
  if (!cfg.verify_challenge_resource)
    log::warn("azure", "Key Vault challenge resource verification is switched off by configuration");

  // libcurl would hand an encrypted key to OpenSSL, which prompts on the terminal (or fails
  // with a vague error): refuse it here, precisely. A key that cannot be read is left to libcurl,
  // whose error names the file.
  if (!cfg.http.client_cert_file.empty()) {
    const std::string& path = cfg.http.client_key_file.empty() ? cfg.http.client_cert_file : cfg.http.client_key_file;
    if (auto pem = load_private_file(path, "TLS client key"); pem && read_pem_private_key(pem->bytes()).encrypted)
      return fail(make_error(ErrorKind::certificate, op,
                             "The TLS client key file " + path + " is encrypted; " + kEncryptedKeyAdvice));
  }

  ClientCredential cred;
  cred.tenant_id = cfg.tenant_id;
  cred.client_id = cfg.client_id;
  if (have_cert) {
    CDC_ASSIGN(cred.certificate, ClientCertificate::load(cfg.client_certificate_file, cfg.client_key_file));
  } else {
    cred.client_secret = cfg.client_secret;
  }
  conn->retry_.policy = cfg.retry;
  if (hooks.sleep) conn->retry_.sleep = hooks.sleep;
  if (hooks.now) conn->retry_.now = hooks.now;
  conn->http_ = std::make_shared<HttpClient>(cfg.http);
  conn->tokens_ = std::make_unique<TokenProvider>(conn->http_, conn->cloud_, std::move(cred), conn->retry_,
                                                  conn->retry_.now, hooks.token_cache);
  conn->limiter_ = std::make_unique<RateLimiter>(cfg.limiter, hooks.steady ? hooks.steady : default_steady_clock(),
                                                 conn->retry_.sleep);
  // The connection keeps its own copy; wipe the caller-visible one we were moved from.
  cfg.client_secret = Secret();
  conn->cfg_ = std::move(cfg);
  conn->cfg_.client_secret.clear();
  return conn;
}

KeyVaultClient Connection::vault() { return KeyVaultClient(shared_from_this(), cfg_.vault_url); }
KeyVaultClient Connection::vault(const std::string& url) { return KeyVaultClient(shared_from_this(), url); }
ArmClient Connection::arm() { return ArmClient(shared_from_this()); }

std::optional<Challenge> Connection::challenge(const std::string& host) {
  std::lock_guard lk(mu_);
  auto it = challenges_.find(host);
  if (it == challenges_.end()) return std::nullopt;
  return it->second;
}

void Connection::remember_challenge(const std::string& host, const Challenge& c) {
  std::lock_guard lk(mu_);
  challenges_[host] = c;
}

Result<void, Error> Connection::check() {
  if (cfg_.vault_url.empty())
    return fail(make_error(ErrorKind::config, "check connection", "No vault URL is configured"));
  KeyVaultClient kv = vault();
  auto r = kv.check_access();
  if (!r) {
    log::warn("azure", "not connected to " + kv.host() + ": " + r.error().to_log_string());
    return r;
  }
  return {};
}

}  // namespace cdcp11::azure
