// The Cryptoki library state: slots (one per CDC group), sessions, object handles, login state
// and operations. p11module/ calls these and maps Error to CK_RV; everything PKCS#11 *means*
// lives here, the key material and crypto live in the TokenBackend of each slot.
//
// Locking: Library::mu_ guards the session table; each Slot::mu guards its login state, object
// cache and backend object calls; each Session::mu guards its operation state. Order: session,
// then slot. Crypto operations run under the session lock only.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/attributes.h"
#include "core/config.h"
#include "core/errors.h"
#include "core/mirror/engine.h"
#include "core/mirror/worker.h"
#include "core/token_backend.h"

namespace cdcp11::core {

using BackendFactory =
    std::function<R<std::unique_ptr<TokenBackend>>(const GroupConfig&)>;

enum class LoginState { none, user, so };

struct ObjectEntry {
  StoredObject obj;
  bool token = false;
  CK_SESSION_HANDLE owner = 0;  // session objects: the creating session
};

// Objects indexed by the attributes applications search by (C_FindObjects).
class ObjectIndex {
 public:
  void add(CK_OBJECT_HANDLE h, const AttrMap& a);
  void remove(CK_OBJECT_HANDLE h, const AttrMap& a);
  void clear() { idx_.clear(); }
  // Candidate handles for a template, or nullopt when no indexed attribute is in it.
  std::optional<std::vector<CK_OBJECT_HANDLE>> candidates(const AttrMap& tmpl) const;

 private:
  std::map<std::pair<CK_ATTRIBUTE_TYPE, Bytes>, std::set<CK_OBJECT_HANDLE>> idx_;
};

struct Slot {
  CK_SLOT_ID id = 0;
  GroupConfig cfg;
  std::unique_ptr<TokenBackend> backend;
  std::string backend_error;  // why the backend could not be opened (token not present)
  std::unique_ptr<mirror::Engine> mirror;  // null when the group has no usable Azure side
  std::string mirror_unavailable;          // why mirror is null

  std::mutex mu;
  LoginState login = LoginState::none;
  std::unordered_map<CK_OBJECT_HANDLE, ObjectEntry> objects;
  std::unordered_map<std::string, CK_OBJECT_HANDLE> by_uid;
  ObjectIndex index;

  // Serialises mirrors in this process (the worker, C_CDC_MirrorKey, cdcctl): two runs for one
  // key at once could each make a KEK and import. Taken before mu, never while holding it.
  std::mutex mirror_mu;

  // Declared last: destroyed (stopped and joined) first, while what its jobs use still exists.
  std::unique_ptr<mirror::Worker> worker;
};

struct OpState {
  OpKind kind = OpKind::sign;
  const MechanismEntry* mech = nullptr;
  std::unique_ptr<Operation> op;
  bool multipart = false;                  // an Update has been called
  bool single = false;                     // a single-part call kept it running (a length query)
  bool context_login_needed = false;       // CKA_ALWAYS_AUTHENTICATE key, not yet re-authenticated
  std::optional<SecureBytes> pending;      // result computed for a length query
};

struct FindState {
  std::vector<CK_OBJECT_HANDLE> results;
  std::size_t pos = 0;
};

struct Session {
  CK_SESSION_HANDLE handle = 0;
  Slot* slot = nullptr;
  CK_FLAGS flags = 0;
  std::mutex mu;
  std::optional<FindState> find;
  std::optional<OpState> sign, verify, encrypt, decrypt, digest;
  void reset_ops();
};

// What a sync with the vault did (C_CDC_SyncKeys, cdcctl group sync).
struct SyncReport {
  std::size_t linked = 0, added = 0, updated = 0, removed = 0, unchanged = 0, skipped = 0;
  std::vector<std::string> notes;  // one sentence per key skipped or not linked, for people
};
using SyncProgress = std::function<void(std::size_t done, std::size_t total)>;

class Library {
 public:
  // Loads the config and opens every group's token. A group whose backend cannot be opened
  // still becomes a slot (token not present) and the reason is logged.
  R<void> initialize(const std::string& config_path, const BackendFactory& factory);
  void finalize();

  std::vector<CK_SLOT_ID> slot_ids() const;
  R<Slot*> slot(CK_SLOT_ID id) const;
  R<Slot*> slot_with_token(CK_SLOT_ID id) const;

  // tokens and PINs
  R<TokenStatus> token_status(CK_SLOT_ID id);
  R<std::pair<CK_ULONG, CK_ULONG>> session_counts(CK_SLOT_ID id);  // (all, rw)
  R<void> init_token(CK_SLOT_ID id, ByteView so_pin, const std::string& label);
  R<void> init_pin(CK_SESSION_HANDLE s, ByteView pin);
  R<void> set_pin(CK_SESSION_HANDLE s, ByteView old_pin, ByteView new_pin);
  R<void> login(CK_SESSION_HANDLE s, CK_USER_TYPE who, ByteView pin);
  R<void> logout(CK_SESSION_HANDLE s);

  // sessions
  R<CK_SESSION_HANDLE> open_session(CK_SLOT_ID id, CK_FLAGS flags);
  R<void> check_session(CK_SESSION_HANDLE s) const;
  R<void> close_session(CK_SESSION_HANDLE s);
  R<void> close_all_sessions(CK_SLOT_ID id);
  R<CK_SESSION_INFO> session_info(CK_SESSION_HANDLE s);

  // objects
  R<CK_OBJECT_HANDLE> create_object(CK_SESSION_HANDLE s, const AttrMap& tmpl);
  R<CK_OBJECT_HANDLE> copy_object(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const AttrMap& tmpl);
  R<void> destroy_object(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h);
  R<CK_ULONG> object_size(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h);
  // Fills the template as C_GetAttributeValue does; returns the CKR-worthy error of the first
  // failing attribute after processing all of them (per the spec).
  R<void> get_attributes(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE* t, CK_ULONG n);
  R<void> set_attributes(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const AttrMap& tmpl);
  R<void> find_init(CK_SESSION_HANDLE s, const AttrMap& tmpl);
  R<CK_ULONG> find(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE* out, CK_ULONG max);
  R<void> find_final(CK_SESSION_HANDLE s);

  // operations (sign/verify/encrypt/decrypt/digest). Every error but buffer_too_small ends the
  // active operation, a bad argument included: the caller's input comes as an Input (the bytes,
  // or arguments_bad for a NULL pointer with a length), and a NULL out_len is arguments_bad.
  using Input = R<ByteView>;
  R<void> op_init(CK_SESSION_HANDLE s, OpKind kind, const CK_MECHANISM* m, CK_OBJECT_HANDLE key);
  // Single-part: data in, result out with PKCS#11 output-buffer semantics.
  R<void> op_single(CK_SESSION_HANDLE s, OpKind kind, Input in, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
  R<void> op_update(CK_SESSION_HANDLE s, OpKind kind, Input in, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
  R<void> op_final(CK_SESSION_HANDLE s, OpKind kind, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
  R<void> verify_single(CK_SESSION_HANDLE s, Input data, Input sig);
  R<void> verify_update(CK_SESSION_HANDLE s, Input data);
  R<void> verify_final(CK_SESSION_HANDLE s, Input sig);
  R<void> digest_init(CK_SESSION_HANDLE s, const CK_MECHANISM* m);
  R<void> digest_single(CK_SESSION_HANDLE s, Input in, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
  R<void> digest_update(CK_SESSION_HANDLE s, Input in);
  R<void> digest_key(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key);
  R<void> digest_final(CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR out_len);

  // keys
  R<CK_OBJECT_HANDLE> generate_key(CK_SESSION_HANDLE s, const CK_MECHANISM* m, const AttrMap& tmpl);
  R<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> generate_key_pair(CK_SESSION_HANDLE s,
                                                                     const CK_MECHANISM* m,
                                                                     const AttrMap& pub,
                                                                     const AttrMap& priv);
  R<void> wrap_key(CK_SESSION_HANDLE s, const CK_MECHANISM* m, CK_OBJECT_HANDLE wrapping,
                   CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
  R<CK_OBJECT_HANDLE> unwrap_key(CK_SESSION_HANDLE s, const CK_MECHANISM* m, CK_OBJECT_HANDLE unwrapping,
                                 ByteView wrapped, const AttrMap& tmpl);
  R<CK_OBJECT_HANDLE> derive_key(CK_SESSION_HANDLE s, const CK_MECHANISM* m, CK_OBJECT_HANDLE base,
                                 const AttrMap& tmpl);
  R<void> generate_random(CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG n);
  // Vendor interface: mirror a key now (sync), and its state (CDC_MIRROR_STATE_*) and Azure id.
  R<void> mirror_key(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key);
  R<std::pair<CK_ULONG, std::string>> mirror_status(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key);
  // Vendor interface: brings the group's vault into the token (core/cloud_keys.cpp): links local
  // keys mirrored there, adds keys made in Azure as Azure-resident key pairs, updates those whose
  // current version changed and removes those the vault no longer has. Needs a R/W user session.
  R<SyncReport> sync_keys(CK_SESSION_HANDLE s, const SyncProgress& progress = {});
  // After the key's Azure copy changed outside a mirror (cdcctl key delete|recover|restore): with
  // azure_kid empty the copy is gone, so the key is not mirrored (state none, no Azure id) and its
  // journal job is dropped, letting a later mirror start afresh; else azure_kid (versioned) is its
  // copy again: state mirrored with that id, journal job done.
  R<void> set_mirror_link(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, const std::string& azure_kid);

  // C_SessionCancel: ends the operations named by CKF_ENCRYPT/DECRYPT/DIGEST/SIGN/VERIFY flags.
  R<void> cancel(CK_SESSION_HANDLE s, CK_FLAGS flags);

 private:
  R<std::shared_ptr<Session>> session(CK_SESSION_HANDLE h) const;
  std::vector<std::shared_ptr<Session>> sessions_of(const Slot* slot) const;

  // Under slot.mu:
  R<void> sync(Slot& slot);
  CK_OBJECT_HANDLE add_object(Slot& slot, StoredObject obj, bool token, CK_SESSION_HANDLE owner);
  void remove_object(Slot& slot, CK_OBJECT_HANDLE h);
  R<ObjectEntry*> visible_object(Slot& slot, const Session& s, CK_OBJECT_HANDLE h, Errc invalid);
  // May session s make an object with the final attributes `attrs`? The SO-only values of the
  // caller's template (`given`; `attrs` itself when null, as every SO-only default is false), the
  // consistency of the whole, the session's R/W state and the login the object needs.
  R<void> check_can_create(const Slot& slot, const Session& s, const AttrMap& attrs,
                           const AttrMap* given = nullptr);
  R<Mechanism> mechanism(const CK_MECHANISM* m, CK_FLAGS needed);
  R<void> check_key_for(const ObjectEntry& key, const Mechanism& m, CK_ATTRIBUTE_TYPE usage,
                        Errc wrong_type);
  R<CK_OBJECT_HANDLE> finish_new_key(Slot& slot, Session& s, R<StoredObject> made);
  CK_STATE state_of(const Session& s) const;
  R<CK_OBJECT_HANDLE> copy_object_locked(Session& s, CK_OBJECT_HANDLE h, const AttrMap& tmpl);
  void invalidate_private_handles(Slot& slot);

  // Azure-resident keys (core/cloud_keys.cpp).
  R<std::unique_ptr<Operation>> begin_vault_op(Slot& slot, OpKind kind, const Mechanism& m, const StoredObject& key);
  R<SecureBytes> vault_unwrap(Slot& slot, const Mechanism& m, const StoredObject& key, ByteView wrapped);
  R<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> generate_cloud_native(Session& s, const Mechanism& m, AttrMap pub,
                                                                         AttrMap priv);

  // Mirroring (core/mirroring.cpp).
  void open_mirror(Slot& slot);
  bool wants_mirror(const Slot& slot, const AttrMap& attrs) const;
  // Before a key is made: refuse what the group's vault could not take (no network call).
  R<void> precheck_mirror(const Slot& slot, const AttrMap& attrs, std::size_t rsa_bits) const;
  // After a key became a token object: mirror it if the policy says so. Called without locks.
  R<void> after_new_key(Session& s, CK_OBJECT_HANDLE h);
  R<void> run_mirror(Slot& slot, CK_OBJECT_HANDLE h);
  // The uid of a key mirror_key / set_mirror_link may act on (a local private or secret token key).
  R<std::string> mirrorable_key(Slot& slot, const Session& s, CK_OBJECT_HANDLE h);
  // After a user login: the journal's unfinished jobs go to the worker (they need the token key).
  void resume_mirrors(Slot& slot);
  // After a mirrored key was destroyed locally: the group's on_destroy policy for its copy.
  void apply_destroy_policy(Slot& slot, const std::string& azure_kid);
  void record_mirror(Slot& slot, const std::string& uid, CK_ULONG state, const std::string& kid,
                     const std::string& error);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::unordered_map<CK_SESSION_HANDLE, std::shared_ptr<Session>> sessions_;
  CK_SESSION_HANDLE next_session_ = 1;
  std::atomic<CK_OBJECT_HANDLE> next_object_{1};
};

// PKCS#11 output-buffer convention (section 5.2): NULL out -> length only; too small ->
// buffer_too_small with the needed length in *out_len.
R<void> write_output(ByteView data, CK_BYTE_PTR out, CK_ULONG_PTR out_len);

}  // namespace cdcp11::core
