#include "common/log.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace cdcp11::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::warn)};
// Leaked on purpose: logging must keep working during static destruction at process exit.
// Held across fork(), so that a child never inherits it locked by a thread it does not have.
std::mutex& sink_mutex() {
  static auto* m = [] {
    auto* p = new std::mutex;
    ::pthread_atfork([] { sink_mutex().lock(); }, [] { sink_mutex().unlock(); }, [] { sink_mutex().unlock(); });
    return p;
  }();
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
  // Calendar arithmetic, not gmtime_r: glibc takes its tzset lock there, and a child forked while
  // another thread held it would never log.
  using namespace std::chrono;
  const auto now = floor<seconds>(system_clock::now());
  const auto day = floor<days>(now);
  const year_month_day ymd{day};
  const hh_mm_ss hms{now - day};
  char ts[32];
  std::snprintf(ts, sizeof ts, "%04d-%02u-%02uT%02ld:%02ld:%02ldZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<long>(hms.hours().count()), static_cast<long>(hms.minutes().count()),
                static_cast<long>(hms.seconds().count()));
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
