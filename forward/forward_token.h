// The forwarding backend: a group's token is a token of another PKCS#11 module (an HSM), reached
// through hsm::Module / hsm::Session. Key material and cryptography stay in the HSM; this class
// translates the core's seam into HSM calls and keeps what the HSM cannot hold (an identity for
// objects without CKA_UNIQUE_ID, the vendor attributes, attribute-only key references) in the
// group's metadata store (core/token/metadata_store.h).
//
// Sessions: one "main" HSM session, open as long as the backend, holds the login (PKCS#11 login
// is per application, so every session of ours shares it) and the session objects; operations
// lease further sessions from a pool (SoftHSM2 allows one active operation per session).
//
// Identity (uids are 32 hex characters, like the soft token's): CKA_UNIQUE_ID where the HSM
// returns one (hashed when it is not of that form); otherwise derived from the object's locator
// (a hash of class, key type, CKA_ID, CKA_LABEL and its public material), the same in every
// process and on every host, with nothing to write. Only where that id is taken (an object alike
// in all of these to another, or one renamed through our slot, which keeps its id) is an id
// recorded in the metadata store with the locator, by which any process finds it again.
//
// Refresh lists the HSM's token objects each time (new and destroyed ones show at once) but reads
// attributes only of new objects, of those another process of ours changed (their record's
// locator moved), and of a few more each time in a sweep for changes other applications make.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/backend.h"
#include "core/token/metadata_store.h"
#include "hsm/module.h"
#include "hsm/session.h"
#include "softtoken/store/unique_fd.h"

namespace cdcp11::forward {

using core::is_vendor_attribute;
using core::MetaChange;
using core::MetaData;
using core::MetaEntry;
using core::MetadataStore;

class ForwardToken;

// An flock of <dir>/hsm.lock for as long as it lives (forward_token.cpp says why).
class TokenFileLock {
 public:
  TokenFileLock(const std::string& dir, int op);  // LOCK_SH or LOCK_EX
  ~TokenFileLock();
  TokenFileLock(const TokenFileLock&) = delete;
  TokenFileLock& operator=(const TokenFileLock&) = delete;

 private:
  store::UniqueFd fd_;
};

// An HSM session taken from the pool, given back when destroyed.
class Lease {
 public:
  Lease(ForwardToken& t, hsm::Session s) : t_(&t), s_(std::move(s)) {}
  Lease(Lease&& o) noexcept : t_(o.t_), s_(std::move(o.s_)) { o.s_.reset(); }
  Lease& operator=(Lease&&) = delete;
  Lease(const Lease&) = delete;
  ~Lease();
  hsm::Session& operator*() { return *s_; }
  hsm::Session* operator->() { return &*s_; }

 private:
  ForwardToken* t_;
  std::optional<hsm::Session> s_;
};

class ForwardToken final : public core::Backend {
 public:
  static core::R<std::unique_ptr<ForwardToken>> open(const core::GroupConfig& g);
  ~ForwardToken() override;

  core::TokenStatus status() override;
  std::optional<std::vector<core::SlotMechanism>> mechanisms() override;

  core::R<void> init_token(ByteView so_pin, const std::string& label) override;
  core::R<void> init_pin(ByteView user_pin) override;
  core::R<void> set_pin(CK_USER_TYPE who, ByteView old_pin, ByteView new_pin) override;
  core::R<void> login(CK_USER_TYPE who, ByteView pin) override;
  core::R<void> check_pin(ByteView pin) override;
  void logout() override;

  core::R<core::ObjectChanges> refresh() override;
  core::R<core::ObjectChanges> refresh_object(const std::string& uid) override;
  bool refresh_before_operations() const override { return false; }
  core::R<core::StoredObject> create_object(const core::AttrMap& attrs) override;
  core::R<core::StoredObject> create_key_reference(const core::AttrMap& attrs) override;
  core::R<core::StoredObject> copy_object(const std::string& src_uid, const core::AttrMap& attrs) override;
  core::R<void> update_object(const std::string& uid, const core::AttrMap& attrs) override;
  core::R<void> destroy_object(const std::string& uid) override;
  core::R<SecureBytes> secret_attribute(const std::string& uid, CK_ATTRIBUTE_TYPE t) override;
  core::R<std::size_t> object_size(const std::string& uid) override;

  core::R<core::StoredObject> generate_key(const core::Mechanism& m, const core::AttrMap& attrs) override;
  core::R<std::pair<core::StoredObject, core::StoredObject>> generate_key_pair(const core::Mechanism& m,
                                                                               const core::AttrMap& pub,
                                                                               const core::AttrMap& priv) override;

  core::R<std::unique_ptr<core::Operation>> begin(core::OpKind kind, const core::Mechanism& m,
                                                  const core::StoredObject& key) override;
  core::R<std::unique_ptr<core::Operation>> begin_digest(const core::Mechanism& m) override;
  core::R<SecureBytes> key_value_for_digest(const core::StoredObject& key) override;
  core::R<void> digest_key(core::Operation& digest, const core::StoredObject& key) override;

  core::R<Bytes> wrap_key(const core::Mechanism& m, const core::StoredObject& wrapping_key,
                          const core::StoredObject& key) override;
  core::R<core::StoredObject> unwrap_key(const core::Mechanism& m, const core::StoredObject& unwrapping_key,
                                         ByteView wrapped, const core::AttrMap& attrs) override;
  core::R<core::StoredObject> derive_key(const core::Mechanism& m, const core::StoredObject& base_key,
                                         const core::AttrMap& attrs) override;
  core::R<void> random(std::uint8_t* out, std::size_t n) override;

  core::Capabilities capabilities() override;
  core::R<core::AttrMap> public_key(const core::StoredObject& key) override;
  core::R<core::SecretAttrs> export_plain(const core::StoredObject& key) override;
  // "<module manufacturer> <description>; token serial <serial>, label <label>" (C_GetInfo and
  // C_GetTokenInfo): the same on every host, whatever path or selector its config uses.
  std::string shared_identity() const override { return identity_; }

 private:
  friend class Lease;
  ForwardToken(const core::GroupConfig& g, std::shared_ptr<hsm::Module> m, CK_SLOT_ID slot, hsm::Session main,
               std::unique_ptr<MetadataStore> meta, std::string identity);

  // A session for one operation (from the pool, or newly opened).
  core::R<Lease> lease();
  void give_back(hsm::Session s);

  // Under mu_.
  struct Known {
    CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
    core::AttrMap attrs;  // as last read from the HSM, vendor attributes not included
    std::string locator;  // locator_of(attrs)
    core::AttrMap vendor;  // the vendor attributes last reported (view)
  };
  // refresh() after the store's reload (meta_changed: it found a change), under mu_.
  core::R<core::ObjectChanges> refresh_locked(bool meta_changed);
  // The HSM handle of an object we know, or object_handle_invalid.
  core::R<CK_OBJECT_HANDLE> handle_of(const std::string& uid);
  // Reads an object's non-secret attributes from the HSM (s: the session to read with).
  core::R<core::AttrMap> read(hsm::Session& s, CK_OBJECT_HANDLE h);
  // Gives a new HSM object its identity, records it, and returns it as the core sees it.
  core::R<core::StoredObject> adopt(hsm::Session& s, CK_OBJECT_HANDLE h, const core::AttrMap& vendor);
  core::R<std::unique_ptr<core::Operation>> begin_in_hsm(core::OpKind kind, const core::Mechanism& m,
                                                         const core::StoredObject& key);
  // Handles of two objects, under mu_.
  core::R<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> handles(const std::string& a, const std::string& b);
  // The CKA_EC_POINT of an EC private key's public key object.
  core::R<Bytes> ec_point_of_private(const core::StoredObject& key);
  // The uid of an HSM object: its CKA_UNIQUE_ID, the one recorded for it, or a new one.
  // The uids of HSM objects (handle, attributes read): its CKA_UNIQUE_ID, the one this process or
  // the store knows for it, or a new one the store records; one store update for all.
  // fresh: objects we just made, which take over no recorded identity but a just-recorded one
  // (another process that listed the object first).
  using Found = std::pair<CK_OBJECT_HANDLE, const core::AttrMap*>;
  core::R<std::vector<std::string>> identify(const std::vector<Found>& objs, bool fresh);
  // Whether this HSM's CKM_AES_KEY_WRAP_PAD is RFC 5649 (hsm/README.md).
  bool pad_is_rfc5649() const;
  // The HSM's mechanism for RFC 5649 AES key wrap with padding, or 0 (core::Capabilities).
  CK_MECHANISM_TYPE rfc5649_wrap();
  core::StoredObject view(const std::string& uid, Known& k);
  // The vendor attributes of an object: its record's, or a session object's.
  core::AttrMap vendor_of(const std::string& uid) const;

  const std::string group_;
  const std::string dir_;  // the group's token.dir: the metadata store and hsm.lock
  const std::string identity_;
  std::shared_ptr<hsm::Module> module_;
  const CK_SLOT_ID slot_;

  std::mutex mu_;
  hsm::Session main_;
  std::unique_ptr<MetadataStore> meta_;
  std::map<std::string, Known> known_;              // token and session objects, by uid
  std::map<CK_OBJECT_HANDLE, std::string> uid_of_;  // HSM handle -> uid (this process)
  std::map<std::string, core::StoredObject> refs_;  // key references (metadata store only)
  std::map<std::string, core::AttrMap> session_vendor_;  // vendor attributes of session objects
  std::map<std::string, std::string> pair_of_;      // private key uid -> its public key's (this process)
  std::set<std::string> reported_;                  // token objects the core has been told of
  bool logged_in_ = false;
  std::vector<core::SlotMechanism> mechanisms_;  // the slot's list, once asked
  std::optional<CK_MECHANISM_TYPE> rfc5649_;     // rfc5649_wrap(), once asked
  std::chrono::steady_clock::time_point next_sweep_{};  // refresh's re-read of known objects
  std::string sweep_after_;                             // the uid the sweep reached
  std::chrono::steady_clock::time_point next_batch_{};  // the sweep's next batch, not before

  std::mutex pool_mu_;
  std::vector<hsm::Session> pool_;

  std::mutex info_mu_;
  std::optional<hsm::TokenInfo> last_info_;  // the HSM's C_GetTokenInfo, as last read
};

}  // namespace cdcp11::forward
