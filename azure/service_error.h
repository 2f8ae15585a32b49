// Turns a Key Vault or ARM error answer ({"error":{"code","message","innererror":{"code"}}})
// into an Error with the right kind and, for 403s, the missing permission.
#pragma once

#include <string>

#include "azure/error.h"
#include "azure/http.h"

namespace cdcp11::azure {

// `permission`: what the operation needs ("get", "create", ...), used when the message does
// not name it.
Error service_error(const HttpResponse& r, const std::string& operation, const std::string& host,
                    const std::string& permission, int attempts);

}  // namespace cdcp11::azure
