// Timing for the benchmarks (issue #13). A figure is the median of a few repetitions; a
// repetition runs every thread's Worker for a fixed wall time and counts completed calls. The
// caller interleaves the repetitions of the columns it compares (cdcp11, SoftHSM2, OpenSSL), so
// a change in the machine's load during the run shifts all of them alike.
#pragma once

#include <memory>
#include <string>
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

// Runs each worker on its own thread (a single worker runs on the calling thread) for
// `seconds` and at least `min_calls` calls, or `iterations` calls each when that is > 0; the
// rates are the sums of each thread's calls over its own elapsed (CPU) time.
BR<Rate> run_rep(Workers& workers, double seconds, long iterations = 0, long min_calls = 0);

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
