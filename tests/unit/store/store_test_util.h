// Shared helpers for the object-store tests: scratch directories, deterministic payloads,
// forked children.
#pragma once

#include <dirent.h>
#include <ftw.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "softtoken/store/object_store.h"

namespace cdcp11::store::test {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/cdcp11-store-XXXXXX";
    if (!::mkdtemp(tmpl.data())) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    ::nftw(path_.c_str(),
           [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
           FTW_DEPTH | FTW_PHYS);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Content that can be recomputed from (uid, version) alone, with varying lengths.
inline Bytes payload_for(const std::string& uid, unsigned version) {
  std::size_t len = 16 + (static_cast<unsigned char>(uid[0]) * 7u + version * 13u) % 700u;
  Bytes b(len);
  std::uint32_t x = version * 2654435761u;
  for (char c : uid) x = x * 31u + static_cast<unsigned char>(c);
  for (auto& v : b) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    v = static_cast<std::uint8_t>(x);
  }
  return b;
}

// Names in dir starting with prefix.
inline std::vector<std::string> entries(const std::string& dir, const std::string& prefix = "") {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* de = ::readdir(d)) {
      std::string n = de->d_name;
      if (n != "." && n != ".." && n.rfind(prefix, 0) == 0) out.push_back(n);
    }
    ::closedir(d);
  }
  return out;
}

// Runs fn in a forked child and returns its exit code (or 128 + signal). The child never
// returns into doctest: it _exits with fn's result.
inline int run_in_child(const std::function<int()>& fn) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int rc = 99;
    try {
      rc = fn();
    } catch (...) {
    }
    ::_exit(rc);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

inline std::unique_ptr<ObjectStore> must_open(const std::string& dir, bool create = true) {
  auto r = ObjectStore::open(dir, create);
  if (!r) {
    std::fprintf(stderr, "open %s failed: %s\n", dir.c_str(), r.error().message.c_str());
    std::abort();
  }
  return std::move(*r);
}

}  // namespace cdcp11::store::test
