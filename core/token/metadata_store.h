// A token's metadata store: the vendor state of its objects, in <dir>/metadata.json (dir: the
// group's token.dir; the soft token's directory, or beside the configuration for an HSM group).
// - objects: by uid (CKA_UNIQUE_ID), the object's vendor attributes (CKA_CDC_*: mirror state,
//   Azure key id and name, origin, last error) where they are not core's defaults; the Token
//   reads and writes them (core/token/vendor_state.h) for every backend. An HSM object's entry
//   also holds its locator (how the forwarding backend finds the object again: see
//   ForwardToken::identify); empty for the soft token. The soft token's entries are
//   authenticated, a private object's encrypted (mac, sealed: core/token/vendor_state.h). An
//   object whose id is derived from its locator and whose vendor attributes are the defaults
//   has no entry;
// - refs: an HSM group's attribute-only key references (Azure-resident keys), by uid.
// The file is replaced atomically (write_file_atomically) and every change is made under an
// flock of <dir>/metadata.lock, re-reading the file first, so several processes share it.
// metadata.lock holds an 8-byte counter every change bumps before the file is replaced: a change
// re-reads the file only when another instance changed it since this one last read or wrote it
// (a vault sync adds thousands of entries, and each re-read parses them all). Readers need no
// lock. Not thread-safe: the backend's lock guards it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
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
};

struct MetaData {
  std::map<std::string, MetaEntry> objects;
  std::map<std::string, core::AttrMap> refs;
};

class MetadataStore {
 public:
  static core::R<std::unique_ptr<MetadataStore>> open(const std::string& dir);

  const std::string& path() const { return path_; }
  // The data as last read; reload() re-reads it when the file changed and says whether it did.
  const MetaData& data() const { return data_; }
  core::R<bool> reload();
  // Locks, re-reads the file if another instance changed it since this one read or wrote it,
  // applies f, writes the file if f returns true, unlocks.
  core::R<void> update(const std::function<core::R<bool>(MetaData&)>& f);

 private:
  MetadataStore(std::string dir, std::string path) : dir_(std::move(dir)), path_(std::move(path)) {}
  // Reads the file into data_ and its stamp; data_ is then not known to match a generation.
  core::R<void> read_file();

  std::string dir_, path_;
  MetaData data_;
  struct Stamp {
    std::uint64_t ino = 0, size = 0;
    std::int64_t mtime_ns = 0;
    bool operator==(const Stamp&) const = default;
  } stamp_{};  // {} while the file does not exist
  // The file's stamp now: {} when it does not exist.
  core::R<Stamp> file_stamp() const;
  // data_ is the file of generation gen_ (of metadata.lock's counter): true after an update,
  // false after any other read and after an update that failed (f or the write may have changed
  // data_ but not the file).
  bool current_ = false;
  std::uint64_t gen_ = 0;
};

// The vendor attributes (CKA_CDC_*), which live in the store, not in a backend.
bool is_vendor_attribute(CK_ATTRIBUTE_TYPE t);

}  // namespace cdcp11::core
