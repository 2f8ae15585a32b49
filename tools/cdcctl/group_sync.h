// cdcctl group sync: bring a group's vault into its token (links, Azure-resident keys).
#pragma once

#include <CLI/CLI.hpp>

#include "tools/cdcctl/group_commands.h"

namespace cdcp11::cdcctl {

void add_group_sync_command(CLI::App* group, GlobalOptions& global, int& exit_code);

}  // namespace cdcp11::cdcctl
