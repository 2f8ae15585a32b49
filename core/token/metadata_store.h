// A token's metadata store: the vendor state of its objects, in <dir> (dir: the group's
// token.dir; the soft token's directory, or beside the configuration for an HSM group).
// - objects: by uid (CKA_UNIQUE_ID), the object's vendor attributes (CKA_CDC_*: mirror state,
//   Azure key id and name, origin, last error) where they are not core's defaults; the Token
//   reads and writes them (core/token/vendor_state.h) for every backend. An HSM object's entry
//   also holds its locator (how the forwarding backend finds the object again: see
//   ForwardToken::identify); empty for the soft token. The soft token's entries are
//   authenticated, a private object's encrypted (mac, sealed: core/token/vendor_state.h). An
//   object whose id is derived from its locator and whose vendor attributes are the defaults
//   has no entry;
// - refs: an HSM group's attribute-only key references (Azure-resident keys), by uid.
//
// Files (several processes share them):
// - metadata.json, the snapshot: every entry, replaced atomically (write_file_atomically);
// - metadata.changes, the changes made since: one line per change (its entries put and erased),
//   appended and fdatasync'ed. A change costs what it changes, not the whole store (a vault sync
//   adds thousands of entries, one change each). When the changes outgrow the snapshot, a change
//   writes a new snapshot, then empties the changes file. Replaying a change sets its entries to
//   what they were after it, so a change replayed over a snapshot that already holds it (a crash
//   between the two steps) changes nothing. A last line without its newline (a writer killed
//   mid-write, or still writing) is not a change: readers skip it, the next writer cuts it off;
// - metadata.lock: every change is made under its flock, after reading the other instances'
//   changes. It holds an 8-byte counter every change bumps before it writes, so that a change
//   reads the files only when another instance changed them since this one last did.
// Readers take no lock: a reader that sees the snapshot replaced while it read reads again.
// Not thread-safe: the backend's lock guards it.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "core/attributes.h"
#include "core/errors.h"

namespace cdcp11::core {

struct MetaEntry {
  std::string locator;
  core::AttrMap vendor;     // CKA_CDC_* only; empty when sealed
  std::int64_t created = 0;  // unix seconds: young entries are not pruned (their object may be
                             // in the HSM but not yet in another process's listing)
  // Where the backend protects vendor state (core::VendorSeal; vendor_state.h says what is):
  // mac authenticates vendor (a public object's), sealed holds it encrypted (a private object's).
  Bytes mac, sealed;
  bool operator==(const MetaEntry& o) const {
    return locator == o.locator && vendor.map() == o.vendor.map() && created == o.created && mac == o.mac &&
           sealed == o.sealed;
  }
};

struct MetaData {
  std::map<std::string, MetaEntry> objects;
  std::map<std::string, core::AttrMap> refs;
};

// One change of a store: the entries it puts and erases, read against the data as it was before.
class MetaChange {
 public:
  explicit MetaChange(const MetaData& before) : before_(before) {}
  const MetaData& before() const { return before_; }
  void put(const std::string& uid, MetaEntry e) { objects_[uid] = std::move(e); }
  void erase(const std::string& uid) { objects_[uid] = std::nullopt; }
  void put_ref(const std::string& uid, core::AttrMap a) { refs_[uid] = std::move(a); }
  void erase_ref(const std::string& uid) { refs_[uid] = std::nullopt; }

 private:
  friend class MetadataStore;
  const MetaData& before_;
  std::map<std::string, std::optional<MetaEntry>> objects_;  // nullopt: erased
  std::map<std::string, std::optional<core::AttrMap>> refs_;
};

class MetadataStore {
 public:
  static core::R<std::unique_ptr<MetadataStore>> open(const std::string& dir);

  const std::string& path() const { return path_; }
  const std::string& changes_path() const { return changes_path_; }
  // The data as last read; reload() reads what changed since and says whether anything did.
  const MetaData& data() const { return data_; }
  core::R<bool> reload();
  // Locks, reads what other instances changed since this one last read, lets f say what to
  // change (nothing: nothing is written), writes it, unlocks. data() changes only when the
  // change was written.
  core::R<void> update(const std::function<core::R<void>(MetaChange&)>& f);

  // The objects' entries that changed in data() since the last call (all: any may have).
  struct Changed {
    bool all = false;
    std::set<std::string> uids;
  };
  Changed take_changed();

 private:
  MetadataStore(std::string dir) : dir_(dir), path_(dir + "/metadata.json"), changes_path_(dir + "/metadata.changes") {}
  struct Stamp {
    std::uint64_t ino = 0, size = 0;
    std::int64_t mtime_ns = 0;
    bool operator==(const Stamp&) const = default;
    static Stamp of(const struct ::stat& st) {
      return {static_cast<std::uint64_t>(st.st_ino), static_cast<std::uint64_t>(st.st_size),
              static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
    }
  };
  // A file's stamp now: {} when it does not exist.
  static core::R<Stamp> stamp_of(const std::string& path);
  // Reads the snapshot and every change into data_.
  core::R<void> read_all();
  // Reads the changes appended since changes_end_ into data_; false when the snapshot was
  // replaced or the changes file is not the one read so far (read_all() then).
  core::R<bool> read_new_changes(bool& any);
  // Brings data_ up to the files: the new changes, or all of it.
  core::R<bool> catch_up();
  void note_changed(const std::string& uid);

  std::string dir_, path_, changes_path_;
  MetaData data_;
  Stamp snapshot_{};          // of the snapshot data_ was read from; {} while there is none
  std::uint64_t changes_ino_ = 0;  // the changes file read (0: none)
  std::uint64_t changes_end_ = 0;  // where its last change read ends
  Changed changed_;
};

// The vendor attributes (CKA_CDC_*), which live in the store, not in a backend.
bool is_vendor_attribute(CK_ATTRIBUTE_TYPE t);

}  // namespace cdcp11::core
