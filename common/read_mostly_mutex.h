// A shared mutex for locks that nearly every call takes shared and few take exclusively (the
// module's state, the session table, a token's object cache). A std::shared_mutex makes each
// reader write the lock's one cache line, so two threads each doing a million small calls a
// second spend their time passing that line between cores (#13: two threads of 16-byte AES-GCM
// scaled 1.4×). Here a reader writes only a counter of its own, one of kSlots cache lines picked
// per thread; a writer raises a flag and waits until every counter is zero.
//
// Writers are preferred: a reader that finds the flag raised steps back and waits for the writer.
// So a thread must not take it shared twice (a writer arriving in between would wait for the outer
// hold while the inner waits for the writer). Meets the standard's SharedMutex requirements for
// lock/unlock/lock_shared/unlock_shared, so std::shared_lock and std::unique_lock work with it.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <mutex>

namespace cdcp11 {

// A number per thread, handed out in turn from 0: spreads per-thread state over slots (the
// mutex's reader counters, a key's cipher contexts) so that few threads share one.
std::size_t this_thread_slot() noexcept;

class ReadMostlyMutex {
 public:
  static constexpr std::size_t kSlots = 16;

  ReadMostlyMutex() = default;
  ReadMostlyMutex(const ReadMostlyMutex&) = delete;
  ReadMostlyMutex& operator=(const ReadMostlyMutex&) = delete;

  void lock_shared() noexcept {
    auto& readers = slots_[slot()].readers;
    for (;;) {
      readers.fetch_add(1, std::memory_order_seq_cst);
      if (!writer_.load(std::memory_order_seq_cst)) return;
      readers.fetch_sub(1, std::memory_order_release);
      wait_for_writer();
    }
  }
  // False, without waiting, while a writer holds or waits for it.
  bool try_lock_shared() noexcept {
    auto& readers = slots_[slot()].readers;
    readers.fetch_add(1, std::memory_order_seq_cst);
    if (!writer_.load(std::memory_order_seq_cst)) return true;
    readers.fetch_sub(1, std::memory_order_release);
    return false;
  }
  void unlock_shared() noexcept { slots_[slot()].readers.fetch_sub(1, std::memory_order_release); }

  void lock();
  bool try_lock();
  void unlock() noexcept;

 private:
  // 128 bytes: the CPU may fetch lines in pairs, and a pair shared by two threads' counters
  // would pass between cores like one line.
  struct alignas(128) Slot {
    std::atomic<long> readers{0};
  };
  // This thread's slot: threads take them in turn, so a few threads rarely share one.
  static std::size_t slot() noexcept;
  void wait_for_writer() noexcept;
  bool readers_gone() const noexcept;

  std::array<Slot, kSlots> slots_{};
  alignas(128) std::atomic<bool> writer_{false};
  std::mutex writers_;  // held by the writer for as long as it writes
};

}  // namespace cdcp11
