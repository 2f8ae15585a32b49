#include "common/change_watch.h"

#include <pthread.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string_view>
#include <unordered_map>

namespace cdcp11 {

namespace {

std::atomic<unsigned> g_fork_epoch{0};

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

struct ScopeState {
  int depth = 0;
  bool looked = false;  // the shared queue was looked at in the outermost scope
};
thread_local ScopeState t_scope;

}  // namespace

// The process's inotify instance and the watches on it, by watch descriptor (watches of one
// file or directory share a descriptor). Never destroyed: a watch may be destroyed by another
// static's destructor.
struct WatchHub {
  std::mutex mu;
  std::atomic<int> fd{-1};
  unsigned epoch = 0;  // the fork epoch fd and by_wd belong to
  bool registered = false;  // the fork handlers are in place
  std::unordered_multimap<int, ChangeWatch*> by_wd;

  static WatchHub& get();

  // Under mu. A forked child never reads its parent's queue: it leaves the instance to the
  // parent (whose watches it copied are dead in the child) and makes its own.
  bool ready(unsigned now) {
    if (epoch != now) {
      if (const int old = fd.exchange(-1); old >= 0) ::close(old);
      by_wd.clear();
      epoch = now;
    }
    if (fd.load() < 0) fd.store(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    return fd.load() >= 0;
  }

  int attach(ChangeWatch* w, const std::string& path, std::uint32_t mask, unsigned now) {
    std::lock_guard lk(mu);
    if (!ready(now)) return -1;
    // IN_MASK_ADD: another watch of the same file keeps the events it asked for.
    const int wd = ::inotify_add_watch(fd.load(), path.c_str(), mask | IN_MASK_ADD);
    if (wd >= 0) by_wd.emplace(wd, w);
    return wd;
  }

  void detach(ChangeWatch* w, int wd) {
    std::lock_guard lk(mu);
    if (w->epoch_ != epoch) return;  // registered with an instance a fork left behind
    bool shared = false;
    for (auto [it, end] = by_wd.equal_range(wd); it != end;) {
      if (it->second == w) it = by_wd.erase(it);
      else {
        shared = true;
        ++it;
      }
    }
    if (shared) return;
    ::inotify_rm_watch(fd.load(), wd);
    // The last watch gone (the module finalized, or unloaded): the instance goes too.
    if (by_wd.empty()) ::close(fd.exchange(-1));
  }

  // Takes what is queued and counts it for the watches it concerns.
  void look() {
    const int f = fd.load();
    if (int queued = 0; ::ioctl(f, FIONREAD, &queued) == 0 && queued == 0) return;
    std::lock_guard lk(mu);
    alignas(inotify_event) char buf[4096];
    for (;;) {
      const ssize_t n = ::read(f, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN)
          for (auto& [wd, w] : by_wd) w->dead_ = true;
        return;
      }
      for (ssize_t off = 0; off < n;) {
        inotify_event ev;
        std::memcpy(&ev, buf + off, sizeof ev);
        const std::string_view name(buf + off + sizeof ev, ev.len ? ::strnlen(buf + off + sizeof ev, ev.len) : 0);
        off += static_cast<ssize_t>(sizeof ev + ev.len);
        if (ev.mask & IN_Q_OVERFLOW) {
          // Events were lost: every watch's owner checks again.
          for (auto& [wd, w] : by_wd) w->events_.fetch_add(1, std::memory_order_release);
          continue;
        }
        for (auto [it, end] = by_wd.equal_range(ev.wd); it != end; ++it) {
          ChangeWatch* w = it->second;
          if (ev.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) w->dead_ = true;
          // A directory's event names its child; one without a name is the directory's own.
          if (w->name_.empty() || ev.len == 0 || name == w->name_) w->events_.fetch_add(1, std::memory_order_release);
        }
      }
    }
  }
};

namespace {
WatchHub* g_hub = nullptr;  // set before the fork handlers that use it are registered
}  // namespace

WatchHub& WatchHub::get() {
  static WatchHub* hub = [] {
    g_hub = new WatchHub;
    // The child gets the mutex unheld (another thread may have held it at the fork).
    g_hub->registered = ::pthread_atfork([] { g_hub->mu.lock(); }, [] { g_hub->mu.unlock(); },
                                         [] {
                                           g_fork_epoch.fetch_add(1, std::memory_order_relaxed);
                                           g_hub->mu.unlock();
                                         }) == 0;
    return g_hub;
  }();
  return *hub;
}

ChangeWatch::Scope::Scope() {
  if (t_scope.depth++ == 0) t_scope.looked = false;
}

ChangeWatch::Scope::~Scope() { --t_scope.depth; }

ChangeWatch::ChangeWatch(const std::string& path, Kind kind) {
  WatchHub& hub = WatchHub::get();
  // Without the fork handlers a child could not be told apart: never trust a watch then.
  if (!hub.registered) return;
  epoch_ = g_fork_epoch.load(std::memory_order_relaxed);
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (!local_file_system(dir)) return;
  if (kind == Kind::file) {
    wd_ = hub.attach(this, path, IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF, epoch_);
  } else {
    name_ = path.substr(slash == std::string::npos ? 0 : slash + 1);
    wd_ = hub.attach(this, dir,
                     IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                         IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR,
                     epoch_);
  }
}

ChangeWatch::~ChangeWatch() {
  if (wd_ >= 0) WatchHub::get().detach(this, wd_);
}

bool ChangeWatch::armed() const { return wd_ >= 0 && !dead_.load(); }

namespace {
// One look per Scope (or per call outside one).
void look_in_scope() {
  if (t_scope.depth == 0 || !t_scope.looked) {
    WatchHub::get().look();
    if (t_scope.depth > 0) t_scope.looked = true;
  }
}
}  // namespace

bool ChangeWatch::unchanged() {
  if (wd_ < 0 || dead_.load()) return false;
  if (g_fork_epoch.load(std::memory_order_relaxed) != epoch_) {
    dead_ = true;
    return false;
  }
  look_in_scope();
  observed_ = events_.load(std::memory_order_acquire);
  return checked_.load(std::memory_order_relaxed) && observed_ == mark_.load(std::memory_order_relaxed) &&
         !dead_.load();
}

bool ChangeWatch::quiet() const {
  if (wd_ < 0 || dead_.load() || !checked_.load(std::memory_order_acquire) ||
      g_fork_epoch.load(std::memory_order_relaxed) != epoch_)
    return false;
  look_in_scope();
  return events_.load(std::memory_order_acquire) == mark_.load(std::memory_order_relaxed) && !dead_.load();
}

}  // namespace cdcp11
