// Small helpers shared by the Azure client: ids, URLs, form encoding, clocks.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "common/bytes.h"

namespace cdcp11::azure {

using SystemClock = std::function<std::chrono::system_clock::time_point()>;
using SteadyClock = std::function<std::chrono::steady_clock::time_point()>;
using Sleeper = std::function<void(std::chrono::milliseconds)>;

SystemClock default_system_clock();
SteadyClock default_steady_clock();
Sleeper default_sleeper();

// Random RFC 4122 version-4 UUID, lower case.
std::string new_uuid();

// "https://Host:443/path?q" -> "host" (lower case, no port); "" if not an absolute URL.
std::string url_host(std::string_view url);
// Percent-encodes everything but RFC 3986 unreserved characters.
std::string url_encode(std::string_view s);
// Same, into zeroizing memory (for form fields that carry secrets).
void url_encode_append(std::string_view s, SecureBytes& out);
void append(SecureBytes& out, std::string_view s);

// s with the user information of every URL in it ("scheme://user:password@host") replaced by
// "***"; a text without blanks and without "://" is taken as one URL ("user:pw@host:port", as
// libcurl reads a proxy setting). For anything that may show a URL to people or logs.
std::string redact_url_credentials(std::string_view s);

bool iequals(std::string_view a, std::string_view b);
std::string to_lower(std::string_view s);
bool ends_with_icase(std::string_view s, std::string_view suffix);

}  // namespace cdcp11::azure
