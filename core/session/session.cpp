#include "core/session/session.h"

#include <cstring>

#include "core/token/token.h"

namespace cdcp11::core {

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

R<Mechanism> mechanism_for(const CK_MECHANISM* m, CK_FLAGS needed) {
  if (!m) return err(Errc::arguments_bad, "mechanism pointer is NULL");
  const MechanismEntry* e = find_mechanism(m->mechanism);
  if (!e) return err(Errc::mechanism_invalid, std::string(mechanism_name(m->mechanism)) + " is not supported");
  if (!(e->flags & needed))
    return err(Errc::mechanism_invalid, std::string(e->name) + " cannot be used for this function");
  if (m->ulParameterLen && !m->pParameter)
    return err(Errc::arguments_bad, std::string(e->name) + ": parameter pointer is NULL with a length");
  Mechanism r;
  r.entry = e;
  if (m->ulParameterLen) {
    auto* p = static_cast<const std::uint8_t*>(m->pParameter);
    r.param.assign(p, p + m->ulParameterLen);
  }
  return r;
}

void Session::reset_ops() {
  std::lock_guard ol(mu_);
  find_.reset();
  sign_.reset();
  verify_.reset();
  encrypt_.reset();
  decrypt_.reset();
  digest_.reset();
}

void Session::cancel(CK_FLAGS flags) {
  std::lock_guard ol(mu_);
  if (flags & CKF_ENCRYPT) encrypt_.reset();
  if (flags & CKF_DECRYPT) decrypt_.reset();
  if (flags & CKF_DIGEST) digest_.reset();
  if (flags & CKF_SIGN) sign_.reset();
  if (flags & CKF_VERIFY) verify_.reset();
}

R<void> Session::context_login(ByteView pin) {
  std::lock_guard ol(mu_);
  if (token_.login_state() != LoginState::user)
    return err(Errc::user_not_logged_in, "context-specific login needs the user to be logged in");
  OpState* op = sign_ && sign_->context_login_needed       ? &*sign_
                : decrypt_ && decrypt_->context_login_needed ? &*decrypt_
                                                             : nullptr;
  if (!op) return err(Errc::operation_not_initialized, "no operation waits for a context-specific login");
  if (auto forwarded = op->op ? op->op->context_login(pin) : std::nullopt) {
    CDC_TRY(std::move(*forwarded));
  } else {
    CDC_TRY(token_.check_pin(pin));
  }
  op->context_login_needed = false;
  return {};
}

R<void> Session::find_begin(const AttrMap& tmpl) {
  std::lock_guard ol(mu_);
  if (find_) return err(Errc::operation_active, "a find operation is already active");
  CDC_ASSIGN(auto found, token_.find(*this, tmpl));
  find_ = FindState{std::move(found), 0};
  return {};
}

R<CK_ULONG> Session::find_next(CK_OBJECT_HANDLE* out, CK_ULONG max) {
  std::lock_guard ol(mu_);
  if (!find_) return err(Errc::operation_not_initialized, "C_FindObjectsInit was not called");
  CK_ULONG n = 0;
  while (n < max && find_->pos < find_->results.size()) out[n++] = find_->results[find_->pos++];
  return n;
}

R<void> Session::find_end() {
  std::lock_guard ol(mu_);
  if (!find_) return err(Errc::operation_not_initialized, "C_FindObjectsInit was not called");
  find_.reset();
  return {};
}

}  // namespace cdcp11::core
