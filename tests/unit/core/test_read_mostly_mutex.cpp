// ReadMostlyMutex (common/read_mostly_mutex.h): the lock of the module's state, the session table
// and a token's cache. Readers share it, a writer excludes everyone, a waiting writer goes first.
// Also run under ThreadSanitizer (scripts/sanitize.sh tsan).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "common/read_mostly_mutex.h"

using cdcp11::ReadMostlyMutex;
using namespace std::chrono_literals;

TEST_CASE("a ReadMostlyMutex writer excludes every reader, and readers see whole writes") {
  ReadMostlyMutex mu;
  long a = 0, b = 0;  // written together under the exclusive lock
  std::atomic<bool> stop{false};
  std::atomic<long> torn{0}, reads{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i)
    readers.emplace_back([&] {
      while (!stop.load()) {
        std::shared_lock lk(mu);
        const long x = a;
        std::this_thread::yield();
        if (b != x) ++torn;
        ++reads;
      }
    });
  std::thread writer([&] {
    for (int i = 0; i < 300; ++i) {
      std::lock_guard lk(mu);
      ++a;
      std::this_thread::yield();
      ++b;
    }
  });
  writer.join();
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(torn.load() == 0);
  CHECK(a == 300);
  CHECK(reads.load() > 0);
}

TEST_CASE("a ReadMostlyMutex holds many readers at once") {
  ReadMostlyMutex mu;
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i)
    ts.emplace_back([&] {
      std::shared_lock lk(mu);
      const int n = ++inside;
      for (int m = most.load(); n > m && !most.compare_exchange_weak(m, n);) {
      }
      // Each waits (bounded) for the others to be inside too.
      for (int w = 0; w < 5000 && most.load() < 3; ++w) std::this_thread::sleep_for(1ms);
      --inside;
    });
  for (auto& t : ts) t.join();
  CHECK(most.load() == 3);
}

TEST_CASE("a ReadMostlyMutex writer waits for readers, and readers arriving meanwhile wait for it") {
  ReadMostlyMutex mu;
  std::shared_lock first(mu);
  CHECK_FALSE(mu.try_lock());

  std::atomic<bool> writer_in{false}, writer_done{false};
  auto writer = std::async(std::launch::async, [&] {
    std::lock_guard lk(mu);
    writer_in = true;
    std::this_thread::sleep_for(50ms);
    writer_done = true;
  });
  // Until the writer waits: then a reader is turned away, and the writer is not in.
  for (int i = 0; i < 5000; ++i) {
    if (!mu.try_lock_shared()) break;
    mu.unlock_shared();
    std::this_thread::sleep_for(1ms);
  }
  CHECK_FALSE(mu.try_lock_shared());
  CHECK_FALSE(writer_in.load());  // the first reader still holds it

  // A reader arriving while the writer waits gets in only after the writer.
  auto late_reader = std::async(std::launch::async, [&] {
    std::shared_lock lk(mu);
    return writer_done.load();
  });
  std::this_thread::sleep_for(50ms);
  first.unlock();
  writer.get();
  CHECK(late_reader.get());

  CHECK(mu.try_lock());
  mu.unlock();
}
