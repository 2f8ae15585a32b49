// A cheap "nothing changed" test for a file that other processes change: an inotify watch
// polled without blocking. Asking for queued events (FIONREAD) costs about 265 ns on the 2-core
// test machine, a read(2) that finds none about 330 ns, against about 500-620 ns for an 8-byte
// pread(2) and 900-1300 ns for a stat(2) by path; it lets a per-operation refresh skip its own
// check while nothing happened.
//
// Every watch of the process shares one inotify instance: one look at its queue answers for all
// of them, and a Scope lets the watches asked during one refresh (the soft token's store and its
// metadata store's files) share that look instead of each making its own system call. Events taken off
// the queue are counted for the watches they concern, whoever's look took them.
//
// Events are queued by the kernel before the changing call (write, truncate, rename, unlink)
// returns to its caller, so a change made before a look is either taken by it (and then seen by
// the caller's own check that follows) or still queued for the next look.
// Where a watch cannot be trusted or had, unchanged() is always false and the caller does its
// own check as before:
// - a file system that is not local (ext2/3/4, xfs, btrfs, tmpfs): inotify does not see
//   another host's changes on a network file system;
// - no inotify instance or watch to be had;
// - a forked child of the process that made the watch (parent and child would drain one queue;
//   a child's new watches get an instance of its own);
// - after the watched file or directory went away (for good).
// A queue overflow counts as a change for every watch (each owner checks once, then trusts it
// again). Not seen: a change written through a shared memory mapping, and (for a directory
// entry) writes through a hard link in another directory. cdcp11 writes with write(2) and
// rename(2).
// One watch is not thread-safe (its owner's lock guards it), but for quiet(); different watches
// may be used from different threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace cdcp11 {

class ChangeWatch {
 public:
  enum class Kind {
    file,   // the file's inode: its writes, truncation, attributes, removal
    entry,  // the name in its directory: writes to it, a file renamed over it, its removal
  };

  // While one is alive on a thread, the shared queue is looked at only by the first unchanged()
  // of that thread: the others answer from what that look (and any other since) found. For the
  // checks of one operation, which may all be ordered at that first look. Nests.
  class Scope {
   public:
    Scope();
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
  };

  ChangeWatch(const std::string& path, Kind kind);
  ~ChangeWatch();
  ChangeWatch(const ChangeWatch&) = delete;
  ChangeWatch& operator=(const ChangeWatch&) = delete;

  // True only when no change came since the last settled(): the caller's last check still holds.
  bool unchanged();
  // The caller's own check, made after its last unchanged(), succeeded: changes counted after
  // that unchanged() still count.
  void settled() {
    mark_.store(observed_, std::memory_order_relaxed);
    checked_.store(true, std::memory_order_release);
  }
  // True only when no change came since the last settled(), as unchanged() would say, but
  // writing nothing of the watch's: for callers that may ask at once, while its owner's
  // unchanged() and settled() are not running (they hold the owner's lock shared, those
  // exclusively). Looks at the queue as unchanged() does (once per Scope).
  bool quiet() const;
  // Whether unchanged() can ever be true (for tests and figures).
  bool armed() const;

 private:
  friend struct WatchHub;
  int wd_ = -1;
  unsigned epoch_ = 0;  // the fork epoch the watch was made in
  std::string name_;         // Kind::entry: the name watched in its directory
  std::atomic<std::uint64_t> events_{0};  // events counted for this watch
  std::atomic<bool> dead_{false};
  std::uint64_t observed_ = 0;  // events_ at the last unchanged()
  std::atomic<std::uint64_t> mark_{0};  // events_ the caller's last check covers
  std::atomic<bool> checked_{false};     // settled() was called
};

}  // namespace cdcp11
