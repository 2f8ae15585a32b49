// Where a key's material is, and so where its operations run: in the token's backend, or, for
// an Azure-resident key, in the group's Key Vault (core/cloud/vault_home.h). Decided once per
// object, when it enters the token's cache; operations ask the key's home, never branch on it.
#pragma once

#include <memory>

#include "core/backend.h"

namespace cdcp11::core {

class KeyHome {
 public:
  virtual ~KeyHome() = default;

  virtual R<std::unique_ptr<Operation>> begin(OpKind kind, const Mechanism& m, const StoredObject& key) = 0;
  // C_UnwrapKey with `key`: the new key, stored in the backend from the complete template attrs.
  virtual R<StoredObject> unwrap(const Mechanism& m, const StoredObject& key, ByteView wrapped,
                                 const AttrMap& attrs) = 0;
  // C_DeriveKey from `base`.
  virtual R<StoredObject> derive(const Mechanism& m, const StoredObject& base, const AttrMap& attrs) = 0;
  // C_DigestKey: a secret key into a running digest.
  virtual R<void> digest_into(Operation& digest, const StoredObject& key) = 0;
};

// The token's own backend holds the key.
class LocalHome final : public KeyHome {
 public:
  explicit LocalHome(Backend& backend) : backend_(backend) {}
  R<std::unique_ptr<Operation>> begin(OpKind kind, const Mechanism& m, const StoredObject& key) override {
    return backend_.begin(kind, m, key);
  }
  R<StoredObject> unwrap(const Mechanism& m, const StoredObject& key, ByteView wrapped, const AttrMap& attrs) override {
    return backend_.unwrap_key(m, key, wrapped, attrs);
  }
  R<StoredObject> derive(const Mechanism& m, const StoredObject& base, const AttrMap& attrs) override {
    return backend_.derive_key(m, base, attrs);
  }
  R<void> digest_into(Operation& digest, const StoredObject& key) override { return backend_.digest_key(digest, key); }

 private:
  Backend& backend_;
};

}  // namespace cdcp11::core
