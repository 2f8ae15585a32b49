// An in-memory Backend for tests of the core without a .so and without a soft token on disk:
// objects in a map, PINs in memory, and a deterministic toy "crypto" that only shows which key
// and mechanism a call was routed to. Tests script what refresh() reports (as another process
// would change the token) and read back which backend calls the core made.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/backend.h"

namespace cdcp11::core::test {

class FakeBackend final : public Backend {
 public:
  // What the test controls.
  std::optional<std::vector<SlotMechanism>> slot_list;  // nullopt: core's table
  Capabilities caps;
  std::string user_pin = "1234", so_pin = "5678";
  // Backend calls in order, "create", "generate", "wrap CKM_...", "destroy", ...
  std::vector<std::string> calls;
  std::mutex calls_mu;  // begin() may run on several threads at once
  // When set, create_object fails with this error (a device or session failure, a bad template).
  std::optional<Error> fail_create;
  // What refresh_before_operations() answers (false: like an HSM, whose listing is costly).
  bool refresh_first = true;
  // What unchanged_since_refresh() answers (true: an operation on a token key skips the refresh).
  std::atomic<bool> quiet{false};
  int refreshes = 0;  // refresh() calls so far
  std::vector<std::string> object_refreshes;  // refresh_object() calls so far, by uid

  // The next refresh() reports these (as if another process changed the token).
  void push_upsert(StoredObject o);
  void push_remove(const std::string& uid);
  // The next refresh() says: reload everything; the token holds exactly these objects.
  void push_full_reload(std::vector<StoredObject> objects);
  // A token object made behind the core's back (not reported until pushed).
  StoredObject make_external(AttrMap attrs);
  bool holds(const std::string& uid) const { return objects_.count(uid) != 0; }
  std::size_t size() const { return objects_.size(); }

  TokenStatus status() override;
  std::optional<std::vector<SlotMechanism>> mechanisms() override { return slot_list; }
  Capabilities capabilities() override { return caps; }

  R<void> init_token(ByteView so_pin, const std::string& label) override;
  R<void> init_pin(ByteView user_pin) override;
  R<void> set_pin(CK_USER_TYPE who, ByteView old_pin, ByteView new_pin) override;
  R<void> login(CK_USER_TYPE who, ByteView pin) override;
  R<void> check_pin(ByteView pin) override;
  void logout() override { logged_in_ = false; }

  R<ObjectChanges> refresh() override;
  // Like an HSM's: what is pending, without counting as a refresh() (a listing).
  R<ObjectChanges> refresh_object(const std::string& uid) override;
  bool refresh_before_operations() const override { return refresh_first; }
  bool unchanged_since_refresh() override { return quiet.load(); }
  R<StoredObject> create_object(const AttrMap& attrs) override;
  R<StoredObject> create_key_reference(const AttrMap& attrs) override;
  R<StoredObject> copy_object(const std::string& src_uid, const AttrMap& attrs) override;
  R<void> update_object(const std::string& uid, const AttrMap& attrs) override;
  R<void> destroy_object(const std::string& uid) override;
  R<SecureBytes> secret_attribute(const std::string& uid, CK_ATTRIBUTE_TYPE t) override;
  R<std::size_t> object_size(const std::string& uid) override;

  R<StoredObject> generate_key(const Mechanism& m, const AttrMap& attrs) override;
  R<std::pair<StoredObject, StoredObject>> generate_key_pair(const Mechanism& m, const AttrMap& pub,
                                                             const AttrMap& priv) override;
  R<std::unique_ptr<Operation>> begin(OpKind kind, const Mechanism& m, const StoredObject& key) override;
  R<std::unique_ptr<Operation>> begin_digest(const Mechanism& m) override;
  R<SecureBytes> key_value_for_digest(const StoredObject& key) override;
  R<Bytes> wrap_key(const Mechanism& m, const StoredObject& wrapping_key, const StoredObject& key) override;
  R<StoredObject> unwrap_key(const Mechanism& m, const StoredObject& unwrapping_key, ByteView wrapped,
                             const AttrMap& attrs) override;
  R<StoredObject> derive_key(const Mechanism& m, const StoredObject& base_key, const AttrMap& attrs) override;
  R<void> random(std::uint8_t* out, std::size_t n) override;

  R<AttrMap> public_key(const StoredObject& key) override;
  R<SecretAttrs> export_plain(const StoredObject& key) override;

 private:
  StoredObject store(AttrMap attrs, SecretAttrs secrets);

  std::map<std::string, StoredObject> objects_;
  std::map<std::string, SecretAttrs> secrets_;
  ObjectChanges pending_;
  unsigned next_uid_ = 1;
  bool logged_in_ = false;
};

}  // namespace cdcp11::core::test
