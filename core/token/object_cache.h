// The objects a token shows: handle -> object, with an index of the attributes applications
// search by. Token objects come from the backend (refresh), session objects live here until
// their session closes. Not thread-safe: the token's lock guards it.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/backend.h"

namespace cdcp11::core {

class KeyHome;

struct Object {
  StoredObject obj;
  bool token = false;
  CK_SESSION_HANDLE owner = 0;  // session objects: the creating session
  KeyHome* home = nullptr;      // keys: where the key material is used
  // An immutable copy of obj handed to operations (which outlive the token's lock), made at the
  // first one and dropped whenever the attributes change (ObjectCache::set_attrs).
  std::shared_ptr<const StoredObject> for_ops;

  const AttrMap& attrs() const { return obj.attrs; }
  CK_OBJECT_CLASS cls() const { return obj.attrs.ulong(CKA_CLASS).value_or(CKO_DATA); }
  bool is_private() const { return obj.attrs.bool_or(CKA_PRIVATE, false); }
};

// Objects indexed by the attributes applications search by (C_FindObjects).
class ObjectIndex {
 public:
  void add(CK_OBJECT_HANDLE h, const AttrMap& a);
  void remove(CK_OBJECT_HANDLE h, const AttrMap& a);
  void clear() { idx_.clear(); }
  // How many (attribute value, handle) entries it holds; for tests.
  std::size_t size() const;
  // Candidate handles for a template, or nullopt when no indexed attribute is in it.
  std::optional<std::vector<CK_OBJECT_HANDLE>> candidates(const AttrMap& tmpl) const;

 private:
  // Hashed, so a look-up costs the same at 1,000 objects as at 100,000.
  using Key = std::pair<CK_ATTRIBUTE_TYPE, Bytes>;
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept;
  };
  std::unordered_map<Key, std::set<CK_OBJECT_HANDLE>, KeyHash> idx_;
};

class ObjectCache {
 public:
  // Handles are unique across the tokens of the process: they share one counter.
  explicit ObjectCache(std::atomic<CK_OBJECT_HANDLE>& next_handle) : next_(next_handle) {}

  CK_OBJECT_HANDLE add(StoredObject obj, bool token, CK_SESSION_HANDLE owner, KeyHome* home);
  void remove(CK_OBJECT_HANDLE h);
  // Removes the object and hands it over (index and uid entries go with it).
  std::optional<Object> take(CK_OBJECT_HANDLE h);
  // Replaces an object's attributes; its handle stays.
  void set_attrs(CK_OBJECT_HANDLE h, AttrMap attrs);
  void clear();

  Object* get(CK_OBJECT_HANDLE h);
  const Object* get(CK_OBJECT_HANDLE h) const;
  // The object as an operation keeps it: shared, not copied per operation.
  std::shared_ptr<const StoredObject> for_ops(Object& o);
  std::optional<CK_OBJECT_HANDLE> handle_of(const std::string& uid) const;
  // Handles that may match a search template: from the index, or every handle (in handle order).
  std::vector<CK_OBJECT_HANDLE> candidates(const AttrMap& tmpl) const;
  const std::unordered_map<CK_OBJECT_HANDLE, Object>& all() const { return objects_; }
  std::size_t index_size() const { return index_.size(); }

 private:
  std::atomic<CK_OBJECT_HANDLE>& next_;
  std::unordered_map<CK_OBJECT_HANDLE, Object> objects_;
  std::unordered_map<std::string, CK_OBJECT_HANDLE> by_uid_;
  ObjectIndex index_;
};

}  // namespace cdcp11::core
