// Shared by the fuzz targets: scratch directories, quiet logs, an input reader, a hard failure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/bytes.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace cdcp11::fuzz {

// A fresh directory (on /dev/shm when it is writable, where fsync costs nothing), removed at exit.
std::string scratch_dir(const char* tag);

// Module log to /dev/null unless CDCP11_FUZZ_LOG=1: every rejected input would log a line.
void quiet_logs();

// Writes a whole file (mode 0600), aborting on failure: a harness that cannot set up is broken.
void write_file(const std::string& path, ByteView data);

// A property of the code under test does not hold: report and abort, which the fuzzer records
// as a crash with its input.
[[noreturn]] void violated(const std::string& what);

// Consumes the fuzz input front to back; past the end it yields zeros and empty spans.
class Reader {
 public:
  Reader(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  bool empty() const { return n_ == 0; }
  std::size_t left() const { return n_; }
  std::uint8_t u8() {
    if (!n_) return 0;
    --n_;
    return *d_++;
  }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= std::uint32_t(u8()) << (8 * i);
    return v;
  }
  ByteView bytes(std::size_t n) {
    if (n > n_) n = n_;
    ByteView v(d_, n);
    d_ += n;
    n_ -= n;
    return v;
  }
  ByteView rest() { return bytes(n_); }
  std::string_view text(std::size_t n) {
    auto v = bytes(n);
    return {reinterpret_cast<const char*>(v.data()), v.size()};
  }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
};

}  // namespace cdcp11::fuzz
