// The Token's view of its backend: the backend's objects with their vendor attributes (CKA_CDC_*:
// mirror state, Azure key id, origin, last error) taken from the token's metadata store
// (core/token/metadata_store.h), whatever the backend. Everything that changes objects goes
// through it (core's functions, the mirror, vault sync), so vendor state of token objects is
// written to the store and never given to the backend.
//
// - Reads: a token object's vendor attributes are its store entry's when it has one (the store
//   wins); otherwise what the backend still reports (a soft token record of the format before
//   the store, until the soft token has moved them: softtoken/soft_migrate.cpp).
// - Writes: the store first (synced), then the backend with the other attributes, so a crash
//   between the two leaves the store holding the state and the next open reading it from there.
// - Destroy removes the object's entry after the backend removed the object; an entry whose
//   object is gone anyway is never read (and an HSM's are pruned by its backend).
// - Another process's change of the store is reported by refresh() (ObjectChanges::vendor).
// Session objects keep their vendor attributes in the backend's memory, as the rest of them.
//
// Protected entries: where the backend offers a VendorSeal (the soft token; core/backend.h), a
// token object's entry is authenticated under its token key, over the uid and the canonical
// bytes of the vendor attributes (AttrMap::serialize of those the store keeps): a public
// object's stays readable beside its MAC, a private object's is sealed (encrypted and
// authenticated) so it cannot be read without a login. Writing one needs the keys (a login:
// user_not_logged_in otherwise). Before a login a public object's entry is read as it is (as a
// public record is) and a private one's not at all; with the keys every entry is checked, at the
// login and at each refresh (an entry is checked again when its bytes or the keys' presence
// change). One that fails is logged once (uid, no values) and ignored: the object has core's
// defaults (not mirrored, local origin, no Azure key id) until it is written again. An entry
// removed from the file is not detected: its object has the defaults too.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/change_watch.h"
#include "core/backend.h"
#include "core/token/metadata_store.h"

namespace cdcp11::core {

class VendorState final : public Backend {
 public:
  VendorState(std::unique_ptr<Backend> inner, std::unique_ptr<MetadataStore> store);

  TokenStatus status() override { return inner_->status(); }
  std::optional<std::vector<SlotMechanism>> mechanisms() override { return inner_->mechanisms(); }
  R<void> init_token(ByteView so_pin, const std::string& label) override;
  R<void> init_pin(ByteView pin) override { return inner_->init_pin(pin); }
  R<void> set_pin(CK_USER_TYPE who, ByteView o, ByteView n) override { return inner_->set_pin(who, o, n); }
  R<void> login(CK_USER_TYPE who, ByteView pin) override;
  R<void> check_pin(ByteView pin) override { return inner_->check_pin(pin); }
  void logout() override;

  R<ObjectChanges> refresh() override;
  R<ObjectChanges> refresh_object(const std::string& uid) override;
  bool refresh_before_operations() const override { return inner_->refresh_before_operations(); }
  bool unchanged_since_refresh() override;
  R<StoredObject> create_object(const AttrMap& attrs) override;
  R<StoredObject> create_key_reference(const AttrMap& attrs) override;
  R<StoredObject> copy_object(const std::string& src_uid, const AttrMap& attrs) override;
  R<void> update_object(const std::string& uid, const AttrMap& attrs) override;
  R<void> destroy_object(const std::string& uid) override;
  R<SecureBytes> secret_attribute(const std::string& uid, CK_ATTRIBUTE_TYPE t) override {
    return inner_->secret_attribute(uid, t);
  }
  R<std::size_t> object_size(const std::string& uid) override { return inner_->object_size(uid); }

  R<StoredObject> generate_key(const Mechanism& m, const AttrMap& attrs) override;
  R<std::pair<StoredObject, StoredObject>> generate_key_pair(const Mechanism& m, const AttrMap& pub,
                                                             const AttrMap& priv) override;
  R<std::unique_ptr<Operation>> begin(OpKind kind, const Mechanism& m, const StoredObject& key) override {
    return inner_->begin(kind, m, key);
  }
  R<std::unique_ptr<Operation>> begin_digest(const Mechanism& m) override { return inner_->begin_digest(m); }
  R<SecureBytes> key_value_for_digest(const StoredObject& key) override { return inner_->key_value_for_digest(key); }
  R<void> digest_key(Operation& digest, const StoredObject& key) override { return inner_->digest_key(digest, key); }
  R<Bytes> wrap_key(const Mechanism& m, const StoredObject& wrapping_key, const StoredObject& key) override {
    return inner_->wrap_key(m, wrapping_key, key);
  }
  R<StoredObject> unwrap_key(const Mechanism& m, const StoredObject& unwrapping_key, ByteView wrapped,
                             const AttrMap& attrs) override;
  R<StoredObject> derive_key(const Mechanism& m, const StoredObject& base_key, const AttrMap& attrs) override;
  R<void> random(std::uint8_t* out, std::size_t n) override { return inner_->random(out, n); }
  Capabilities capabilities() override { return inner_->capabilities(); }
  R<AttrMap> public_key(const StoredObject& key) override { return inner_->public_key(key); }
  R<SecretAttrs> export_plain(const StoredObject& key) override { return inner_->export_plain(key); }
  std::string shared_identity() const override { return inner_->shared_identity(); }
  VendorSeal* vendor_seal() override { return seal_; }

 private:
  // refresh() and refresh_object(): the backend's changes (inner_refresh), then the store's.
  R<ObjectChanges> refresh_with(const std::function<R<ObjectChanges>()>& inner_refresh);
  struct Shown {
    AttrMap from_backend;  // the vendor attributes the backend itself reported (legacy records)
    AttrMap vendor;        // the vendor attributes reported to the Token
  };
  // Under mu_. The vendor attributes that hold for a token object (see above).
  AttrMap current(const std::string& uid, const AttrMap& from_backend) const;
  // Takes a token object the backend reported: remembers it and gives it its vendor attributes.
  void show(StoredObject& o);
  // A new object: its vendor attributes (from the caller's template) go to the store; on failure
  // the object is destroyed again.
  R<StoredObject> made(R<StoredObject> obj, const AttrMap& vendor);
  // Writes a token object's vendor attributes to the store when they differ from what holds
  // (or its entry's form does not match is_private).
  R<void> put(const std::string& uid, const AttrMap& attrs, const AttrMap& vendor, const AttrMap& from_backend);
  // Under mu_. Takes the store's entries as they are now into valid_ (see "Protected entries"),
  // checking those not checked yet (the entries the store reports changed, or all of them when
  // it cannot tell or the keys came or went); whether any object's vendor attributes changed.
  bool check_entries();
  // Under mu_. What uid's entry e gives its object, checked when it needs to be and was not;
  // nullopt when it cannot be told now (the keys went meanwhile).
  std::optional<AttrMap> entry_vendor(const std::string& uid, const MetaEntry& e, bool keys);
  // Under mu_, after a change outside refresh(): check_entries(), its changes kept for the next
  // refresh() to report (which unchanged_since_refresh() then waits for).
  void recheck_entries();
  // Under mu_. store_->reload(), skipped while the watch says nothing changed.
  R<bool> reload_store();

  std::unique_ptr<Backend> inner_;
  VendorSeal* seal_;  // the backend's, or nullptr
  std::mutex mu_;  // store_, shown_, valid_, checked_: some callers hold no token lock (a vault unwrap)
  std::unique_ptr<MetadataStore> store_;
  // Let refresh() skip the store's stats while nothing touched its files (an operation on a
  // token key refreshes first).
  ChangeWatch snapshot_watch_, changes_watch_;
  std::map<std::string, AttrMap> valid_;  // the vendor attributes each entry gives its object
  struct Checked {
    MetaEntry entry;  // as it was checked
    AttrMap vendor;   // what it gave (empty: it failed)
  };
  std::map<std::string, Checked> checked_;  // entries checked with the keys, by uid
  bool checked_with_keys_ = false;
  std::map<std::string, Shown> shown_;  // token objects reported, by uid
  bool store_changed_ = false;          // read since the last refresh() that reported it
  // The last refresh() succeeded and left nothing for the next (no store change unreported, the
  // entries checked with the keys as they are): for unchanged_since_refresh(), asked without mu_.
  std::atomic<bool> settled_{false};
};

// Splits the vendor attributes (CKA_CDC_*) off attrs: returns them, leaves the rest in rest.
AttrMap split_vendor(const AttrMap& attrs, AttrMap& rest);
// The vendor attributes of an object of class cls that differ from core's defaults: what the
// store keeps (core fills the defaults in).
AttrMap non_default_vendor(CK_OBJECT_CLASS cls, const AttrMap& vendor);

// A token object's entry for vendor (what the store keeps of it): with a seal, sealed (private)
// or clear with its MAC (public), which needs the keys; without one, clear.
R<MetaEntry> seal_entry(VendorSeal* seal, const std::string& uid, bool is_private, const AttrMap& vendor);
// The vendor attributes of uid's entry, checked with the keys (device_error when it fails).
R<AttrMap> open_entry(VendorSeal& seal, const std::string& uid, const MetaEntry& e);

}  // namespace cdcp11::core
