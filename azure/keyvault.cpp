#include "azure/keyvault.h"

#include <algorithm>
#include <regex>

#include "azure/base64url.h"
#include "azure/connection.h"
#include "azure/json.h"
#include "azure/retry.h"
#include "azure/service_error.h"
#include "azure/util.h"
#include "common/log.h"

namespace cdcp11::azure {
namespace {

constexpr const char* kLog = "azure.keyvault";

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 127) return false;
  return std::all_of(n.begin(), n.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; });
}

bool valid_version(const std::string& v) {
  return v.size() <= 64 && std::all_of(v.begin(), v.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)); });
}

bool looks_like_guid(std::string_view s) {
  static const std::regex re("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$");
  return std::regex_match(s.begin(), s.end(), re);
}

HttpResponse synthetic(long status, std::string_view json) {
  HttpResponse r;
  r.status = status;
  r.body.assign(json.begin(), json.end());
  return r;
}

bool same_ops(std::vector<std::string> a, std::vector<std::string> b) {
  for (auto& s : a) s = to_lower(s);
  for (auto& s : b) s = to_lower(s);
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

bool has_tags(const Tags& have, const Tags& want) {
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) return false;
  }
  return true;
}

std::string base_kty(std::string_view kty) {
  std::string k = to_lower(kty);
  if (k.size() > 4 && k.substr(k.size() - 4) == "-hsm") k.resize(k.size() - 4);
  return k;
}

// What the published limits depend on, from a kty such as "RSA-HSM" or "ec".
KeyShape shape_of(std::string_view kty, bool hsm, int bits, std::string crv) {
  const std::string b = base_kty(kty);
  return KeyShape{hsm || ends_with_icase(kty, "-HSM"), b == "rsa" ? "RSA" : b == "ec" ? "EC" : b.empty() ? "" : "oct",
                  bits, std::move(crv)};
}

}  // namespace

struct KeyVaultClient::Op {
  std::string name;        // "create key k1": used in logs and error sentences
  std::string method = "GET";
  std::string url;
  SecureBytes body;
  std::string permission;  // access-policy permission it needs
  Repeat repeat = Repeat::safe;
  AlreadyApplied already_applied;
  Limit limit;
  std::string client_request_id;  // one per operation, kept across its retries
};

KeyVaultClient::KeyVaultClient(std::shared_ptr<Connection> conn, std::string vault_url)
    : conn_(std::move(conn)), vault_url_(std::move(vault_url)) {
  while (!vault_url_.empty() && vault_url_.back() == '/') vault_url_.pop_back();
  host_ = url_host(vault_url_);
  mhsm_ = host_.find(".managedhsm.") != std::string::npos;
}

std::string KeyVaultClient::key_url(const std::string& name, const std::string& version,
                                    const std::string& suffix) const {
  std::string u = vault_url_ + "/keys/" + name;
  if (!version.empty()) u += "/" + version;
  return u + suffix + "?api-version=" + conn_->config().api_version;
}

void KeyVaultClient::remember(const KeyBundle& b) {
  std::string n = to_lower(b.name());
  if (n.empty() || b.key.kty.empty()) return;
  KeyShape shape = shape_of(b.key.kty, mhsm_, b.key.rsa_bits(), b.key.crv);
  std::lock_guard lk(mu_);
  shapes_[n] = std::move(shape);
}

Limit KeyVaultClient::limit_for(KeyOp op, const KeyShape& shape) const {
  return mhsm_ ? mhsm_limit(op, shape) : vault_limit(op, shape);
}

Limit KeyVaultClient::limit_for(KeyOp op, const std::string& name) {
  KeyShape shape;
  shape.hsm = mhsm_;
  {
    std::lock_guard lk(mu_);
    if (auto it = shapes_.find(to_lower(name)); it != shapes_.end()) shape = it->second;
  }
  return limit_for(op, shape);
}

Error KeyVaultClient::map_error(const HttpResponse& r, const Op& op, int attempts) const {
  return service_error(r, op.name, host_, op.permission, attempts);
}

Result<std::optional<Challenge>, Error> KeyVaultClient::discover(const Op& op, const std::string& url,
                                                                 std::optional<HttpResponse>& answer) {
  // Like the SDKs: the first request goes without a token (and without a body) to learn the
  // tenant and resource from the 401 challenge.
  HttpRequest req;
  req.method = op.method;
  req.url = url;
  CDC_ASSIGN(HttpResponse r, conn_->http().perform(req, op.name));
  if (r.status != 401) {
    if (r.status == 404) {
      Error e = service_error(r, op.name, host_, op.permission, 1);
      e.kind = ErrorKind::vault_not_found;
      e.message = "no vault answers at this name: HTTP 404 to an unauthenticated request";
      return fail(std::move(e));
    }
    if (op.method == "GET" && r.status < 300) {
      answer = std::move(r);
      return std::optional<Challenge>();
    }
    if (r.status == 429 || r.status >= 500) {  // let the retry loop deal with it
      answer = std::move(r);
      return std::optional<Challenge>();
    }
    // Refused before authentication (a firewall, for instance): report what it says.
    Error e = service_error(r, op.name, host_, op.permission, 1);
    if (e.kind == ErrorKind::http_other) e.kind = ErrorKind::invalid_response;
    return fail(std::move(e));
  }
  auto c = parse_challenge(r.header("www-authenticate"));
  if (!c) {
    Error e = make_error(ErrorKind::invalid_response, op.name, "a 401 without a Bearer challenge");
    e.host = host_;
    e.request_id = r.request_id;
    return fail(std::move(e));
  }
  if (conn_->config().verify_challenge_resource && !challenge_matches_host(*c, host_)) {
    Error e = make_error(ErrorKind::challenge_mismatch, op.name, c->scope.empty() ? c->resource : c->scope);
    e.host = host_;
    return fail(std::move(e));
  }
  const std::string& ours = conn_->config().tenant_id;
  if (!c->tenant.empty() && looks_like_guid(c->tenant) && looks_like_guid(ours) && !iequals(c->tenant, ours)) {
    Error e = make_error(ErrorKind::config, op.name,
                         "Vault " + host_ + " belongs to tenant " + c->tenant + ", but the connection is configured "
                         "for tenant " + ours + ": configure the vault's tenant");
    e.host = host_;
    return fail(std::move(e));
  }
  conn_->remember_challenge(host_, *c);
  return std::optional<Challenge>(*c);
}

Result<HttpResponse, Error> KeyVaultClient::attempt(const Op& op, const std::string& url) {
  std::optional<Challenge> ch = conn_->challenge(host_);
  if (!ch) {
    std::optional<HttpResponse> answer;
    CDC_ASSIGN(ch, discover(op, url, answer));
    if (!ch) return std::move(*answer);
  }
  RateLimiter& lim = conn_->limiter();
  for (int pass = 0;; ++pass) {
    const std::string scope = ch->token_scope();
    CDC_ASSIGN(auto tok, conn_->tokens().token(scope));
    lim.acquire(host_, op.limit);
    HttpRequest req;
    req.method = op.method;
    req.url = url;
    req.body = op.body;
    if (!op.body.empty() || op.method == "POST" || op.method == "PUT" || op.method == "PATCH")
      req.headers.emplace_back("Content-Type", "application/json");
    req.headers.emplace_back("Accept", "application/json");
    req.bearer = &tok->token;
    req.client_request_id = op.client_request_id;
    req.fresh_connection = op.repeat == Repeat::check_first;
    auto r = conn_->http().perform(req, op.name);
    if (r && r->status == 429) lim.refund(host_, op.limit);
    if (!r || r->status != 401 || pass > 0) return r;
    // The token was refused: drop it, take the (possibly new) challenge, and try once more.
    conn_->tokens().invalidate(scope, *tok);
    auto c = parse_challenge(r->header("www-authenticate"));
    if (!c) return r;
    if (conn_->config().verify_challenge_resource && !challenge_matches_host(*c, host_)) {
      Error e = make_error(ErrorKind::challenge_mismatch, op.name, c->scope.empty() ? c->resource : c->scope);
      e.host = host_;
      return fail(std::move(e));
    }
    conn_->remember_challenge(host_, *c);
    ch = c;
  }
}

Result<HttpResponse, Error> KeyVaultClient::send(const Op& op_in) {
  Op op = op_in;
  if (op.client_request_id.empty()) op.client_request_id = new_uuid();
  int attempts = 1;
  auto r = run_with_retries(conn_->retry(), op.name, op.repeat, [&] { return attempt(op, op.url); },
                            op.already_applied, &attempts);
  if (!r) {
    Error e = std::move(r).error();
    if (e.host.empty()) e.host = host_;
    if (e.operation.empty()) e.operation = op.name;
    if (e.kind == ErrorKind::dns && e.host == host_) {
      e.kind = ErrorKind::vault_not_found;
      e.message = "the DNS lookup of " + host_ + " failed";
    }
    log::debug(kLog, e.to_log_string());
    return fail(std::move(e));
  }
  if (r->status >= 400) {
    Error e = map_error(*r, op, attempts);
    log::info(kLog, e.to_log_string());
    return fail(std::move(e));
  }
  return r;
}

Result<KeyBundle, Error> KeyVaultClient::bundle_from(const HttpResponse& r, const std::string& operation) {
  KeyBundle b;
  std::string why;
  if (!parse_key_bundle(r.text(), b, &why)) {
    Error e = make_error(ErrorKind::invalid_response, operation,
                         "the answer is not a key bundle" + (why.empty() ? "" : ": " + why));
    e.host = host_;
    e.request_id = r.request_id;
    return fail(std::move(e));
  }
  remember(b);
  return b;
}

namespace {
Error bad_name(const std::string& op, const std::string& name) {
  return make_error(ErrorKind::config, op,
                    "'" + name + "' is not a valid Key Vault key name (1-127 letters, digits and dashes)");
}
}  // namespace

#define CDC_CHECK_NAME(op, name) \
  if (!valid_name(name)) return fail(bad_name(op, name))

std::string KeyVaultClient::deleted_key_url(const std::string& name, const std::string& suffix) const {
  return vault_url_ + "/deletedkeys/" + name + suffix + "?api-version=" + conn_->config().api_version;
}

Result<std::optional<HttpResponse>, Error> KeyVaultClient::probe_key(const std::string& name, const std::string& why) {
  Op get;
  get.name = "get key " + name + " (did the " + why + " happen?)";
  get.url = key_url(name, "", "");
  get.permission = "get";
  get.limit = limit_for(KeyOp::get, name);
  auto r = send(get);
  if (r) return std::optional<HttpResponse>(std::move(*r));
  if (r.error().kind == ErrorKind::not_found) return std::optional<HttpResponse>();
  return fail(std::move(r).error());
}

std::int64_t KeyVaultClient::now_seconds() const {
  return std::chrono::duration_cast<std::chrono::seconds>(conn_->retry().now().time_since_epoch()).count();
}

Result<KeyBundle, Error> KeyVaultClient::create_key(const std::string& name, const CreateKeyOptions& o) {
  Op op;
  op.name = "create key " + name;
  CDC_CHECK_NAME(op.name, name);
  op.method = "POST";
  op.url = key_url(name, "", "/create");
  op.body = create_key_body(o);
  op.permission = "create";
  op.repeat = Repeat::check_first;
  op.limit = limit_for(KeyOp::create, shape_of(o.kty, mhsm_, o.key_size.value_or(0), o.crv));
  const int64_t started = now_seconds();
  op.already_applied = [&]() -> Result<std::optional<HttpResponse>, Error> {
    CDC_ASSIGN(auto r, probe_key(name, "create"));
    if (!r) return r;
    KeyBundle b;
    if (parse_key_bundle(r->text(), b) && b.attributes.created && *b.attributes.created >= started - 5 &&
        base_kty(b.key.kty) == base_kty(o.kty) && (o.key_ops.empty() || same_ops(b.key.key_ops, o.key_ops)) &&
        has_tags(b.tags, o.tags))
      return std::optional<HttpResponse>(std::move(*r));
    return std::optional<HttpResponse>();
  };
  CDC_ASSIGN(HttpResponse r, send(op));
  return bundle_from(r, op.name);
}

Result<KeyBundle, Error> KeyVaultClient::import_key(const std::string& name, const ImportKeyOptions& o) {
  Op op;
  op.name = "import key " + name;
  CDC_CHECK_NAME(op.name, name);
  op.method = "PUT";
  op.url = key_url(name, "", "");
  CDC_ASSIGN(op.body, import_key_body(o));
  op.permission = "import";
  op.repeat = Repeat::check_first;
  const bool byok = !o.byok_blob.empty();
  const std::string kty = byok ? o.byok_kty : o.jwk->kty;
  op.limit = limit_for(KeyOp::import, shape_of(kty, mhsm_ || byok || o.hsm.value_or(false), 0, o.byok_crv));
  PublicKeyMaterial expect = o.expected_public;
  if (expect.empty() && o.jwk) {
    expect.n = o.jwk->n;
    expect.e = o.jwk->e;
    expect.crv = o.jwk->crv;
    expect.x = o.jwk->x;
    expect.y = o.jwk->y;
  }
  const int64_t started = now_seconds();
  op.already_applied = [&]() -> Result<std::optional<HttpResponse>, Error> {
    CDC_ASSIGN(auto r, probe_key(name, "import"));
    if (!r) return r;
    KeyBundle b;
    if (!parse_key_bundle(r->text(), b)) return std::optional<HttpResponse>();
    bool ours = expect.empty() ? (b.attributes.created && *b.attributes.created >= started - 5 &&
                                  base_kty(b.key.kty) == base_kty(kty))
                               : public_material_matches(b.key, expect);
    if (ours) return std::optional<HttpResponse>(std::move(*r));
    return std::optional<HttpResponse>();
  };
  CDC_ASSIGN(HttpResponse r, send(op));
  return bundle_from(r, op.name);
}

Result<KeyBundle, Error> KeyVaultClient::get_key(const std::string& name, const std::string& version) {
  Op op;
  op.name = "get key " + name;
  CDC_CHECK_NAME(op.name, name);
  if (!valid_version(version)) return fail(bad_name(op.name, version));
  op.url = key_url(name, version, "");
  op.permission = "get";
  op.limit = limit_for(KeyOp::get, name);
  CDC_ASSIGN(HttpResponse r, send(op));
  return bundle_from(r, op.name);
}

Result<std::vector<KeyItem>, Error> KeyVaultClient::list_paged(const std::string& first_url, const std::string& what,
                                                               const std::string& permission) {
  std::vector<KeyItem> out;
  std::string url = first_url;
  for (int page = 0; !url.empty(); ++page) {
    if (page > 100000)
      return fail(make_error(ErrorKind::invalid_response, what, "the listing does not end"));
    Op op;
    op.name = what;
    op.url = url;
    op.permission = permission;
    op.limit = limit_for(KeyOp::list, KeyShape{mhsm_, "", 0, ""});
    CDC_ASSIGN(HttpResponse r, send(op));
    std::string next, why;
    if (!parse_key_items(r.text(), out, next, &why)) {
      Error e = make_error(ErrorKind::invalid_response, what,
                           "the answer is not a key list" + (why.empty() ? "" : ": " + why));
      e.host = host_;
      return fail(std::move(e));
    }
    if (next.empty()) break;
    CDC_ASSIGN(url, next_page_url(next, what));
  }
  return out;
}

Result<std::vector<KeyItem>, Error> KeyVaultClient::list_keys(int max_results) {
  return list_paged(vault_url_ + "/keys?maxresults=" + std::to_string(std::clamp(max_results, 1, 25)) +
                        "&api-version=" + conn_->config().api_version,
                    "list keys", "list");
}

Result<std::vector<KeyItem>, Error> KeyVaultClient::list_key_versions(const std::string& name, int max_results) {
  CDC_CHECK_NAME("list versions of key " + name, name);
  return list_paged(vault_url_ + "/keys/" + name + "/versions?maxresults=" +
                        std::to_string(std::clamp(max_results, 1, 25)) + "&api-version=" + conn_->config().api_version,
                    "list versions of key " + name, "list");
}

Result<std::vector<KeyItem>, Error> KeyVaultClient::list_deleted_keys(int max_results) {
  return list_paged(vault_url_ + "/deletedkeys?maxresults=" + std::to_string(std::clamp(max_results, 1, 25)) +
                        "&api-version=" + conn_->config().api_version,
                    "list deleted keys", "list");
}

Result<KeyBundle, Error> KeyVaultClient::update_key(const std::string& name, const std::string& version,
                                                    const UpdateKeyOptions& o) {
  Op op;
  op.name = "update key " + name;
  CDC_CHECK_NAME(op.name, name);
  if (!valid_version(version)) return fail(bad_name(op.name, version));
  op.method = "PATCH";
  op.url = version.empty() ? vault_url_ + "/keys/" + name + "/?api-version=" + conn_->config().api_version
                           : key_url(name, version, "");
  op.body = update_key_body(o);
  op.permission = "update";
  op.limit = limit_for(KeyOp::update, name);
  CDC_ASSIGN(HttpResponse r, send(op));
  return bundle_from(r, op.name);
}

Result<DeletedKeyBundle, Error> KeyVaultClient::delete_key(const std::string& name) {
  Op op;
  op.name = "delete key " + name;
  CDC_CHECK_NAME(op.name, name);
  op.method = "DELETE";
  op.url = key_url(name, "", "");
  op.permission = "delete";
  op.repeat = Repeat::check_first;
  op.limit = limit_for(KeyOp::delete_, name);
  op.already_applied = [&]() -> Result<std::optional<HttpResponse>, Error> {
    Op get;
    get.name = "get deleted key " + name + " (did the delete happen?)";
    get.url = deleted_key_url(name, "");
    get.permission = "get";
    get.limit = limit_for(KeyOp::other, name);
    auto d = send(get);
    if (d) return std::optional<HttpResponse>(std::move(*d));
    if (d.error().kind != ErrorKind::not_found && d.error().kind != ErrorKind::bad_request) return fail(std::move(d).error());
    CDC_ASSIGN(auto live, probe_key(name, "delete"));
    if (live) return std::optional<HttpResponse>();  // still there: repeat the delete
    return std::optional<HttpResponse>(synthetic(200, "{\"key\":{\"kid\":\"" + vault_url_ + "/keys/" + name + "\"}}"));
  };
  CDC_ASSIGN(HttpResponse r, send(op));
  return bundle_from(r, op.name);
}

Result<DeletedKeyBundle, Error> KeyVaultClient::get_deleted_key(const std::string& name) {
  Op op;
  op.name = "get deleted key " + name;
  CDC_CHECK_NAME(op.name, name);
  op.url = deleted_key_url(name, "");
  op.permission = "get";
  op.limit = limit_for(KeyOp::other, name);
  CDC_ASSIGN(HttpResponse r, send(op));
  return bundle_from(r, op.name);
}

Result<void, Error> KeyVaultClient::purge_deleted_key(const std::string& name) {
  Op op;
  op.name = "purge deleted key " + name;
  CDC_CHECK_NAME(op.name, name);
  op.method = "DELETE";
  op.url = deleted_key_url(name, "");
  op.permission = "purge";
  op.limit = limit_for(KeyOp::purge, name);
  op.repeat = Repeat::check_first;
  op.already_applied = [&]() -> Result<std::optional<HttpResponse>, Error> {
    auto d = get_deleted_key(name);
    if (d) return std::optional<HttpResponse>();
    if (d.error().kind == ErrorKind::not_found) return std::optional<HttpResponse>(synthetic(204, ""));
    return fail(std::move(d).error());
  };
  CDC_TRY(send(op));
  return {};
}

Result<KeyBundle, Error> KeyVaultClient::recover_deleted_key(const std::string& name) {
  Op op;
  op.name = "recover deleted key " + name;
  CDC_CHECK_NAME(op.name, name);
  op.method = "POST";
  op.url = deleted_key_url(name, "/recover");
  op.permission = "recover";
  op.limit = limit_for(KeyOp::recover, name);
  op.repeat = Repeat::check_first;
  op.already_applied = [&]() -> Result<std::optional<HttpResponse>, Error> {
    auto d = get_deleted_key(name);
    if (d) return std::optional<HttpResponse>();
    if (d.error().kind != ErrorKind::not_found) return fail(std::move(d).error());
    CDC_ASSIGN(auto live, probe_key(name, "recover"));
    if (live) return live;
    // Recovery runs asynchronously; the key shows up once it is done.
    return std::optional<HttpResponse>(synthetic(200, "{\"key\":{\"kid\":\"" + vault_url_ + "/keys/" + name + "\"}}"));
  };
  CDC_ASSIGN(HttpResponse r, send(op));
  return bundle_from(r, op.name);
}

Result<Bytes, Error> KeyVaultClient::backup_key(const std::string& name) {
  Op op;
  op.name = "back up key " + name;
  CDC_CHECK_NAME(op.name, name);
  op.method = "POST";
  op.url = key_url(name, "", "/backup");
  op.permission = "backup";
  op.limit = limit_for(KeyOp::backup, name);
  CDC_ASSIGN(HttpResponse r, send(op));
  JsonDocument doc;
  std::optional<Bytes> blob;
  if (parse_json(r.text(), doc) && doc.IsObject()) blob = b64url_decode(str_member(doc, "value"));
  if (!blob || blob->empty())
    return fail(make_error(ErrorKind::invalid_response, op.name, "the answer holds no backup blob"));
  return std::move(*blob);
}

Result<KeyBundle, Error> KeyVaultClient::restore_key(ByteView backup, const RestoreOptions& o) {
  Op op;
  op.name = "restore key" + (o.expected_name.empty() ? std::string() : " " + o.expected_name);
  op.method = "POST";
  op.url = vault_url_ + "/keys/restore?api-version=" + conn_->config().api_version;
  {
    JsonBuffer b;
    JsonWriter w(b);
    w.StartObject();
    w.Key("value");
    write_string(w, b64url_encode(backup));
    w.EndObject();
    op.body = to_body(b);
  }
  op.permission = "restore";
  op.repeat = Repeat::check_first;
  op.limit = limit_for(KeyOp::restore, KeyShape{mhsm_, "", 0, ""});
  if (!o.expected_name.empty()) {
    CDC_CHECK_NAME(op.name, o.expected_name);
    op.already_applied = [&] { return probe_key(o.expected_name, "restore"); };
  }
  CDC_ASSIGN(HttpResponse r, send(op));
  return bundle_from(r, op.name);
}

Result<KeyBundle, Error> KeyVaultClient::rotate_key(const std::string& name) {
  Op op;
  op.name = "rotate key " + name;
  CDC_CHECK_NAME(op.name, name);
  op.method = "POST";
  op.url = key_url(name, "", "/rotate");
  op.permission = "rotate";
  op.repeat = Repeat::check_first;
  op.limit = limit_for(KeyOp::rotate, name);
  const int64_t started = now_seconds();
  op.already_applied = [&]() -> Result<std::optional<HttpResponse>, Error> {
    CDC_ASSIGN(auto r, probe_key(name, "rotation"));
    if (!r) return r;
    KeyBundle b;
    if (parse_key_bundle(r->text(), b) && b.attributes.created && *b.attributes.created >= started - 5)
      return std::optional<HttpResponse>(std::move(*r));
    return std::optional<HttpResponse>();
  };
  CDC_ASSIGN(HttpResponse r, send(op));
  return bundle_from(r, op.name);
}

Result<RotationPolicy, Error> KeyVaultClient::policy_from(const HttpResponse& r, const std::string& operation) {
  RotationPolicy p;
  if (!parse_rotation_policy(r.text(), p)) {
    Error e = make_error(ErrorKind::invalid_response, operation, "the answer is not a rotation policy");
    e.host = host_;
    e.request_id = r.request_id;
    return fail(std::move(e));
  }
  return p;
}

Result<RotationPolicy, Error> KeyVaultClient::get_rotation_policy(const std::string& name) {
  Op op;
  op.name = "get rotation policy of key " + name;
  CDC_CHECK_NAME(op.name, name);
  op.url = key_url(name, "", "/rotationpolicy");
  op.permission = "getrotationpolicy";
  op.limit = limit_for(KeyOp::other, name);
  CDC_ASSIGN(HttpResponse r, send(op));
  return policy_from(r, op.name);
}

Result<RotationPolicy, Error> KeyVaultClient::set_rotation_policy(const std::string& name, const RotationPolicy& p) {
  Op op;
  op.name = "set rotation policy of key " + name;
  CDC_CHECK_NAME(op.name, name);
  auto body = rotation_policy_body(p);
  if (!body) {
    Error e = std::move(body).error();
    e.operation = op.name;
    e.host = host_;
    log::info(kLog, e.to_log_string());
    return fail(std::move(e));
  }
  op.method = "PUT";
  op.url = key_url(name, "", "/rotationpolicy");
  op.body = std::move(*body);
  op.permission = "setrotationpolicy";
  op.limit = limit_for(KeyOp::other, name);
  CDC_ASSIGN(HttpResponse r, send(op));
  return policy_from(r, op.name);
}

Result<std::string, Error> KeyVaultClient::next_page_url(const std::string& next, const std::string& what) const {
  const std::string host = url_host(next);
  if (host == host_) return next;
  // Reached under another name, the vault still names its own host: take the path and query
  // onto ours. Anything else would carry our token to a host we were not configured for.
  const Cloud& cloud = conn_->cloud();
  const bool we_use_an_alias = !cloud.is_vault_host(host_) && !cloud.is_mhsm_host(host_);
  const bool names_a_vault = cloud.is_vault_host(host) || cloud.is_mhsm_host(host);
  const std::size_t scheme = next.find("://");
  const std::size_t path = scheme == std::string::npos ? std::string::npos : next.find('/', scheme + 3);
  if (we_use_an_alias && names_a_vault && path != std::string::npos && next.rfind("https://", 0) == 0) {
    log::debug(kLog, what + ": following the nextLink for " + host + " on " + host_);
    return vault_url_ + next.substr(path);
  }
  Error e = make_error(ErrorKind::invalid_response, what, "a nextLink pointing to another host (" + host + ")");
  e.host = host_;
  return fail(std::move(e));
}

Result<CryptoResult, Error> KeyVaultClient::crypto(KeyOp kop, const std::string& what, const std::string& name,
                                                   const std::string& version, const std::string& permission,
                                                   SecureBytes body, bool secret_result, SecureBytes* plain_out) {
  Op op;
  op.name = what + " with key " + name;
  CDC_CHECK_NAME(op.name, name);
  if (!valid_version(version)) return fail(bad_name(op.name, version));
  op.method = "POST";
  op.url = key_url(name, version, "/" + what);
  op.body = std::move(body);
  op.permission = permission;
  op.limit = limit_for(kop, name);
  CDC_ASSIGN(HttpResponse r, send(op));
  JsonDocument doc;
  if (!parse_json(r.text(), doc) || !doc.IsObject())
    return fail(make_error(ErrorKind::invalid_response, op.name, "the answer is not JSON"));
  CryptoResult out;
  out.kid = str_member(doc, "kid");
  const std::string value = str_member(doc, "value");
  bool ok = true;
  if (secret_result) {
    ok = b64url_decode(value, *plain_out);
  } else {
    auto v = b64url_decode(value);
    ok = v.has_value();
    if (v) out.value = std::move(*v);
  }
  if (!ok) return fail(make_error(ErrorKind::invalid_response, op.name, "the answer's value is not base64url"));
  if (auto iv = b64url_decode(str_member(doc, "iv"))) out.iv = std::move(*iv);
  if (auto tag = b64url_decode(str_member(doc, "tag"))) out.tag = std::move(*tag);
  return out;
}

namespace {
SecureBytes crypto_body(const std::string& alg, ByteView value, const CryptoParams* p, const char* value_key = "value") {
  JsonBuffer b;
  JsonWriter w(b);
  w.StartObject();
  w.Key("alg");
  write_string(w, alg);
  std::string enc = b64url_encode(value);
  w.Key(value_key);
  write_string(w, enc);
  secure_zero(enc.data(), enc.size());
  if (p) {
    if (!p->iv.empty()) { w.Key("iv"); write_string(w, b64url_encode(p->iv)); }
    if (!p->aad.empty()) { w.Key("aad"); write_string(w, b64url_encode(p->aad)); }
    if (!p->tag.empty()) { w.Key("tag"); write_string(w, b64url_encode(p->tag)); }
  }
  w.EndObject();
  return to_body(b);
}
}  // namespace

Result<CryptoResult, Error> KeyVaultClient::sign(const std::string& name, const std::string& version,
                                                 const std::string& alg, ByteView digest) {
  return crypto(KeyOp::sign, "sign", name, version, "sign", crypto_body(alg, digest, nullptr), false, nullptr);
}

Result<bool, Error> KeyVaultClient::verify(const std::string& name, const std::string& version, const std::string& alg,
                                           ByteView digest, ByteView signature) {
  Op op;
  op.name = "verify with key " + name;
  CDC_CHECK_NAME(op.name, name);
  if (!valid_version(version)) return fail(bad_name(op.name, version));
  op.method = "POST";
  op.url = key_url(name, version, "/verify");
  {
    JsonBuffer b;
    JsonWriter w(b);
    w.StartObject();
    w.Key("alg"); write_string(w, alg);
    w.Key("digest"); write_string(w, b64url_encode(digest));
    w.Key("value"); write_string(w, b64url_encode(signature));
    w.EndObject();
    op.body = to_body(b);
  }
  op.permission = "verify";
  op.limit = limit_for(KeyOp::verify, name);
  CDC_ASSIGN(HttpResponse r, send(op));
  JsonDocument doc;
  std::optional<bool> v;
  if (parse_json(r.text(), doc) && doc.IsObject()) v = bool_member(doc, "value");
  if (!v) return fail(make_error(ErrorKind::invalid_response, op.name, "the answer has no boolean value"));
  return *v;
}

Result<CryptoResult, Error> KeyVaultClient::encrypt(const std::string& name, const std::string& version,
                                                    const CryptoParams& p, ByteView plaintext) {
  return crypto(KeyOp::encrypt, "encrypt", name, version, "encrypt", crypto_body(p.alg, plaintext, &p), false,
                nullptr);
}

Result<SecureBytes, Error> KeyVaultClient::decrypt(const std::string& name, const std::string& version,
                                                   const CryptoParams& p, ByteView ciphertext) {
  SecureBytes plain;
  CDC_TRY(crypto(KeyOp::decrypt, "decrypt", name, version, "decrypt", crypto_body(p.alg, ciphertext, &p), true,
                 &plain));
  return plain;
}

Result<CryptoResult, Error> KeyVaultClient::wrap_key(const std::string& name, const std::string& version,
                                                     const std::string& alg, ByteView key) {
  return crypto(KeyOp::wrap, "wrapkey", name, version, "wrapKey", crypto_body(alg, key, nullptr), false, nullptr);
}

Result<SecureBytes, Error> KeyVaultClient::unwrap_key(const std::string& name, const std::string& version,
                                                      const std::string& alg, ByteView wrapped) {
  SecureBytes plain;
  CDC_TRY(crypto(KeyOp::unwrap, "unwrapkey", name, version, "unwrapKey", crypto_body(alg, wrapped, nullptr), true,
                 &plain));
  return plain;
}

Result<void, Error> KeyVaultClient::check_access() {
  Op op;
  op.name = "list keys";
  op.url = vault_url_ + "/keys?maxresults=1&api-version=" + conn_->config().api_version;
  op.permission = "list";
  op.limit = limit_for(KeyOp::list, KeyShape{mhsm_, "", 0, ""});
  CDC_TRY(send(op));
  return {};
}

}  // namespace cdcp11::azure
