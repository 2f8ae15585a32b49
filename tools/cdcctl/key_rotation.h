// cdcctl key rotate|versions: rotation of a group's mirrored keys (core/mirror/rotation.h) and
// their local and Azure versions side by side.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

#include "tools/cdcctl/group_commands.h"

namespace cdcp11::cdcctl {

// Adds the rotation commands under the "key" command; the callbacks set exit_code.
void add_key_rotation_commands(CLI::App& key, GlobalOptions& global, int& exit_code);

// "YYYY-MM-DD" (UTC) of a Unix time.
std::string day(std::int64_t unix_seconds);

}  // namespace cdcp11::cdcctl
