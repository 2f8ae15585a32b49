#include "core/mirror/journal.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <thread>

#include "common/log.h"
#include "softtoken/store/object_store.h"

namespace cdcp11::core::mirror {

namespace {

constexpr std::pair<Step, const char*> kSteps[] = {{Step::pending, "pending"},
                                                   {Step::kek_created, "kek_created"},
                                                   {Step::imported, "imported"},
                                                   {Step::done, "done"},
                                                   {Step::failed, "failed"}};

Unexpected<Error> from_store(const store::Error& e) {
  return err(e.code == store::Error::Code::no_space ? Errc::device_memory : Errc::device_error,
             "mirror journal: " + e.message);
}

constexpr std::pair<RotationStep, const char*> kRotationSteps[] = {{RotationStep::none, ""},
                                                                   {RotationStep::planned, "planned"},
                                                                   {RotationStep::made, "made"},
                                                                   {RotationStep::mirrored, "mirrored"}};

}  // namespace

const char* rotation_step_name(RotationStep s) {
  for (auto& [st, name] : kRotationSteps)
    if (st == s) return name;
  return "?";
}

const char* step_name(Step s) {
  for (auto& [st, name] : kSteps)
    if (st == s) return name;
  return "?";
}

std::string encode_job(const Job& j) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("version"); w.Int(1);
  w.Key("object_uid"); w.String(j.object_uid.c_str());
  w.Key("azure_name"); w.String(j.azure_name.c_str());
  w.Key("step"); w.String(step_name(j.step));
  w.Key("kek_kid"); w.String(j.kek_kid.c_str());
  w.Key("kek_name"); w.String(j.kek_name.c_str());
  w.Key("key_kid"); w.String(j.key_kid.c_str());
  w.Key("error"); w.String(j.error.c_str());
  if (!j.new_version_of.empty()) {
    w.Key("new_version_of"); w.String(j.new_version_of.c_str());
  }
  if (j.rotation.step != RotationStep::none) {
    const Rotation& r = j.rotation;
    w.Key("rotation");
    w.StartObject();
    w.Key("step"); w.String(rotation_step_name(r.step));
    w.Key("label"); w.String(r.label.c_str());
    w.Key("id"); w.String(r.id_hex.c_str());
    w.Key("version"); w.Uint64(r.version);
    w.Key("new_uid"); w.String(r.new_uid.c_str());
    w.Key("error"); w.String(r.error.c_str());
    if (r.abandoning) {
      w.Key("abandoning"); w.Bool(true);
    }
    w.EndObject();
  }
  w.Key("attempts"); w.Uint(j.attempts);
  w.Key("updated"); w.Int64(j.updated);
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

R<Job> decode_job(const std::string& json) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseIterativeFlag>(json.c_str(), json.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("version") || !d["version"].IsInt() ||
      d["version"].GetInt() != 1)
    return err(Errc::device_error, "mirror journal: a job record is not valid");
  auto str = [&](const char* k) -> std::string {
    auto it = d.FindMember(k);
    return it != d.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
  };
  Job j;
  j.object_uid = str("object_uid");
  j.azure_name = str("azure_name");
  j.kek_kid = str("kek_kid");
  j.kek_name = str("kek_name");  // absent in records of older versions: the name is in kek_kid
  j.key_kid = str("key_kid");
  j.error = str("error");
  const std::string step = str("step");
  bool known = false;
  for (auto& [st, name] : kSteps)
    if (step == name) {
      j.step = st;
      known = true;
    }
  if (!known || j.object_uid.empty()) return err(Errc::device_error, "mirror journal: a job record is not valid");
  j.new_version_of = str("new_version_of");
  if (auto it = d.FindMember("rotation"); it != d.MemberEnd()) {
    const auto& r = it->value;
    if (!r.IsObject()) return err(Errc::device_error, "mirror journal: a job record is not valid");
    auto rstr = [&](const char* k) -> std::string {
      auto m = r.FindMember(k);
      return m != r.MemberEnd() && m->value.IsString() ? m->value.GetString() : "";
    };
    const std::string rstep = rstr("step");
    bool rknown = false;
    for (auto& [st, name] : kRotationSteps)
      if (rstep == name && st != RotationStep::none) {
        j.rotation.step = st;
        rknown = true;
      }
    auto v = r.FindMember("version");
    if (!rknown || v == r.MemberEnd() || !v->value.IsUint64() || v->value.GetUint64() == 0)
      return err(Errc::device_error, "mirror journal: a job record is not valid");
    j.rotation.version = static_cast<unsigned long>(v->value.GetUint64());
    j.rotation.label = rstr("label");
    j.rotation.id_hex = rstr("id");
    j.rotation.new_uid = rstr("new_uid");
    j.rotation.error = rstr("error");
    if (auto a = r.FindMember("abandoning"); a != r.MemberEnd() && a->value.IsBool()) j.rotation.abandoning = a->value.GetBool();
  }
  if (auto it = d.FindMember("attempts"); it != d.MemberEnd() && it->value.IsUint()) j.attempts = it->value.GetUint();
  if (auto it = d.FindMember("updated"); it != d.MemberEnd() && it->value.IsInt64()) j.updated = it->value.GetInt64();
  return j;
}

Journal::Journal(std::unique_ptr<store::ObjectStore> s, std::string locks_dir)
    : store_(std::move(s)), locks_dir_(std::move(locks_dir)) {}
Journal::~Journal() = default;

R<std::unique_ptr<Journal>> Journal::open(const std::string& dir) {
  auto s = store::ObjectStore::open(dir, true);
  if (!s) return from_store(s.error());
  std::string locks = dir + "/locks";
  if (::mkdir(locks.c_str(), 0700) != 0 && errno != EEXIST)
    return err(Errc::device_error, "mirror journal: cannot create " + locks + ": " + std::strerror(errno));
  return std::unique_ptr<Journal>(new Journal(std::move(*s), std::move(locks)));
}

R<Journal::JobLock> Journal::lock(const std::string& uid, std::chrono::milliseconds wait) {
  if (!store::ObjectStore::is_valid_uid(uid)) return err(Errc::arguments_bad, "mirror journal: bad key uid");
  // One small file per key, never removed: unlinking a lock file races with a process that has
  // it open and is about to lock it.
  const std::string path = locks_dir_ + "/" + uid;
  store::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return err(Errc::device_error, "mirror journal: cannot open " + path + ": " + std::strerror(errno));
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (bool told = false;;) {
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return JobLock(std::move(fd));
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK)
      return err(Errc::device_error, "mirror journal: cannot lock " + path + ": " + std::strerror(errno));
    if (std::chrono::steady_clock::now() >= deadline)
      return err(Errc::function_failed, "another process has been mirroring this key for more than " +
                                            std::to_string(wait.count() / 1000) + " s; try again later");
    if (!told) {
      log::info("mirror", "key " + uid + ": another process is mirroring it; waiting for it to finish");
      told = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

R<void> Journal::put(const Job& job) {
  Job j = job;
  j.updated = static_cast<std::int64_t>(std::time(nullptr));
  const std::string data = encode_job(j);
  std::lock_guard lk(mu_);
  if (auto r = store_->put(j.object_uid, view(data)); !r) return from_store(r.error());
  return {};
}

R<std::optional<Job>> Journal::get(const std::string& uid) {
  std::lock_guard lk(mu_);
  return get_locked(uid);
}

R<std::optional<Job>> Journal::get_locked(const std::string& uid) {
  auto r = store_->get(uid);
  if (!r) {
    if (r.error().code == store::Error::Code::not_found) return std::optional<Job>{};
    if (r.error().code == store::Error::Code::corrupt)
      return err(Errc::device_error, "mirror journal: the job record of key " + uid + " is damaged");
    return from_store(r.error());
  }
  auto j = decode_job(std::string(r->begin(), r->end()));
  if (!j || j->object_uid != uid) return err(Errc::device_error, "mirror journal: the job record of key " + uid + " is not valid");
  return std::optional<Job>(std::move(*j));
}

R<void> Journal::remove(const std::string& uid) {
  std::lock_guard lk(mu_);
  if (auto r = store_->remove(uid); !r && r.error().code != store::Error::Code::not_found)
    return from_store(r.error());
  return {};
}

R<std::vector<Job>> Journal::unfinished() {
  std::lock_guard lk(mu_);
  auto ch = store_->refresh();
  if (!ch) return from_store(ch.error());
  // refresh() reports changes since this instance last looked; a fresh listing needs all records,
  // so the journal re-reads every uid it has been told about.
  for (auto& rec : ch->upserted) known_.insert(rec.uid);
  for (auto& uid : ch->corrupt) known_.insert(uid);  // reported below, with the others
  for (auto& uid : ch->removed) known_.erase(uid);
  std::vector<Job> out;
  for (auto& uid : known_) {
    auto j = get_locked(uid);
    if (!j) {
      if (reported_bad_.insert(uid).second)
        log::warn("mirror", j.error().message + "; that job is skipped, the others resume");
      continue;
    }
    reported_bad_.erase(uid);
    if (*j && (*j)->step != Step::done) out.push_back(std::move(**j));
  }
  return out;
}

R<Journal::SyncSkips> Journal::sync_skips() {
  std::lock_guard lk(mu_);
  auto raw = store_->read_meta();
  if (!raw) {
    const auto c = raw.error().code;
    if (c == store::Error::Code::not_found || c == store::Error::Code::corrupt) return SyncSkips{};
    return from_store(raw.error());
  }
  SyncSkips out;
  rapidjson::Document d;
  d.Parse(reinterpret_cast<const char*>(raw->data()), raw->size());
  if (d.HasParseError() || !d.IsObject()) return out;
  auto it = d.FindMember("sync_skips");
  if (it == d.MemberEnd() || !it->value.IsObject()) return out;
  for (auto& m : it->value.GetObject())
    if (m.value.IsString()) out[m.name.GetString()] = m.value.GetString();
  return out;
}

R<void> Journal::set_sync_skips(const SyncSkips& skips) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("sync_skips");
  w.StartObject();
  for (auto& [name, stamp] : skips) {
    w.Key(name.c_str());
    w.String(stamp.c_str());
  }
  w.EndObject();
  w.EndObject();
  const std::string data(sb.GetString(), sb.GetSize());
  std::lock_guard lk(mu_);
  if (auto r = store_->write_meta(view(data)); !r) return from_store(r.error());
  return {};
}

}  // namespace cdcp11::core::mirror
