// A cheap "nothing changed" test for a file that other processes change: an inotify watch
// polled without blocking. Asking it for queued events (FIONREAD) costs about 265 ns on the 2-core
// test machine, a read(2) that finds none about 330 ns, against about 500-620 ns for an 8-byte
// pread(2) and 900-1300 ns for a stat(2) by path; it lets a per-operation refresh skip its own
// check while nothing happened.
//
// Events are queued by the kernel before the changing call (write, truncate, rename, unlink)
// returns to its caller, so a change made before our poll is either drained by the poll (and
// then seen by the caller's own check that follows) or still queued for the next poll.
// Where a watch cannot be trusted or had, unchanged() is always false and the caller does its
// own check as before:
// - a file system that is not local (ext2/3/4, xfs, btrfs, tmpfs): inotify does not see
//   another host's changes on a network file system;
// - no inotify instance to be had, or cdcp11 holding kMaxInstances of them already in this
//   process (instances are a per-user resource other programs need too);
// - a forked child of the process that made the watch (parent and child would drain one queue);
// - after the queue overflowed or the watched file or directory went away (for good).
// Not seen: a change written through a shared memory mapping, and (for a directory entry)
// writes through a hard link in another directory. cdcp11 writes with write(2) and rename(2).
// Not thread-safe: the owner's lock guards it.
#pragma once

#include <string>

namespace cdcp11 {

class ChangeWatch {
 public:
  enum class Kind {
    file,   // the file's inode: its writes, truncation, attributes, removal
    entry,  // the name in its directory: writes to it, a file renamed over it, its removal
  };
  static constexpr int kMaxInstances = 8;

  ChangeWatch(const std::string& path, Kind kind);
  ~ChangeWatch();
  ChangeWatch(const ChangeWatch&) = delete;
  ChangeWatch& operator=(const ChangeWatch&) = delete;

  // True only when no change came since the last settled(): the caller's last check still holds.
  bool unchanged();
  // The caller's own check succeeded (after an unchanged() that said false): later changes count.
  void settled() { pending_ = false; }
  // Whether unchanged() can ever be true (for tests and figures).
  bool armed() const { return fd_ >= 0 && !dead_; }

 private:
  int fd_ = -1;
  unsigned epoch_ = 0;  // the fork epoch the watch was made in
  bool pending_ = true;
  bool dead_ = false;
  std::string name_;  // Kind::entry: the name watched in its directory
};

}  // namespace cdcp11
