#include "core/cloud/vault_home.h"

#include "core/cloud/vault_ops.h"

namespace cdcp11::core::cloud {

namespace {

class VaultHome final : public KeyHome {
 public:
  VaultHome(std::shared_ptr<azure::Connection> conn, std::string unavailable, std::string group,
            Backend& backend)
      : conn_(std::move(conn)), unavailable_(std::move(unavailable)), group_(std::move(group)), backend_(backend) {}

  R<std::unique_ptr<Operation>> begin(OpKind kind, const Mechanism& m, const StoredObject& key) override {
    CDC_ASSIGN(auto vk, vault_key(key));
    return begin_vault_op(backend_, kind, m, std::move(vk));
  }

  // The vault unwraps; the key it returns becomes a token secret key like any other.
  R<StoredObject> unwrap(const Mechanism& m, const StoredObject& key, ByteView wrapped, const AttrMap& attrs) override {
    if (attrs.ulong(CKA_CLASS).value_or(0) != CKO_SECRET_KEY)
      return err(Errc::template_inconsistent, "a key in Key Vault unwraps secret keys only");
    CDC_ASSIGN(auto vk, vault_key(key));
    CDC_ASSIGN(auto plain, vault_unwrap(m, vk, wrapped));
    if (auto len = attrs.ulong(CKA_VALUE_LEN); len && *len != plain.size())
      return err(Errc::template_inconsistent, "CKA_VALUE_LEN says " + std::to_string(*len) +
                                                  " bytes but the unwrapped key has " + std::to_string(plain.size()));
    AttrMap a = attrs;
    a.erase(CKA_VALUE_LEN);
    a.set(CKA_VALUE, ByteView(plain));
    auto made = backend_.create_object(a);
    a.wipe(CKA_VALUE);
    return made;
  }

  R<StoredObject> derive(const Mechanism&, const StoredObject&, const AttrMap&) override {
    return err(Errc::key_function_not_permitted, "a key in Key Vault does not derive keys here");
  }

  R<void> digest_into(Operation&, const StoredObject&) override {
    return err(Errc::key_indigestible, "the key's material is in Key Vault, not in the token");
  }

 private:
  R<VaultKey> vault_key(const StoredObject& key) {
    if (!conn_)
      return err(Errc::device_error,
                 "the key lives in Key Vault but group '" + group_ + "' cannot reach Azure: " + unavailable_);
    return vault_key_of(conn_, key.attrs);
  }

  std::shared_ptr<azure::Connection> conn_;
  std::string unavailable_, group_;
  Backend& backend_;
};

}  // namespace

std::unique_ptr<KeyHome> make_vault_home(std::shared_ptr<azure::Connection> conn, std::string unavailable,
                                         std::string group, Backend& backend) {
  return std::make_unique<VaultHome>(std::move(conn), std::move(unavailable), std::move(group), backend);
}

}  // namespace cdcp11::core::cloud
