// A secret value (client secret, access token, private key PEM, assertion) held in zeroizing
// memory. It has no operator<< and no implicit conversion to std::string, so it cannot end up
// in a log line or error message by accident.
#pragma once

#include <string_view>

#include "common/bytes.h"

namespace cdcp11::azure {

class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string_view s) : b_(s.begin(), s.end()) {}
  explicit Secret(SecureBytes b) : b_(std::move(b)) {}

  std::string_view view() const { return {reinterpret_cast<const char*>(b_.data()), b_.size()}; }
  const SecureBytes& bytes() const { return b_; }
  bool empty() const { return b_.empty(); }
  std::size_t size() const { return b_.size(); }
  void clear() { SecureBytes().swap(b_); }

 private:
  SecureBytes b_;  // heap storage always (no small-string buffer), zeroized on free
};

}  // namespace cdcp11::azure

#include <string>

#include "azure/error.h"
#include "common/result.h"

namespace cdcp11::azure {

// Reads a secret from a file, refusing one that its group or others may read (the error says
// which, and how to fix it). One trailing newline is stripped. `what` names it in errors.
Result<Secret, Error> load_secret_file(const std::string& path, std::string_view what = "client secret");
// Reads a file that holds a private key (same permission rule), without stripping anything.
Result<Secret, Error> load_private_file(const std::string& path, std::string_view what);
// Reads a secret from an environment variable; an unset or empty variable is an error.
Result<Secret, Error> load_secret_env(const std::string& name, std::string_view what = "client secret");

}  // namespace cdcp11::azure
