#include "bench/child.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace cdcp11::bench {
namespace {

void close_fd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

}  // namespace

BR<Child> Child::spawn(const std::vector<std::string>& args) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) return fail(std::string("pipe: ") + std::strerror(errno));
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return fail(std::string("pipe: ") + std::strerror(errno));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::vector<char*> argv;
  std::string self = "/proc/self/exe";
  argv.push_back(self.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  Child c;
  const int rc = posix_spawn(&c.pid_, self.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  close(out[1]);
  c.to_ = in[1];
  c.from_ = out[0];
  if (rc != 0) {
    c.pid_ = -1;
    return fail(std::string("posix_spawn: ") + std::strerror(rc));
  }
  return c;
}

Child::Child(Child&& o) noexcept
    : pid_(o.pid_), to_(o.to_), from_(o.from_), buf_(std::move(o.buf_)) {
  o.pid_ = -1;
  o.to_ = o.from_ = -1;
}

Child::~Child() {
  close_fd(to_);
  if (pid_ > 0) {
    int status = 0;
    const double deadline = now_s() + 10;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (now_s() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      usleep(1000);
    }
  }
  close_fd(from_);
}

BR<void> Child::write_line(std::string_view line) {
  std::string l(line);
  l += '\n';
  std::size_t off = 0;
  while (off < l.size()) {
    const ssize_t n = write(to_, l.data() + off, l.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(std::string("helper process: write: ") + std::strerror(errno));
    off += static_cast<std::size_t>(n);
  }
  return {};
}

BR<std::string> Child::read_line(double timeout_s) {
  const double deadline = now_s() + timeout_s;
  for (;;) {
    if (auto nl = buf_.find('\n'); nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      return line;
    }
    const double left = deadline - now_s();
    if (left <= 0) return fail("helper process: no answer in " + std::to_string(timeout_s) + " s");
    pollfd p{from_, POLLIN, 0};
    const int r = poll(&p, 1, static_cast<int>(left * 1000) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return fail(std::string("helper process: poll: ") + std::strerror(errno));
    if (r == 0) continue;
    char chunk[256];
    const ssize_t n = read(from_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(std::string("helper process ended without an answer"));
    buf_.append(chunk, static_cast<std::size_t>(n));
  }
}

}  // namespace cdcp11::bench
