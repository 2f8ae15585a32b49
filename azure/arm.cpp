#include "azure/arm.h"

#include <algorithm>

#include "azure/connection.h"
#include "azure/json.h"
#include "azure/service_error.h"
#include "azure/util.h"

namespace cdcp11::azure {
namespace {

const std::vector<std::string>& all_key_permissions() {
  static const std::vector<std::string> all = {"get",     "list",    "create",    "import",    "update",
                                               "delete",  "recover", "purge",     "backup",    "restore",
                                               "sign",    "verify",  "encrypt",   "decrypt",   "wrapkey",
                                               "unwrapkey", "release", "rotate", "getrotationpolicy",
                                               "setrotationpolicy"};
  return all;
}

std::string resource_group_of(const std::string& id) {
  const std::string marker = "/resourcegroups/";
  std::string lower = to_lower(id);
  auto p = lower.find(marker);
  if (p == std::string::npos) return {};
  p += marker.size();
  return id.substr(p, id.find('/', p) - p);
}

VaultInfo parse_vault(const JsonValue& v, bool hsm, const AccessToken& tok, const std::string& client_id) {
  VaultInfo out;
  out.id = str_member(v, "id");
  out.name = str_member(v, "name");
  out.location = str_member(v, "location");
  out.resource_group = resource_group_of(out.id);
  const JsonValue* p = member(v, "properties");
  static const JsonValue empty(rapidjson::kObjectType);
  const JsonValue& props = p && p->IsObject() ? *p : empty;
  out.tenant_id = str_member(props, "tenantId");
  out.uri = str_member(props, hsm ? "hsmUri" : "vaultUri");
  while (!out.uri.empty() && out.uri.back() == '/') out.uri.pop_back();
  out.soft_delete = bool_member(props, "enableSoftDelete").value_or(true);
  out.retention_days = static_cast<int>(int_member(props, "softDeleteRetentionInDays").value_or(90));
  out.purge_protection = bool_member(props, "enablePurgeProtection").value_or(false);
  if (hsm) {
    out.tier = VaultTier::managed_hsm;
    out.rbac = true;
    return out;
  }
  out.rbac = bool_member(props, "enableRbacAuthorization").value_or(false);
  if (const JsonValue* sku = member(props, "sku")) {
    std::string n = to_lower(str_member(*sku, "name"));
    out.tier = n == "premium" ? VaultTier::premium : n == "standard" ? VaultTier::standard : VaultTier::unknown;
  }
  const JsonValue* aps = member(props, "accessPolicies");
  if (!aps || !aps->IsArray()) return out;
  for (const auto& ap : aps->GetArray()) {
    if (!iequals(str_member(ap, "objectId"), tok.oid)) continue;
    std::string tid = str_member(ap, "tenantId");
    if (!tid.empty() && !tok.tid.empty() && !iequals(tid, tok.tid)) continue;
    std::string app = str_member(ap, "applicationId");
    if (!app.empty() && !iequals(app, client_id)) continue;
    out.has_access_policy = true;
    const JsonValue* perms = member(ap, "permissions");
    const JsonValue* keys = perms ? member(*perms, "keys") : nullptr;
    if (!keys || !keys->IsArray()) continue;
    for (const auto& k : keys->GetArray()) {
      if (!k.IsString()) continue;
      std::string perm = to_lower(k.GetString());
      if (perm == "all") {
        for (const auto& a : all_key_permissions()) out.our_key_permissions.push_back(a);
      } else {
        out.our_key_permissions.push_back(perm);
      }
    }
  }
  std::sort(out.our_key_permissions.begin(), out.our_key_permissions.end());
  out.our_key_permissions.erase(std::unique(out.our_key_permissions.begin(), out.our_key_permissions.end()),
                                out.our_key_permissions.end());
  return out;
}

}  // namespace

const char* tier_name(VaultTier t) {
  switch (t) {
    case VaultTier::standard: return "standard";
    case VaultTier::premium: return "premium";
    case VaultTier::managed_hsm: return "managed HSM";
    case VaultTier::unknown: return "unknown";
  }
  return "unknown";
}

bool VaultInfo::can(std::string_view perm) const {
  std::string p = to_lower(perm);
  return std::find(our_key_permissions.begin(), our_key_permissions.end(), p) != our_key_permissions.end();
}

ArmClient::ArmClient(std::shared_ptr<Connection> conn) : conn_(std::move(conn)) {}

Result<std::vector<VaultInfo>, Error> ArmClient::list(const std::string& subscription_id, bool hsm) {
  const std::string what = hsm ? "list managed HSMs" : "list key vaults";
  const std::string sub = subscription_id.empty() ? conn_->config().subscription_id : subscription_id;
  if (sub.empty()) return fail(make_error(ErrorKind::config, what, "No subscription ID is configured"));
  const Cloud& cloud = conn_->cloud();
  const std::string arm_host = url_host(cloud.arm_endpoint);
  std::string url = cloud.arm_endpoint + "/subscriptions/" + url_encode(sub) + "/providers/Microsoft.KeyVault/" +
                    (hsm ? "managedHSMs" : "vaults") + "?api-version=" + conn_->config().arm_api_version;
  std::vector<VaultInfo> out;
  std::shared_ptr<const AccessToken> last_token;
  while (!url.empty()) {
    if (url_host(url) != arm_host)
      return fail(make_error(ErrorKind::invalid_response, what, "a nextLink pointing to another host"));
    auto attempt = [&]() -> Result<HttpResponse, Error> {
      for (int pass = 0;; ++pass) {
        CDC_ASSIGN(auto tok, conn_->tokens().token(cloud.arm_scope));
        last_token = tok;
        HttpRequest req;
        req.url = url;
        req.headers.emplace_back("Accept", "application/json");
        req.bearer = &tok->token;
        auto r = conn_->http().perform(req, what);
        if (!r || r->status != 401 || pass > 0) return r;
        conn_->tokens().invalidate(cloud.arm_scope, *tok);
      }
    };
    int attempts = 1;
    auto r = run_with_retries(conn_->retry(), what, Repeat::safe, attempt, {}, &attempts);
    if (!r) return fail(std::move(r).error());
    if (r->status >= 400) {
      Error e = service_error(*r, what, arm_host, "Microsoft.KeyVault/vaults/read", attempts);
      if (e.kind == ErrorKind::subscription_not_found) e.principal = sub;
      return fail(std::move(e));
    }
    JsonDocument doc;
    const JsonValue* items = nullptr;
    if (parse_json(r->text(), doc) && doc.IsObject()) items = member(doc, "value");
    if (!items || !items->IsArray())
      return fail(make_error(ErrorKind::invalid_response, what, "the answer is not a resource list"));
    for (const auto& v : items->GetArray())
      out.push_back(parse_vault(v, hsm, *last_token, conn_->config().client_id));
    url = str_member(doc, "nextLink");
  }
  std::sort(out.begin(), out.end(), [](const VaultInfo& a, const VaultInfo& b) { return a.name < b.name; });
  return out;
}

Result<std::vector<VaultInfo>, Error> ArmClient::list_vaults(const std::string& s) { return list(s, false); }
Result<std::vector<VaultInfo>, Error> ArmClient::list_managed_hsms(const std::string& s) { return list(s, true); }

Result<std::vector<VaultInfo>, Error> ArmClient::list_all(const std::string& s) {
  CDC_ASSIGN(auto vaults, list(s, false));
  CDC_ASSIGN(auto hsms, list(s, true));
  vaults.insert(vaults.end(), hsms.begin(), hsms.end());
  return vaults;
}

Result<VaultInfo, Error> ArmClient::find_vault(const std::string& name, const std::string& s) {
  CDC_ASSIGN(auto all, list_all(s));
  for (auto& v : all)
    if (iequals(v.name, name)) return std::move(v);
  Error e = make_error(ErrorKind::vault_not_found, "find vault " + name,
                       "ARM lists no vault or managed HSM named " + name + " in the subscription");
  e.host = name;
  return fail(std::move(e));
}

}  // namespace cdcp11::azure
