#include "core/library.h"

#include <algorithm>
#include <cstring>
#include <exception>

#include "common/log.h"

namespace cdcp11::core {

namespace {
constexpr const char* kLog = "core";

// A factory that throws leaves its group without a token, like one that fails.
R<std::unique_ptr<TokenBackend>> open_backend(const BackendFactory& factory, const GroupConfig& g) {
  try {
    return factory(g);
  } catch (const std::exception& e) {
    return err(Errc::general_error, std::string("the token could not be opened: ") + e.what());
  }
}
}  // namespace

void Session::reset_ops() {
  find.reset();
  sign.reset();
  verify.reset();
  encrypt.reset();
  decrypt.reset();
  digest.reset();
}

R<void> write_output(ByteView data, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  if (!out_len) return err(Errc::arguments_bad, "output length pointer is NULL");
  if (!out) {
    *out_len = data.size();
    return {};
  }
  if (*out_len < data.size()) {
    CK_ULONG have = *out_len;
    *out_len = data.size();
    return err(Errc::buffer_too_small, "output buffer holds " + std::to_string(have) + " bytes, " +
                                           std::to_string(data.size()) + " needed");
  }
  if (!data.empty()) std::memcpy(out, data.data(), data.size());
  *out_len = data.size();
  return {};
}

// ---------------------------------------------------------------- lifecycle

R<void> Library::initialize(const std::string& config_path, const BackendFactory& factory) {
  CDC_ASSIGN(auto cfg, load_config(config_path));
  std::lock_guard lk(mu_);
  slots_.clear();
  sessions_.clear();
  for (auto& g : cfg.groups) {
    auto slot = std::make_unique<Slot>();
    slot->id = g.slot_id;
    slot->cfg = g;
    if (!g.azure_error.empty())
      log::error(kLog, "group '" + g.name + "': Azure is not used, its configuration is invalid: " + g.azure_error);
    auto b = open_backend(factory, g);
    if (b) {
      slot->backend = std::move(*b);
      try {
        open_mirror(*slot);
      } catch (const std::exception& e) {
        slot->mirror.reset();
        slot->mirror_unavailable = std::string("the mirror could not be opened: ") + e.what();
        log::error(kLog, "group '" + g.name + "': " + slot->mirror_unavailable);
      }
    } else {
      slot->backend_error = b.error().message;
      log::error(kLog, "group '" + g.name + "': token unavailable: " + b.error().message);
    }
    slots_.push_back(std::move(slot));
  }
  std::sort(slots_.begin(), slots_.end(), [](auto& a, auto& b) { return a->id < b->id; });
  log::info(kLog, "initialised with " + std::to_string(slots_.size()) + " group(s) from " + cfg.path);
  return {};
}

void Library::finalize() {
  std::lock_guard lk(mu_);
  sessions_.clear();
  for (auto& s : slots_) {
    std::lock_guard mirrors(s->mirror_mu);  // as in logout()
    std::lock_guard sl(s->mu);
    if (s->backend) s->backend->logout();
  }
  slots_.clear();
}

std::vector<CK_SLOT_ID> Library::slot_ids() const {
  std::lock_guard lk(mu_);
  std::vector<CK_SLOT_ID> ids;
  for (auto& s : slots_) ids.push_back(s->id);
  return ids;
}

R<Slot*> Library::slot(CK_SLOT_ID id) const {
  std::lock_guard lk(mu_);
  for (auto& s : slots_)
    if (s->id == id) return s.get();
  return err(Errc::slot_id_invalid, "no slot with id " + std::to_string(id));
}

R<Slot*> Library::slot_with_token(CK_SLOT_ID id) const {
  CDC_ASSIGN(Slot * s, slot(id));
  if (!s->backend)
    return err(Errc::token_not_present, "group '" + s->cfg.name + "': " + s->backend_error);
  return s;
}

R<std::shared_ptr<Session>> Library::session(CK_SESSION_HANDLE h) const {
  std::lock_guard lk(mu_);
  auto it = sessions_.find(h);
  if (it == sessions_.end()) return err(Errc::session_handle_invalid, "no session " + std::to_string(h));
  return it->second;
}

R<void> Library::check_session(CK_SESSION_HANDLE h) const {
  CDC_TRY(session(h));
  return {};
}

std::vector<std::shared_ptr<Session>> Library::sessions_of(const Slot* slot) const {
  std::lock_guard lk(mu_);
  std::vector<std::shared_ptr<Session>> r;
  for (auto& [h, s] : sessions_)
    if (s->slot == slot) r.push_back(s);
  return r;
}

// ---------------------------------------------------------------- tokens and PINs

R<TokenStatus> Library::token_status(CK_SLOT_ID id) {
  CDC_ASSIGN(Slot * s, slot_with_token(id));
  std::lock_guard sl(s->mu);
  return s->backend->status();
}

R<std::pair<CK_ULONG, CK_ULONG>> Library::session_counts(CK_SLOT_ID id) {
  CDC_ASSIGN(Slot * s, slot(id));
  CK_ULONG all = 0, rw = 0;
  for (auto& ss : sessions_of(s)) {
    ++all;
    if (ss->flags & CKF_RW_SESSION) ++rw;
  }
  return std::make_pair(all, rw);
}

R<void> Library::init_token(CK_SLOT_ID id, ByteView so_pin, const std::string& label) {
  CDC_ASSIGN(Slot * s, slot_with_token(id));
  if (!sessions_of(s).empty())
    return err(Errc::session_exists, "C_InitToken needs every session of the slot closed");
  std::lock_guard sl(s->mu);
  CDC_TRY(s->backend->init_token(so_pin, label));
  s->objects.clear();
  s->by_uid.clear();
  s->index.clear();
  s->login = LoginState::none;
  log::info(kLog, "group '" + s->cfg.name + "': token initialised");
  return {};
}

void Library::invalidate_private_handles(Slot& slot) {
  // PKCS#11 5.6 (C_Logout): handles to private objects become invalid for good; private session
  // objects are destroyed. Private token objects stay cached under new handles.
  std::vector<CK_OBJECT_HANDLE> priv;
  for (auto& [oh, e] : slot.objects)
    if (e.obj.attrs.bool_or(CKA_PRIVATE, false)) priv.push_back(oh);
  for (auto oh : priv) {
    ObjectEntry e = std::move(slot.objects[oh]);
    remove_object(slot, oh);
    if (e.token) add_object(slot, std::move(e.obj), true, 0);
    else (void)slot.backend->destroy_object(e.obj.uid);
  }
}

CK_STATE Library::state_of(const Session& s) const {
  const bool rw = s.flags & CKF_RW_SESSION;
  switch (s.slot->login) {
    case LoginState::so: return CKS_RW_SO_FUNCTIONS;
    case LoginState::user: return rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
    case LoginState::none: break;
  }
  return rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
}

R<void> Library::init_pin(CK_SESSION_HANDLE h, ByteView pin) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard sl(s->slot->mu);
  if (state_of(*s) != CKS_RW_SO_FUNCTIONS)
    return err(Errc::user_not_logged_in, "C_InitPIN needs a read/write session logged in as SO");
  return s->slot->backend->init_pin(pin);
}

R<void> Library::set_pin(CK_SESSION_HANDLE h, ByteView old_pin, ByteView new_pin) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard sl(s->slot->mu);
  if (!(s->flags & CKF_RW_SESSION)) return err(Errc::session_read_only, "C_SetPIN needs a read/write session");
  CK_USER_TYPE who = s->slot->login == LoginState::so ? CKU_SO : CKU_USER;
  return s->slot->backend->set_pin(who, old_pin, new_pin);
}

R<void> Library::login(CK_SESSION_HANDLE h, CK_USER_TYPE who, ByteView pin) {
  CDC_ASSIGN(auto s, session(h));
  Slot& slot = *s->slot;
  if (who == CKU_CONTEXT_SPECIFIC) {
    std::lock_guard ol(s->mu);
    {
      std::lock_guard sl(slot.mu);
      if (slot.login != LoginState::user)
        return err(Errc::user_not_logged_in, "context-specific login needs the user to be logged in");
    }
    OpState* op = s->sign && s->sign->context_login_needed ? &*s->sign
                  : s->decrypt && s->decrypt->context_login_needed ? &*s->decrypt
                                                                   : nullptr;
    if (!op) return err(Errc::operation_not_initialized, "no operation waits for a context-specific login");
    std::lock_guard sl(slot.mu);
    CDC_TRY(slot.backend->check_pin(pin));
    op->context_login_needed = false;
    return {};
  }
  if (who != CKU_SO && who != CKU_USER) return err(Errc::user_type_invalid, "unknown user type " + std::to_string(who));
  auto all = sessions_of(&slot);
  {
    std::lock_guard sl(slot.mu);
    if (slot.login == LoginState::user)
      return err(who == CKU_USER ? Errc::user_already_logged_in : Errc::user_another_already_logged_in,
                 "the user is already logged in");
    if (slot.login == LoginState::so)
      return err(who == CKU_SO ? Errc::user_already_logged_in : Errc::user_another_already_logged_in,
                 "the SO is already logged in");
    if (who == CKU_SO)
      for (auto& o : all)
        if (!(o->flags & CKF_RW_SESSION))
          return err(Errc::session_read_only_exists, "SO login is refused while a read-only session is open");
    CDC_TRY(slot.backend->login(who, pin));
    slot.login = who == CKU_SO ? LoginState::so : LoginState::user;
    // Private token objects become visible.
    CDC_TRY(sync(slot));
  }
  // Outside the slot lock: the journal's unfinished mirrors go to the worker.
  if (who == CKU_USER) resume_mirrors(slot);
  return {};
}

R<void> Library::logout(CK_SESSION_HANDLE h) {
  CDC_ASSIGN(auto s, session(h));
  Slot& slot = *s->slot;
  auto all = sessions_of(&slot);
  for (auto& o : all) {
    std::lock_guard ol(o->mu);
    o->reset_ops();
  }
  // A mirror in flight finishes, and records its state, while the token key is still there.
  std::lock_guard mirrors(slot.mirror_mu);
  std::lock_guard sl(slot.mu);
  if (slot.login == LoginState::none) return err(Errc::user_not_logged_in, "nobody is logged in");
  slot.backend->logout();
  slot.login = LoginState::none;
  invalidate_private_handles(slot);
  return {};
}

// ---------------------------------------------------------------- sessions

R<CK_SESSION_HANDLE> Library::open_session(CK_SLOT_ID id, CK_FLAGS flags) {
  if (!(flags & CKF_SERIAL_SESSION))
    return err(Errc::session_parallel_not_supported, "CKF_SERIAL_SESSION must be set");
  CDC_ASSIGN(Slot * slot, slot_with_token(id));
  {
    std::lock_guard sl(slot->mu);
    if (!slot->backend->status().initialized)
      return err(Errc::token_not_recognized, "group '" + slot->cfg.name + "': the token is not initialised");
    if (slot->login == LoginState::so && !(flags & CKF_RW_SESSION))
      return err(Errc::session_read_write_so_exists, "the SO is logged in: only read/write sessions");
    CDC_TRY(sync(*slot));
  }
  auto s = std::make_shared<Session>();
  s->slot = slot;
  s->flags = flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION);
  std::lock_guard lk(mu_);
  s->handle = next_session_++;
  sessions_[s->handle] = s;
  return s->handle;
}

R<void> Library::close_session(CK_SESSION_HANDLE h) {
  std::shared_ptr<Session> s;
  bool last = false;
  {
    std::lock_guard lk(mu_);
    auto it = sessions_.find(h);
    if (it == sessions_.end()) return err(Errc::session_handle_invalid, "no session " + std::to_string(h));
    s = it->second;
    sessions_.erase(it);
    last = std::none_of(sessions_.begin(), sessions_.end(), [&](auto& kv) { return kv.second->slot == s->slot; });
  }
  Slot& slot = *s->slot;
  std::unique_lock<std::mutex> mirrors;  // as in logout(): the last session logs out
  if (last) mirrors = std::unique_lock(slot.mirror_mu);
  std::lock_guard sl(slot.mu);
  std::vector<CK_OBJECT_HANDLE> drop;
  for (auto& [oh, e] : slot.objects)
    if (!e.token && e.owner == h) drop.push_back(oh);
  for (auto oh : drop) {
    (void)slot.backend->destroy_object(slot.objects[oh].obj.uid);
    remove_object(slot, oh);
  }
  // Closing the last session of a token logs the application out (PKCS#11 5.6).
  if (last && slot.login != LoginState::none) {
    slot.backend->logout();
    slot.login = LoginState::none;
    invalidate_private_handles(slot);
  }
  return {};
}

R<void> Library::close_all_sessions(CK_SLOT_ID id) {
  CDC_ASSIGN(Slot * slot, slot_with_token(id));
  for (auto& s : sessions_of(slot)) (void)close_session(s->handle);
  return {};
}

R<CK_SESSION_INFO> Library::session_info(CK_SESSION_HANDLE h) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard sl(s->slot->mu);
  CK_SESSION_INFO info{};
  info.slotID = s->slot->id;
  info.state = state_of(*s);
  info.flags = s->flags;
  info.ulDeviceError = 0;
  return info;
}

R<void> Library::cancel(CK_SESSION_HANDLE h, CK_FLAGS flags) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  if (flags & CKF_ENCRYPT) s->encrypt.reset();
  if (flags & CKF_DECRYPT) s->decrypt.reset();
  if (flags & CKF_DIGEST) s->digest.reset();
  if (flags & CKF_SIGN) s->sign.reset();
  if (flags & CKF_VERIFY) s->verify.reset();
  return {};
}

R<void> Library::generate_random(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG n) {
  CDC_ASSIGN(auto s, session(h));
  return s->slot->backend->random(out, n);
}

}  // namespace cdcp11::core
