// A helper process: this program run again (/proc/self/exe) with other arguments, talking over
// its stdin and stdout a line at a time. A fresh process, not a fork: a module initialised in
// the parent is not usable in a forked child (and SoftHSM2 2.6.1 would carry its state over).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "bench/measure.h"

namespace cdcp11::bench {

class Child {
 public:
  static BR<Child> spawn(const std::vector<std::string>& args);
  Child(Child&& o) noexcept;
  Child& operator=(Child&&) = delete;
  Child(const Child&) = delete;
  ~Child();  // closes its stdin and waits for it (killing it if it has not ended in 10 s)

  BR<void> write_line(std::string_view line);
  // The next line the child writes, without the newline; fails after timeout_s, or at its EOF.
  BR<std::string> read_line(double timeout_s);

 private:
  Child() = default;
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
  std::string buf_;
};

}  // namespace cdcp11::bench
