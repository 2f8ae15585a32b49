#include "azure/util.h"

#include <openssl/rand.h>

#include <cctype>
#include <thread>

namespace cdcp11::azure {

SystemClock default_system_clock() {
  return [] { return std::chrono::system_clock::now(); };
}
SteadyClock default_steady_clock() {
  return [] { return std::chrono::steady_clock::now(); };
}
Sleeper default_sleeper() {
  return [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
}

std::string new_uuid() {
  uint8_t b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    // Practically unreachable; a request id only needs to be unique enough for logs.
    auto t = std::chrono::steady_clock::now().time_since_epoch().count();
    for (int i = 0; i < 16; ++i) b[i] = static_cast<uint8_t>(t >> ((i % 8) * 8)) ^ static_cast<uint8_t>(i * 37);
  }
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);
  std::string hex = to_hex(ByteView(b, 16));
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" +
         hex.substr(20);
}

std::string url_host(std::string_view url) {
  auto p = url.find("://");
  if (p == std::string_view::npos) return {};
  url.remove_prefix(p + 3);
  auto end = url.find_first_of("/?#");
  std::string_view auth = url.substr(0, end);
  if (auto at = auth.rfind('@'); at != std::string_view::npos) auth.remove_prefix(at + 1);
  if (!auth.empty() && auth.front() == '[') {
    auto close = auth.find(']');
    return to_lower(auth.substr(0, close == std::string_view::npos ? auth.size() : close + 1));
  }
  if (auto colon = auth.rfind(':'); colon != std::string_view::npos) auth = auth.substr(0, colon);
  return to_lower(auth);
}

namespace {
bool unreserved(unsigned char c) { return std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~'; }
constexpr char kHex[] = "0123456789ABCDEF";
}  // namespace

std::string url_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (unreserved(c)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

void url_encode_append(std::string_view s, SecureBytes& out) {
  for (unsigned char c : s) {
    if (unreserved(c)) {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(static_cast<uint8_t>(kHex[c >> 4]));
      out.push_back(static_cast<uint8_t>(kHex[c & 15]));
    }
  }
}

void append(SecureBytes& out, std::string_view s) { out.insert(out.end(), s.begin(), s.end()); }

namespace {

// The authority of a URL starting at `from`: up to a path, query, fragment or blank.
std::size_t authority_end(std::string_view s, std::size_t from) {
  auto e = s.find_first_of("/?# \t\r\n\"'<>", from);
  return e == std::string_view::npos ? s.size() : e;
}

}  // namespace

std::string redact_url_credentials(std::string_view s) {
  std::string out;
  std::size_t pos = 0;
  auto redact_from = [&](std::size_t start) {
    const std::size_t end = authority_end(s, start);
    const auto at = s.substr(start, end - start).rfind('@');
    out.append(s.substr(pos, start - pos));
    if (at != std::string_view::npos) {
      out += "***";
      pos = start + at;
    } else {
      pos = start;
    }
    return end;
  };
  if (s.find("://") == std::string_view::npos && s.find_first_of(" \t\r\n") == std::string_view::npos) {
    redact_from(0);
  } else {
    for (std::size_t p = s.find("://"); p != std::string_view::npos; p = s.find("://", p)) p = redact_from(p + 3);
  }
  out.append(s.substr(pos));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string to_lower(std::string_view s) {
  std::string o(s);
  for (auto& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

bool ends_with_icase(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && iequals(s.substr(s.size() - suffix.size()), suffix);
}

}  // namespace cdcp11::azure
