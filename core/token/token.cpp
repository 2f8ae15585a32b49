// A token's lifecycle, PINs, login state and object cache.
#include "core/token/token.h"

#include <exception>
#include <set>
#include <utility>

#include "common/log.h"
#include "core/attribute_policy.h"
#include "core/azure_link.h"
#include "core/cloud/key_attrs.h"
#include "core/cloud/vault_home.h"
#include "core/mirror/service.h"
#include "core/session/session.h"
#include "core/token/vendor_state.h"

namespace cdcp11::core {

namespace {

constexpr const char* kLog = "core";

// A factory that throws leaves its group without a token, like one that fails.
R<std::unique_ptr<Backend>> open_backend(const BackendFactory& factory, const GroupConfig& g) {
  try {
    return factory(g);
  } catch (const std::exception& e) {
    return err(Errc::general_error, std::string("the token could not be opened: ") + e.what());
  }
}

// The group's vault connection, or why there is none (no network call).
Result<std::shared_ptr<azure::Connection>, std::string> open_vault(const GroupConfig& g) {
  if (!g.azure) return fail(g.azure_error.empty() ? std::string("the group has no Azure connection") : g.azure_error);
  if (!g.azure->tls.validate_host)
    log::warn(kLog, "group '" + g.name + "': TLS host name validation is OFF for its Azure connection");
  if (g.azure->vault_name.empty()) return fail("no vault is chosen for group '" + g.name + "'");
  try {
    return open_azure(g);
  } catch (const std::exception& e) {
    return fail(std::string("the Azure connection could not be opened: ") + e.what());
  }
}

}  // namespace

Token::Token(CK_SLOT_ID id, GroupConfig cfg, const BackendFactory& factory, std::atomic<CK_OBJECT_HANDLE>& handles)
    : id_(id), cfg_(std::move(cfg)), cache_(handles) {
  if (!cfg_.azure_error.empty())
    log::error(kLog, "group '" + cfg_.name + "': Azure is not used, its configuration is invalid: " + cfg_.azure_error);
  auto b = open_backend(factory, cfg_);
  if (!b) {
    backend_error_ = b.error().message;
    log::error(kLog, "group '" + cfg_.name + "': token unavailable: " + b.error().message);
    return;
  }
  auto meta = MetadataStore::open(cfg_.token.dir);
  if (!meta) {
    backend_error_ = "its metadata store cannot be opened: " + meta.error().message;
    log::error(kLog, "group '" + cfg_.name + "': token unavailable: " + backend_error_);
    return;
  }
  backend_ = std::make_unique<VendorState>(std::move(*b), std::move(*meta));
  local_home_ = std::make_unique<LocalHome>(*backend_);
  if (auto v = open_vault(cfg_)) {
    vault_ = std::move(*v);
  } else {
    azure_unavailable_ = v.error();
    if (cfg_.azure) log::error("mirror", v.error());
  }
  vault_home_ = cloud::make_vault_home(vault_, azure_unavailable_, cfg_.name, *backend_);
  mirror_ = mirror::Service::open(*this);
  set_observer(mirror_.get());
}

Token::~Token() {
  // The mirror's worker stops first, while what its jobs use still exists.
  mirror_.reset();
  if (!backend_) return;
  std::lock_guard lk(mu_);
  backend_->logout();
}

R<void> Token::check_present() const {
  if (!backend_) return err(Errc::token_not_present, "group '" + cfg_.name + "': " + backend_error_);
  return {};
}

// ---------------------------------------------------------------- status and login

R<TokenStatus> Token::status() {
  CDC_TRY(check_present());
  std::lock_guard lk(mu_);
  return backend_->status();
}

std::vector<SlotMechanism> Token::mechanisms() {
  std::lock_guard lk(mu_);
  return slot_mechanisms(backend_.get());
}

CK_STATE Token::state_of(const Session& s) {
  std::lock_guard lk(mu_);
  switch (login_) {
    case LoginState::so: return CKS_RW_SO_FUNCTIONS;
    case LoginState::user: return s.read_write() ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
    case LoginState::none: break;
  }
  return s.read_write() ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
}

LoginState Token::login_state() {
  std::lock_guard lk(mu_);
  return login_;
}

R<void> Token::check_can_open_session(CK_FLAGS flags) {
  CDC_TRY(check_present());
  std::lock_guard lk(mu_);
  if (!backend_->status().initialized)
    return err(Errc::token_not_recognized, "group '" + cfg_.name + "': the token is not initialised");
  if (login_ == LoginState::so && !(flags & CKF_RW_SESSION))
    return err(Errc::session_read_write_so_exists, "the SO is logged in: only read/write sessions");
  return refresh();
}

R<void> Token::init_token(ByteView so_pin, const std::string& label) {
  CDC_TRY(check_present());
  std::lock_guard lk(mu_);
  CDC_TRY(backend_->init_token(so_pin, label));
  cache_.clear();
  login_ = LoginState::none;
  log::info(kLog, "group '" + cfg_.name + "': token initialised");
  return {};
}

R<void> Token::init_pin(const Session& s, ByteView pin) {
  std::lock_guard lk(mu_);
  if (login_ != LoginState::so || !s.read_write())
    return err(Errc::user_not_logged_in, "C_InitPIN needs a read/write session logged in as SO");
  return backend_->init_pin(pin);
}

R<void> Token::set_pin(const Session& s, ByteView old_pin, ByteView new_pin) {
  std::lock_guard lk(mu_);
  if (!s.read_write()) return err(Errc::session_read_only, "C_SetPIN needs a read/write session");
  return backend_->set_pin(login_ == LoginState::so ? CKU_SO : CKU_USER, old_pin, new_pin);
}

R<void> Token::login(CK_USER_TYPE who, ByteView pin, bool read_only_session_open) {
  if (who != CKU_SO && who != CKU_USER) return err(Errc::user_type_invalid, "unknown user type " + std::to_string(who));
  {
    std::lock_guard lk(mu_);
    if (login_ == LoginState::user)
      return err(who == CKU_USER ? Errc::user_already_logged_in : Errc::user_another_already_logged_in,
                 "the user is already logged in");
    if (login_ == LoginState::so)
      return err(who == CKU_SO ? Errc::user_already_logged_in : Errc::user_another_already_logged_in,
                 "the SO is already logged in");
    if (who == CKU_SO && read_only_session_open)
      return err(Errc::session_read_only_exists, "SO login is refused while a read-only session is open");
    CDC_TRY(backend_->login(who, pin));
    login_ = who == CKU_SO ? LoginState::so : LoginState::user;
    // Private token objects become visible.
    CDC_TRY(refresh());
  }
  if (who == CKU_USER && observer_) observer_->user_logged_in();
  return {};
}

R<void> Token::check_pin(ByteView pin) {
  std::lock_guard lk(mu_);
  if (login_ != LoginState::user)
    return err(Errc::user_not_logged_in, "context-specific login needs the user to be logged in");
  return backend_->check_pin(pin);
}

R<void> Token::logout() {
  std::unique_lock<std::mutex> in_flight;
  if (observer_) in_flight = observer_->hold_for_logout();
  std::lock_guard lk(mu_);
  if (login_ == LoginState::none) return err(Errc::user_not_logged_in, "nobody is logged in");
  backend_->logout();
  login_ = LoginState::none;
  invalidate_private_handles();
  return {};
}

void Token::session_closed(CK_SESSION_HANDLE h, bool last) {
  std::unique_lock<std::mutex> in_flight;
  if (last && observer_) in_flight = observer_->hold_for_logout();
  std::lock_guard lk(mu_);
  std::vector<CK_OBJECT_HANDLE> drop;
  for (auto& [oh, o] : cache_.all())
    if (!o.token && o.owner == h) drop.push_back(oh);
  for (auto oh : drop) {
    (void)backend_->destroy_object(cache_.get(oh)->obj.uid);
    cache_.remove(oh);
  }
  // Closing the last session of a token logs the application out (PKCS#11 5.6).
  if (last && login_ != LoginState::none) {
    backend_->logout();
    login_ = LoginState::none;
    invalidate_private_handles();
  }
}

R<void> Token::random(CK_BYTE_PTR out, CK_ULONG n) { return backend_->random(out, n); }

// ---------------------------------------------------------------- the cache

void Token::invalidate_private_handles() {
  // PKCS#11 5.6 (C_Logout): handles to private objects become invalid for good; private session
  // objects are destroyed. Private token objects stay cached under new handles.
  std::vector<CK_OBJECT_HANDLE> priv;
  for (auto& [oh, o] : cache_.all())
    if (o.is_private()) priv.push_back(oh);
  for (auto oh : priv) {
    Object o = std::move(*cache_.take(oh));
    if (o.token) add_object(std::move(o.obj), true, 0);
    else (void)backend_->destroy_object(o.obj.uid);
  }
}

KeyHome* Token::home_of(const AttrMap& a) {
  const auto cls = a.ulong(CKA_CLASS).value_or(CKO_DATA);
  if (cls != CKO_PRIVATE_KEY && cls != CKO_SECRET_KEY && cls != CKO_PUBLIC_KEY) return nullptr;
  return cloud::azure_resident(a) ? vault_home_.get() : local_home_.get();
}

CK_OBJECT_HANDLE Token::add_object(StoredObject obj, bool token, CK_SESSION_HANDLE owner) {
  apply_vendor_defaults(obj.attrs.ulong(CKA_CLASS).value_or(CKO_DATA), obj.attrs);
  KeyHome* home = home_of(obj.attrs);
  return cache_.add(std::move(obj), token, owner, home);
}

R<void> Token::refresh() {
  CDC_ASSIGN(auto ch, backend_->refresh());
  return apply(std::move(ch));
}

R<void> Token::refresh_for(CK_OBJECT_HANDLE h) {
  const Object* o = cache_.get(h);
  if (!o) return refresh();
  if (!o->token) return {};
  CDC_ASSIGN(auto ch, backend_->refresh_object(o->obj.uid));
  return apply(std::move(ch));
}

R<void> Token::apply(ObjectChanges ch) {
  if (ch.full_reload) {
    // Only what the listing lacks is gone: a listed object keeps its handle (below).
    std::set<std::string> listed;
    for (auto& o : ch.upserted) listed.insert(o.uid);
    std::vector<CK_OBJECT_HANDLE> drop;
    for (auto& [h, o] : cache_.all())
      if (o.token && !listed.contains(o.obj.uid)) drop.push_back(h);
    for (auto h : drop) cache_.remove(h);
  }
  for (auto& uid : ch.removed)
    if (auto h = cache_.handle_of(uid)) cache_.remove(*h);
  for (auto& o : ch.upserted) {
    if (auto h = cache_.handle_of(o.uid)) {
      apply_vendor_defaults(o.attrs.ulong(CKA_CLASS).value_or(CKO_DATA), o.attrs);
      cache_.set_attrs(*h, std::move(o.attrs));  // changed elsewhere: same handle
    } else {
      // Private objects are cached too; visible() and find() hide them until login.
      add_object(std::move(o), true, 0);
    }
  }
  for (auto& [uid, vendor] : ch.vendor) {
    auto h = cache_.handle_of(uid);
    if (!h) continue;
    AttrMap a;
    split_vendor(cache_.get(*h)->attrs(), a);
    a.merge(vendor);
    apply_vendor_defaults(a.ulong(CKA_CLASS).value_or(CKO_DATA), a);
    cache_.set_attrs(*h, std::move(a));
  }
  return {};
}

R<const Object*> Token::visible(CK_OBJECT_HANDLE h, Errc invalid) const {
  const Object* o = cache_.get(h);
  if (!o) return err(invalid, "handle " + std::to_string(h) + " is not an object of this token");
  if (o->is_private() && login_ != LoginState::user)
    return err(invalid, "handle " + std::to_string(h) + " is a private object and the user is not logged in");
  return o;
}

R<Object*> Token::visible(CK_OBJECT_HANDLE h, Errc invalid) {
  CDC_ASSIGN(const Object* o, std::as_const(*this).visible(h, invalid));
  return const_cast<Object*>(o);
}

R<Object*> Token::Locked::visible(CK_OBJECT_HANDLE h, Errc invalid) { return t_.visible(h, invalid); }

}  // namespace cdcp11::core
