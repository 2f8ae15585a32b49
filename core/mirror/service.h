// The mirror of one token: observes its keys (KeyObserver) and puts those the group's policy
// names into the group's Key Vault through the engine, now (blocking mode) or on its worker
// thread (background mode), recording each key's state on the key. Also the vendor functions that
// act on one key's mirror (C_CDC_MirrorKey, C_CDC_GetMirrorStatus, cdcctl's relinking).
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/mirror/engine.h"
#include "core/mirror/worker.h"
#include "core/token/observer.h"

namespace cdcp11::core {
class Token;
}

namespace cdcp11::core::mirror {

class Service final : public KeyObserver {
 public:
  // For a present token. Without a usable Azure side there is no engine: keys the policy names
  // are then refused (before they are made) or marked failed, with the reason.
  static std::unique_ptr<Service> open(Token& token);
  ~Service() override;

  R<void> before_key_made(const AttrMap& attrs, std::size_t rsa_bits) override;
  R<void> key_made(Session& s, CK_OBJECT_HANDLE h) override;
  void key_destroyed(const std::string& uid, const AttrMap& attrs) override;
  void user_logged_in() override;
  std::unique_lock<std::mutex> hold_for_logout() override;

  // Mirror a key now (blocking), and its state (CDC_MIRROR_STATE_*) and Azure id. A rotation's
  // new key is refused: only its rotation mirrors it (mirror_new_version), so that its import,
  // the vault's new current version, is followed by its taking the label.
  R<void> mirror_now(const Session& s, CK_OBJECT_HANDLE h);
  // mirror_now for many keys, kParallelMirrors at a time; `done` is called (serialised, in the
  // order they finish) with each key's outcome.
  void mirror_many(const Session& s, const std::vector<CK_OBJECT_HANDLE>& keys,
                   const std::function<void(CK_OBJECT_HANDLE, const R<void>&)>& done);
  R<void> mirror_new_version(const Session& s, CK_OBJECT_HANDLE h);
  R<std::pair<CK_ULONG, std::string>> status(const Session& s, CK_OBJECT_HANDLE h);
  // After the key's Azure copy changed outside a mirror (cdcctl key delete|recover|restore): with
  // azure_kid empty the copy is gone, so the key is not mirrored (state none, no Azure id) and its
  // journal job is dropped, letting a later mirror start afresh; else azure_kid (versioned) is its
  // copy again: state mirrored with that id, journal job done.
  R<void> set_link(const Session& s, CK_OBJECT_HANDLE h, const std::string& azure_kid);

  // Records a key's mirror state on the key (CKA_CDC_MIRROR_STATE, _AZURE_KEY_ID, _MIRROR_ERROR);
  // a failure to write it is logged.
  void record(const std::string& uid, CK_ULONG state, const std::string& kid, const std::string& error);

  // Changes the attributes of the key with this uid, in the backend and in the token's cache
  // (the mirror's and the rotation's own attributes, beyond the attribute policy).
  R<void> update_key(const std::string& uid, const std::function<void(AttrMap&)>& change);

  Engine* engine() { return engine_.get(); }
  const std::string& unavailable() const { return unavailable_; }
  // No mirror of this process runs while it is held (a vault sync: a half-finished import would
  // look Azure-made).
  std::unique_lock<std::mutex> exclusive();

 private:
  explicit Service(Token& token) : token_(token) {}
  bool wants(const AttrMap& attrs) const;
  R<void> run(CK_OBJECT_HANDLE h);
  // The uid of a key the vendor functions may act on (a local private or secret token key).
  R<std::string> mirrorable(const Session& s, CK_OBJECT_HANDLE h);
  // former_version: the key was a former version (rotation): only its own Azure version is
  // disabled, never the key, whose current version is another.
  void apply_destroy_policy(const std::string& azure_kid, bool former_version);

  Token& token_;
  std::unique_ptr<Engine> engine_;
  std::string unavailable_;  // why engine_ is null
  // Mirrors of different keys run at once (the journal's lock per key keeps two runs of one key
  // apart); exclusive() and hold_for_logout() hold mu_ once none runs, and no run starts while
  // they do. Taken before the token's lock, never while holding it.
  std::mutex mu_;
  std::condition_variable idle_;
  unsigned running_ = 0;
  // Last: stopped and joined first, while what its jobs use still exists.
  std::unique_ptr<Worker> worker_;
};

}  // namespace cdcp11::core::mirror
