#include "core/mirror/worker.h"

#include <algorithm>

namespace cdcp11::core::mirror {

Worker::Worker(unsigned threads) {
  try {
    for (unsigned i = 0; i < std::max(threads, 1U); ++i) threads_.emplace_back([this] { run(); });
  } catch (...) {
    stop();  // the threads already started
    throw;
  }
}

Worker::~Worker() { stop(); }

void Worker::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void Worker::submit(std::function<void()> job) {
  {
    std::lock_guard lk(mu_);
    if (stopping_) return;
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void Worker::run() {
  std::unique_lock lk(mu_);
  for (;;) {
    cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) break;
    auto job = std::move(queue_.front());
    queue_.pop_front();
    lk.unlock();
    job();
    lk.lock();
  }
}

}  // namespace cdcp11::core::mirror
