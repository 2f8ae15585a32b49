// Durable on-disk store of one token: a meta record and a set of object records, each an opaque
// blob (the soft token encrypts what needs it before it gets here). Several processes may open
// the same directory at once; every change is visible to the others after their next refresh().
//
// Guarantees
// - Every put/remove/write_meta is atomic and durable before it returns: write a temp file,
//   fsync it, rename over the target, fsync the directory. A process killed at any instant leaves
//   each record either wholly old or wholly new; open() discards stale temp files.
// - Every record file carries a header (magic, format version, length, checksum): a damaged file
//   is reported (and skipped by refresh, with its uid in the Changes::corrupt list), never
//   silently returned as data.
// - Writers serialise on an exclusive flock of DIR/lock; each committed change bumps a generation
//   counter kept in DIR/lock, so refresh() is a cheap read when nothing changed.
//
// Layout (format version 2; a new store is made with it):
//   DIR/format           "cdcp11-token-store <version>\n". 1: the records may hold their objects'
//                        vendor attributes; 2: they do not, those live in the token's
//                        metadata store (core/token/metadata_store.h). The soft token
//                        sets 2 when it has moved them (softtoken/soft_migrate.cpp), so a build
//                        that reads only 1 refuses the token rather than writing vendor state
//                        there that this one ignores.
//   DIR/lock             flock target; holds the 8-byte little-endian generation counter
//                        and a journal of the last 256 changed names (see object_store.cpp)
//   DIR/meta             meta record
//   DIR/objects/<uid>    one file per object record; uid = 32 lowercase hex chars
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"

namespace cdcp11::store {

struct Error {
  enum class Code {
    not_found,      // record (or store, on open without create) does not exist
    corrupt,        // header/checksum mismatch, unknown format version
    io,             // filesystem error: message names the path and strerror
    transient,      // out of file descriptors or memory (EMFILE, ENFILE, ENOMEM): retry later
    no_space,       // ENOSPC / EDQUOT: nothing was changed
    bad_argument,   // malformed uid etc.
  } code = Code::io;
  std::string message;
};
template <class T>
using R = Result<T, Error>;

struct Record {
  std::string uid;
  Bytes data;
};

// The meta record as refresh() read it, under the same lock as the object records.
struct MetaSnapshot {
  enum class State { absent, present, corrupt } state = State::absent;
  Bytes data;          // present: the record's payload
  std::string reason;  // corrupt: why it failed its check
};

struct Changes {
  std::vector<Record> upserted;        // new or changed since the last refresh (or all, first time)
  std::vector<std::string> removed;    // uids gone since the last refresh
  std::vector<std::string> corrupt;    // uids whose file failed its check (left on disk)
  // uids whose file exists but could not be read (EIO, EACCES, ...): skipped, reported once, and
  // tried again at every later refresh until it reads (then it comes back as upserted).
  std::vector<std::string> unreadable;
  bool full_reload = false;            // true on the first refresh after open
  // The meta record was written or removed since the last refresh (always true on the first);
  // `meta` then holds what it is now, e.g. after another process's C_InitToken or C_SetPIN.
  bool meta_changed = false;
  MetaSnapshot meta;
};
// Notes on refresh():
// - A uid listed in `corrupt` or `unreadable` is no longer valid data: drop it from any index.
//   `removed` lists uids reported by an earlier refresh (as upserted or corrupt) whose file is
//   gone now.
// - It fails (and changes nothing, so the next call sees the same changes) only when the store
//   cannot be read as a whole now: the lock file, the objects directory or the meta record
//   unreadable, or a transient error (out of file descriptors) on any file.
// - It detects changes through the generation counter and change journal in DIR/lock, which
//   every put/remove/write_meta/wipe updates: with the generation unchanged it costs one pread;
//   after up to 256 changes it re-checks only the changed uids; after more (or a wipe) it lists
//   objects/ and re-reads the files whose identity (inode, size, mtime, ctime) differs. A file
//   edited behind the store's back is thus only noticed by such a full listing (get() always
//   checks the file it reads).

class ObjectStore {
 public:
  // Opens DIR; with create=true, creates it (mode 0700) and its layout if absent.
  static R<std::unique_ptr<ObjectStore>> open(const std::string& dir, bool create);
  ~ObjectStore();
  ObjectStore(const ObjectStore&) = delete;
  ObjectStore& operator=(const ObjectStore&) = delete;

  const std::string& dir() const;

  // The layout's format version (see above): as opened, read_format() reads it again (another
  // process may have set it), set_format() replaces it (under the lock, durably).
  static constexpr int kNewestFormat = 2;
  int format() const;
  R<int> read_format();
  R<void> set_format(int version);
  // The version a format file states; corrupt when it is none of 1..newest (the message says
  // the token was written by a newer cdcp11). newest: the reader's (tests pass an older one).
  static R<int> parse_format(ByteView content, const std::string& path, int newest = kNewestFormat);

  // A fresh random uid (32 lowercase hex chars).
  static std::string new_uid();
  // Exactly 32 lowercase hex chars; every uid argument is checked with this (bad_argument).
  static bool is_valid_uid(std::string_view uid);

  // Meta record; not_found when never written.
  R<Bytes> read_meta();
  R<void> write_meta(ByteView data);

  R<void> put(const std::string& uid, ByteView data);
  R<void> remove(const std::string& uid);  // not_found if absent
  R<Bytes> get(const std::string& uid);    // reads the file now

  // Removes every object record and the meta record (token re-initialisation), atomically with
  // respect to other processes (under the lock).
  R<void> wipe();

  // What changed on disk since the previous refresh() of this instance (by any process).
  R<Changes> refresh();
  // True only when a refresh() now would find nothing changed and nothing left unreadable; false
  // when it cannot tell. Reads no file and writes nothing: threads may ask at once, while no
  // refresh() runs.
  bool unchanged_since_refresh() const;
  // Current generation counter (reads DIR/lock).
  R<std::uint64_t> generation();

  // Not thread-safe: the owning token serialises calls on one instance.

  // Runs fn while holding the exclusive cross-process lock, for read-modify-write sequences (PIN
  // retry counters). put/remove/write_meta/wipe called from inside fn must not deadlock: the lock
  // is re-entrant within this instance and thread.
  R<void> locked(const std::function<R<void>()>& fn);

 private:
  struct Impl;
  explicit ObjectStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cdcp11::store
