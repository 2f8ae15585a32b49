// cdcctl byok export: offline BYOK. Wraps a group's key for a Key Vault / Managed HSM key-exchange
// key (KEK) given as a public key file and a versioned kid, writes the ".byok" transfer file that
// `az keyvault key import --byok-file` takes, and prints that az command for a connected host.
#pragma once

#include <CLI/CLI.hpp>

#include "tools/cdcctl/group_commands.h"

namespace cdcp11::cdcctl {

void add_byok_commands(CLI::App& app, GlobalOptions& global, int& exit_code);

}  // namespace cdcp11::cdcctl
