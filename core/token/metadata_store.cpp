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
#include <fstream>
#include <optional>
#include <sstream>

#include "cdcp11/cdcp11.h"
#include "common/atomic_file.h"
#include "softtoken/store/unique_fd.h"

namespace cdcp11::core {


bool is_vendor_attribute(CK_ATTRIBUTE_TYPE t) { return (t & ~0xFFFFUL) == CKA_CDC_BASE; }

namespace {

std::string attrs_hex(const core::AttrMap& a) { return to_hex(a.serialize()); }

R<core::AttrMap> attrs_from_hex(const std::string& hex, const std::string& what) {
  Bytes b;
  if (!from_hex(hex, b)) return core::err(Errc::device_error, what + " is not hex");
  auto a = core::AttrMap::deserialize(b);
  secure_zero(b.data(), b.size());
  if (!a) return core::err(Errc::device_error, what + " is damaged: " + a.error().message);
  return a;
}

std::string encode(const MetaData& d) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("version");
  w.Uint(1);
  w.Key("objects");
  w.StartObject();
  for (auto& [uid, e] : d.objects) {
    w.Key(uid.c_str());
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

R<MetaData> decode(const std::string& json, const std::string& path) {
  rapidjson::Document d;
  d.Parse(json.c_str(), json.size());
  auto bad = [&](const std::string& what) { return core::err(Errc::device_error, path + ": " + what); };
  if (d.HasParseError() || !d.IsObject()) return bad("not a metadata store (invalid JSON)");
  MetaData out;
  if (auto o = d.FindMember("objects"); o != d.MemberEnd() && o->value.IsObject()) {
    for (auto& m : o->value.GetObject()) {
      const std::string uid = m.name.GetString();
      if (!m.value.IsObject() || !m.value.HasMember("locator") || !m.value["locator"].IsString())
        return bad("object " + uid + " has no locator");
      MetaEntry e;
      e.locator = m.value["locator"].GetString();
      if (m.value.HasMember("vendor") && m.value["vendor"].IsString()) {
        CDC_ASSIGN(e.vendor, attrs_from_hex(m.value["vendor"].GetString(), path + ": object " + uid));
      }
      for (auto [key, field] : {std::pair{"mac", &e.mac}, std::pair{"sealed", &e.sealed}})
        if (m.value.HasMember(key) && (!m.value[key].IsString() || !from_hex(m.value[key].GetString(), *field)))
          return bad("object " + uid + ": " + key + " is not hex");
      if (m.value.HasMember("created") && m.value["created"].IsInt64()) e.created = m.value["created"].GetInt64();
      out.objects.emplace(uid, std::move(e));
    }
  }
  if (auto r = d.FindMember("refs"); r != d.MemberEnd() && r->value.IsObject()) {
    for (auto& m : r->value.GetObject()) {
      const std::string uid = m.name.GetString();
      if (!m.value.IsString()) return bad("key reference " + uid + " is not a string");
      CDC_ASSIGN(auto a, attrs_from_hex(m.value.GetString(), path + ": key reference " + uid));
      out.refs.emplace(uid, std::move(a));
    }
  }
  return out;
}

// metadata.lock's change counter (8 bytes, little-endian); nullopt while it has none (a new
// store), or a torn one: then no instance's data_ counts as current.
R<std::optional<std::uint64_t>> read_counter(int fd, const std::string& path) {
  std::uint8_t b[8] = {};
  ssize_t n;
  do n = ::pread(fd, b, sizeof b, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return core::err(Errc::device_error, path + ": read: " + std::strerror(errno));
  if (n != sizeof b) return std::optional<std::uint64_t>{};
  std::uint64_t g = 0;
  for (int i = 0; i < 8; ++i) g |= std::uint64_t(b[i]) << (8 * i);
  return std::optional<std::uint64_t>{g};
}

R<void> write_counter(int fd, const std::string& path, std::uint64_t g) {
  std::uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(g >> (8 * i));
  ssize_t n;
  do n = ::pwrite(fd, b, sizeof b, 0);
  while (n < 0 && errno == EINTR);
  if (n != sizeof b)
    return core::err(Errc::device_error, path + ": write: " + (n < 0 ? std::strerror(errno) : "short write"));
  return {};
}

}  // namespace

R<std::unique_ptr<MetadataStore>> MetadataStore::open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return core::err(Errc::device_error, "the metadata directory " + dir + " cannot be made: " + ec.message());
  ::chmod(dir.c_str(), 0700);
  std::unique_ptr<MetadataStore> s(new MetadataStore(dir, dir + "/metadata.json"));
  CDC_TRY(s->read_file());
  return s;
}

R<MetadataStore::Stamp> MetadataStore::file_stamp() const {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    if (errno == ENOENT) return Stamp{};
    return core::err(Errc::device_error, path_ + ": " + std::strerror(errno));
  }
  return Stamp{static_cast<std::uint64_t>(st.st_ino), static_cast<std::uint64_t>(st.st_size),
               static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

R<void> MetadataStore::read_file() {
  current_ = false;
  CDC_ASSIGN(const Stamp now, file_stamp());
  if (now == Stamp{}) {
    data_ = {};
    stamp_ = {};
    return {};
  }
  std::ifstream in(path_, std::ios::binary);
  if (!in) return core::err(Errc::device_error, path_ + ": cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  CDC_ASSIGN(data_, decode(ss.str(), path_));
  stamp_ = now;
  return {};
}

R<bool> MetadataStore::reload() {
  CDC_ASSIGN(const Stamp now, file_stamp());
  if (now == stamp_) return false;
  CDC_TRY(read_file());
  return true;
}

R<void> MetadataStore::update(const std::function<R<bool>(MetaData&)>& f) {
  const std::string lock_path = dir_ + "/metadata.lock";
  store::UniqueFd fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return core::err(Errc::device_error, lock_path + ": " + std::strerror(errno));
  while (::flock(fd.get(), LOCK_EX) != 0)
    if (errno != EINTR) return core::err(Errc::device_error, lock_path + ": flock: " + std::strerror(errno));
  // Unlocked, not just closed: a child forked meanwhile shares the open file and would hold the lock.
  struct Unlock {
    int fd;
    ~Unlock() { ::flock(fd, LOCK_UN); }
  } unlock{fd.get()};
  CDC_ASSIGN(const std::optional<std::uint64_t> gen, read_counter(fd.get(), lock_path));
  // The stamp too: a writer of an older build replaces the file without bumping the counter.
  CDC_ASSIGN(const Stamp now, file_stamp());
  if (!current_ || !gen || *gen != gen_ || now != stamp_) CDC_TRY(read_file());
  current_ = false;  // until the file matches data_ again
  CDC_ASSIGN(bool changed, f(data_));
  if (!changed) return {};  // f may have touched data_ all the same: the next update reads the file
  const std::uint64_t next = gen.value_or(0) + 1;
  // The counter first: a process killed between the two leaves a counter that says "changed",
  // so no instance keeps a data_ older than the file.
  CDC_TRY(write_counter(fd.get(), lock_path, next));
  if (auto w = write_file_atomically(path_, encode(data_), 0600); !w)
    return core::err(Errc::device_error, "the metadata store cannot be written: " + w.error());
  // data_ is what was written: its stamp, so that our own write is not taken for another's.
  CDC_ASSIGN(stamp_, file_stamp());
  current_ = true;
  gen_ = next;
  return {};
}

}  // namespace cdcp11::core
