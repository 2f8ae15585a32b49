// cdcctl key list|mirror.
#pragma once

#include <CLI/CLI.hpp>

#include "tools/cdcctl/group_commands.h"

namespace cdcp11::cdcctl {

void add_key_commands(CLI::App& app, GlobalOptions& global, int& exit_code);

}  // namespace cdcp11::cdcctl
