// The provider: the library's state between C_Initialize and C_Finalize. It holds the tokens
// (one per CDC group, a slot each) and the session table, and does what needs both: opening and
// closing sessions, and the login rules that look at every session of a token. Everything else
// runs in the token (objects, keys) or the session (operations); p11module/ reaches them through
// session() and token().
//
// Locking: mu_ guards the session table only (shared for look-ups, which every call on a session
// makes; a ReadMostlyMutex, so that threads on their own sessions share no written line); it is
// never held while a session's or token's lock is taken.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "common/read_mostly_mutex.h"
#include "core/session/session.h"
#include "core/token/token.h"

namespace cdcp11::core {

class Provider {
 public:
  // Loads the config and opens every group's token. A group whose backend cannot be opened
  // still becomes a slot (token not present) and the reason is logged.
  R<void> initialize(const std::string& config_path, const BackendFactory& factory);
  void finalize();

  std::vector<CK_SLOT_ID> slot_ids() const;
  R<Token*> token(CK_SLOT_ID id) const;          // slot_id_invalid
  R<Token*> present_token(CK_SLOT_ID id) const;  // and token_not_present
  R<std::shared_ptr<Session>> session(CK_SESSION_HANDLE h) const;
  // (all, read/write) sessions of the token.
  std::pair<CK_ULONG, CK_ULONG> session_counts(const Token& t) const;

  R<void> init_token(CK_SLOT_ID id, ByteView so_pin, const std::string& label);
  R<CK_SESSION_HANDLE> open_session(CK_SLOT_ID id, CK_FLAGS flags);
  R<void> close_session(CK_SESSION_HANDLE h);
  R<void> close_all_sessions(CK_SLOT_ID id);
  // C_Login (CKU_CONTEXT_SPECIFIC goes to the session's waiting operation) and C_Logout, which
  // ends the operations of every session of the token.
  R<void> login(Session& s, CK_USER_TYPE who, ByteView pin);
  R<void> logout(Session& s);

 private:
  std::vector<std::shared_ptr<Session>> sessions_of(const Token* t) const;

  mutable ReadMostlyMutex mu_;
  std::vector<std::unique_ptr<Token>> tokens_;
  std::unordered_map<CK_SESSION_HANDLE, std::shared_ptr<Session>> sessions_;
  CK_SESSION_HANDLE next_session_ = 1;
  std::atomic<CK_OBJECT_HANDLE> next_object_{1};
};

}  // namespace cdcp11::core
