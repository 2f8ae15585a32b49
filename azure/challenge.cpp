#include "azure/challenge.h"

#include <cctype>

#include "azure/util.h"

namespace cdcp11::azure {

std::string Challenge::token_scope() const {
  if (!scope.empty()) return scope;
  std::string r = resource;
  while (!r.empty() && r.back() == '/') r.pop_back();
  return r + "/.default";
}

std::string Challenge::resource_host() const {
  std::string h = url_host(scope.empty() ? resource : scope);
  return h;
}

std::optional<Challenge> parse_challenge(std::string_view s) {
  auto skip_ws = [&] {
    while (!s.empty() && (std::isspace(static_cast<unsigned char>(s.front())) || s.front() == ',')) s.remove_prefix(1);
  };
  skip_ws();
  auto sp = s.find_first_of(" \t");
  if (sp == std::string_view::npos || !iequals(s.substr(0, sp), "Bearer")) return std::nullopt;
  s.remove_prefix(sp);
  Challenge c;
  for (;;) {
    skip_ws();
    if (s.empty()) break;
    auto eq = s.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    std::string key = to_lower(s.substr(0, eq));
    while (!key.empty() && key.back() == ' ') key.pop_back();
    s.remove_prefix(eq + 1);
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    std::string value;
    if (!s.empty() && s.front() == '"') {
      s.remove_prefix(1);
      auto q = s.find('"');
      if (q == std::string_view::npos) return std::nullopt;
      value = std::string(s.substr(0, q));
      s.remove_prefix(q + 1);
    } else {
      auto end = s.find_first_of(", \t");
      value = std::string(s.substr(0, end));
      s.remove_prefix(end == std::string_view::npos ? s.size() : end);
    }
    if (key == "authorization" || key == "authorization_uri") c.authorization = value;
    else if (key == "resource") c.resource = value;
    else if (key == "scope") c.scope = value;
  }
  if (c.authorization.empty() || (c.resource.empty() && c.scope.empty())) return std::nullopt;
  // Tenant = first path segment of the authorization URL.
  std::string_view a = c.authorization;
  auto p = a.find("://");
  if (p != std::string_view::npos) {
    a.remove_prefix(p + 3);
    auto slash = a.find('/');
    if (slash != std::string_view::npos) {
      a.remove_prefix(slash + 1);
      c.tenant = std::string(a.substr(0, a.find_first_of("/?#")));
    }
  }
  return c;
}

bool challenge_matches_host(const Challenge& c, std::string_view host) {
  std::string rh = c.resource_host();
  if (rh.empty()) return false;
  return ends_with_icase(host, "." + rh);
}

}  // namespace cdcp11::azure
