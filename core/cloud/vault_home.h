// The home of Azure-resident keys: their private key operations run in the group's Key Vault
// (core/cloud/vault_ops.h). Digests are computed locally by the token's backend.
#pragma once

#include <memory>
#include <string>

#include "azure/connection.h"
#include "core/token/key_home.h"

namespace cdcp11::core::cloud {

// conn may be null (the group cannot reach Azure now): every operation then fails with
// device_error and `unavailable` as the reason.
std::unique_ptr<KeyHome> make_vault_home(std::shared_ptr<azure::Connection> conn, std::string unavailable,
                                         std::string group, Backend& backend);

}  // namespace cdcp11::core::cloud
