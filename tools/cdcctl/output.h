// Output shared by every cdcctl command.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

#include "tools/cdcctl/group_commands.h"

namespace cdcp11::cdcctl {

// Reports an error as {"error": "..."} on stdout with --json, else "cdcctl: ..." on stderr;
// returns the exit status (1).
int error_out(const GlobalOptions& global, const std::string& msg);

// s with its first letter in upper case: an error fragment made the start of a sentence.
std::string capitalised(std::string s);

// Writes a file only its owner may read (0600, whatever an existing file had), atomically and
// durably (common/atomic_file). The error is a sentence.
Result<void, std::string> write_private_file(const std::string& path, std::string_view content);

}  // namespace cdcp11::cdcctl
