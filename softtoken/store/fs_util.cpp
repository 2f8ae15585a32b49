#include "softtoken/store/fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/log.h"

namespace cdcp11::store {
namespace {

constexpr std::string_view kLog = "store";

}  // namespace

std::string errno_text(int err) {
  char buf[128];
  // GNU strerror_r: returns a pointer to the message (maybe not buf).
  return std::string(::strerror_r(err, buf, sizeof buf));
}

Error sys_error(int err, std::string_view op, std::string_view path, bool enoent_is_not_found) {
  Error e;
  if (err == ENOSPC || err == EDQUOT || err == EFBIG)
    e.code = Error::Code::no_space;
  else if (err == EMFILE || err == ENFILE || err == ENOMEM || err == ENOBUFS)
    e.code = Error::Code::transient;
  else if (err == ENOENT && enoent_is_not_found)
    e.code = Error::Code::not_found;
  else
    e.code = Error::Code::io;
  e.message = std::string(op) + " " + std::string(path) + ": " + errno_text(err);
  return e;
}

R<UniqueFd> open_dir_at(int dirfd, const std::string& name, const std::string& path) {
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fail(sys_error(errno, "open directory", path, true));
  return UniqueFd(fd);
}

R<void> fsync_fd(int fd, const std::string& path) {
  if (::fsync(fd) != 0) return fail(sys_error(errno, "fsync", path));
  return {};
}

R<void> write_all(int fd, ByteView data, const std::string& path) {
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(sys_error(errno, "write", path));
    }
    off += static_cast<std::size_t>(n);
  }
  return {};
}

R<Bytes> read_file_at(int dirfd, const std::string& name, const std::string& path, FileId* id) {
  // O_NONBLOCK: a FIFO planted in the directory must not hang us (no effect on regular files).
  UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd && errno == ELOOP) return fail(Error{Error::Code::corrupt, path + ": is a symlink"});
  if (!fd) return fail(sys_error(errno, "open", path, true));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(sys_error(errno, "stat", path));
  if (id) *id = FileId::of(st);
  if (!S_ISREG(st.st_mode))
    return fail(Error{Error::Code::corrupt, path + ": not a regular file"});
  Bytes out(static_cast<std::size_t>(st.st_size));
  std::size_t off = 0;
  while (off < out.size()) {
    ssize_t n = ::pread(fd.get(), out.data() + off, out.size() - off, static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(sys_error(errno, "read", path));
    }
    if (n == 0) break;  // shrank under us: the record check reports it
    off += static_cast<std::size_t>(n);
  }
  out.resize(off);
  return out;
}

R<void> replace_file_at(int dirfd, const std::string& dir_path, const std::string& name,
                        ByteView content, const timespec* mtime) {
  const std::string tmp = std::string(kTempPrefix) + name + "-" + random_hex(6);
  const std::string tmp_path = join(dir_path, tmp);
  UniqueFd fd(::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return fail(sys_error(errno, "create", tmp_path));

  auto written = [&]() -> R<void> {
    CDC_TRY(write_all(fd.get(), content, tmp_path));
    if (mtime) {
      const timespec times[2] = {{0, UTIME_OMIT}, *mtime};
      if (::futimens(fd.get(), times) != 0) return fail(sys_error(errno, "set mtime of", tmp_path));
    }
    CDC_TRY(fsync_fd(fd.get(), tmp_path));
    if (::close(fd.release()) != 0) return fail(sys_error(errno, "close", tmp_path));
    if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0)
      return fail(sys_error(errno, "rename " + tmp_path + " to", join(dir_path, name)));
    return {};
  }();
  if (!written) {
    fd.reset();
    if (::unlinkat(dirfd, tmp.c_str(), 0) != 0 && errno != ENOENT)
      log::warn(kLog, "could not remove temp file " + tmp_path + ": " + errno_text(errno));
    return written;
  }
  return fsync_fd(dirfd, dir_path);
}

R<std::vector<std::string>> list_dir(int dirfd, const std::string& path) {
  // fdopendir takes ownership of its fd, so give it a fresh one rather than dirfd.
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fail(sys_error(errno, "open directory", path));
  DIR* d = ::fdopendir(fd);
  if (!d) {
    int e = errno;
    ::close(fd);
    return fail(sys_error(e, "list", path));
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* de = ::readdir(d)) {
    std::string_view n(de->d_name);
    if (n != "." && n != "..") names.emplace_back(n);
    errno = 0;
  }
  int e = errno;
  ::closedir(d);
  if (e != 0) return fail(sys_error(e, "list", path));
  return names;
}

R<void> remove_stale_temps(int dirfd, const std::string& dir_path) {
  CDC_ASSIGN(auto names, list_dir(dirfd, dir_path));
  bool removed = false;
  for (const auto& n : names) {
    if (!n.starts_with(kTempPrefix)) continue;
    if (::unlinkat(dirfd, n.c_str(), 0) == 0) {
      removed = true;
      log::warn(kLog, "discarded stale temp file " + join(dir_path, n));
    } else if (errno != ENOENT) {
      log::warn(kLog, "could not remove stale temp file " + join(dir_path, n) + ": " +
                          errno_text(errno));
    }
  }
  if (removed) CDC_TRY(fsync_fd(dirfd, dir_path));
  return {};
}

R<void> remove_tree_flat(int dirfd, const std::string& name, const std::string& path) {
  auto sub = open_dir_at(dirfd, name, path);
  if (!sub) return sub.error().code == Error::Code::not_found ? R<void>{} : fail(sub.error());
  CDC_ASSIGN(auto names, list_dir(sub->get(), path));
  for (const auto& n : names)
    if (::unlinkat(sub->get(), n.c_str(), 0) != 0 && errno != ENOENT)
      return fail(sys_error(errno, "remove", join(path, n)));
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
    return fail(sys_error(errno, "remove directory", path));
  return {};
}

std::string random_hex(std::size_t nbytes) {
  Bytes b(nbytes);
  std::size_t off = 0;
  while (off < nbytes) {
    ssize_t n = ::getrandom(b.data() + off, nbytes - off, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // getrandom cannot fail otherwise on Linux >= 3.17 with these flags; abort is safer than
      // handing out predictable uids.
      log::error(kLog, "getrandom failed: " + errno_text(errno));
      std::abort();
    }
    off += static_cast<std::size_t>(n);
  }
  return to_hex(b);
}

}  // namespace cdcp11::store
