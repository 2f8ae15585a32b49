#include "common/bytes.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <utility>

namespace cdcp11 {

namespace {
std::atomic<WipeObserver> g_wipe_observer{nullptr};
}  // namespace

void set_wipe_observer(WipeObserver o) noexcept { g_wipe_observer.store(o); }

void secure_zero(void* p, std::size_t n) noexcept {
  if (p == nullptr || n == 0) return;
  // glibc's explicit_bzero: never elided, and word-wide (a volatile byte loop cost a fifth of a
  // 16 KiB AES-GCM call).
  ::explicit_bzero(p, n);
  if (auto o = g_wipe_observer.load(std::memory_order_relaxed)) o(p, n);
}

SecretBuffer::SecretBuffer(SecretBuffer&& o) noexcept
    : p_(std::exchange(o.p_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      mapped_(std::exchange(o.mapped_, 0)),
      locked_(std::exchange(o.locked_, false)) {}

SecretBuffer& SecretBuffer::operator=(SecretBuffer&& o) noexcept {
  if (this != &o) {
    wipe();
    p_ = std::exchange(o.p_, nullptr);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, 0);
    locked_ = std::exchange(o.locked_, false);
  }
  return *this;
}

bool SecretBuffer::assign(ByteView v) noexcept {
  wipe();
  if (v.empty()) return true;
  const long page = ::sysconf(_SC_PAGESIZE);
  const std::size_t ps = page > 0 ? static_cast<std::size_t>(page) : 4096;
  const std::size_t len = (v.size() + ps - 1) / ps * ps;
  void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return false;
  (void)::madvise(m, len, MADV_DONTDUMP);
  locked_ = ::mlock(m, len) == 0;
  p_ = static_cast<std::uint8_t*>(m);
  mapped_ = len;
  size_ = v.size();
  std::memcpy(p_, v.data(), v.size());
  return true;
}

void SecretBuffer::wipe() noexcept {
  if (!p_) return;
  secure_zero(p_, mapped_);
  if (locked_) ::munlock(p_, mapped_);
  ::munmap(p_, mapped_);
  p_ = nullptr;
  size_ = mapped_ = 0;
  locked_ = false;
}

std::string to_hex(ByteView v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(v.size() * 2);
  for (auto b : v) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool from_hex(std::string_view hex, Bytes& out) {
  if (hex.size() % 2) return false;
  Bytes r;
  r.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    int hi = hexval(hex[i]), lo = hexval(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    r.push_back(static_cast<std::uint8_t>(hi << 4 | lo));
  }
  out = std::move(r);
  return true;
}

bool ct_equal(ByteView a, ByteView b) noexcept {
  if (a.size() != b.size()) return false;
  std::uint8_t acc = 0;
  for (std::size_t i = 0; i < a.size(); ++i) acc |= a[i] ^ b[i];
  return acc == 0;
}

}  // namespace cdcp11
