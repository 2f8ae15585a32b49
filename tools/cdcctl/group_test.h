// cdcctl group test NAME: the operator's "Test connection" for one group's Azure link.
//
// Connected means: a token was issued, the subscription's vaults could be listed (or ARM is
// not configured/reachable, which the mirror does not need), the chosen vault is in that list,
// and one authenticated request to it succeeded. The exit status is 0 only then.
#pragma once

#include <CLI/CLI.hpp>

#include "tools/cdcctl/group_commands.h"

namespace cdcp11::cdcctl {

// Adds "test" under the "group" subcommand; the callback sets exit_code.
void add_group_test_command(CLI::App* group, GlobalOptions& global, int& exit_code);

}  // namespace cdcp11::cdcctl
