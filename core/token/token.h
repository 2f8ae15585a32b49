// A token: one CDC group's slot. It holds the login state, the object cache, the backend that
// keeps the key material (the soft token or an HSM), where each key is used (its KeyHome), and
// the group's Azure side. The functions PKCS#11 runs on objects and keys live here
// (token/objects.cpp, token/keys.cpp); the cryptographic operations run in the session, which
// starts them on their key through with_key().
//
// Locking: mu_ guards the login state, the cache and calls into the backend that change objects;
// crypto operations run without it. It is taken shared only where nothing is written: starting an
// operation on a key already opened once (with_key, which also starts the backend's operation
// under it), the call threads of a busy application make at once. For a token key that holds only
// while the backend can tell nothing changed since its last refresh. Order: session, then token.
// Observers (the mirror) are told of new and destroyed keys with no lock held.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "azure/connection.h"
#include "common/read_mostly_mutex.h"
#include "core/attributes.h"
#include "core/config.h"
#include "core/errors.h"
#include "core/token/key_home.h"
#include "core/token/object_cache.h"
#include "core/token/observer.h"
#include "core/backend.h"

namespace cdcp11::core {

class Session;
namespace mirror {
class Service;
}

using BackendFactory = std::function<R<std::unique_ptr<Backend>>(const GroupConfig&)>;

enum class LoginState { none, user, so };

// What an operation may do with a key: the attribute that must allow it and the class it needs.
enum class KeyUse { sign, verify, encrypt, decrypt, wrap, unwrap, derive };

// A key opened for an operation: the object as it was (the operation outlives the lock) and its home.
struct OpenKey {
  std::shared_ptr<const StoredObject> obj;
  KeyHome* home = nullptr;
  bool always_authenticate = false;  // CKA_ALWAYS_AUTHENTICATE private key
};

// The same while the token keeps the object (Token::with_key).
struct KeyRef {
  const StoredObject& obj;
  KeyHome* home;
  bool always_authenticate;
};

class Token {
 public:
  // Opens the backend and the group's Azure side. A backend that cannot be opened leaves the
  // token absent (token_not_present, with the reason); an unusable Azure side leaves it local.
  Token(CK_SLOT_ID id, GroupConfig cfg, const BackendFactory& factory, std::atomic<CK_OBJECT_HANDLE>& handles);
  ~Token();
  Token(const Token&) = delete;
  Token& operator=(const Token&) = delete;

  CK_SLOT_ID id() const { return id_; }
  const GroupConfig& config() const { return cfg_; }
  const std::string& name() const { return cfg_.name; }
  bool present() const { return backend_ != nullptr; }
  R<void> check_present() const;
  Backend& backend() { return *backend_; }

  // The group's vault connection, or null with the reason.
  std::shared_ptr<azure::Connection> vault_connection() const { return vault_; }
  const std::string& azure_unavailable() const { return azure_unavailable_; }
  // The group's mirror (null only when the token is absent); it observes the token's keys.
  mirror::Service* mirror() const { return mirror_.get(); }
  // Who is told of the token's keys: the mirror, or a test's observer.
  void set_observer(KeyObserver* o) { observer_ = o; }

  // ---- token, PINs, login (token/token.cpp)
  R<TokenStatus> status();
  // The slot's mechanisms: the backend's list, or core's whole table.
  std::vector<SlotMechanism> mechanisms();
  CK_STATE state_of(const Session& s);
  LoginState login_state();
  R<void> check_can_open_session(CK_FLAGS flags);
  R<void> init_token(ByteView so_pin, const std::string& label);
  R<void> init_pin(const Session& s, ByteView pin);
  R<void> set_pin(const Session& s, ByteView old_pin, ByteView new_pin);
  // read_only_session_open: whether the application has a read-only session (refuses SO login).
  R<void> login(CK_USER_TYPE who, ByteView pin, bool read_only_session_open);
  R<void> check_pin(ByteView pin);  // context-specific login
  // The caller has ended every session's operations.
  R<void> logout();
  // The application's last session closed: its session objects go, and the login with them.
  void session_closed(CK_SESSION_HANDLE h, bool last);
  R<void> random(CK_BYTE_PTR out, CK_ULONG n);

  // ---- objects (token/objects.cpp)
  R<CK_OBJECT_HANDLE> create_object(Session& s, const AttrMap& tmpl);
  R<CK_OBJECT_HANDLE> copy_object(Session& s, CK_OBJECT_HANDLE h, const AttrMap& tmpl);
  R<void> destroy_object(Session& s, CK_OBJECT_HANDLE h);
  R<CK_ULONG> object_size(const Session& s, CK_OBJECT_HANDLE h);
  // Fills the template as C_GetAttributeValue does; returns the CKR-worthy error of the first
  // failing attribute after processing all of them (per the spec).
  R<void> get_attributes(const Session& s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE* t, CK_ULONG n);
  R<void> set_attributes(const Session& s, CK_OBJECT_HANDLE h, const AttrMap& tmpl);
  R<std::vector<CK_OBJECT_HANDLE>> find(const Session& s, const AttrMap& tmpl);

  // ---- keys (token/keys.cpp)
  R<CK_OBJECT_HANDLE> generate_key(Session& s, const CK_MECHANISM* m, const AttrMap& tmpl);
  R<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> generate_key_pair(Session& s, const CK_MECHANISM* m,
                                                                     const AttrMap& pub, const AttrMap& priv);
  R<void> wrap_key(const Session& s, const CK_MECHANISM* m, CK_OBJECT_HANDLE wrapping, CK_OBJECT_HANDLE key,
                   CK_BYTE_PTR out, CK_ULONG_PTR out_len);
  R<CK_OBJECT_HANDLE> unwrap_key(Session& s, const CK_MECHANISM* m, CK_OBJECT_HANDLE unwrapping, ByteView wrapped,
                                 const AttrMap& tmpl);
  R<CK_OBJECT_HANDLE> derive_key(Session& s, const CK_MECHANISM* m, CK_OBJECT_HANDLE base, const AttrMap& tmpl);
  // The one way an operation gets its key: visible to the session, of the class the use needs,
  // allowing the use and the mechanism (type, usage attribute, CKA_ALLOWED_MECHANISMS, size).
  // Under the exclusive lock: a token object is refreshed first. The key is held by a count.
  R<OpenKey> open_key(const Session& s, CK_OBJECT_HANDLE h, KeyUse use, const Mechanism& m);
  // f(const KeyRef&) with the key open_key would give. Where opens_shared, it runs under the
  // shared lock, which keeps the object: no count of its copy is taken, a write to a line every
  // thread using the key would share (#13). Otherwise it runs after open_key, on the copy it holds.
  template <class F>
  R<void> with_key(const Session& s, CK_OBJECT_HANDLE h, KeyUse use, const Mechanism& m, F&& f) {
    {
      std::shared_lock lk(mu_);
      if (opens_shared(h)) {
        CDC_ASSIGN(const Object* o, checked_key(h, use, m));
        return f(KeyRef{*o->for_ops, o->home, always_authenticate(*o)});
      }
    }
    CDC_ASSIGN(OpenKey k, open_key(s, h, use, m));
    return f(KeyRef{*k.obj, k.home, k.always_authenticate});
  }
  // C_DigestKey: the value of a visible secret key (any: a key's digest reveals no more than its use).
  R<void> digest_key(const Session& s, CK_OBJECT_HANDLE h, Operation& digest);

  // ---- for the services of the token (mirror, vault sync, cloud-native keys, cdcctl)
  // The token's state under its lock.
  class Locked {
   public:
    ObjectCache& cache() { return t_.cache_; }
    Backend& backend() { return *t_.backend_; }
    LoginState login() const { return t_.login_; }
    // Picks up what changed in the backend (this or other processes).
    R<void> refresh() { return t_.refresh(); }
    // A new object made outside the usual functions (a synced or cloud-native key).
    CK_OBJECT_HANDLE add(StoredObject obj, bool token, CK_SESSION_HANDLE owner) {
      return t_.add_object(std::move(obj), token, owner);
    }
    // A visible object (private ones with the user logged in), or `invalid`.
    R<Object*> visible(CK_OBJECT_HANDLE h, Errc invalid = Errc::object_handle_invalid);

   private:
    friend class Token;
    explicit Locked(Token& t) : t_(t), lk_(t.mu_) {}
    Token& t_;
    std::unique_lock<ReadMostlyMutex> lk_;
  };
  Locked lock() { return Locked(*this); }
  // May the session make an object with the final attributes `attrs`? (See objects.cpp.)
  R<void> check_can_create(const Session& s, const AttrMap& attrs, const AttrMap* given = nullptr);

 private:
  // Under mu_.
  R<void> refresh();
  // Before a call on the object h alone: that object's state (Backend::refresh_object), a whole
  // refresh when h is no object of ours, nothing for a session object.
  R<void> refresh_for(CK_OBJECT_HANDLE h);
  R<void> apply(ObjectChanges ch);
  CK_OBJECT_HANDLE add_object(StoredObject obj, bool token, CK_SESSION_HANDLE owner);
  KeyHome* home_of(const AttrMap& attrs);
  R<Object*> visible(CK_OBJECT_HANDLE h, Errc invalid);
  R<const Object*> visible(CK_OBJECT_HANDLE h, Errc invalid) const;
  R<void> check_can_create_locked(const Session& s, const AttrMap& attrs, const AttrMap* given);
  // The slot's entry for m, which must allow flag (mechanism_invalid otherwise).
  R<SlotMechanism> slot_mechanism(const Mechanism& m, CK_FLAGS flag) const;
  // open_key's checks, under mu_ (shared or not), of an object whose for_ops exists.
  R<const Object*> checked_key(CK_OBJECT_HANDLE h, KeyUse use, const Mechanism& m) const;
  // Under mu_: whether h is opened under the shared lock: its for_ops exists, the slot's
  // mechanisms are known, and a token object needs no refresh (the backend saw no change since
  // the last). Nothing to write.
  bool opens_shared(CK_OBJECT_HANDLE h) const;
  static bool always_authenticate(const Object& key);
  R<CK_OBJECT_HANDLE> added(const Session& s, R<StoredObject> made);
  void invalidate_private_handles();
  R<void> before_key_made(const AttrMap& attrs, std::size_t rsa_bits);
  // The defaults of an object made through the slot, by any function (generate, create, unwrap,
  // derive), with the group's one rule for keys: on a group that mirrors on generate, when the
  // backend wraps only extractable keys, a private or secret key is CKA_EXTRACTABLE unless the
  // template says otherwise, so that the mirror can take it.
  void new_object_defaults(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, AttrMap& a) const;
  // Without locks.
  R<void> key_made(Session& s, CK_OBJECT_HANDLE h);

  const CK_SLOT_ID id_;
  const GroupConfig cfg_;
  std::unique_ptr<Backend> backend_;
  std::string backend_error_;  // why the backend could not be opened (token not present)
  std::shared_ptr<azure::Connection> vault_;
  std::string azure_unavailable_;  // why vault_ is null
  std::unique_ptr<LocalHome> local_home_;
  std::unique_ptr<KeyHome> vault_home_;
  KeyObserver* observer_ = nullptr;

  ReadMostlyMutex mu_;
  LoginState login_ = LoginState::none;
  ObjectCache cache_;
  std::vector<SlotMechanism> slot_list_;  // the slot's mechanisms, once known

  // Last: destroyed (its worker stopped) first, while what its jobs use still exists.
  std::unique_ptr<mirror::Service> mirror_;
};

}  // namespace cdcp11::core
