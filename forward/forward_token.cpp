// The forwarding backend: opening the HSM token, status, PINs, login, sessions, and the objects
// with their identity and metadata. Keys and operations: forward_ops.cpp.
#include "forward/forward_token.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/file.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "cdcp11/cdcp11.h"
#include "common/log.h"
#include "core/attribute_policy.h"
#include "core/mechanisms.h"
#include "forward/template.h"
#include "hsm/attributes.h"

namespace cdcp11::forward {

using core::AttrMap;
using core::Errc;
using core::R;
using core::StoredObject;

namespace {

constexpr const char* kLog = "hsm";
// New and removed objects show up at the next refresh. Attributes changed by other applications
// show up within a sweep: kSweepBatch objects read again per refresh, a sweep begun at most
// every kSweepInterval.
constexpr auto kSweepInterval = std::chrono::seconds(2);
constexpr std::size_t kSweepBatch = 16;
constexpr int kSweepPause = 9;
// A metadata entry younger than this is not pruned even when its object is not listed.
constexpr std::int64_t kPruneGraceSeconds = 120;
constexpr std::int64_t kJustRecordedSeconds = 10;

hsm::TokenSelector selector_of(const core::TokenConfig& t) {
  switch (t.selector) {
    case core::TokenConfig::Select::label: return hsm::TokenSelector::label(t.token_label);
    case core::TokenConfig::Select::serial: return hsm::TokenSelector::serial(t.token_serial);
    case core::TokenConfig::Select::slot_id: return hsm::TokenSelector::slot_id(t.hsm_slot_id);
  }
  return {};
}

// The attributes read from the HSM for every object (C_GetAttributeValue, one call): those an
// application may see; key material (hsm::is_key_material, is_secret_attribute) is never asked for.
// Not CKA_ALLOWED_MECHANISMS: an array attribute, which the HSM client does not read.
constexpr CK_ATTRIBUTE_TYPE kRead[] = {
    CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_MODIFIABLE, CKA_COPYABLE, CKA_DESTROYABLE, CKA_LABEL, CKA_UNIQUE_ID,
    CKA_APPLICATION, CKA_OBJECT_ID, CKA_VALUE, CKA_CERTIFICATE_TYPE, CKA_CERTIFICATE_CATEGORY, CKA_TRUSTED,
    CKA_ISSUER, CKA_SERIAL_NUMBER, CKA_SUBJECT, CKA_CHECK_VALUE, CKA_URL, CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
    CKA_HASH_OF_ISSUER_PUBLIC_KEY, CKA_JAVA_MIDP_SECURITY_DOMAIN, CKA_KEY_TYPE, CKA_ID, CKA_START_DATE,
    CKA_END_DATE, CKA_DERIVE, CKA_LOCAL, CKA_KEY_GEN_MECHANISM, CKA_ENCRYPT,
    CKA_VERIFY, CKA_VERIFY_RECOVER, CKA_WRAP, CKA_DECRYPT, CKA_SIGN, CKA_SIGN_RECOVER, CKA_UNWRAP,
    CKA_SENSITIVE, CKA_EXTRACTABLE, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED,
    CKA_ALWAYS_AUTHENTICATE, CKA_MODULUS, CKA_MODULUS_BITS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS, CKA_EC_POINT,
    CKA_VALUE_LEN, CKA_PUBLIC_KEY_INFO};

bool same(const AttrMap& a, const AttrMap& b) { return a.matches(b) && b.matches(a); }

std::string random_hex(std::size_t n) {
  Bytes b(n);
  if (RAND_bytes(b.data(), static_cast<int>(n)) != 1) {
    // Unique within the process is enough for an id the store then records.
    static std::atomic<std::uint64_t> c{0};
    const auto v = ++c ^ static_cast<std::uint64_t>(std::time(nullptr)) << 20;
    for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(v >> (8 * (i % 8)));
  }
  return to_hex(b);
}

std::string sha256_hex(ByteView v) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(v.data(), v.size(), md, &len, EVP_sha256(), nullptr);
  return to_hex(ByteView(md, len));
}

// Our uids are 32 lowercase hex characters (the journal and the store name files by them): an
// HSM's CKA_UNIQUE_ID that is one is used as it is, any other is hashed into one.
std::string uid_from_unique_id(ByteView u) {
  const std::string s(u.begin(), u.end());
  if (s.size() == 32 && s.find_first_not_of("0123456789abcdef") == std::string::npos) return s;
  return sha256_hex(u).substr(0, 32);
}

}  // namespace

// How the backend finds an object again without CKA_UNIQUE_ID: what identifies it and does not
// change behind our back in the normal course (class, key type, the public material or the
// check value) and what applications name it by (CKA_ID, CKA_LABEL). Changes made through our
// slot update the recorded locator.
std::string locator_of(const AttrMap& a) {
  Bytes in;
  auto add = [&](CK_ATTRIBUTE_TYPE t) {
    const Bytes* v = a.find(t);
    const std::uint64_t tag = t, n = v ? v->size() : ~0ULL;
    for (auto x : {tag, n})
      for (int i = 0; i < 8; ++i) in.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
    if (v) in.insert(in.end(), v->begin(), v->end());
  };
  for (auto t : {CKA_CLASS, CKA_KEY_TYPE, CKA_ID, CKA_LABEL, CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS,
                 CKA_EC_POINT, CKA_CHECK_VALUE, CKA_VALUE_LEN, CKA_CERTIFICATE_TYPE, CKA_SUBJECT, CKA_APPLICATION})
    add(t);
  const auto cls = a.ulong(CKA_CLASS).value_or(CKO_DATA);
  if (cls == CKO_CERTIFICATE || cls == CKO_DATA || cls == CKO_PUBLIC_KEY) add(CKA_VALUE);
  return sha256_hex(in);
}

// ---------------------------------------------------------------- opening

// SoftHSM2 2.6.1 rewrites a token's file in place on every C_Login (its flags), and a process
// whose C_Initialize reads the file meanwhile keeps a token without its user PIN, or none. Our
// processes take <dir>/hsm.lock shared around loading the module and exclusively around a login,
// so they never do both at once. Best effort: a lock that cannot be taken is passed over (other
// applications of the HSM take none anyway).
TokenFileLock::TokenFileLock(const std::string& dir, int op) {
  const std::string path = dir + "/hsm.lock";
  store::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  int rc = -1;
  if (fd)
    while ((rc = ::flock(fd.get(), op)) != 0 && errno == EINTR) {
    }
  if (rc == 0) {
    fd_ = std::move(fd);
    return;
  }
  // Best effort: going on unlocked is what a process not of ours does anyway.
  log::warn(kLog, "cannot lock " + path + " (" + std::strerror(errno) +
                      "): this process may load the HSM module while another of ours logs in to it");
}

// Unlocked before it is closed: a child forked meanwhile holds the same open file.
TokenFileLock::~TokenFileLock() {
  if (fd_) ::flock(fd_.get(), LOCK_UN);
}

Lease::~Lease() {
  if (s_) t_->give_back(std::move(*s_));
}

ForwardToken::ForwardToken(const core::GroupConfig& g, std::shared_ptr<hsm::Module> m, CK_SLOT_ID slot,
                           hsm::Session main, std::unique_ptr<MetadataStore> meta, std::string identity)
    : group_(g.name),
      dir_(g.token.dir),
      identity_(std::move(identity)),
      module_(std::move(m)),
      slot_(slot),
      main_(std::move(main)),
      meta_(std::move(meta)) {}

ForwardToken::~ForwardToken() = default;

R<std::unique_ptr<ForwardToken>> ForwardToken::open(const core::GroupConfig& g) {
  const auto& t = g.token;
  CDC_ASSIGN(auto meta, MetadataStore::open(t.dir));
  TokenFileLock reading(t.dir, LOCK_SH);
  auto m = hsm::Module::load(t.module, t.module_args);
  if (!m) return core::err(Errc::token_not_present, "the HSM module " + t.module + " cannot be used: " + m.error().message);
  auto slot = (*m)->find_token(selector_of(t));
  if (!slot)
    return core::err(Errc::token_not_present, "the HSM token (" + selector_of(t).describe() + ") of " + t.module +
                                                  " cannot be used: " + slot.error().message);
  auto main = (*m)->open_session(*slot, true);
  if (!main)
    return core::err(Errc::token_not_present, "no session with the HSM token of " + t.module + ": " + main.error().message);
  std::string identity;
  auto mi = (*m)->info();
  auto ti = (*m)->token_info(*slot);
  if (mi && ti && !ti->serial.empty())
    identity = mi->manufacturer + " " + mi->description + "; token serial " + ti->serial + ", label " + ti->label;
  log::info(kLog, "group '" + g.name + "': forwarding to the HSM token (" + selector_of(t).describe() + ") of " +
                      t.module + ", slot " + std::to_string(*slot) + "; metadata in " + meta->path());
  std::unique_ptr<ForwardToken> tok(
      new ForwardToken(g, std::move(*m), *slot, std::move(*main), std::move(meta), std::move(identity)));
  (void)tok->status();  // the first token info, which a later failed read falls back on
  return tok;
}

R<Lease> ForwardToken::lease() {
  std::optional<hsm::Session> idle;
  {
    std::lock_guard lk(pool_mu_);
    if (!pool_.empty()) {
      idle.emplace(std::move(pool_.back()));
      pool_.pop_back();
    }
  }
  if (idle) return Lease(*this, std::move(*idle));
  CDC_ASSIGN(auto s, module_->open_session(slot_, true));
  return Lease(*this, std::move(s));
}

void ForwardToken::give_back(hsm::Session s) {
  std::lock_guard lk(pool_mu_);
  pool_.push_back(std::move(s));
}

// ---------------------------------------------------------------- token and PINs

core::TokenStatus ForwardToken::status() {
  core::TokenStatus st;
  st.manufacturer = "cdcp11 (forwarded)";
  st.model = "PKCS#11 forward";
  auto info = module_->token_info(slot_);
  {
    // A failed read (SoftHSM2 fails it while another process rewrites its token file) is not an
    // uninitialised token: the info last read stands in, or the token would vanish mid-session.
    std::lock_guard lk(info_mu_);
    if (info) {
      last_info_ = *info;
    } else {
      log::warn(kLog, "group '" + group_ + "': C_GetTokenInfo of the HSM failed: " + info.error().message +
                          (last_info_ ? "; the token info last read stands" : ""));
      if (!last_info_) return st;
      info = *last_info_;
    }
  }
  st.label = info->label;
  st.serial = info->serial;
  const CK_FLAGS f = info->flags;
  st.initialized = f & CKF_TOKEN_INITIALIZED;
  st.user_pin_initialized = f & CKF_USER_PIN_INITIALIZED;
  st.user_pin_count_low = f & CKF_USER_PIN_COUNT_LOW;
  st.user_pin_final_try = f & CKF_USER_PIN_FINAL_TRY;
  st.user_pin_locked = f & CKF_USER_PIN_LOCKED;
  st.so_pin_count_low = f & CKF_SO_PIN_COUNT_LOW;
  st.so_pin_final_try = f & CKF_SO_PIN_FINAL_TRY;
  st.so_pin_locked = f & CKF_SO_PIN_LOCKED;
  st.min_pin_len = info->min_pin_len;
  st.max_pin_len = info->max_pin_len;
  // "<HSM model> via cdcp11" would not fit 16 characters; the HSM's manufacturer does in 32.
  if (!info->manufacturer.empty()) st.manufacturer = (info->manufacturer + " via cdcp11").substr(0, 32);
  return st;
}

std::optional<std::vector<core::SlotMechanism>> ForwardToken::mechanisms() {
  std::lock_guard lk(mu_);
  if (!mechanisms_.empty()) return mechanisms_;
  std::vector<core::SlotMechanism> out;
  auto infos = module_->mechanism_infos(slot_);
  if (!infos) {
    log::warn(kLog, "group '" + group_ + "': the HSM's mechanism list is not available: " + infos.error().message);
    return out;
  }
  for (const auto& i : *infos) {
    const core::MechanismEntry* e = core::find_mechanism(i.type);
    if (!e) continue;  // the core cannot check templates or parameters for it
    const CK_FLAGS ops = CKF_ENCRYPT | CKF_DECRYPT | CKF_DIGEST | CKF_SIGN | CKF_VERIFY | CKF_GENERATE |
                         CKF_GENERATE_KEY_PAIR | CKF_WRAP | CKF_UNWRAP | CKF_DERIVE;
    const CK_FLAGS flags = (i.flags & e->flags & ops) | (i.flags & ~ops);
    if (!(flags & ops)) continue;
    out.push_back({i.type, i.min_key_size, i.max_key_size, flags});
  }
  mechanisms_ = out;  // an HSM's mechanisms do not change while it is loaded
  return out;
}

R<void> ForwardToken::init_token(ByteView, const std::string&) {
  log::warn(kLog, "group '" + group_ +
                      "': C_InitToken refused: it would erase the HSM token, which its administrator "
                      "initialises with the HSM's own tools");
  return core::err(Errc::not_supported, "C_InitToken is not forwarded to an HSM token; initialise it with the "
                                        "HSM's own tools");
}

R<void> ForwardToken::init_pin(ByteView user_pin) {
  std::lock_guard lk(mu_);
  CDC_TRY(main_.init_pin(user_pin));
  return {};
}

R<void> ForwardToken::set_pin(CK_USER_TYPE, ByteView old_pin, ByteView new_pin) {
  std::lock_guard lk(mu_);
  CDC_TRY(main_.set_pin(old_pin, new_pin));
  return {};
}

R<void> ForwardToken::login(CK_USER_TYPE who, ByteView pin) {
  std::lock_guard lk(mu_);
  TokenFileLock writing(dir_, LOCK_EX);
  CDC_TRY(main_.login(who == CKU_SO ? hsm::UserType::so : hsm::UserType::user, pin));
  logged_in_ = who == CKU_USER;
  next_sweep_ = {};  // a sweep begins at the next refresh
  return {};
}

R<void> ForwardToken::check_pin(ByteView) {
  // Every operation's context login goes to its own HSM session (ForwardOp::context_login).
  return core::err(Errc::operation_not_initialized,
                   "a context-specific login (CKA_ALWAYS_AUTHENTICATE) goes to the HSM session of the operation "
                   "waiting for it; none does");
}

void ForwardToken::logout() {
  std::lock_guard lk(mu_);
  if (auto r = main_.logout(); !r && r.error().rv != CKR_USER_NOT_LOGGED_IN)
    log::warn(kLog, "group '" + group_ + "': C_Logout of the HSM failed: " + r.error().message);
  logged_in_ = false;
}

// ---------------------------------------------------------------- identity

R<std::vector<std::string>> ForwardToken::identify(const std::vector<Found>& objs, bool fresh) {
  std::vector<std::string> uids(objs.size());
  std::vector<std::size_t> open;  // those identified by their locator
  for (std::size_t i = 0; i < objs.size(); ++i) {
    const auto& [h, a] = objs[i];
    if (auto it = uid_of_.find(h); it != uid_of_.end()) uids[i] = it->second;
    else if (auto* u = a->find(CKA_UNIQUE_ID); u && !u->empty()) uids[i] = uid_from_unique_id(*u);
    else if (!a->bool_or(CKA_TOKEN, false)) uids[i] = random_hex(16);  // a session object: this process only
    else open.push_back(i);
  }
  if (open.empty()) return uids;
  std::vector<std::string> locators;
  for (std::size_t i : open) locators.push_back(locator_of(*objs[i].second));
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  // Decides the uids of the open objects against the store's records; returns the new records
  // needed. An object's uid is the one a record with its locator gives (the derived one first),
  // else the id derived from its locator, which every process and host computes alike and no
  // record needs; a random id, recorded, only where the derived one is taken: by an object alike
  // in every locator attribute, or by a record of another locator (an object renamed through
  // our slot keeps its id).
  auto decide = [&](const std::map<std::string, MetaEntry>& recorded) {
    std::map<std::string, std::string> add;  // uid -> locator
    std::set<std::string> taken;
    auto claimable = [&](const std::string& id, const MetaEntry& e) {
      return !known_.count(id) && !taken.count(id) && (!fresh || now - e.created <= kJustRecordedSeconds);
    };
    std::multimap<std::string, const std::string*> by_locator;
    for (auto& [id, e] : recorded)
      if (!known_.count(id)) by_locator.emplace(e.locator, &id);
    for (std::size_t j = 0; j < open.size(); ++j) {
      const std::string& loc = locators[j];
      std::string& uid = uids[open[j]];
      const std::string derived = loc.substr(0, 32);
      auto rd = recorded.find(derived);
      uid.clear();
      // An entry without a locator holds only vendor state (core's) of an object whose id is derived.
      if (rd != recorded.end() && (rd->second.locator == loc || rd->second.locator.empty()) &&
          claimable(derived, rd->second)) {
        uid = derived;
      } else {
        auto [b, e] = by_locator.equal_range(loc);
        for (auto it = b; it != e && uid.empty(); ++it)
          if (claimable(*it->second, recorded.at(*it->second))) uid = *it->second;
      }
      if (uid.empty() && rd == recorded.end() && !known_.count(derived) && !taken.count(derived)) uid = derived;
      if (uid.empty()) {
        uid = random_hex(16);
        add[uid] = loc;
      }
      taken.insert(uid);
    }
    return add;
  };
  if (decide(meta_->data().objects).empty()) return uids;
  // Records to write: decided again under the store's lock, on what it holds now.
  CDC_TRY(meta_->update([&](MetaChange& c) -> R<void> {
    for (auto& [uid, loc] : decide(c.before().objects)) c.put(uid, MetaEntry{loc, {}, now});
    return {};
  }));
  return uids;
}

AttrMap ForwardToken::vendor_of(const std::string& uid) const {
  if (auto it = meta_->data().objects.find(uid); it != meta_->data().objects.end()) return it->second.vendor;
  if (auto s = session_vendor_.find(uid); s != session_vendor_.end()) return s->second;
  return {};
}

StoredObject ForwardToken::view(const std::string& uid, Known& k) {
  StoredObject o{uid, k.attrs};
  o.attrs.set_string(CKA_UNIQUE_ID, uid);
  k.vendor = vendor_of(uid);
  o.attrs.merge(k.vendor);
  return o;
}

R<AttrMap> ForwardToken::read(hsm::Session& s, CK_OBJECT_HANDLE h) {
  // Class first: it decides which attributes are key material.
  const CK_ATTRIBUTE_TYPE cls_t[] = {CKA_CLASS};
  CDC_ASSIGN(auto c, s.get_attributes(h, cls_t));
  const auto cls = c.ulong(CKA_CLASS).value_or(CKO_DATA);
  std::vector<CK_ATTRIBUTE_TYPE> want;
  for (auto t : kRead)
    if (!core::is_secret_attribute(cls, t) && !hsm::is_key_material(t)) want.push_back(t);
  if (cls == CKO_PUBLIC_KEY || cls == CKO_CERTIFICATE || cls == CKO_DATA) want.push_back(CKA_VALUE);
  std::sort(want.begin(), want.end());
  want.erase(std::unique(want.begin(), want.end()), want.end());
  CDC_ASSIGN(auto got, s.get_attributes(h, want, /*each_reason=*/false));
  return std::move(got.values);
}

R<StoredObject> ForwardToken::adopt(hsm::Session& s, CK_OBJECT_HANDLE h, const AttrMap& vendor) {
  CDC_ASSIGN(auto a, read(s, h));
  CDC_ASSIGN(auto uids, identify({{h, &a}}, true));
  const std::string uid = uids.front();
  uid_of_[h] = uid;
  const bool token = a.bool_or(CKA_TOKEN, false);
  Known& k = known_[uid];
  k.handle = h;
  k.attrs = std::move(a);
  k.locator = locator_of(k.attrs);
  // Core answers the vendor defaults itself: only other values need a record.
  const AttrMap defaults = core::vendor_defaults(k.attrs.ulong(CKA_CLASS).value_or(CKO_DATA));
  AttrMap own;
  for (auto& [t, v] : vendor)
    if (const Bytes* d = defaults.find(t); !d || *d != v) own.set(t, v);
  // A token object's are core's, in the metadata store (core/token/vendor_state.h).
  if (!own.empty() && !token) session_vendor_[uid].merge(own);
  if (token) reported_.insert(uid);
  return view(uid, k);
}

R<CK_OBJECT_HANDLE> ForwardToken::handle_of(const std::string& uid) {
  auto it = known_.find(uid);
  if (it == known_.end()) return core::err(Errc::object_handle_invalid, "object " + uid + " is not in the HSM token");
  return it->second.handle;
}

// ---------------------------------------------------------------- refresh

R<core::ObjectChanges> ForwardToken::refresh() {
  std::lock_guard lk(mu_);
  CDC_ASSIGN(bool meta_changed, meta_->reload());
  return refresh_locked(meta_changed);
}

// The object alone: one read, no listing. A whole refresh where one is due anyway: the store
// changed (its changes are for every object), or the object is not one we read (gone, hidden,
// never listed), which only a listing settles.
R<core::ObjectChanges> ForwardToken::refresh_object(const std::string& uid) {
  std::lock_guard lk(mu_);
  CDC_ASSIGN(bool meta_changed, meta_->reload());
  if (meta_changed) return refresh_locked(true);
  if (refs_.count(uid)) return core::ObjectChanges{};
  auto k = known_.find(uid);
  if (k == known_.end() || !reported_.count(uid)) return refresh_locked(false);
  auto a = read(main_, k->second.handle);
  if (!a) {
    if (a.error().code == Errc::object_handle_invalid) return refresh_locked(false);
    return fail(std::move(a).error());
  }
  core::ObjectChanges ch;
  if (!same(k->second.attrs, *a)) {
    k->second.attrs = std::move(*a);
    k->second.locator = locator_of(k->second.attrs);
    ch.upserted.push_back(view(uid, k->second));
  }
  return ch;
}

R<core::ObjectChanges> ForwardToken::refresh_locked(bool meta_changed) {
  core::ObjectChanges ch;
  const auto now = std::chrono::steady_clock::now();
  AttrMap tmpl;
  tmpl.set_bool(CKA_TOKEN, true);
  CDC_ASSIGN(auto handles, main_.find(tmpl));
  // Whether the listing holds every object: the user is logged in, as the HSM sees it too (a
  // login it dropped behind our back hides the private objects, which are not gone for that).
  bool complete = false;
  if (logged_in_) {
    auto info = main_.info();
    complete = info && (info->state == CKS_RW_USER_FUNCTIONS || info->state == CKS_RO_USER_FUNCTIONS);
    if (!complete) log::warn(kLog, "group '" + group_ + "': the HSM no longer has the user logged in");
  }
  const std::set<CK_OBJECT_HANDLE> listed(handles.begin(), handles.end());
  // Known objects read again (new ones always are): those whose record another process of ours
  // changed with their attributes (its update_object records the new locator), and a sweep of a
  // few each time for changes made by other applications. Reading every object at once would
  // make each refresh as slow as the HSM is with all of them (seconds for a thousand).
  std::set<CK_OBJECT_HANDLE> reread;
  if (meta_changed)
    for (auto& [uid, k] : known_)
      if (auto e = meta_->data().objects.find(uid); e != meta_->data().objects.end() && e->second.locator != k.locator)
        reread.insert(k.handle);
  bool swept = false;  // a sweep ended with this refresh
  const bool sweeping = now >= next_sweep_ && now >= next_batch_;
  if (sweeping) {
    std::size_t n = 0;
    auto it = known_.upper_bound(sweep_after_);
    for (; it != known_.end() && n < kSweepBatch; ++it) {
      if (!listed.count(it->second.handle)) continue;
      reread.insert(it->second.handle);
      sweep_after_ = it->first;
      ++n;
    }
    if (it == known_.end()) {
      sweep_after_.clear();
      next_sweep_ = now + kSweepInterval;
      swept = true;
    }
  }
  std::set<std::string> present;
  // New objects and those read again, read and then identified in one store update.
  std::vector<std::pair<CK_OBJECT_HANDLE, AttrMap>> fetched;
  for (CK_OBJECT_HANDLE h : handles) {
    auto known_uid = uid_of_.find(h);
    if (known_uid != uid_of_.end() && !reread.count(h)) {
      present.insert(known_uid->second);
      continue;
    }
    auto a = read(main_, h);
    if (!a) {
      if (a.error().code == Errc::object_handle_invalid) continue;  // destroyed in between
      return fail(std::move(a).error());
    }
    fetched.emplace_back(h, std::move(*a));
  }
  // A batch costs the HSM its reads: the next waits kSweepPause times as long, so that refreshes
  // in a tight loop (a find or a create each) spend at most about a tenth of their time on it.
  if (sweeping) next_batch_ = std::chrono::steady_clock::now() + (std::chrono::steady_clock::now() - now) * kSweepPause;
  std::vector<Found> found;
  for (auto& [h, a] : fetched) found.emplace_back(h, &a);
  CDC_ASSIGN(auto uids, identify(found, false));
  std::set<std::string> reported_now;
  for (std::size_t i = 0; i < fetched.size(); ++i) {
    auto& [h, a] = fetched[i];
    const std::string& uid = uids[i];
    const bool is_new = !uid_of_.count(h);
    uid_of_[h] = uid;
    Known& k = known_[uid];
    const bool changed = is_new || !same(k.attrs, a);
    k.handle = h;
    k.attrs = std::move(a);
    k.locator = locator_of(k.attrs);
    present.insert(uid);
    if (changed || !reported_.count(uid) || (meta_changed && !same(vendor_of(uid), k.vendor))) {
      ch.upserted.push_back(view(uid, k));
      reported_now.insert(uid);
    }
  }
  // Vendor attributes another process changed: the object's view again, without the HSM.
  if (meta_changed)
    for (auto& uid : present)
      if (auto k = known_.find(uid); k != known_.end() && !reported_now.count(uid) && reported_.count(uid) &&
                                     !same(vendor_of(uid), k->second.vendor))
        ch.upserted.push_back(view(uid, k->second));
  // Gone: destroyed (here, by another process or by the HSM's own tools), or private and the
  // user logged out.
  std::set<std::string> gone;
  for (auto it = reported_.begin(); it != reported_.end();) {
    if (present.count(*it) || refs_.count(*it)) {
      ++it;
      continue;
    }
    ch.removed.push_back(*it);
    if (complete) gone.insert(*it);
    if (auto k = known_.find(*it); k != known_.end()) {
      uid_of_.erase(k->second.handle);
      known_.erase(k);
    }
    it = reported_.erase(it);
  }
  for (auto& uid : present) reported_.insert(uid);
  // Key references live in the store only.
  for (auto& [uid, a] : meta_->data().refs) {
    if (meta_changed || !refs_.count(uid)) {
      refs_[uid] = StoredObject{uid, a};
      ch.upserted.push_back(refs_[uid]);
    }
  }
  for (auto it = refs_.begin(); it != refs_.end();) {
    if (meta_->data().refs.count(it->first)) {
      ++it;
      continue;
    }
    ch.removed.push_back(it->first);
    it = refs_.erase(it);
  }
  // Metadata of objects deleted behind our back. Only with the user logged in: before that the
  // private objects are not listed. An object this process saw go is pruned at once; an entry
  // never seen here only once it is old enough (its object may be younger than our listing).
  if (complete && (swept || !gone.empty())) {
    const auto t = static_cast<std::int64_t>(std::time(nullptr));
    auto stale = [&](const std::string& uid, const MetaEntry& e) {
      return !present.count(uid) && !refs_.count(uid) &&
             (gone.count(uid) || (swept && t - e.created > kPruneGraceSeconds));
    };
    bool any_stale = false;
    for (auto& [uid, e] : meta_->data().objects) any_stale |= stale(uid, e);
    if (any_stale) {
      CDC_TRY(meta_->update([&](MetaChange& c) -> R<void> {
        for (auto& [uid, e] : c.before().objects) {
          if (!stale(uid, e)) continue;
          log::info(kLog, "group '" + group_ + "': object " + uid + " is no longer in the HSM; its metadata is removed");
          c.erase(uid);
        }
        return {};
      }));
    }
  }
  return ch;
}

// ---------------------------------------------------------------- objects

R<StoredObject> ForwardToken::create_object(const AttrMap& attrs) {
  std::lock_guard lk(mu_);
  AttrMap vendor;
  CDC_ASSIGN(auto h, main_.create(hsm_template(attrs, vendor)));
  return adopt(main_, h, vendor);
}

R<StoredObject> ForwardToken::create_key_reference(const AttrMap& attrs) {
  std::lock_guard lk(mu_);
  const std::string uid = random_hex(16);
  AttrMap a = attrs;
  a.set_string(CKA_UNIQUE_ID, uid);
  CDC_TRY(meta_->update([&](MetaChange& c) -> R<void> {
    c.put_ref(uid, a);
    return {};
  }));
  refs_[uid] = StoredObject{uid, a};
  return refs_[uid];
}

R<StoredObject> ForwardToken::copy_object(const std::string& src_uid, const AttrMap& attrs) {
  std::lock_guard lk(mu_);
  if (refs_.count(src_uid)) return core::err(Errc::action_prohibited, "a key reference cannot be copied");
  CDC_ASSIGN(auto h, handle_of(src_uid));
  // Only what differs from the source goes to the HSM (C_CopyObject takes changes).
  const AttrMap& src = known_[src_uid].attrs;
  AttrMap changes, vendor;
  for (auto& [t, v] : attrs)
    if (is_vendor_attribute(t) || !src.find(t) || *src.find(t) != v) changes.set(t, v);
  CDC_ASSIGN(auto copy, main_.copy(h, hsm_template(changes, vendor)));
  CDC_ASSIGN(auto made, adopt(main_, copy, vendor));
  // A copied private key has its source's public key (the HSM keeps no EC point with it).
  if (auto p = pair_of_.find(src_uid); p != pair_of_.end()) pair_of_[made.uid] = p->second;
  return made;
}

R<void> ForwardToken::update_object(const std::string& uid, const AttrMap& attrs) {
  std::lock_guard lk(mu_);
  if (auto r = refs_.find(uid); r != refs_.end()) {
    CDC_TRY(meta_->update([&](MetaChange& c) -> R<void> {
      c.put_ref(uid, attrs);
      return {};
    }));
    r->second.attrs = attrs;
    return {};
  }
  CDC_ASSIGN(auto h, handle_of(uid));
  Known& k = known_[uid];
  AttrMap changes, vendor;
  for (auto& [t, v] : attrs) {
    if (t == CKA_UNIQUE_ID) continue;
    if (is_vendor_attribute(t)) vendor.set(t, v);
    else if (!k.attrs.find(t) || *k.attrs.find(t) != v) changes.set(t, v);
  }
  if (!changes.empty()) {
    CDC_TRY(main_.set_attributes(h, changes));
    CDC_ASSIGN(k.attrs, read(main_, h));
  }
  const bool token = k.attrs.bool_or(CKA_TOKEN, false);
  if (!token) {
    session_vendor_[uid] = vendor;
    return {};
  }
  const std::string loc = locator_of(k.attrs);
  k.locator = loc;
  // Its vendor attributes are core's (core/token/vendor_state.h): only the locator is recorded
  // here, when the object's id is not the one its locator derives.
  const bool derived = loc.substr(0, 32) == uid;
  return meta_->update([&](MetaChange& c) -> R<void> {
    auto it = c.before().objects.find(uid);
    const std::string have = it == c.before().objects.end() ? std::string() : it->second.locator;
    if (have == loc || (have.empty() && derived)) return {};
    MetaEntry e = it == c.before().objects.end() ? MetaEntry{} : it->second;
    if (!e.created) e.created = static_cast<std::int64_t>(std::time(nullptr));
    e.locator = loc;
    c.put(uid, std::move(e));
    return {};
  });
}

R<void> ForwardToken::destroy_object(const std::string& uid) {
  std::lock_guard lk(mu_);
  if (refs_.count(uid)) {
    CDC_TRY(meta_->update([&](MetaChange& c) -> R<void> {
      c.erase_ref(uid);
      return {};
    }));
    refs_.erase(uid);
    reported_.erase(uid);
    return {};
  }
  CDC_ASSIGN(auto h, handle_of(uid));
  // Already gone in the HSM (a private session object its C_Logout destroyed): forget it too.
  if (auto d = main_.destroy(h); !d && d.error().rv != CKR_OBJECT_HANDLE_INVALID) return fail(std::move(d).error());
  const bool token = known_[uid].attrs.bool_or(CKA_TOKEN, false);
  known_.erase(uid);
  uid_of_.erase(h);
  reported_.erase(uid);
  session_vendor_.erase(uid);
  if (!token) return {};
  return meta_->update([&](MetaChange& c) -> R<void> {
    c.erase(uid);
    return {};
  });
}

R<SecureBytes> ForwardToken::secret_attribute(const std::string& uid, CK_ATTRIBUTE_TYPE t) {
  std::lock_guard lk(mu_);
  CDC_ASSIGN(auto h, handle_of(uid));
  const CK_ATTRIBUTE_TYPE types[] = {t};
  CDC_ASSIGN(auto got, main_.get_attributes(h, types));
  if (auto it = got.unavailable.find(t); it != got.unavailable.end())
    return core::err(hsm::errc_from_rv(it->second), std::string(core::attribute_name(t)) + ": " + hsm::rv_name(it->second));
  const Bytes* v = got.find(t);
  if (!v) return core::err(Errc::attribute_type_invalid, std::string(core::attribute_name(t)) + " is not set");
  return SecureBytes(v->begin(), v->end());
}

R<std::size_t> ForwardToken::object_size(const std::string& uid) {
  std::lock_guard lk(mu_);
  if (refs_.count(uid)) return std::size_t{0};
  CDC_ASSIGN(auto h, handle_of(uid));
  CK_ULONG size = 0;
  const CK_RV rv = hsm::invoke(module_->functions()->C_GetObjectSize, main_.handle(), h, &size);
  if (rv == CKR_OK) return static_cast<std::size_t>(size);
  if (rv == CKR_INFORMATION_SENSITIVE) return static_cast<std::size_t>(CK_UNAVAILABLE_INFORMATION);
  return fail(hsm::call_failed("C_GetObjectSize", rv).error);
}

}  // namespace cdcp11::forward
