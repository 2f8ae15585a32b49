// Timing for the benchmarks (issue #13). A figure is the median of a few repetitions; a
// repetition runs every thread's Worker for a fixed wall time and counts completed calls. The
// caller interleaves the repetitions of the columns it compares (cdcp11, SoftHSM2, OpenSSL), so
// a change in the machine's load during the run shifts all of them alike.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace cdcp11::bench {

template <class T>
using BR = Result<T, std::string>;

struct Timing {
  double seconds = 2.0;  // wall time of one repetition
  double warmup = 0.5;   // untimed run before the first repetition
  int reps = 3;
  long iterations = 0;   // > 0: exactly this many calls per repetition, no warm-up (smoke runs)
};

// One thread's work. call() does one measured unit (e.g. C_EncryptInit + C_Encrypt) and returns
// false with error() set when it failed; workers of one measurement run on separate threads. Each
// is 128-byte aligned (and so sized): two threads' workers, made one after the other, would
// otherwise share the cache lines their calls write, and every column's 2-thread row would pay
// for the driver's false sharing.
class alignas(128) Worker {
 public:
  virtual ~Worker() = default;
  virtual bool call() noexcept = 0;
  const std::string& error() const { return error_; }

 protected:
  bool failed(std::string why) {
    error_ = std::move(why);
    return false;
  }

 private:
  std::string error_;
};

using Workers = std::vector<std::unique_ptr<Worker>>;

// Calls per second of a repetition: over wall time (the figure), and over the CPU time the
// measuring threads got (nearly independent of other processes' load, so steadier on a busy
// machine; blind to waiting, on a disk or a lock, so no measure of scaling).
struct Rate {
  double wall = 0;
  double cpu = 0;
};

// The threads that run one column's workers, kept for all the repetitions of a row, as an
// application keeps its worker threads. Threads made anew for each repetition start it with
// cold per-thread state (the allocator's and the library's) and take over what the previous
// column's threads left: with them, a cdcp11 column measured right after OpenSSL's scaled
// 16-byte AES-GCM a median 1.87x over six runs on the 2-vCPU test VM, one measured after
// another cdcp11 column 1.93x; with a team, 1.96x and 1.97x (same runs, alternated).
// A team of one is the calling thread.
class Team {
 public:
  explicit Team(std::size_t threads);
  ~Team();
  Team(const Team&) = delete;
  Team& operator=(const Team&) = delete;
  std::size_t size() const { return size_; }
  // Runs job(i) on thread i for each i, started together; returns when every one returned.
  void run(const std::function<void(std::size_t)>& job);

 private:
  void loop(std::size_t i);
  std::size_t size_;
  std::mutex mu_;
  std::condition_variable go_, done_;
  const std::function<void(std::size_t)>* job_ = nullptr;
  std::uint64_t round_ = 0;
  std::size_t running_ = 0;
  bool stop_ = false;
  std::unique_ptr<std::latch> start_;
  std::vector<std::thread> threads_;
};

// Runs each worker on its thread of the team (workers.size() == team.size()) for `seconds` and
// at least `min_calls` calls, or `iterations` calls each when that is > 0; the rates are the
// sums of each thread's calls over its own elapsed (CPU) time.
BR<Rate> run_rep(Workers& workers, Team& team, double seconds, long iterations = 0, long min_calls = 0);

double median(std::vector<double> v);

// The results, on stdout as tab-separated lines (bench/report.py reads them):
//   row   COLUMN ROW VALUE UNIT REP1,REP2,.. [CPU]   a figure (the median of the repetitions),
//                                                   CPU: the median per CPU-second (see Rate)
//   meta  COLUMN KEY VALUE                     e.g. the module's name and version
//   note  COLUMN TEXT                          e.g. why a figure is missing
// and a progress line on stderr for each figure.
void print_row(const std::string& column, const std::string& row, double value,
               std::string_view unit, const std::vector<double>& reps, double cpu_value = 0);
void print_meta(const std::string& column, std::string_view key, std::string_view value);
void print_note(const std::string& column, std::string_view text);

// Seconds on the monotonic clock (shared by all processes of the machine).
double now_s();

}  // namespace cdcp11::bench
