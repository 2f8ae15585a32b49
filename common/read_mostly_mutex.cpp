#include "common/read_mostly_mutex.h"

#include <chrono>
#include <thread>

namespace cdcp11 {

namespace {
constexpr std::size_t kNoSlot = ~std::size_t{0};
// initial-exec: read at a fixed offset, not through __tls_get_addr on every lock (the library is
// dlopen()ed; one word of the static TLS reserve is what glibc keeps it for).
[[gnu::tls_model("initial-exec")]] thread_local std::size_t t_slot = kNoSlot;
std::atomic<std::size_t> g_next_slot{0};
}  // namespace

std::size_t this_thread_slot() noexcept {
  if (t_slot == kNoSlot) t_slot = g_next_slot.fetch_add(1, std::memory_order_relaxed);
  return t_slot;
}

std::size_t ReadMostlyMutex::slot() noexcept { return this_thread_slot() % kSlots; }

void ReadMostlyMutex::wait_for_writer() noexcept {
  // The writer holds writers_ from before it raises the flag until after it lowers it.
  std::lock_guard lk(writers_);
}

bool ReadMostlyMutex::readers_gone() const noexcept {
  for (const auto& s : slots_)
    if (s.readers.load(std::memory_order_seq_cst) != 0) return false;
  return true;
}

void ReadMostlyMutex::lock() {
  writers_.lock();
  writer_.store(true, std::memory_order_seq_cst);
  // Readers hold it for a call at most; a long one (a key generation, a vault request) is
  // waited for without spinning.
  for (int spins = 0; !readers_gone(); ++spins) {
    if (spins < 64) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(spins < 1024 ? 20 : 500));
  }
}

bool ReadMostlyMutex::try_lock() {
  if (!writers_.try_lock()) return false;
  writer_.store(true, std::memory_order_seq_cst);
  if (readers_gone()) return true;
  writer_.store(false, std::memory_order_seq_cst);
  writers_.unlock();
  return false;
}

void ReadMostlyMutex::unlock() noexcept {
  writer_.store(false, std::memory_order_seq_cst);
  writers_.unlock();
}

}  // namespace cdcp11
