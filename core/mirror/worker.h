// One background thread per group that runs mirror jobs in order (async mode, and the journal's
// unfinished jobs after a login). Stopping finishes the job at hand and drops the queue: every
// job is journaled, so a dropped one resumes at the next login.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace cdcp11::core::mirror {

class Worker {
 public:
  Worker();
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void submit(std::function<void()> job);

 private:
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace cdcp11::core::mirror
