// The background threads of one group that run mirror jobs in the order submitted, up to
// `threads` at once (async mode, and the journal's unfinished jobs after a login). Stopping
// finishes the jobs at hand and drops the queue: every job is journaled, so a dropped one resumes
// at the next login.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cdcp11::core::mirror {

class Worker {
 public:
  explicit Worker(unsigned threads = 1);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void submit(std::function<void()> job);

 private:
  void run();
  void stop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace cdcp11::core::mirror
