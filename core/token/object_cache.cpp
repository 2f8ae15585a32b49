#include "core/token/object_cache.h"

#include <algorithm>
#include <string_view>

namespace cdcp11::core {

namespace {
constexpr CK_ATTRIBUTE_TYPE kIndexed[] = {CKA_CLASS, CKA_LABEL, CKA_ID, CKA_KEY_TYPE};
}

std::size_t ObjectIndex::KeyHash::operator()(const Key& k) const noexcept {
  const std::string_view v(reinterpret_cast<const char*>(k.second.data()), k.second.size());
  return std::hash<std::string_view>{}(v) ^ (std::hash<CK_ATTRIBUTE_TYPE>{}(k.first) * 0x9e3779b97f4a7c15ULL);
}

void ObjectIndex::add(CK_OBJECT_HANDLE h, const AttrMap& a) {
  for (auto t : kIndexed)
    if (auto* v = a.find(t)) idx_[{t, *v}].insert(h);
}

void ObjectIndex::remove(CK_OBJECT_HANDLE h, const AttrMap& a) {
  for (auto t : kIndexed)
    if (auto* v = a.find(t)) {
      auto it = idx_.find({t, *v});
      if (it == idx_.end()) continue;
      it->second.erase(h);
      if (it->second.empty()) idx_.erase(it);
    }
}

std::size_t ObjectIndex::size() const {
  std::size_t n = 0;
  for (auto& [k, hs] : idx_) n += hs.size();
  return n;
}

std::optional<std::vector<CK_OBJECT_HANDLE>> ObjectIndex::candidates(const AttrMap& tmpl) const {
  const std::set<CK_OBJECT_HANDLE>* best = nullptr;
  static const std::set<CK_OBJECT_HANDLE> kEmpty;
  bool any = false;
  for (auto t : kIndexed) {
    auto* v = tmpl.find(t);
    if (!v) continue;
    any = true;
    auto it = idx_.find({t, *v});
    const auto* set = it == idx_.end() ? &kEmpty : &it->second;
    if (!best || set->size() < best->size()) best = set;
  }
  if (!any) return std::nullopt;
  return std::vector<CK_OBJECT_HANDLE>(best->begin(), best->end());
}

CK_OBJECT_HANDLE ObjectCache::add(StoredObject obj, bool token, CK_SESSION_HANDLE owner, KeyHome* home) {
  CK_OBJECT_HANDLE h = next_++;
  index_.add(h, obj.attrs);
  by_uid_[obj.uid] = h;
  objects_[h] = Object{std::move(obj), token, owner, home};
  return h;
}

void ObjectCache::remove(CK_OBJECT_HANDLE h) { (void)take(h); }

std::optional<Object> ObjectCache::take(CK_OBJECT_HANDLE h) {
  auto it = objects_.find(h);
  if (it == objects_.end()) return std::nullopt;
  index_.remove(h, it->second.obj.attrs);
  by_uid_.erase(it->second.obj.uid);
  Object o = std::move(it->second);
  objects_.erase(it);
  return o;
}

void ObjectCache::set_attrs(CK_OBJECT_HANDLE h, AttrMap attrs) {
  auto it = objects_.find(h);
  if (it == objects_.end()) return;
  index_.remove(h, it->second.obj.attrs);
  it->second.obj.attrs = std::move(attrs);
  it->second.for_ops.reset();
  index_.add(h, it->second.obj.attrs);
}

void ObjectCache::clear() {
  objects_.clear();
  by_uid_.clear();
  index_.clear();
}

Object* ObjectCache::get(CK_OBJECT_HANDLE h) {
  auto it = objects_.find(h);
  return it == objects_.end() ? nullptr : &it->second;
}

const Object* ObjectCache::get(CK_OBJECT_HANDLE h) const {
  auto it = objects_.find(h);
  return it == objects_.end() ? nullptr : &it->second;
}

std::shared_ptr<const StoredObject> ObjectCache::for_ops(Object& o) {
  if (!o.for_ops) o.for_ops = std::make_shared<const StoredObject>(o.obj);
  return o.for_ops;
}

std::optional<CK_OBJECT_HANDLE> ObjectCache::handle_of(const std::string& uid) const {
  auto it = by_uid_.find(uid);
  if (it == by_uid_.end()) return std::nullopt;
  return it->second;
}

std::vector<CK_OBJECT_HANDLE> ObjectCache::candidates(const AttrMap& tmpl) const {
  if (auto c = index_.candidates(tmpl)) return std::move(*c);
  std::vector<CK_OBJECT_HANDLE> all;
  all.reserve(objects_.size());
  for (auto& [h, o] : objects_) all.push_back(h);
  std::sort(all.begin(), all.end());
  return all;
}

}  // namespace cdcp11::core
