// Logging: one line per event to stderr or a file (CDCP11_LOG_FILE), filtered by level
// (CDCP11_LOG_LEVEL = error|warn|info|debug; default warn). Never pass secrets here.
#pragma once

#include <string>
#include <string_view>

namespace cdcp11::log {

enum class Level { error = 0, warn = 1, info = 2, debug = 3 };

bool enabled(Level l);
void write(Level l, std::string_view component, std::string_view message);
// Re-reads CDCP11_LOG_LEVEL / CDCP11_LOG_FILE (called from C_Initialize).
void configure_from_env();

inline void error(std::string_view c, std::string_view m) { write(Level::error, c, m); }
inline void warn(std::string_view c, std::string_view m) { write(Level::warn, c, m); }
inline void info(std::string_view c, std::string_view m) { write(Level::info, c, m); }
inline void debug(std::string_view c, std::string_view m) {
  if (enabled(Level::debug)) write(Level::debug, c, m);
}

}  // namespace cdcp11::log
