#include "core/token/vendor_state.h"

#include <ctime>
#include <set>
#include <utility>

#include "core/attribute_policy.h"

namespace cdcp11::core {

namespace {

bool is_token_object(const AttrMap& a) { return a.bool_or(CKA_TOKEN, false); }

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

AttrMap VendorState::current(const std::string& uid, const AttrMap& from_backend) const {
  const auto& objects = store_->data().objects;
  if (auto it = objects.find(uid); it != objects.end()) return it->second.vendor;
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

R<void> VendorState::put(const std::string& uid, CK_OBJECT_CLASS cls, const AttrMap& vendor,
                         const AttrMap& from_backend) {
  const AttrMap own = non_default_vendor(cls, vendor);
  const auto& objects = store_->data().objects;
  const auto it = objects.find(uid);
  // Without an entry the backend's own (legacy) values hold: they must reach the store before
  // the backend is given the object without them.
  if (it == objects.end() ? own.empty() && non_default_vendor(cls, from_backend).empty()
                          : non_default_vendor(cls, it->second.vendor).map() == own.map())
    return {};
  return store_->update([&](MetaData& d) -> R<bool> {
    MetaEntry& e = d.objects[uid];
    if (!e.created) e.created = static_cast<std::int64_t>(std::time(nullptr));
    e.vendor = own;
    return true;
  });
}

R<StoredObject> VendorState::made(R<StoredObject> obj, const AttrMap& vendor) {
  if (!obj) return obj;
  if (!is_token_object(obj->attrs)) {
    obj->attrs.merge(vendor);
    return obj;
  }
  std::lock_guard lk(mu_);
  const auto cls = obj->attrs.ulong(CKA_CLASS).value_or(CKO_DATA);
  if (auto p = put(obj->uid, cls, vendor, {}); !p) {
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
    CDC_TRY(put(uid, attrs.ulong(CKA_CLASS).value_or(CKO_DATA), vendor,
                it == shown_.end() ? none : it->second.from_backend));
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
  return store_->update([&](MetaData& d) -> R<bool> { return d.objects.erase(uid) > 0; });
}

R<void> VendorState::init_token(ByteView so_pin, const std::string& label) {
  CDC_TRY(inner_->init_token(so_pin, label));
  std::lock_guard lk(mu_);
  shown_.clear();
  // The objects are gone: so is their vendor state (an HSM entry keeps its locator).
  return store_->update([&](MetaData& d) -> R<bool> {
    bool changed = false;
    for (auto it = d.objects.begin(); it != d.objects.end();) {
      changed |= !it->second.vendor.empty() || it->second.locator.empty();
      it->second.vendor = AttrMap{};
      it = it->second.locator.empty() ? d.objects.erase(it) : std::next(it);
    }
    return changed;
  });
}

R<ObjectChanges> VendorState::refresh() {
  {
    // First: the backend's changes, once taken, are not reported again.
    std::lock_guard lk(mu_);
    CDC_ASSIGN(bool changed, store_->reload());
    store_changed_ |= changed;
  }
  CDC_ASSIGN(auto ch, inner_->refresh());
  std::lock_guard lk(mu_);
  // Again: the backend may have written it (the soft token's move of older records). Unreadable
  // now, the next refresh reports what changed.
  auto again = store_->reload();
  const bool store_changed = std::exchange(store_changed_, !again) || (again && *again);
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
  return ch;
}

}  // namespace cdcp11::core
