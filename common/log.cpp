#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>

namespace cdcp11::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::warn)};
// Leaked on purpose: logging must keep working during static destruction at process exit.
std::mutex& sink_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
FILE* g_sink = nullptr;  // nullptr = stderr

const char* name(Level l) {
  switch (l) {
    case Level::error: return "ERROR";
    case Level::warn: return "WARN";
    case Level::info: return "INFO";
    case Level::debug: return "DEBUG";
  }
  return "?";
}

}  // namespace

bool enabled(Level l) { return static_cast<int>(l) <= g_level.load(std::memory_order_relaxed); }

void configure_from_env() {
  if (const char* lv = std::getenv("CDCP11_LOG_LEVEL")) {
    std::string s(lv);
    if (s == "error") g_level = 0;
    else if (s == "warn") g_level = 1;
    else if (s == "info") g_level = 2;
    else if (s == "debug") g_level = 3;
  }
  std::lock_guard lk(sink_mutex());
  if (const char* f = std::getenv("CDCP11_LOG_FILE"); f && *f) {
    if (FILE* nf = std::fopen(f, "ae")) {
      if (g_sink) std::fclose(g_sink);
      g_sink = nf;
    }
  }
}

void write(Level l, std::string_view component, std::string_view message) {
  if (!enabled(l)) return;
  char ts[32];
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
  std::string line;
  line.reserve(message.size() + 64);
  line += ts;
  line += " cdcp11[";
  line += std::to_string(::getpid());
  line += "] ";
  line += name(l);
  line += ' ';
  line += component;
  line += ": ";
  line += message;
  line += '\n';
  std::lock_guard lk(sink_mutex());
  FILE* out = g_sink ? g_sink : stderr;
  std::fwrite(line.data(), 1, line.size(), out);
  std::fflush(out);
}

}  // namespace cdcp11::log
