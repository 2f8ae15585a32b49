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
  double cpu = 0;
  bool ok = true;
};

double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Calls the worker in batches that double while a batch takes under a millisecond, so the
// clock is read rarely for fast calls and after every call for slow ones.
ThreadResult drive(Worker& w, double seconds, long iterations, long min_calls) {
  ThreadResult r;
  const double t0 = now_s(), c0 = thread_cpu_s();
  auto done = [&](long calls, bool ok) {
    return ThreadResult{calls, now_s() - t0, thread_cpu_s() - c0, ok};
  };
  if (iterations > 0) {
    for (long i = 0; i < iterations; ++i)
      if (!w.call()) return done(i, false);
    return done(iterations, true);
  }
  const double deadline = t0 + seconds;
  long batch = 1;
  double last = t0;
  for (;;) {
    for (long i = 0; i < batch; ++i)
      if (!w.call()) return done(r.calls + i, false);
    r.calls += batch;
    const double t = now_s();
    if (t >= deadline && r.calls >= min_calls) return done(r.calls, true);
    if (t - last < 1e-3 && batch < (1L << 16)) batch *= 2;
    last = t;
  }
}

}  // namespace

void print_row(const std::string& column, const std::string& row, double value,
               std::string_view unit, const std::vector<double>& reps, double cpu_value) {
  std::string r;
  char b[48];
  for (double v : reps) {
    std::snprintf(b, sizeof b, "%s%.6g", r.empty() ? "" : ",", v);
    r += b;
  }
  std::snprintf(b, sizeof b, "%.6g", value);
  std::cout << "row\t" << column << '\t' << row << '\t' << b << '\t' << unit << '\t' << r;
  if (cpu_value > 0) {
    char c[32];
    std::snprintf(c, sizeof c, "%.6g", cpu_value);
    std::cout << '\t' << c;
  }
  std::cout << std::endl;
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

Team::Team(std::size_t threads) : size_(threads) {
  if (threads > 1)
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this, i] { loop(i); });
}

Team::~Team() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  go_.notify_all();
  for (auto& t : threads_) t.join();
}

void Team::loop(std::size_t i) {
  std::uint64_t seen = 0;
  for (;;) {
    std::unique_lock lk(mu_);
    go_.wait(lk, [&] { return stop_ || round_ != seen; });
    if (stop_) return;
    seen = round_;
    const auto* job = job_;
    std::latch* start = start_.get();
    lk.unlock();
    start->arrive_and_wait();
    (*job)(i);
    lk.lock();
    if (--running_ == 0) done_.notify_one();
  }
}

void Team::run(const std::function<void(std::size_t)>& job) {
  if (threads_.empty()) {
    for (std::size_t i = 0; i < size_; ++i) job(i);
    return;
  }
  std::unique_lock lk(mu_);
  job_ = &job;
  running_ = threads_.size();
  start_ = std::make_unique<std::latch>(static_cast<std::ptrdiff_t>(threads_.size()));
  ++round_;
  go_.notify_all();
  done_.wait(lk, [&] { return running_ == 0; });
}

BR<Rate> run_rep(Workers& workers, Team& team, double seconds, long iterations, long min_calls) {
  std::vector<ThreadResult> res(workers.size());
  team.run([&](std::size_t i) { res[i] = drive(*workers[i], seconds, iterations, min_calls); });
  Rate rate;
  for (std::size_t i = 0; i < workers.size(); ++i) {
    if (!res[i].ok) return fail(workers[i]->error());
    const auto calls = static_cast<double>(res[i].calls);
    if (res[i].elapsed > 0) rate.wall += calls / res[i].elapsed;
    if (res[i].cpu > 0) rate.cpu += calls / res[i].cpu;
  }
  return rate;
}

}  // namespace cdcp11::bench
