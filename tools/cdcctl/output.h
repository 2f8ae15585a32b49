// Output shared by every cdcctl command.
#pragma once

#include <string>

#include "tools/cdcctl/group_commands.h"

namespace cdcp11::cdcctl {

// Reports an error as {"error": "..."} on stdout with --json, else "cdcctl: ..." on stderr;
// returns the exit status (1).
int error_out(const GlobalOptions& global, const std::string& msg);

}  // namespace cdcp11::cdcctl
