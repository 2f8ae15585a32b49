// A group's Azure connection, built from its configuration: the one place that turns
// core::AzureConfig into azure::ConnectionConfig (module, mirror engine and cdcctl share it).
#pragma once

#include <memory>
#include <string>

#include "azure/connection.h"
#include "core/config.h"

namespace cdcp11::core {

// The vault (or managed HSM) URL the group names, e.g. https://demo.vault.azure.net.
std::string vault_url(const AzureConfig& a);

// Reads the credential (secret file or environment variable, or certificate) and opens the
// connection; makes no network call. The error is a sentence for people, naming the group.
Result<std::shared_ptr<azure::Connection>, std::string> open_azure(const GroupConfig& g);

}  // namespace cdcp11::core
