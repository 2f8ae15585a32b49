// cdcctl key enable|disable|delete|recover|backup|restore: the lifecycle of the Azure copies of a
// group's keys.
#pragma once

#include <CLI/CLI.hpp>

#include "tools/cdcctl/group_commands.h"

namespace cdcp11::cdcctl {

// Adds the lifecycle commands under the "key" command; the callbacks set exit_code.
void add_key_lifecycle_commands(CLI::App& key, GlobalOptions& global, int& exit_code);

}  // namespace cdcp11::cdcctl
