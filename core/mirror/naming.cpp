#include "core/mirror/naming.h"

#include <cctype>

namespace cdcp11::core::mirror {

namespace {
constexpr std::size_t kMaxName = 127;
bool allowed(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; }
}  // namespace

bool valid_key_name(const std::string& name) {
  if (name.empty() || name.size() > kMaxName) return false;
  for (char c : name)
    if (!allowed(c)) return false;
  return true;
}

std::string key_name_from_label(const std::string& label, const std::string& fallback) {
  std::string out;
  for (char c : label) {
    char m = allowed(c) ? c : '-';
    if (m == '-' && (out.empty() || out.back() == '-')) continue;
    out.push_back(m);
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (out.size() > kMaxName - 4) out.resize(kMaxName - 4);  // room for a collision suffix
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? fallback : out;
}

std::string candidate_name(const std::string& base, unsigned n) {
  if (n <= 1) return base;
  std::string suffix = "-" + std::to_string(n);
  std::string b = base.substr(0, kMaxName - suffix.size());
  return b + suffix;
}

}  // namespace cdcp11::core::mirror
