// The soft token's loaded keys (crypto::KeyPtr: parsed, and for private and secret keys
// decrypted), by object uid, from their first operation until the object changes, goes or the
// user logs out. Its own ReadMostlyMutex, not the token's: an operation on a cached key reads the
// cache under a shared lock and takes no count of the key, so threads using one key write no
// common line (#13).
#pragma once

#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "common/read_mostly_mutex.h"
#include "softtoken/crypto/backend.h"

namespace cdcp11::softtoken {

class KeyCache {
 public:
  // f(const crypto::KeyPtr&) under the shared lock, when uid is cached; false when not.
  template <class F>
  bool visit(const std::string& uid, F&& f) const {
    std::shared_lock lk(mu_);
    auto it = keys_.find(uid);
    if (it == keys_.end()) return false;
    f(it->second);
    return true;
  }
  void put(const std::string& uid, crypto::KeyPtr k) {
    std::lock_guard lk(mu_);
    keys_[uid] = std::move(k);
  }
  void erase(const std::string& uid) {
    std::lock_guard lk(mu_);
    keys_.erase(uid);
  }
  void clear() {
    std::lock_guard lk(mu_);
    keys_.clear();
  }

 private:
  mutable ReadMostlyMutex mu_;
  std::unordered_map<std::string, crypto::KeyPtr> keys_;
};

}  // namespace cdcp11::softtoken
