#include "core/token/vendor_state.h"

#include <algorithm>
#include <ctime>
#include <set>
#include <utility>

#include "common/log.h"
#include "core/attribute_policy.h"

namespace cdcp11::core {

namespace {

constexpr const char* kLog = "vendor";

bool is_token_object(const AttrMap& a) { return a.bool_or(CKA_TOKEN, false); }
// Unknown: sealed, so that nothing is left readable by mistake.
bool is_private_object(const AttrMap& a) { return a.bool_or(CKA_PRIVATE, true); }

bool same_entry(const MetaEntry& a, const MetaEntry& b) {
  return a.vendor.map() == b.vendor.map() && a.mac == b.mac && a.sealed == b.sealed;
}

}  // namespace

AttrMap non_default_vendor(CK_OBJECT_CLASS cls, const AttrMap& vendor) {
  const AttrMap defaults = vendor_defaults(cls);
  AttrMap own;
  for (auto& [t, v] : vendor)
    if (const Bytes* d = defaults.find(t); !d || *d != v) own.set(t, v);
  return own;
}

AttrMap split_vendor(const AttrMap& attrs, AttrMap& rest) {
  AttrMap vendor;
  rest = AttrMap{};
  for (auto& [t, v] : attrs) {
    if (is_vendor_attribute(t)) vendor.set(t, v);
    else rest.set(t, v);
  }
  return vendor;
}

R<MetaEntry> seal_entry(VendorSeal* seal, const std::string& uid, bool is_private, const AttrMap& vendor) {
  MetaEntry e;
  if (!seal) {
    e.vendor = vendor;
    return e;
  }
  if (!seal->ready())
    return err(Errc::user_not_logged_in, "object " + uid + ": its vendor state is written under the token key: log in first");
  if (is_private) {
    const SecureBytes canonical = vendor.serialize_secure();
    CDC_ASSIGN(e.sealed, seal->seal(uid, canonical));
    return e;
  }
  e.vendor = vendor;
  CDC_ASSIGN(e.mac, seal->mac(uid, vendor.serialize()));
  return e;
}

R<AttrMap> open_entry(VendorSeal& seal, const std::string& uid, const MetaEntry& e) {
  const auto failed = [&] { return err(Errc::device_error, "object " + uid + ": vendor state fails its MAC"); };
  if (!e.sealed.empty()) {
    if (!e.vendor.empty() || !e.mac.empty()) return failed();
    auto plain = seal.open(uid, e.sealed);
    if (!plain) return plain.error().code == Errc::device_error ? failed() : fail(std::move(plain).error());
    auto a = AttrMap::deserialize(*plain);
    if (!a) return failed();
    return a;
  }
  CDC_ASSIGN(Bytes mac, seal.mac(uid, e.vendor.serialize()));
  if (e.mac.empty() || !ct_equal(mac, e.mac)) return failed();
  return e.vendor;
}

VendorState::VendorState(std::unique_ptr<Backend> inner, std::unique_ptr<MetadataStore> store)
    : inner_(std::move(inner)),
      seal_(inner_->vendor_seal()),
      store_(std::move(store)),
      snapshot_watch_(store_->path(), ChangeWatch::Kind::entry),
      changes_watch_(store_->changes_path(), ChangeWatch::Kind::entry) {
  std::lock_guard lk(mu_);
  check_entries();
}

void VendorState::recheck_entries() {
  store_changed_ |= check_entries();
  settled_.store(false, std::memory_order_release);
}

std::optional<AttrMap> VendorState::entry_vendor(const std::string& uid, const MetaEntry& e, bool keys) {
  if (!seal_) return e.vendor;
  if (!keys) return e.sealed.empty() ? e.vendor : AttrMap{};  // a public object's, unauthenticated
  if (auto c = checked_.find(uid); c != checked_.end() && same_entry(c->second.entry, e)) return c->second.vendor;
  auto v = open_entry(*seal_, uid, e);
  if (!v) {
    // Keys there a moment ago and gone now (a logout meanwhile): checked at the next call.
    if (v.error().code != Errc::device_error) return std::nullopt;
    log::warn(kLog, "object " + uid + ": vendor state fails its MAC; ignored (the object has core's defaults)");
  }
  AttrMap got = v ? std::move(*v) : AttrMap{};
  checked_[uid] = Checked{e, got};
  return got;
}

bool VendorState::check_entries() {
  const bool keys = seal_ && seal_->ready();
  MetadataStore::Changed ch = store_->take_changed();
  if (keys != checked_with_keys_) {
    checked_.clear();
    ch.all = true;
  }
  checked_with_keys_ = keys;
  const auto& objects = store_->data().objects;
  // The entries the store says changed (a vault sync writes thousands, one at a time), or when
  // it cannot tell, every entry there is and every one there was.
  std::set<std::string> uids = std::move(ch.uids);
  if (ch.all) {
    for (auto& [uid, e] : objects) uids.insert(uid);
    for (auto& [uid, v] : valid_) uids.insert(uid);
    for (auto& [uid, c] : checked_) uids.insert(uid);
  }
  bool changed = false;
  for (auto& uid : uids) {
    const auto e = objects.find(uid);
    std::optional<AttrMap> now = e == objects.end() ? std::nullopt : entry_vendor(uid, e->second, keys);
    if (!now) checked_.erase(uid);
    const auto was = valid_.find(uid);
    if (!now && was == valid_.end()) continue;
    if (now && was != valid_.end() && was->second.map() == now->map()) continue;
    changed = true;
    if (now) valid_[uid] = std::move(*now);
    else valid_.erase(was);
  }
  return changed;
}

R<void> VendorState::login(CK_USER_TYPE who, ByteView pin) {
  CDC_TRY(inner_->login(who, pin));
  std::lock_guard lk(mu_);
  recheck_entries();
  return {};
}

void VendorState::logout() {
  inner_->logout();
  std::lock_guard lk(mu_);
  recheck_entries();
}

AttrMap VendorState::current(const std::string& uid, const AttrMap& from_backend) const {
  if (auto it = valid_.find(uid); it != valid_.end()) return it->second;
  return from_backend;
}

void VendorState::show(StoredObject& o) {
  AttrMap rest;
  AttrMap from_backend = split_vendor(o.attrs, rest);
  Shown s{std::move(from_backend), {}};
  s.vendor = current(o.uid, s.from_backend);
  rest.merge(s.vendor);
  o.attrs = std::move(rest);
  shown_[o.uid] = std::move(s);
}

R<void> VendorState::put(const std::string& uid, const AttrMap& attrs, const AttrMap& vendor,
                         const AttrMap& from_backend) {
  const auto cls = attrs.ulong(CKA_CLASS).value_or(CKO_DATA);
  const bool is_private = is_private_object(attrs);
  const AttrMap own = non_default_vendor(cls, vendor);
  const auto& objects = store_->data().objects;
  const auto it = objects.find(uid);
  // Without an entry the backend's own (legacy) values hold: they must reach the store before
  // the backend is given the object without them.
  if (it == objects.end() ? own.empty() && non_default_vendor(cls, from_backend).empty()
                          : (!seal_ || it->second.sealed.empty() != is_private) &&
                                non_default_vendor(cls, current(uid, {})).map() == own.map())
    return {};
  CDC_ASSIGN(MetaEntry sealed, seal_entry(seal_, uid, is_private, own));
  CDC_TRY(store_->update([&](MetaChange& c) -> R<void> {
    const auto was = c.before().objects.find(uid);
    MetaEntry e = was == c.before().objects.end() ? MetaEntry{} : was->second;
    if (!e.created) e.created = static_cast<std::int64_t>(std::time(nullptr));
    e.vendor = sealed.vendor;
    e.mac = sealed.mac;
    e.sealed = sealed.sealed;
    c.put(uid, std::move(e));
    return {};
  }));
  // The update re-read the store: other processes' changes are in it too.
  recheck_entries();
  return {};
}

R<StoredObject> VendorState::made(R<StoredObject> obj, const AttrMap& vendor) {
  if (!obj) return obj;
  if (!is_token_object(obj->attrs)) {
    obj->attrs.merge(vendor);
    return obj;
  }
  std::lock_guard lk(mu_);
  if (auto p = put(obj->uid, obj->attrs, vendor, {}); !p) {
    (void)inner_->destroy_object(obj->uid);
    return fail(std::move(p).error());
  }
  show(*obj);
  return obj;
}

R<StoredObject> VendorState::create_object(const AttrMap& attrs) {
  AttrMap rest;
  const AttrMap vendor = split_vendor(attrs, rest);
  return made(inner_->create_object(is_token_object(attrs) ? rest : attrs), vendor);
}

R<StoredObject> VendorState::create_key_reference(const AttrMap& attrs) {
  AttrMap rest;
  const AttrMap vendor = split_vendor(attrs, rest);
  return made(inner_->create_key_reference(rest), vendor);
}

R<StoredObject> VendorState::copy_object(const std::string& src_uid, const AttrMap& attrs) {
  AttrMap rest;
  const AttrMap vendor = split_vendor(attrs, rest);
  return made(inner_->copy_object(src_uid, is_token_object(attrs) ? rest : attrs), vendor);
}

R<StoredObject> VendorState::generate_key(const Mechanism& m, const AttrMap& attrs) {
  AttrMap rest;
  const AttrMap vendor = split_vendor(attrs, rest);
  return made(inner_->generate_key(m, is_token_object(attrs) ? rest : attrs), vendor);
}

R<std::pair<StoredObject, StoredObject>> VendorState::generate_key_pair(const Mechanism& m, const AttrMap& pub,
                                                                        const AttrMap& priv) {
  AttrMap pub_rest, priv_rest;
  const AttrMap pub_vendor = split_vendor(pub, pub_rest), priv_vendor = split_vendor(priv, priv_rest);
  CDC_ASSIGN(auto kp, inner_->generate_key_pair(m, is_token_object(pub) ? pub_rest : pub,
                                                is_token_object(priv) ? priv_rest : priv));
  const std::string pub_uid = kp.first.uid;
  auto p = made(std::move(kp.first), pub_vendor);
  if (!p) {
    (void)inner_->destroy_object(kp.second.uid);
    return fail(std::move(p).error());
  }
  auto k = made(std::move(kp.second), priv_vendor);
  if (!k) {
    (void)destroy_object(pub_uid);
    return fail(std::move(k).error());
  }
  return std::pair{std::move(*p), std::move(*k)};
}

R<StoredObject> VendorState::unwrap_key(const Mechanism& m, const StoredObject& unwrapping_key, ByteView wrapped,
                                        const AttrMap& attrs) {
  AttrMap rest;
  const AttrMap vendor = split_vendor(attrs, rest);
  return made(inner_->unwrap_key(m, unwrapping_key, wrapped, is_token_object(attrs) ? rest : attrs), vendor);
}

R<StoredObject> VendorState::derive_key(const Mechanism& m, const StoredObject& base_key, const AttrMap& attrs) {
  AttrMap rest;
  const AttrMap vendor = split_vendor(attrs, rest);
  return made(inner_->derive_key(m, base_key, is_token_object(attrs) ? rest : attrs), vendor);
}

R<void> VendorState::update_object(const std::string& uid, const AttrMap& attrs) {
  if (!is_token_object(attrs)) return inner_->update_object(uid, attrs);
  AttrMap rest;
  const AttrMap vendor = split_vendor(attrs, rest);
  {
    std::lock_guard lk(mu_);
    const auto it = shown_.find(uid);
    const AttrMap none;
    CDC_TRY(put(uid, attrs, vendor, it == shown_.end() ? none : it->second.from_backend));
    if (it != shown_.end()) it->second.vendor = current(uid, it->second.from_backend);
  }
  CDC_TRY(inner_->update_object(uid, rest));
  std::lock_guard lk(mu_);
  if (auto it = shown_.find(uid); it != shown_.end()) it->second.from_backend = AttrMap{};
  return {};
}

R<void> VendorState::destroy_object(const std::string& uid) {
  CDC_TRY(inner_->destroy_object(uid));
  std::lock_guard lk(mu_);
  shown_.erase(uid);
  if (!store_->data().objects.count(uid)) return {};
  CDC_TRY(store_->update([&](MetaChange& c) -> R<void> {
    c.erase(uid);
    return {};
  }));
  recheck_entries();
  return {};
}

R<void> VendorState::init_token(ByteView so_pin, const std::string& label) {
  CDC_TRY(inner_->init_token(so_pin, label));
  std::lock_guard lk(mu_);
  shown_.clear();
  settled_.store(false, std::memory_order_release);
  // The objects are gone: so is their vendor state (an HSM entry keeps its locator).
  CDC_TRY(store_->update([&](MetaChange& c) -> R<void> {
    for (auto& [uid, e] : c.before().objects) {
      if (e.locator.empty()) c.erase(uid);
      else c.put(uid, MetaEntry{e.locator, {}, e.created, {}, {}});
    }
    return {};
  }));
  check_entries();
  return {};
}

R<bool> VendorState::reload_store() {
  // Both asked, so that settling both below counts what each saw.
  const bool snapshot_unchanged = snapshot_watch_.unchanged();
  const bool changes_unchanged = changes_watch_.unchanged();
  if (snapshot_unchanged && changes_unchanged) return false;
  CDC_ASSIGN(bool changed, store_->reload());
  snapshot_watch_.settled();
  changes_watch_.settled();
  return changed;
}

R<ObjectChanges> VendorState::refresh() {
  return refresh_with([&] { return inner_->refresh(); });
}

R<ObjectChanges> VendorState::refresh_object(const std::string& uid) {
  return refresh_with([&] { return inner_->refresh_object(uid); });
}

R<ObjectChanges> VendorState::refresh_with(const std::function<R<ObjectChanges>()>& inner_refresh) {
  settled_.store(false, std::memory_order_release);
  R<ObjectChanges> got = ObjectChanges{};
  {
    // One look at the change watches' queue serves the store's watches and the backend's own
    // (the soft token's store): what changed before this refresh began is seen by both.
    ChangeWatch::Scope scope;
    {
      // First: the backend's changes, once taken, are not reported again.
      std::lock_guard lk(mu_);
      CDC_ASSIGN(bool changed, reload_store());
      store_changed_ |= changed;
    }
    got = inner_refresh();
  }
  CDC_TRY(got);
  ObjectChanges& ch = *got;
  std::lock_guard lk(mu_);
  // Again, with a look of its own, when the backend changed anything: it may have written the
  // store (the soft token's move of older records rewrites each record it moves). A write of the
  // backend's that changes no object (an HSM's pruning of entries whose object is gone) is seen
  // by the next refresh, as any other. Unreadable now, the next refresh reports what changed.
  R<bool> again = false;
  if (ch.full_reload || !ch.upserted.empty() || !ch.removed.empty()) again = reload_store();
  bool store_changed = std::exchange(store_changed_, !again) || (again && *again);
  // Checked again only when there is something new to check: the entries, or the keys (a login
  // or logout elsewhere than through this object, such as a re-initialisation by another process).
  if (store_changed || (seal_ && seal_->ready() != checked_with_keys_)) store_changed |= check_entries();
  if (ch.full_reload) shown_.clear();
  for (auto& uid : ch.removed) shown_.erase(uid);
  std::set<std::string> upserted;
  for (auto& o : ch.upserted) {
    if (!is_token_object(o.attrs)) continue;
    show(o);
    upserted.insert(o.uid);
  }
  if (store_changed) {
    for (auto& [uid, s] : shown_) {
      if (upserted.count(uid)) continue;
      AttrMap now = current(uid, s.from_backend);
      if (now.map() == s.vendor.map()) continue;
      s.vendor = now;
      ch.vendor[uid] = std::move(now);
    }
  }
  settled_.store(!store_changed_ && (!seal_ || seal_->ready() == checked_with_keys_), std::memory_order_release);
  return std::move(ch);
}

bool VendorState::unchanged_since_refresh() {
  // One look at the change queue answers for the store's watches and the backend's.
  ChangeWatch::Scope scope;
  return settled_.load(std::memory_order_acquire) && snapshot_watch_.quiet() && changes_watch_.quiet() && inner_->unchanged_since_refresh();
}

}  // namespace cdcp11::core
