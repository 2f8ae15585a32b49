#include "softtoken/store/object_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <unordered_map>
#include <utility>

#include "common/log.h"
#include "softtoken/store/fs_util.h"
#include "softtoken/store/record_format.h"

namespace cdcp11::store {
namespace {

constexpr std::string_view kLog = "store";
constexpr std::string_view kFormatLine = "cdcp11-token-store 1\n";
constexpr std::string_view kFormatPrefix = "cdcp11-token-store ";
const std::string kObjects = "objects";
// Holds the previous objects directory during wipe(); removed on open if a crash left it.
const std::string kWipeDir = "objects.wipe";
const std::string kMeta = "meta";
const std::string kLock = "lock";
const std::string kFormat = "format";

Error make_error(Error::Code c, std::string msg) { return Error{c, std::move(msg)}; }

R<void> check_format(ByteView content, const std::string& path) {
  std::string_view s(reinterpret_cast<const char*>(content.data()), content.size());
  if (s == kFormatLine) return {};
  if (s.starts_with(kFormatPrefix)) {
    std::string v(s.substr(kFormatPrefix.size()));
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
    return fail(make_error(Error::Code::corrupt,
                           path + ": unsupported store format version '" + v + "'"));
  }
  return fail(make_error(Error::Code::corrupt, path + ": not a cdcp11 token store format file"));
}

// mkdir -p with mode 0700; fsyncs the parent of each directory it creates.
R<void> make_dirs(const std::string& dir) {
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    std::string part = dir.substr(0, pos);
    if (part.empty()) continue;
    if (::mkdir(part.c_str(), 0700) == 0) {
      auto slash = part.find_last_of('/');
      std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : part.substr(0, slash);
      UniqueFd pfd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!pfd) return fail(sys_error(errno, "open directory", parent));
      CDC_TRY(fsync_fd(pfd.get(), parent));
    } else if (errno != EEXIST) {
      return fail(sys_error(errno, "create directory", part));
    }
  }
  return {};
}

std::optional<FileId> stat_id(int dirfd, const std::string& name) {
  struct stat st {};
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return std::nullopt;
  return FileId::of(st);
}

}  // namespace

struct ObjectStore::Impl {
  std::string dir, objects_path, lock_path;
  UniqueFd dirfd, lockfd;
  pid_t owner_pid = ::getpid();
  int lock_depth = 0;  // > 0 while this instance holds the flock (re-entrant)

  // refresh() state: what this instance last saw.
  bool refreshed = false;
  std::uint64_t seen_gen = 0;
  std::unordered_map<std::string, FileId> known;  // uid -> identity of the file last read
  std::optional<FileId> meta_id;

  class Held {
   public:
    explicit Held(Impl* s) : s_(s) {}
    Held(Held&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    Held& operator=(Held&&) = delete;
    ~Held() {
      if (s_) s_->release();
    }

   private:
    Impl* s_;
  };

  // Takes the flock (op = LOCK_EX or LOCK_SH) unless this instance already holds it.
  R<Held> hold(int op) {
    if (::getpid() != owner_pid)
      return fail(make_error(Error::Code::io, dir + ": store instance used in a forked child; "
                                                    "open a new instance there"));
    if (lock_depth == 0) {
      while (::flock(lockfd.get(), op) != 0) {
        if (errno != EINTR) return fail(sys_error(errno, "lock", lock_path));
      }
    }
    ++lock_depth;
    return Held(this);
  }
  void release() {
    if (--lock_depth == 0) ::flock(lockfd.get(), LOCK_UN);
  }

  R<std::uint64_t> read_gen() {
    std::uint8_t b[8] = {};
    ssize_t n;
    do n = ::pread(lockfd.get(), b, sizeof b, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) return fail(sys_error(errno, "read", lock_path));
    std::uint64_t g = 0;
    for (int i = 0; i < 8; ++i) g |= std::uint64_t(b[i]) << (8 * i);
    return g;
  }

  // Called under the exclusive lock *before* a change is made: a reader that sees the new
  // generation then waits on the lock (refresh takes it shared) and sees the finished change;
  // a writer killed mid-change leaves a bumped generation, so nothing is missed.
  R<std::uint64_t> bump_gen() {
    CDC_ASSIGN(std::uint64_t g, read_gen());
    ++g;
    std::uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(g >> (8 * i));
    ssize_t n;
    do n = ::pwrite(lockfd.get(), b, sizeof b, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) return fail(sys_error(errno, "write", lock_path));
    if (n != sizeof b) return fail(make_error(Error::Code::no_space, "write " + lock_path + ": short write"));
    return g;
  }

  // mtime for a record written at generation g: (now, g mod 1e9 ns). Coarse kernel timestamps
  // plus inode reuse could otherwise give a rewritten file the identity (inode, size, mtime)
  // a reader already saw; the generation makes the nanoseconds unique per write.
  static timespec stamp(std::uint64_t g) {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    return {now.tv_sec, static_cast<long>(g % 1000000000u)};
  }

  R<UniqueFd> objects_dir() { return open_dir_at(dirfd.get(), kObjects, objects_path); }

  // Under the exclusive lock at open: finish what a crashed writer left behind.
  R<void> recover() {
    struct stat st {};
    if (::fstatat(dirfd.get(), kWipeDir.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      log::warn(kLog, "removing " + join(dir, kWipeDir) + " left by an interrupted wipe");
      CDC_TRY(remove_tree_flat(dirfd.get(), kWipeDir, join(dir, kWipeDir)));
      CDC_TRY(fsync_fd(dirfd.get(), dir));
    }
    if (::mkdirat(dirfd.get(), kObjects.c_str(), 0700) == 0) {
      CDC_TRY(fsync_fd(dirfd.get(), dir));
    } else if (errno != EEXIST) {
      return fail(sys_error(errno, "create directory", objects_path));
    }
    CDC_TRY(remove_stale_temps(dirfd.get(), dir));
    CDC_ASSIGN(auto od, objects_dir());
    return remove_stale_temps(od.get(), objects_path);
  }

  R<void> create_layout() {
    struct stat st {};
    if (::fstat(lockfd.get(), &st) != 0) return fail(sys_error(errno, "stat", lock_path));
    if (st.st_size < 8) {
      const std::uint8_t zero[8] = {};
      if (::pwrite(lockfd.get(), zero, sizeof zero, 0) != sizeof zero)
        return fail(sys_error(errno ? errno : ENOSPC, "write", lock_path));
      CDC_TRY(fsync_fd(lockfd.get(), lock_path));
    }
    if (::mkdirat(dirfd.get(), kObjects.c_str(), 0700) != 0 && errno != EEXIST)
      return fail(sys_error(errno, "create directory", objects_path));
    // The format file goes last: its presence means the layout is complete.
    return replace_file_at(dirfd.get(), dir, kFormat, view(kFormatLine), nullptr);
  }
};

ObjectStore::ObjectStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ObjectStore::~ObjectStore() = default;

const std::string& ObjectStore::dir() const { return impl_->dir; }

std::string ObjectStore::new_uid() { return random_hex(16); }

bool ObjectStore::is_valid_uid(std::string_view uid) {
  if (uid.size() != 32) return false;
  for (char c : uid)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

namespace {
R<void> check_uid(std::string_view uid) {
  if (ObjectStore::is_valid_uid(uid)) return {};
  return fail(make_error(Error::Code::bad_argument,
                         "invalid object uid (want 32 lowercase hex chars)"));
}
}  // namespace

R<std::unique_ptr<ObjectStore>> ObjectStore::open(const std::string& dir, bool create) {
  if (dir.empty()) return fail(make_error(Error::Code::bad_argument, "empty store directory"));
  auto s = std::make_unique<Impl>();
  s->dir = dir;
  while (s->dir.size() > 1 && s->dir.back() == '/') s->dir.pop_back();
  s->objects_path = join(s->dir, kObjects);
  s->lock_path = join(s->dir, kLock);

  if (create) CDC_TRY(make_dirs(s->dir));
  s->dirfd.reset(::open(s->dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!s->dirfd) return fail(sys_error(errno, "open directory", s->dir, true));

  const std::string format_path = join(s->dir, kFormat);
  auto format = read_file_at(s->dirfd.get(), kFormat, format_path);
  if (!format && format.error().code != Error::Code::not_found) return fail(format.error());
  if (!format && !create)
    return fail(make_error(Error::Code::not_found, s->dir + ": no token store here"));
  if (format) CDC_TRY(check_format(*format, format_path));

  // Own lock fd per instance: flock belongs to the open file description, so sharing one would
  // let two instances (or a parent and its forked child) both "hold" the lock.
  s->lockfd.reset(::openat(s->dirfd.get(), kLock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!s->lockfd) return fail(sys_error(errno, "open", s->lock_path));
  {
    CDC_ASSIGN(auto held, s->hold(LOCK_EX));
    if (!format) {
      // Another process may have created it while we waited for the lock.
      auto again = read_file_at(s->dirfd.get(), kFormat, format_path);
      if (again) {
        CDC_TRY(check_format(*again, format_path));
      } else if (again.error().code == Error::Code::not_found) {
        CDC_TRY(s->create_layout());
      } else {
        return fail(again.error());
      }
    }
    CDC_TRY(s->recover());
  }
  return std::unique_ptr<ObjectStore>(new ObjectStore(std::move(s)));
}

R<Bytes> ObjectStore::read_meta() {
  const std::string path = join(impl_->dir, kMeta);
  CDC_ASSIGN(Bytes file, read_file_at(impl_->dirfd.get(), kMeta, path));
  auto rec = decode_record(kMeta, file);
  if (!rec) {
    log::warn(kLog, path + " is corrupt: " + rec.error().reason);
    return fail(make_error(Error::Code::corrupt, path + ": " + rec.error().reason));
  }
  return std::move(*rec);
}

R<void> ObjectStore::write_meta(ByteView data) {
  CDC_ASSIGN(auto held, impl_->hold(LOCK_EX));
  CDC_ASSIGN(std::uint64_t g, impl_->bump_gen());
  const timespec ts = Impl::stamp(g);
  return replace_file_at(impl_->dirfd.get(), impl_->dir, kMeta, encode_record(kMeta, data), &ts);
}

R<void> ObjectStore::put(const std::string& uid, ByteView data) {
  CDC_TRY(check_uid(uid));
  CDC_ASSIGN(auto held, impl_->hold(LOCK_EX));
  CDC_ASSIGN(std::uint64_t g, impl_->bump_gen());
  CDC_ASSIGN(UniqueFd od, impl_->objects_dir());
  const timespec ts = Impl::stamp(g);
  return replace_file_at(od.get(), impl_->objects_path, uid, encode_record(uid, data), &ts);
}

R<void> ObjectStore::remove(const std::string& uid) {
  CDC_TRY(check_uid(uid));
  CDC_ASSIGN(auto held, impl_->hold(LOCK_EX));
  CDC_ASSIGN(UniqueFd od, impl_->objects_dir());
  const std::string path = join(impl_->objects_path, uid);
  struct stat st {};
  if (::fstatat(od.get(), uid.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    return fail(sys_error(errno, "stat", path, true));
  CDC_TRY(impl_->bump_gen());
  if (::unlinkat(od.get(), uid.c_str(), 0) != 0) return fail(sys_error(errno, "remove", path, true));
  return fsync_fd(od.get(), impl_->objects_path);
}

R<Bytes> ObjectStore::get(const std::string& uid) {
  CDC_TRY(check_uid(uid));
  const std::string path = join(impl_->objects_path, uid);
  CDC_ASSIGN(Bytes file, read_file_at(impl_->dirfd.get(), kObjects + "/" + uid, path));
  auto rec = decode_record(uid, file);
  if (!rec) {
    log::warn(kLog, path + " is corrupt: " + rec.error().reason);
    return fail(make_error(Error::Code::corrupt, path + ": " + rec.error().reason));
  }
  return std::move(*rec);
}

R<void> ObjectStore::wipe() {
  Impl& s = *impl_;
  CDC_ASSIGN(auto held, s.hold(LOCK_EX));
  CDC_TRY(s.bump_gen());
  // Meta first: a crash part-way leaves an uninitialised token (which the next C_InitToken
  // wipes again), never an initialised one with objects missing.
  if (::unlinkat(s.dirfd.get(), kMeta.c_str(), 0) != 0 && errno != ENOENT)
    return fail(sys_error(errno, "remove", join(s.dir, kMeta)));
  CDC_TRY(fsync_fd(s.dirfd.get(), s.dir));

  // Swap in an empty objects directory in one rename, so other processes (and a crash) see all
  // objects or none; then delete the old one.
  const std::string wipe_path = join(s.dir, kWipeDir);
  CDC_TRY(remove_tree_flat(s.dirfd.get(), kWipeDir, wipe_path));
  if (::mkdirat(s.dirfd.get(), kWipeDir.c_str(), 0700) != 0)
    return fail(sys_error(errno, "create directory", wipe_path));
  if (::renameat2(s.dirfd.get(), kWipeDir.c_str(), s.dirfd.get(), kObjects.c_str(),
                  RENAME_EXCHANGE) == 0) {
    CDC_TRY(fsync_fd(s.dirfd.get(), s.dir));
    CDC_TRY(remove_tree_flat(s.dirfd.get(), kWipeDir, wipe_path));
    return fsync_fd(s.dirfd.get(), s.dir);
  }
  const int err = errno;
  ::unlinkat(s.dirfd.get(), kWipeDir.c_str(), AT_REMOVEDIR);
  if (err != EINVAL && err != ENOSYS && err != ENOTSUP)
    return fail(sys_error(err, "exchange " + wipe_path + " with", s.objects_path));
  // Filesystem without RENAME_EXCHANGE: delete the files one by one (still under the lock).
  CDC_ASSIGN(UniqueFd od, s.objects_dir());
  CDC_ASSIGN(auto names, list_dir(od.get(), s.objects_path));
  for (const auto& n : names)
    if (::unlinkat(od.get(), n.c_str(), 0) != 0 && errno != ENOENT)
      return fail(sys_error(errno, "remove", join(s.objects_path, n)));
  return fsync_fd(od.get(), s.objects_path);
}

R<std::uint64_t> ObjectStore::generation() { return impl_->read_gen(); }

R<Changes> ObjectStore::refresh() {
  Impl& s = *impl_;
  {
    CDC_ASSIGN(std::uint64_t g, s.read_gen());
    if (s.refreshed && g == s.seen_gen) return Changes{};
  }
  // Shared lock: no writer is mid-change while we list, and the generation we record is the
  // one the listing reflects.
  CDC_ASSIGN(auto held, s.hold(LOCK_SH));
  CDC_ASSIGN(std::uint64_t gen, s.read_gen());

  Changes ch;
  ch.full_reload = !s.refreshed;
  std::optional<FileId> meta = stat_id(s.dirfd.get(), kMeta);
  ch.meta_changed = !s.refreshed || meta.has_value() != s.meta_id.has_value() ||
                    (meta && !(*meta == *s.meta_id));

  CDC_ASSIGN(UniqueFd od, s.objects_dir());
  CDC_ASSIGN(auto names, list_dir(od.get(), s.objects_path));
  std::unordered_map<std::string, FileId> now;
  now.reserve(names.size());
  for (auto& name : names) {
    if (!is_valid_uid(name)) {
      if (!std::string_view(name).starts_with(kTempPrefix))
        log::debug(kLog, "ignoring unexpected file " + join(s.objects_path, name));
      continue;
    }
    if (auto it = s.known.find(name); it != s.known.end()) {
      std::optional<FileId> id = stat_id(od.get(), name);
      if (!id) continue;  // vanished (only possible behind the store's back)
      if (*id == it->second) {
        now.emplace(std::move(name), *id);
        continue;
      }
    }
    const std::string path = join(s.objects_path, name);
    FileId id;
    auto file = read_file_at(od.get(), name, path, &id);
    if (!file) {
      if (file.error().code == Error::Code::not_found) continue;
      if (file.error().code != Error::Code::corrupt) return fail(file.error());
      log::warn(kLog, file.error().message);
      ch.corrupt.push_back(name);
      now.emplace(std::move(name), id);
      continue;
    }
    auto rec = decode_record(name, *file);
    if (!rec) {
      log::warn(kLog, path + " is corrupt: " + rec.error().reason);
      ch.corrupt.push_back(name);
    } else {
      ch.upserted.push_back(Record{name, std::move(*rec)});
    }
    now.emplace(std::move(name), id);
  }
  for (const auto& [uid, id] : s.known)
    if (!now.contains(uid)) ch.removed.push_back(uid);

  s.known = std::move(now);
  s.meta_id = meta;
  s.seen_gen = gen;
  s.refreshed = true;
  return ch;
}

R<void> ObjectStore::locked(const std::function<R<void>()>& fn) {
  CDC_ASSIGN(auto held, impl_->hold(LOCK_EX));
  return fn();
}

}  // namespace cdcp11::store
