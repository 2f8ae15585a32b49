// Replacing a small file atomically and durably: write a temp file beside it, fsync, rename over
// the target, fsync the directory. Readers see the old or the new content, never a mix.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace cdcp11 {

// The file ends up with exactly `mode`, whatever mode an existing file had (a caller that wants
// to keep it passes it in). The temp file has a unique random name, so a temp file left by a
// crashed writer never blocks a write. The error is a sentence naming the path and the system
// error.
Result<void, std::string> write_file_atomically(const std::string& path, std::string_view content,
                                                unsigned mode = 0600);

}  // namespace cdcp11
