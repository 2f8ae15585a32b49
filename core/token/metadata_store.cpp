#include "core/token/metadata_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "cdcp11/cdcp11.h"
#include "common/atomic_file.h"
#include "common/log.h"
#include "softtoken/store/unique_fd.h"

namespace cdcp11::core {

bool is_vendor_attribute(CK_ATTRIBUTE_TYPE t) { return (t & ~0xFFFFUL) == CKA_CDC_BASE; }

namespace {

constexpr const char* kLog = "metadata";
// The changes file is folded into a new snapshot once it is larger than the snapshot and this.
constexpr std::uint64_t kFoldAbove = 64 * 1024;
// Uids of changed entries kept for take_changed(); past this, "all".
constexpr std::size_t kChangedUidsKept = 4096;

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;
using Value = rapidjson::Value;

std::string attrs_hex(const core::AttrMap& a) { return to_hex(a.serialize()); }

R<core::AttrMap> attrs_from_hex(const std::string& hex, const std::string& what) {
  Bytes b;
  if (!from_hex(hex, b)) return core::err(Errc::device_error, what + " is not hex");
  auto a = core::AttrMap::deserialize(b);
  secure_zero(b.data(), b.size());
  if (!a) return core::err(Errc::device_error, what + " is damaged: " + a.error().message);
  return a;
}

void write_entry(Writer& w, const MetaEntry& e) {
  w.StartObject();
  w.Key("locator");
  w.String(e.locator.c_str());
  w.Key("vendor");
  w.String(attrs_hex(e.vendor).c_str());
  if (!e.mac.empty()) {
    w.Key("mac");
    w.String(to_hex(e.mac).c_str());
  }
  if (!e.sealed.empty()) {
    w.Key("sealed");
    w.String(to_hex(e.sealed).c_str());
  }
  w.Key("created");
  w.Int64(e.created);
  w.EndObject();
}

R<MetaEntry> read_entry(const Value& v, const std::string& what) {
  if (!v.IsObject() || !v.HasMember("locator") || !v["locator"].IsString())
    return core::err(Errc::device_error, what + " has no locator");
  MetaEntry e;
  e.locator = v["locator"].GetString();
  if (v.HasMember("vendor") && v["vendor"].IsString()) {
    CDC_ASSIGN(e.vendor, attrs_from_hex(v["vendor"].GetString(), what));
  }
  for (auto [key, field] : {std::pair{"mac", &e.mac}, std::pair{"sealed", &e.sealed}})
    if (v.HasMember(key) && (!v[key].IsString() || !from_hex(v[key].GetString(), *field)))
      return core::err(Errc::device_error, what + ": " + key + " is not hex");
  if (v.HasMember("created") && v["created"].IsInt64()) e.created = v["created"].GetInt64();
  return e;
}

std::string encode_snapshot(const MetaData& d) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("version");
  w.Uint(1);
  w.Key("objects");
  w.StartObject();
  for (auto& [uid, e] : d.objects) {
    w.Key(uid.c_str());
    write_entry(w, e);
  }
  w.EndObject();
  w.Key("refs");
  w.StartObject();
  for (auto& [uid, a] : d.refs) {
    w.Key(uid.c_str());
    w.String(attrs_hex(a).c_str());
  }
  w.EndObject();
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize()) + "\n";
}

// A change's line: the snapshot's form, with null for an erased entry.
std::string encode_change(const std::map<std::string, std::optional<MetaEntry>>& objects,
                          const std::map<std::string, std::optional<core::AttrMap>>& refs) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("objects");
  w.StartObject();
  for (auto& [uid, e] : objects) {
    w.Key(uid.c_str());
    if (e) write_entry(w, *e);
    else w.Null();
  }
  w.EndObject();
  w.Key("refs");
  w.StartObject();
  for (auto& [uid, a] : refs) {
    w.Key(uid.c_str());
    if (a) w.String(attrs_hex(*a).c_str());
    else w.Null();
  }
  w.EndObject();
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize()) + "\n";
}

// Applies a snapshot (nulls not allowed) or a change (null: erase) to d; on_object is told the
// uid of each object entry set or erased.
R<void> apply_json(const char* text, std::size_t size, bool is_change, const std::string& what, MetaData& d,
                   const std::function<void(const std::string&)>& on_object) {
  rapidjson::Document doc;
  doc.Parse(text, size);
  auto bad = [&](const std::string& why) { return core::err(Errc::device_error, what + ": " + why); };
  if (doc.HasParseError() || !doc.IsObject())
    return bad(is_change ? "a change is not valid JSON" : "not a metadata store (invalid JSON)");
  if (auto o = doc.FindMember("objects"); o != doc.MemberEnd() && o->value.IsObject()) {
    for (auto& m : o->value.GetObject()) {
      const std::string uid = m.name.GetString();
      if (is_change && m.value.IsNull()) {
        d.objects.erase(uid);
      } else {
        CDC_ASSIGN(d.objects[uid], read_entry(m.value, what + ": object " + uid));
      }
      on_object(uid);
    }
  }
  if (auto r = doc.FindMember("refs"); r != doc.MemberEnd() && r->value.IsObject()) {
    for (auto& m : r->value.GetObject()) {
      const std::string uid = m.name.GetString();
      if (is_change && m.value.IsNull()) {
        d.refs.erase(uid);
        continue;
      }
      if (!m.value.IsString()) return bad("key reference " + uid + " is not a string");
      CDC_ASSIGN(d.refs[uid], attrs_from_hex(m.value.GetString(), what + ": key reference " + uid));
    }
  }
  return {};
}

// errno's error: a full disk (or quota, or file size limit) as device_memory, as the soft
// token's store reports it, anything else as device_error.
R<void> sys_err(const std::string& what, const std::string& path) {
  const bool full = errno == ENOSPC || errno == EDQUOT || errno == EFBIG;
  return core::err(full ? Errc::device_memory : Errc::device_error, path + ": " + what + ": " + std::strerror(errno));
}

// fd's content from offset on.
R<std::string> read_from(int fd, std::uint64_t offset, const std::string& path) {
  std::string out;
  char buf[64 * 1024];
  for (;;) {
    const ssize_t n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(offset + out.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      CDC_TRY(sys_err("read", path));
    }
    if (n == 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

R<void> write_at(int fd, const std::string& s, std::uint64_t offset, const std::string& path) {
  for (std::size_t done = 0; done < s.size();) {
    const ssize_t n = ::pwrite(fd, s.data() + done, s.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_err("write", path);
    }
    done += static_cast<std::size_t>(n);
  }
  return {};
}

R<struct stat> fstat_of(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) CDC_TRY(sys_err("stat", path));
  return st;
}

}  // namespace

R<std::unique_ptr<MetadataStore>> MetadataStore::open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return core::err(Errc::device_error, "the metadata directory " + dir + " cannot be made: " + ec.message());
  ::chmod(dir.c_str(), 0700);
  std::unique_ptr<MetadataStore> s(new MetadataStore(dir));
  CDC_TRY(s->read_all());
  return s;
}

R<MetadataStore::Stamp> MetadataStore::stamp_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Stamp{};
    return core::err(Errc::device_error, path + ": " + std::strerror(errno));
  }
  return Stamp::of(st);
}

void MetadataStore::note_changed(const std::string& uid) {
  if (changed_.all) return;
  changed_.uids.insert(uid);
  if (changed_.uids.size() > kChangedUidsKept) changed_ = Changed{true, {}};
}

MetadataStore::Changed MetadataStore::take_changed() { return std::exchange(changed_, Changed{}); }

R<void> MetadataStore::read_all() {
  // Without the lock a writer may fold the changes into a new snapshot meanwhile: read again
  // until the snapshot read is still the one there after its changes were read.
  for (int attempt = 0;; ++attempt) {
    MetaData d;
    Stamp snap{};
    store::UniqueFd sfd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (sfd) {
      CDC_ASSIGN(const struct stat st, fstat_of(sfd.get(), path_));
      snap = Stamp::of(st);
      CDC_ASSIGN(const std::string text, read_from(sfd.get(), 0, path_));
      CDC_TRY(apply_json(text.data(), text.size(), false, path_, d, [](const std::string&) {}));
    } else if (errno != ENOENT) {
      CDC_TRY(sys_err("cannot be read", path_));
    }
    std::uint64_t ino = 0, end = 0;
    store::UniqueFd cfd(::open(changes_path_.c_str(), O_RDONLY | O_CLOEXEC));
    if (cfd) {
      CDC_ASSIGN(const struct stat st, fstat_of(cfd.get(), changes_path_));
      ino = static_cast<std::uint64_t>(st.st_ino);
      CDC_ASSIGN(const std::string text, read_from(cfd.get(), 0, changes_path_));
      for (std::size_t nl; (nl = text.find('\n', end)) != std::string::npos; end = nl + 1)
        CDC_TRY(apply_json(text.data() + end, nl - end, true, changes_path_, d, [](const std::string&) {}));
    } else if (errno != ENOENT) {
      CDC_TRY(sys_err("cannot be read", changes_path_));
    }
    CDC_ASSIGN(const Stamp after, stamp_of(path_));
    if (after == snap) {
      data_ = std::move(d);
      snapshot_ = snap;
      changes_ino_ = ino;
      changes_end_ = end;
      changed_ = Changed{true, {}};
      return {};
    }
    if (attempt == 10) return core::err(Errc::device_error, path_ + ": kept being replaced while it was read");
  }
}

R<bool> MetadataStore::read_new_changes(bool& any) {
  CDC_ASSIGN(const Stamp snap, stamp_of(path_));
  if (snap != snapshot_) return false;
  store::UniqueFd cfd(::open(changes_path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!cfd) {
    if (errno != ENOENT) CDC_TRY(sys_err("cannot be read", changes_path_));
    return changes_ino_ == 0;
  }
  CDC_ASSIGN(const struct stat st, fstat_of(cfd.get(), changes_path_));
  if (changes_ino_ != 0 && static_cast<std::uint64_t>(st.st_ino) != changes_ino_) return false;
  if (static_cast<std::uint64_t>(st.st_size) < changes_end_) return false;
  if (static_cast<std::uint64_t>(st.st_size) == changes_end_) {
    changes_ino_ = static_cast<std::uint64_t>(st.st_ino);
    return true;
  }
  CDC_ASSIGN(const std::string text, read_from(cfd.get(), changes_end_, changes_path_));
  // Folded into a new snapshot while read (and maybe emptied and written again): all of it.
  CDC_ASSIGN(const Stamp after, stamp_of(path_));
  if (after != snapshot_) return false;
  changes_ino_ = static_cast<std::uint64_t>(st.st_ino);
  for (std::size_t at = 0, nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1) {
    CDC_TRY(apply_json(text.data() + at, nl - at, true, changes_path_, data_,
                       [&](const std::string& uid) { note_changed(uid); }));
    changes_end_ += nl + 1 - at;
    any = true;
  }
  return true;
}

R<bool> MetadataStore::catch_up() {
  bool any = false;
  CDC_ASSIGN(const bool in_place, read_new_changes(any));
  if (in_place) return any;
  CDC_TRY(read_all());
  return true;
}

R<bool> MetadataStore::reload() { return catch_up(); }

R<void> MetadataStore::update(const std::function<R<void>(MetaChange&)>& f) {
  const std::string lock_path = dir_ + "/metadata.lock";
  store::UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) return sys_err("cannot be opened", lock_path);
  while (::flock(lock.get(), LOCK_EX) != 0)
    if (errno != EINTR) return sys_err("flock", lock_path);
  // Unlocked, not just closed: a child forked meanwhile shares the open file and would hold the lock.
  struct Unlock {
    int fd;
    ~Unlock() { ::flock(fd, LOCK_UN); }
  } unlock{lock.get()};
  CDC_TRY(catch_up());

  MetaChange c(data_);
  CDC_TRY(f(c));
  std::erase_if(c.objects_, [&](auto& kv) {
    auto it = data_.objects.find(kv.first);
    return kv.second ? it != data_.objects.end() && it->second == *kv.second : it == data_.objects.end();
  });
  std::erase_if(c.refs_, [&](auto& kv) {
    auto it = data_.refs.find(kv.first);
    return kv.second ? it != data_.refs.end() && it->second.map() == kv.second->map() : it == data_.refs.end();
  });
  if (c.objects_.empty() && c.refs_.empty()) return {};

  store::UniqueFd cfd(::open(changes_path_.c_str(), O_RDWR | O_CLOEXEC));
  if (!cfd && errno == ENOENT) {
    cfd.reset(::open(changes_path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (cfd) {
      // The new name must survive a crash as the changes written to it will.
      store::UniqueFd dfd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!dfd || ::fsync(dfd.get()) != 0) return sys_err("cannot be synced", dir_);
    }
  }
  if (!cfd) return sys_err("cannot be opened", changes_path_);
  CDC_ASSIGN(const struct stat st, fstat_of(cfd.get(), changes_path_));
  const auto ino = static_cast<std::uint64_t>(st.st_ino);
  // catch_up() read this file to changes_end_ (or found none: then it is new and empty).
  const std::uint64_t end = ino == changes_ino_ ? changes_end_ : 0;
  const std::string line = encode_change(c.objects_, c.refs_);
  auto undo = [&] {
    (void)::ftruncate(cfd.get(), static_cast<off_t>(end));
  };
  // What lies past the last change read is a change a killed writer left half written.
  if (static_cast<std::uint64_t>(st.st_size) > end && ::ftruncate(cfd.get(), static_cast<off_t>(end)) != 0)
    return sys_err("cannot be truncated", changes_path_);
  if (auto w = write_at(cfd.get(), line, end, changes_path_); !w) {
    undo();
    return w;
  }
  if (::fdatasync(cfd.get()) != 0) {
    auto e = sys_err("cannot be synced", changes_path_);
    undo();
    return e;
  }
  for (auto& [uid, e] : c.objects_) {
    if (e) data_.objects[uid] = std::move(*e);
    else data_.objects.erase(uid);
    note_changed(uid);
  }
  for (auto& [uid, a] : c.refs_) {
    if (a) data_.refs[uid] = std::move(*a);
    else data_.refs.erase(uid);
  }
  changes_ino_ = ino;
  changes_end_ = end + line.size();

  if (changes_end_ > kFoldAbove && changes_end_ > snapshot_.size) {
    // The change is written: a fold that fails leaves it in the changes file, for the next to fold.
    if (auto w = write_file_atomically(path_, encode_snapshot(data_), 0600); !w) {
      log::warn(kLog, "the metadata store's changes are not folded into " + path_ + ": " + w.error());
      return {};
    }
    auto folded = stamp_of(path_);
    if (!folded) {
      // Unknown: the next read takes the snapshot as another's and reads it all.
      snapshot_ = Stamp{};
      log::warn(kLog, folded.error().message);
      return {};
    }
    snapshot_ = *folded;
    // Emptied after the new snapshot is in place: a change read again over it changes nothing.
    if (::ftruncate(cfd.get(), 0) != 0 || ::fdatasync(cfd.get()) != 0) {
      log::warn(kLog, changes_path_ + ": not emptied after its changes were folded into the snapshot: " +
                          std::strerror(errno));
      return {};
    }
    changes_end_ = 0;
  }
  return {};
}

}  // namespace cdcp11::core
