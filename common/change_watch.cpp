#include "common/change_watch.h"

#include <pthread.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string_view>

namespace cdcp11 {

namespace {

std::atomic<unsigned> g_fork_epoch{0};
std::atomic<int> g_instances{0};

unsigned fork_epoch() {
  static const bool registered = [] {
    return ::pthread_atfork(nullptr, nullptr, [] { g_fork_epoch.fetch_add(1, std::memory_order_relaxed); }) == 0;
  }();
  // Without the handler a child could not be told apart: never trust a watch then.
  return registered ? g_fork_epoch.load(std::memory_order_relaxed) : ~0u;
}

bool local_file_system(const std::string& dir) {
  struct statfs fs {};
  if (::statfs(dir.c_str(), &fs) != 0) return false;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case 0xEF53UL:      // ext2/3/4
    case 0x58465342UL:  // xfs
    case 0x9123683EUL:  // btrfs
    case 0x01021994UL:  // tmpfs
      return true;
    default: return false;
  }
}

}  // namespace

ChangeWatch::ChangeWatch(const std::string& path, Kind kind) {
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  epoch_ = fork_epoch();
  if (epoch_ == ~0u || !local_file_system(dir)) return;
  if (g_instances.fetch_add(1) >= kMaxInstances) {
    g_instances.fetch_sub(1);
    return;
  }
  fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd_ < 0) {
    g_instances.fetch_sub(1);
    return;
  }
  int wd;
  if (kind == Kind::file) {
    wd = ::inotify_add_watch(fd_, path.c_str(), IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF);
  } else {
    name_ = path.substr(slash == std::string::npos ? 0 : slash + 1);
    wd = ::inotify_add_watch(fd_, dir.c_str(),
                             IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM |
                                 IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
  }
  if (wd < 0) dead_ = true;
}

ChangeWatch::~ChangeWatch() {
  if (fd_ < 0) return;
  ::close(fd_);
  g_instances.fetch_sub(1);
}

bool ChangeWatch::unchanged() {
  if (fd_ < 0 || dead_) return false;
  if (g_fork_epoch.load(std::memory_order_relaxed) != epoch_) {
    dead_ = true;
    return false;
  }
  // Nothing queued (the usual answer): FIONREAD says so a little cheaper than a read that fails.
  if (int queued = 0; ::ioctl(fd_, FIONREAD, &queued) == 0 && queued == 0) return !pending_;
  alignas(inotify_event) char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) dead_ = true;
      break;
    }
    for (ssize_t off = 0; off < n;) {
      inotify_event ev;
      std::memcpy(&ev, buf + off, sizeof ev);
      const char* name = buf + off + sizeof ev;
      off += static_cast<ssize_t>(sizeof ev + ev.len);
      if (ev.mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) dead_ = true;
      // A directory's event names its child; one without a name is the directory's own.
      if (name_.empty() || ev.len == 0 || name_ == std::string_view(name, ::strnlen(name, ev.len))) pending_ = true;
    }
  }
  return !dead_ && !pending_;
}

}  // namespace cdcp11
