#include "bench/measure.h"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <latch>
#include <thread>

namespace cdcp11::bench {
namespace {

struct ThreadResult {
  long calls = 0;
  double elapsed = 0;
  bool ok = true;
};

// Calls the worker in batches that double while a batch takes under a millisecond, so the
// clock is read rarely for fast calls and after every call for slow ones.
ThreadResult drive(Worker& w, double seconds, long iterations) {
  ThreadResult r;
  const double t0 = now_s();
  if (iterations > 0) {
    for (long i = 0; i < iterations; ++i)
      if (!w.call()) return {i, now_s() - t0, false};
    return {iterations, now_s() - t0, true};
  }
  const double deadline = t0 + seconds;
  long batch = 1;
  double last = t0;
  for (;;) {
    for (long i = 0; i < batch; ++i)
      if (!w.call()) return {r.calls + i, now_s() - t0, false};
    r.calls += batch;
    const double t = now_s();
    if (t >= deadline) {
      r.elapsed = t - t0;
      return r;
    }
    if (t - last < 1e-3 && batch < (1L << 16)) batch *= 2;
    last = t;
  }
}

}  // namespace

void print_row(const std::string& column, const std::string& row, double value,
               std::string_view unit, const std::vector<double>& reps) {
  std::string r;
  char b[48];
  for (double v : reps) {
    std::snprintf(b, sizeof b, "%s%.6g", r.empty() ? "" : ",", v);
    r += b;
  }
  std::snprintf(b, sizeof b, "%.6g", value);
  std::cout << "row\t" << column << '\t' << row << '\t' << b << '\t' << unit << '\t' << r
            << std::endl;
  std::cerr << "  " << column << ' ' << row << ": " << b << ' ' << unit << " (" << r << ")\n";
}

void print_meta(const std::string& column, std::string_view key, std::string_view value) {
  std::cout << "meta\t" << column << '\t' << key << '\t' << value << std::endl;
}

void print_note(const std::string& column, std::string_view text) {
  std::cout << "note\t" << column << '\t' << text << std::endl;
  std::cerr << "  " << column << ": " << text << '\n';
}

double now_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

BR<double> run_rep(Workers& workers, double seconds, long iterations) {
  std::vector<ThreadResult> res(workers.size());
  if (workers.size() == 1) {
    res[0] = drive(*workers[0], seconds, iterations);
  } else {
    std::latch start(static_cast<std::ptrdiff_t>(workers.size()));
    std::vector<std::jthread> threads;
    for (std::size_t i = 0; i < workers.size(); ++i)
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        res[i] = drive(*workers[i], seconds, iterations);
      });
  }
  double rate = 0;
  for (std::size_t i = 0; i < workers.size(); ++i) {
    if (!res[i].ok) return fail(workers[i]->error());
    if (res[i].elapsed > 0) rate += static_cast<double>(res[i].calls) / res[i].elapsed;
  }
  return rate;
}

}  // namespace cdcp11::bench
