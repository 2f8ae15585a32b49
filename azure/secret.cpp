#include "azure/secret.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace cdcp11::azure {

Result<Secret, Error> load_private_file(const std::string& path, std::string_view what) {
  const std::string op = "read " + std::string(what);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return fail(make_error(ErrorKind::secret_file, op,
                           "The " + std::string(what) + " file " + path + " cannot be opened: " +
                               std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(make_error(ErrorKind::secret_file, op,
                           "The " + std::string(what) + " file " + path + " is not a regular file"));
  }
  const bool group = st.st_mode & 070, other = st.st_mode & 007;
  if (group || other) {
    ::close(fd);
    std::string who = group && other ? "its group and by others" : group ? "its group" : "others";
    return fail(make_error(ErrorKind::secret_file, op,
                           "The " + std::string(what) + " file " + path + " may be read by " + who +
                               "; refusing to use it: run chmod 600 " + path));
  }
  SecureBytes data;
  data.reserve(static_cast<std::size_t>(st.st_size) + 1);
  uint8_t buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      secure_zero(buf, sizeof buf);
      return fail(make_error(ErrorKind::secret_file, op,
                             "The " + std::string(what) + " file " + path + " cannot be read: " + std::strerror(e)));
    }
    if (n == 0) break;
    data.insert(data.end(), buf, buf + n);
  }
  secure_zero(buf, sizeof buf);
  ::close(fd);
  return Secret(std::move(data));
}

Result<Secret, Error> load_secret_file(const std::string& path, std::string_view what) {
  CDC_ASSIGN(Secret s, load_private_file(path, what));
  SecureBytes b = s.bytes();
  if (!b.empty() && b.back() == '\n') b.pop_back();
  if (!b.empty() && b.back() == '\r') b.pop_back();
  if (b.empty())
    return fail(make_error(ErrorKind::secret_file, "read " + std::string(what),
                           "The " + std::string(what) + " file " + path + " is empty"));
  return Secret(std::move(b));
}

Result<Secret, Error> load_secret_env(const std::string& name, std::string_view what) {
  const char* v = std::getenv(name.c_str());
  if (!v || !*v)
    return fail(make_error(ErrorKind::config, "read " + std::string(what),
                           "The environment variable " + name + " that should hold the " + std::string(what) +
                               " is not set"));
  return Secret(std::string_view(v));
}

}  // namespace cdcp11::azure
