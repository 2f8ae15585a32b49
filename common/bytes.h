// Byte buffers. SecureBytes zeroizes its storage when freed or reallocated, for key material,
// PINs and anything derived from them; SecretBuffer holds a long-lived secret (the token key)
// in memory kept out of core dumps and swap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cdcp11 {

// Overwrites memory in a way the optimizer may not elide.
void secure_zero(void* p, std::size_t n) noexcept;

// For tests: called by secure_zero after it zeroed [p, p + n), while that memory is still
// allocated, so a test can see what was wiped without touching freed memory. nullptr to remove.
using WipeObserver = void (*)(const void* p, std::size_t n) noexcept;
void set_wipe_observer(WipeObserver o) noexcept;

template <class T>
struct ZeroizingAllocator {
  using value_type = T;
  ZeroizingAllocator() noexcept = default;
  template <class U>
  ZeroizingAllocator(const ZeroizingAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return std::allocator<T>{}.allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept {
    secure_zero(p, n * sizeof(T));
    std::allocator<T>{}.deallocate(p, n);
  }
  template <class U>
  bool operator==(const ZeroizingAllocator<U>&) const noexcept { return true; }
};

using Bytes = std::vector<std::uint8_t>;
using SecureBytes = std::vector<std::uint8_t, ZeroizingAllocator<std::uint8_t>>;
using ByteView = std::span<const std::uint8_t>;

// A fixed-size home for a long-lived secret: pages of its own, excluded from core dumps
// (MADV_DONTDUMP) and locked in RAM where RLIMIT_MEMLOCK allows (a failed mlock is not an
// error: the secret is still wiped), zeroed before the pages are returned.
class SecretBuffer {
 public:
  SecretBuffer() = default;
  ~SecretBuffer() { wipe(); }
  SecretBuffer(SecretBuffer&& o) noexcept;
  SecretBuffer& operator=(SecretBuffer&& o) noexcept;
  SecretBuffer(const SecretBuffer&) = delete;
  SecretBuffer& operator=(const SecretBuffer&) = delete;

  // Replaces the content with a copy of v. False when no pages could be mapped (out of memory);
  // the buffer is then empty.
  [[nodiscard]] bool assign(ByteView v) noexcept;
  void wipe() noexcept;

  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }
  const std::uint8_t* data() const noexcept { return p_; }
  ByteView view() const noexcept { return {p_, size_}; }

 private:
  std::uint8_t* p_ = nullptr;
  std::size_t size_ = 0;
  std::size_t mapped_ = 0;
  bool locked_ = false;
};

inline ByteView view(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline Bytes to_bytes(ByteView v) { return Bytes(v.begin(), v.end()); }
inline SecureBytes to_secure(ByteView v) { return SecureBytes(v.begin(), v.end()); }

std::string to_hex(ByteView v);
// Returns false on odd length or a non-hex character.
bool from_hex(std::string_view hex, Bytes& out);

// Constant-time comparison of equal-length buffers; false when lengths differ.
bool ct_equal(ByteView a, ByteView b) noexcept;

}  // namespace cdcp11
