#include "softtoken/store/object_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <ctime>
#include <set>
#include <unordered_map>
#include <utility>

#include "common/change_watch.h"
#include "common/log.h"
#include "softtoken/store/fs_util.h"
#include "softtoken/store/record_format.h"

namespace cdcp11::store {
namespace {

constexpr std::string_view kLog = "store";
constexpr std::string_view kFormatPrefix = "cdcp11-token-store ";
std::string format_line(int version) { return std::string(kFormatPrefix) + std::to_string(version) + "\n"; }
const std::string kObjects = "objects";
// Holds the previous objects directory during wipe(); removed on open if a crash left it.
const std::string kWipeDir = "objects.wipe";
const std::string kMeta = "meta";
const std::string kLock = "lock";
const std::string kFormat = "format";
const std::string kWipeName = "wipe";  // journal entry of wipe()

// DIR/lock: u64 generation, then a journal of the last kJournalSlots changes, slot g % N
// holding (u64 generation, name padded to 32 bytes), so refresh() after a few changes
// re-checks only those names instead of stat()ing every file.
constexpr std::uint64_t kJournalSlots = 256;
constexpr std::size_t kSlotSize = 40;
constexpr off_t kJournalOffset = 8;
constexpr off_t kLockFileSize = kJournalOffset + kJournalSlots * kSlotSize;
off_t slot_offset(std::uint64_t g) {
  return kJournalOffset + static_cast<off_t>((g % kJournalSlots) * kSlotSize);
}

void put_le64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint64_t get_le64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t(p[i]) << (8 * i);
  return v;
}

Error make_error(Error::Code c, std::string msg) { return Error{c, std::move(msg)}; }

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
  int format = 0;      // the layout's format version, as last read or written

  // refresh() state: what this instance last saw.
  bool refreshed = false;
  std::uint64_t seen_gen = 0;
  std::unordered_map<std::string, FileId> known;  // uid -> identity of the file last read
  std::optional<FileId> meta_id;
  std::set<std::string> unreadable;  // reported unreadable; tried again at every refresh
  // Lets refresh() skip reading the generation while nothing wrote DIR/lock (writers bump it
  // with pwrite before every change).
  std::optional<ChangeWatch> gen_watch;
  // refreshed && unreadable.empty(), for unchanged_since_refresh() (which other threads call).
  std::atomic<bool> trusted{false};

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
    return get_le64(b);
  }

  // Called under the exclusive lock *before* a change to `name` (a uid, kMeta or kWipeName) is
  // made: a reader that sees the new generation then waits on the lock (refresh takes it
  // shared) and sees the finished change; a writer killed mid-change leaves a bumped
  // generation, so nothing is missed. The journal slot goes first so that a reader never sees
  // a generation whose slot is not written yet.
  R<std::uint64_t> bump_gen(std::string_view name) {
    CDC_ASSIGN(std::uint64_t g, read_gen());
    ++g;
    std::uint8_t slot[kSlotSize] = {};
    put_le64(slot, g);
    std::copy(name.begin(), name.end(), slot + 8);
    CDC_TRY(pwrite_all(slot, kSlotSize, slot_offset(g)));
    std::uint8_t b[8];
    put_le64(b, g);
    CDC_TRY(pwrite_all(b, sizeof b, 0));
    return g;
  }

  R<void> pwrite_all(const std::uint8_t* p, std::size_t n, off_t off) {
    ssize_t w;
    do w = ::pwrite(lockfd.get(), p, n, off);
    while (w < 0 && errno == EINTR);
    if (w < 0) return fail(sys_error(errno, "write", lock_path));
    if (static_cast<std::size_t>(w) != n)
      return fail(make_error(Error::Code::no_space, "write " + lock_path + ": short write"));
    return {};
  }

  // Names changed in generations (seen_gen, gen], from the journal; nullopt when the journal
  // no longer covers that range (or a wipe happened), so a full listing is needed.
  R<std::optional<std::vector<std::string>>> journal_since(std::uint64_t gen) {
    using Out = std::optional<std::vector<std::string>>;
    if (gen < seen_gen || gen - seen_gen > kJournalSlots) return Out{};
    std::vector<std::uint8_t> ring(kJournalSlots * kSlotSize, 0);
    ssize_t n;
    do n = ::pread(lockfd.get(), ring.data(), ring.size(), kJournalOffset);
    while (n < 0 && errno == EINTR);
    if (n < 0) return fail(sys_error(errno, "read", lock_path));
    std::vector<std::string> names;
    for (std::uint64_t g = seen_gen + 1; g <= gen; ++g) {
      const std::uint8_t* slot = ring.data() + (slot_offset(g) - kJournalOffset);
      if (get_le64(slot) != g) return Out{};
      std::string name(reinterpret_cast<const char*>(slot + 8), 32);
      name.resize(name.find('\0') == std::string::npos ? 32 : name.find('\0'));
      if (name == kMeta) continue;  // meta is always re-checked
      if (!is_valid_uid(name)) return Out{};  // wipe, or garbage: list everything
      names.push_back(std::move(name));
    }
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    return Out{std::move(names)};
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
    if (st.st_size < kLockFileSize) {
      // Allocate it all now so that later journal writes do not need new blocks.
      const std::vector<std::uint8_t> zero(kLockFileSize, 0);
      CDC_TRY(pwrite_all(zero.data(), zero.size(), 0));
      CDC_TRY(fsync_fd(lockfd.get(), lock_path));
    }
    if (::mkdirat(dirfd.get(), kObjects.c_str(), 0700) != 0 && errno != EEXIST)
      return fail(sys_error(errno, "create directory", objects_path));
    // The format file goes last: its presence means the layout is complete.
    format = ObjectStore::kNewestFormat;
    return replace_file_at(dirfd.get(), dir, kFormat, view(format_line(format)), nullptr);
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
  if (format) {
    CDC_ASSIGN(s->format, parse_format(*format, format_path));
  }

  // Own lock fd per instance: flock belongs to the open file description, so sharing one would
  // let two instances (or a parent and its forked child) both "hold" the lock.
  s->lockfd.reset(::openat(s->dirfd.get(), kLock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!s->lockfd) return fail(sys_error(errno, "open", s->lock_path));
  s->gen_watch.emplace(s->lock_path, ChangeWatch::Kind::file);
  {
    CDC_ASSIGN(auto held, s->hold(LOCK_EX));
    if (!format) {
      // Another process may have created it while we waited for the lock.
      auto again = read_file_at(s->dirfd.get(), kFormat, format_path);
      if (again) {
        CDC_ASSIGN(s->format, parse_format(*again, format_path));
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

R<void> ObjectStore::write_meta(ByteView data) {
  CDC_ASSIGN(auto held, impl_->hold(LOCK_EX));
  CDC_ASSIGN(std::uint64_t g, impl_->bump_gen(kMeta));
  const timespec ts = Impl::stamp(g);
  return replace_file_at(impl_->dirfd.get(), impl_->dir, kMeta, encode_record(kMeta, data), &ts);
}

R<void> ObjectStore::put(const std::string& uid, ByteView data) {
  CDC_TRY(check_uid(uid));
  CDC_ASSIGN(auto held, impl_->hold(LOCK_EX));
  CDC_ASSIGN(std::uint64_t g, impl_->bump_gen(uid));
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
  CDC_TRY(impl_->bump_gen(uid));
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
  CDC_TRY(s.bump_gen(kWipeName));
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

bool ObjectStore::unchanged_since_refresh() const {
  return impl_->trusted.load(std::memory_order_acquire) && impl_->gen_watch->quiet();
}

namespace {

// What load_one found for objects/<name>.
struct Loaded {
  enum class Kind { absent, unchanged, read, unreadable } kind = Kind::absent;
  FileId id;  // unchanged / read (a corrupt file is `read` too: it is in ch.corrupt)
};

// Reads objects/<name> into ch (upserted or corrupt) unless its identity equals *known. A file
// that cannot be read is logged and reported in ch.unreadable (only the first time: `quiet`
// when it was unreadable before); a transient error (out of descriptors) fails the call.
R<Loaded> load_one(int od, const std::string& objects_path, const std::string& name,
                   const FileId* known, bool quiet, Changes& ch) {
  using K = Loaded::Kind;
  const std::string path = join(objects_path, name);
  auto unreadable = [&](const Error& e) -> R<Loaded> {
    if (e.code == Error::Code::transient) return fail(e);
    if (!quiet) {
      log::error(kLog, e.message + ": the record is skipped until it can be read");
      ch.unreadable.push_back(name);
    }
    return Loaded{K::unreadable, {}};
  };
  if (known) {
    struct stat st {};
    if (::fstatat(od, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return Loaded{};
      return unreadable(sys_error(errno, "stat", path));
    }
    if (FileId::of(st) == *known) return Loaded{K::unchanged, *known};
  }
  FileId id;
  auto file = read_file_at(od, name, path, &id);
  if (!file) {
    if (file.error().code == Error::Code::not_found) return Loaded{};
    if (file.error().code != Error::Code::corrupt) return unreadable(file.error());
    log::warn(kLog, file.error().message);
    ch.corrupt.push_back(name);
    return Loaded{K::read, id};
  }
  auto rec = decode_record(name, *file);
  if (!rec) {
    log::warn(kLog, path + " is corrupt: " + rec.error().reason);
    ch.corrupt.push_back(name);
  } else {
    ch.upserted.push_back(Record{name, std::move(*rec)});
  }
  return Loaded{K::read, id};
}

// The meta record now; an error only when it cannot be read at all at the moment.
R<MetaSnapshot> snapshot_meta(int dirfd, const std::string& path) {
  MetaSnapshot m;
  auto file = read_file_at(dirfd, kMeta, path);
  if (!file) {
    if (file.error().code == Error::Code::not_found) return m;
    if (file.error().code != Error::Code::corrupt) return fail(file.error());
    m.state = MetaSnapshot::State::corrupt;
    m.reason = file.error().message;
    return m;
  }
  auto rec = decode_record(kMeta, *file);
  if (!rec) {
    m.state = MetaSnapshot::State::corrupt;
    m.reason = path + ": " + rec.error().reason;
    return m;
  }
  m.state = MetaSnapshot::State::present;
  m.data = std::move(*rec);
  return m;
}

}  // namespace

R<Bytes> ObjectStore::read_meta() {
  const std::string path = join(impl_->dir, kMeta);
  CDC_ASSIGN(auto m, snapshot_meta(impl_->dirfd.get(), path));
  switch (m.state) {
    case MetaSnapshot::State::absent: return fail(make_error(Error::Code::not_found, path + ": no meta record"));
    case MetaSnapshot::State::corrupt: return fail(make_error(Error::Code::corrupt, m.reason));
    case MetaSnapshot::State::present: break;
  }
  return std::move(m.data);
}

R<Changes> ObjectStore::refresh() {
  Impl& s = *impl_;
  if (s.refreshed && s.unreadable.empty()) {
    if (s.gen_watch->unchanged()) return Changes{};
    CDC_ASSIGN(std::uint64_t g, s.read_gen());
    if (g == s.seen_gen) {
      s.gen_watch->settled();
      return Changes{};
    }
  }
  // Shared lock: no writer is mid-change while we look, and the generation we record is the
  // one what we read reflects.
  CDC_ASSIGN(auto held, s.hold(LOCK_SH));
  CDC_ASSIGN(std::uint64_t gen, s.read_gen());

  Changes ch;
  ch.full_reload = !s.refreshed;
  std::optional<FileId> meta = stat_id(s.dirfd.get(), kMeta);
  ch.meta_changed = !s.refreshed || meta.has_value() != s.meta_id.has_value() ||
                    (meta && !(*meta == *s.meta_id));
  if (ch.meta_changed) {
    CDC_ASSIGN(ch.meta, snapshot_meta(s.dirfd.get(), join(s.dir, kMeta)));
  }
  CDC_ASSIGN(UniqueFd od, s.objects_dir());

  // Everything is read before this instance's state changes, so an error leaves it as it was.
  std::vector<std::pair<std::string, Loaded>> updates;
  std::unordered_map<std::string, FileId> now;
  std::set<std::string> unreadable;
  auto load = [&](const std::string& name) -> R<Loaded> {
    auto it = s.known.find(name);
    const FileId* known = it == s.known.end() ? nullptr : &it->second;
    return load_one(od.get(), s.objects_path, name, known, s.unreadable.contains(name), ch);
  };

  std::optional<std::vector<std::string>> journal;
  if (s.refreshed) {
    CDC_ASSIGN(journal, s.journal_since(gen));
  }
  if (journal) {
    // Only the names changed since our last refresh, and those that could not be read before.
    std::set<std::string> names(journal->begin(), journal->end());
    names.insert(s.unreadable.begin(), s.unreadable.end());
    for (const auto& name : names) {
      CDC_ASSIGN(auto l, load(name));
      if (l.kind == Loaded::Kind::absent && s.known.contains(name)) ch.removed.push_back(name);
      updates.emplace_back(name, l);
    }
  } else {
    CDC_ASSIGN(auto names, list_dir(od.get(), s.objects_path));
    now.reserve(names.size());
    for (auto& name : names) {
      if (!is_valid_uid(name)) {
        if (!std::string_view(name).starts_with(kTempPrefix))
          log::debug(kLog, "ignoring unexpected file " + join(s.objects_path, name));
        continue;
      }
      CDC_ASSIGN(auto l, load(name));
      if (l.kind == Loaded::Kind::unreadable) unreadable.insert(name);
      else if (l.kind != Loaded::Kind::absent) now.emplace(std::move(name), l.id);
    }
    for (const auto& [uid, id] : s.known)
      if (!now.contains(uid) && !unreadable.contains(uid)) ch.removed.push_back(uid);
  }

  if (journal) {
    for (auto& [name, l] : updates) {
      s.unreadable.erase(name);
      switch (l.kind) {
        case Loaded::Kind::absent: s.known.erase(name); break;
        case Loaded::Kind::unreadable:
          s.known.erase(name);
          s.unreadable.insert(name);
          break;
        default: s.known.insert_or_assign(name, l.id);
      }
    }
  } else {
    s.known = std::move(now);
    s.unreadable = std::move(unreadable);
  }
  s.meta_id = meta;
  s.seen_gen = gen;
  s.refreshed = true;
  s.gen_watch->settled();
  s.trusted.store(s.unreadable.empty(), std::memory_order_release);
  return ch;
}

R<int> ObjectStore::parse_format(ByteView content, const std::string& path, int newest) {
  std::string_view s(reinterpret_cast<const char*>(content.data()), content.size());
  if (!s.starts_with(kFormatPrefix))
    return fail(make_error(Error::Code::corrupt, path + ": not a cdcp11 token store format file"));
  std::string v(s.substr(kFormatPrefix.size()));
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  for (int known = 1; known <= newest; ++known)
    if (s == format_line(known)) return known;
  return fail(make_error(Error::Code::corrupt, path + ": unsupported store format version '" + v +
                                                   "' (this build reads 1 to " + std::to_string(newest) +
                                                   "): the token was written by a newer cdcp11"));
}

int ObjectStore::format() const { return impl_->format; }

R<int> ObjectStore::read_format() {
  const std::string path = join(impl_->dir, kFormat);
  CDC_ASSIGN(auto content, read_file_at(impl_->dirfd.get(), kFormat, path));
  CDC_ASSIGN(impl_->format, parse_format(content, path));
  return impl_->format;
}

R<void> ObjectStore::set_format(int version) {
  if (version < 1 || version > kNewestFormat)
    return fail(make_error(Error::Code::bad_argument, "no store format version " + std::to_string(version)));
  CDC_ASSIGN(auto held, impl_->hold(LOCK_EX));
  CDC_TRY(replace_file_at(impl_->dirfd.get(), impl_->dir, kFormat, view(format_line(version)), nullptr));
  impl_->format = version;
  return {};
}

R<void> ObjectStore::locked(const std::function<R<void>()>& fn) {
  CDC_ASSIGN(auto held, impl_->hold(LOCK_EX));
  return fn();
}

}  // namespace cdcp11::store
