#include "azure/service_error.h"

#include "azure/json.h"
#include "azure/util.h"

namespace cdcp11::azure {
namespace {

std::string flatten(std::string s) {
  for (auto& c : s)
    if (c == '\r' || c == '\n') c = ' ';
  std::string out;
  for (char c : s) {
    if (c == ' ' && !out.empty() && out.back() == ' ') continue;
    out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// "... does not have keys get permission on key vault ..." -> "get"
std::string access_policy_permission(const std::string& m) {
  const std::string a = "does not have keys ";
  auto p = m.find(a);
  if (p == std::string::npos) return {};
  p += a.size();
  auto e = m.find(' ', p);
  return m.substr(p, e == std::string::npos ? std::string::npos : e - p);
}

// "... Action: 'Microsoft.KeyVault/vaults/keys/read' ..." -> the action
std::string rbac_action(const std::string& m) {
  for (const char* marker : {"Action: '", "action '"}) {
    auto p = m.find(marker);
    if (p == std::string::npos) continue;
    p += std::string(marker).size();
    auto e = m.find('\'', p);
    if (e != std::string::npos) return m.substr(p, e - p);
  }
  return {};
}

}  // namespace

Error service_error(const HttpResponse& r, const std::string& operation, const std::string& host,
                    const std::string& permission, int attempts) {
  Error e;
  e.operation = operation;
  e.host = host;
  e.http_status = static_cast<int>(r.status);
  e.request_id = r.request_id;
  e.client_request_id = r.client_request_id;
  e.attempts = attempts;
  JsonDocument doc;
  if (parse_json(r.text(), doc) && doc.IsObject()) {
    if (const JsonValue* err = member(doc, "error"); err && err->IsObject()) {
      e.code = str_member(*err, "code");
      e.message = flatten(str_member(*err, "message"));
      // innererror can nest; the innermost code is the most specific.
      const JsonValue* in = member(*err, "innererror");
      while (in && in->IsObject()) {
        std::string c = str_member(*in, "code");
        if (!c.empty()) e.inner_code = c;
        in = member(*in, "innererror");
      }
    }
  }
  if (e.message.empty()) e.message = "HTTP " + std::to_string(r.status);
  const int s = e.http_status;
  if (s == 401) {
    e.kind = ErrorKind::unauthorized;
  } else if (s == 403) {
    const std::string& ic = e.inner_code;
    if (ic == "ForbiddenByFirewall" || e.message.find("Client address is not authorized") != std::string::npos ||
        e.message.find("is not authorized and caller is not a trusted service") != std::string::npos) {
      e.kind = ErrorKind::firewall;
    } else if (ic == "ForbiddenByRbac") {
      e.kind = ErrorKind::forbidden;
      e.permission = rbac_action(e.message);
      if (e.permission.empty()) e.permission = permission;
    } else if (ic == "AccessDenied" || e.message.find("does not have keys") != std::string::npos) {
      e.kind = ErrorKind::forbidden;
      e.inner_code = "AccessDenied";
      e.permission = access_policy_permission(e.message);
      if (e.permission.empty()) e.permission = permission;
    } else if (e.code == "AuthorizationFailed") {
      e.kind = ErrorKind::forbidden;
      e.permission = rbac_action(e.message);
      if (e.permission.empty()) e.permission = permission;
    } else if (e.message.find("purge protection") != std::string::npos) {
      e.kind = ErrorKind::purge_protected;
    } else {
      e.kind = ErrorKind::forbidden_other;
    }
  } else if (s == 404) {
    if (e.code == "SubscriptionNotFound") e.kind = ErrorKind::subscription_not_found;
    else if (e.code == "ResourceNotFound" || e.code == "ResourceGroupNotFound") e.kind = ErrorKind::vault_not_found;
    else e.kind = ErrorKind::not_found;
  } else if (s == 409) {
    e.kind = ErrorKind::conflict;
  } else if (s == 400 || s == 405 || s == 413 || s == 415 || s == 422) {
    e.kind = ErrorKind::bad_request;
  } else if (s == 429) {
    e.kind = ErrorKind::throttled;
  } else if (s >= 500) {
    e.kind = ErrorKind::server_error;
  } else {
    e.kind = ErrorKind::http_other;
  }
  return e;
}

}  // namespace cdcp11::azure
