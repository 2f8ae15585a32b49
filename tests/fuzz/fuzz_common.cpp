#include "tests/fuzz/fuzz_common.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <vector>

#include "common/log.h"

namespace cdcp11::fuzz {
namespace {

std::vector<std::string>& dirs() {
  static auto* d = new std::vector<std::string>;
  return *d;
}

void remove_dirs() {
  std::error_code ec;
  for (auto& d : dirs()) std::filesystem::remove_all(d, ec);
}

}  // namespace

std::string scratch_dir(const char* tag) {
  const char* chosen = std::getenv("CDCP11_FUZZ_TMP");
  std::string base = chosen && *chosen ? chosen : "/dev/shm";
  if (::access(base.c_str(), W_OK) != 0) {
    const char* t = std::getenv("TMPDIR");
    base = t && *t ? t : "/tmp";
  }
  std::string tmpl = base + "/cdcp11-fuzz-" + tag + "-XXXXXX";
  if (!::mkdtemp(tmpl.data())) violated("cannot create a scratch directory under " + base);
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(remove_dirs); });
  dirs().push_back(tmpl);
  return tmpl;
}

void quiet_logs() {
  const char* want = std::getenv("CDCP11_FUZZ_LOG");
  if (!want || std::string_view(want) != "1") ::setenv("CDCP11_LOG_FILE", "/dev/null", 1);
  log::configure_from_env();
}

void write_file(const std::string& path, ByteView data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) violated("cannot write " + path);
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) violated("cannot write " + path);
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
}

void violated(const std::string& what) {
  std::fprintf(stderr, "FUZZ PROPERTY VIOLATED: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace cdcp11::fuzz
