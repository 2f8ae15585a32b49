// Small POSIX helpers for the store: errno -> Error mapping, full reads/writes, and the atomic
// durable replace of one file relative to a directory fd. Every fd is opened O_CLOEXEC.
#pragma once

#include <sys/stat.h>

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "softtoken/store/object_store.h"
#include "softtoken/store/unique_fd.h"

namespace cdcp11::store {

// Temp files are named ".tmp-<target>-<random>" next to their target; they only exist while
// their writer holds the store lock, so any found under the lock are left over from a crash.
inline constexpr std::string_view kTempPrefix = ".tmp-";

std::string errno_text(int err);
// ENOSPC/EDQUOT/EFBIG -> no_space, EMFILE/ENFILE/ENOMEM/ENOBUFS -> transient, ENOENT ->
// not_found when enoent_is_not_found, else io.
Error sys_error(int err, std::string_view op, std::string_view path,
                bool enoent_is_not_found = false);

inline std::string join(std::string_view dir, std::string_view name) {
  std::string s(dir);
  s += '/';
  s += name;
  return s;
}

// Identity of a file version as seen by stat: a rewrite always changes it because the writer
// renames a new inode into place and stamps mtime with the store generation (see object_store.cpp).
struct FileId {
  ino_t ino = 0;
  off_t size = 0;
  timespec mtime{};
  timespec ctime{};
  static FileId of(const struct stat& st) {
    return {st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
  }
  bool operator==(const FileId& o) const {
    return ino == o.ino && size == o.size && mtime.tv_sec == o.mtime.tv_sec &&
           mtime.tv_nsec == o.mtime.tv_nsec && ctime.tv_sec == o.ctime.tv_sec &&
           ctime.tv_nsec == o.ctime.tv_nsec;
  }
};

R<UniqueFd> open_dir_at(int dirfd, const std::string& name, const std::string& path);
R<void> fsync_fd(int fd, const std::string& path);
R<void> write_all(int fd, ByteView data, const std::string& path);

// Reads all of DIRFD/name (not following symlinks). ENOENT -> not_found. Fills *id if given.
R<Bytes> read_file_at(int dirfd, const std::string& name, const std::string& path,
                      FileId* id = nullptr);

// Replaces DIRFD/name with content atomically and durably: temp file, write, set mtime (if
// given), fsync, rename, fsync the directory. On failure the temp file is removed and the old
// file (if any) is untouched, except when only the final directory fsync failed.
R<void> replace_file_at(int dirfd, const std::string& dir_path, const std::string& name,
                        ByteView content, const timespec* mtime);

// Names in DIRFD except "." and "..".
R<std::vector<std::string>> list_dir(int dirfd, const std::string& path);

// Removes DIRFD/.tmp-* files (logging each); returns an error only if listing fails.
R<void> remove_stale_temps(int dirfd, const std::string& dir_path);

// Removes every non-directory entry of DIRFD/name, then the directory itself.
R<void> remove_tree_flat(int dirfd, const std::string& name, const std::string& path);

// A random lowercase hex string of 2*nbytes chars (getrandom).
std::string random_hex(std::size_t nbytes);

}  // namespace cdcp11::store
