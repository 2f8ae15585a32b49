#include "core/provider/provider.h"

#include <algorithm>

#include "common/log.h"

namespace cdcp11::core {

R<void> Provider::initialize(const std::string& config_path, const BackendFactory& factory) {
  CDC_ASSIGN(auto cfg, load_config(config_path));
  std::vector<std::unique_ptr<Token>> tokens;
  for (auto& g : cfg.groups) tokens.push_back(std::make_unique<Token>(g.slot_id, g, factory, next_object_));
  std::sort(tokens.begin(), tokens.end(), [](auto& a, auto& b) { return a->id() < b->id(); });
  std::lock_guard lk(mu_);
  sessions_.clear();
  tokens_ = std::move(tokens);
  log::info("core", "initialised with " + std::to_string(tokens_.size()) + " group(s) from " + cfg.path);
  return {};
}

void Provider::finalize() {
  std::vector<std::unique_ptr<Token>> tokens;
  {
    std::lock_guard lk(mu_);
    sessions_.clear();
    tokens = std::move(tokens_);
  }
  tokens.clear();  // each token logs out and stops its mirror
}

std::vector<CK_SLOT_ID> Provider::slot_ids() const {
  std::shared_lock lk(mu_);
  std::vector<CK_SLOT_ID> ids;
  for (auto& t : tokens_) ids.push_back(t->id());
  return ids;
}

R<Token*> Provider::token(CK_SLOT_ID id) const {
  std::shared_lock lk(mu_);
  for (auto& t : tokens_)
    if (t->id() == id) return t.get();
  return err(Errc::slot_id_invalid, "no slot with id " + std::to_string(id));
}

R<Token*> Provider::present_token(CK_SLOT_ID id) const {
  CDC_ASSIGN(Token * t, token(id));
  CDC_TRY(t->check_present());
  return t;
}

R<std::shared_ptr<Session>> Provider::session(CK_SESSION_HANDLE h) const {
  std::shared_lock lk(mu_);
  auto it = sessions_.find(h);
  if (it == sessions_.end()) return err(Errc::session_handle_invalid, "no session " + std::to_string(h));
  return it->second;
}

std::vector<std::shared_ptr<Session>> Provider::sessions_of(const Token* t) const {
  std::shared_lock lk(mu_);
  std::vector<std::shared_ptr<Session>> r;
  for (auto& [h, s] : sessions_)
    if (&s->token() == t) r.push_back(s);
  return r;
}

std::pair<CK_ULONG, CK_ULONG> Provider::session_counts(const Token& t) const {
  CK_ULONG all = 0, rw = 0;
  for (auto& s : sessions_of(&t)) {
    ++all;
    if (s->read_write()) ++rw;
  }
  return {all, rw};
}

R<void> Provider::init_token(CK_SLOT_ID id, ByteView so_pin, const std::string& label) {
  CDC_ASSIGN(Token * t, present_token(id));
  if (!sessions_of(t).empty()) return err(Errc::session_exists, "C_InitToken needs every session of the slot closed");
  return t->init_token(so_pin, label);
}

R<CK_SESSION_HANDLE> Provider::open_session(CK_SLOT_ID id, CK_FLAGS flags) {
  if (!(flags & CKF_SERIAL_SESSION))
    return err(Errc::session_parallel_not_supported, "CKF_SERIAL_SESSION must be set");
  CDC_ASSIGN(Token * t, present_token(id));
  CDC_TRY(t->check_can_open_session(flags));
  std::lock_guard lk(mu_);
  const CK_SESSION_HANDLE h = next_session_++;
  sessions_[h] = std::make_shared<Session>(h, *t, flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION));
  return h;
}

R<void> Provider::close_session(CK_SESSION_HANDLE h) {
  std::shared_ptr<Session> s;
  bool last = false;
  {
    std::lock_guard lk(mu_);
    auto it = sessions_.find(h);
    if (it == sessions_.end()) return err(Errc::session_handle_invalid, "no session " + std::to_string(h));
    s = it->second;
    sessions_.erase(it);
    last = std::none_of(sessions_.begin(), sessions_.end(),
                        [&](auto& kv) { return &kv.second->token() == &s->token(); });
  }
  s->token().session_closed(h, last);
  return {};
}

R<void> Provider::close_all_sessions(CK_SLOT_ID id) {
  CDC_ASSIGN(Token * t, present_token(id));
  for (auto& s : sessions_of(t)) (void)close_session(s->handle());
  return {};
}

R<void> Provider::login(Session& s, CK_USER_TYPE who, ByteView pin) {
  if (who == CKU_CONTEXT_SPECIFIC) return s.context_login(pin);
  bool read_only_open = false;
  for (auto& o : sessions_of(&s.token())) read_only_open |= !o->read_write();
  return s.token().login(who, pin, read_only_open);
}

R<void> Provider::logout(Session& s) {
  for (auto& o : sessions_of(&s.token())) o->reset_ops();
  return s.token().logout();
}

}  // namespace cdcp11::core
