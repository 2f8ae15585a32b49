#include "common/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace cdcp11 {

namespace {
std::string sys_error(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}
}  // namespace

Result<void, std::string> write_file_atomically(const std::string& path, std::string_view content, unsigned mode) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  // O_EXCL under a random name: a temp file a crashed writer left (even of this PID) is no obstacle.
  std::string tmp = (dir / ("." + target.filename().string() + ".tmp.XXXXXX")).string();
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return fail(sys_error("cannot create a temporary file beside", path));
  auto cleanup = [&](std::string e) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return fail(std::move(e));
  };
  if (::fchmod(fd, mode) != 0) return cleanup(sys_error("cannot set the mode of", tmp));
  for (std::size_t off = 0; off < content.size();) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return cleanup(sys_error("cannot write", tmp));
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return cleanup(sys_error("cannot fsync", tmp));
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string e = sys_error("cannot rename over", path);
    ::unlink(tmp.c_str());
    return fail(std::move(e));
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return fail(sys_error("cannot open directory", dir.string()));
  const int rc = ::fsync(dfd);
  ::close(dfd);
  if (rc != 0) return fail(sys_error("cannot fsync directory", dir.string()));
  return {};
}

}  // namespace cdcp11
