// The cryptographic operations of a session: single- and multi-part calls with the PKCS#11
// output-buffer and length-query rules. The key comes from Token::open_key, the operation from the
// key's home.
#include <cstdint>
#include <cstring>

#include "common/log.h"
#include "core/attribute_policy.h"
#include "core/session/session.h"
#include "core/token/token.h"

namespace cdcp11::core {

namespace {

struct KindInfo {
  CK_FLAGS flag;
  CK_ATTRIBUTE_TYPE usage;
  CK_OBJECT_CLASS asym_class;  // the asymmetric key class this operation uses
  const char* name;
};

KindInfo info(OpKind k) {
  switch (k) {
    case OpKind::sign: return {CKF_SIGN, CKA_SIGN, CKO_PRIVATE_KEY, "sign"};
    case OpKind::verify: return {CKF_VERIFY, CKA_VERIFY, CKO_PUBLIC_KEY, "verify"};
    case OpKind::encrypt: return {CKF_ENCRYPT, CKA_ENCRYPT, CKO_PUBLIC_KEY, "encrypt"};
    case OpKind::decrypt: return {CKF_DECRYPT, CKA_DECRYPT, CKO_PRIVATE_KEY, "decrypt"};
  }
  return {};
}

KeyUse use_of(OpKind k) {
  switch (k) {
    case OpKind::sign: return KeyUse::sign;
    case OpKind::verify: return KeyUse::verify;
    case OpKind::encrypt: return KeyUse::encrypt;
    case OpKind::decrypt: return KeyUse::decrypt;
  }
  return KeyUse::sign;
}

// One call on an active operation: every error but buffer_too_small ends it (PKCS#11 3.0 5.2
// and 5.8-5.13: a NULL length pointer, a single-part call after an Update, a refused key...).
// A success or a length query leaves it to the body, which ends it once the caller has the result.
template <class Body>
R<void> step(std::optional<OpState>& st, const char* name, Body body) {
  if (!st) return err(Errc::operation_not_initialized, std::string(name) + " operation not initialised");
  R<void> r = body();
  if (!r && r.error().code != Errc::buffer_too_small) st.reset();
  return r;
}

// Runs the computation once and keeps its result, so a length query (or a too-small buffer) and
// the call that follows return the same bytes.
template <class Compute>
R<void> compute_once(OpState& o, Compute compute) {
  if (o.pending) return {};
  CDC_ASSIGN(o.pending, compute());
  return {};
}

// Hands the computed result to the caller; the operation ends once the caller has it.
R<void> deliver_final(std::optional<OpState>& st, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  auto w = write_output(*st->pending, out, out_len);
  if (w && out) st.reset();
  return w;
}

// The caller's output buffer shares memory with its input (in place, or partly): its result then
// goes through a copy of ours, as a backend may not encrypt in place.
bool overlaps(ByteView in, const CK_BYTE* out, CK_ULONG out_len) {
  const auto a = reinterpret_cast<std::uintptr_t>(in.data()), b = reinterpret_cast<std::uintptr_t>(out);
  return !in.empty() && out_len != 0 && a < b + out_len && b < a + in.size();
}

R<void> need_out_len(const CK_ULONG_PTR out_len) {
  if (!out_len) return err(Errc::arguments_bad, "the output length pointer is NULL");
  return {};
}

Unexpected<Error> single_part_only(const MechanismEntry* mech) {
  return err(Errc::not_supported, std::string(mech->name) + " is single-part only: no Update/Final");
}

Unexpected<Error> context_login_missing() {
  return err(Errc::user_not_logged_in, "the key needs a context-specific login (CKA_ALWAYS_AUTHENTICATE)");
}

Unexpected<Error> single_after_update() {
  return err(Errc::operation_active, "a multi-part operation is in progress; the single-part call ends it");
}

// After a single-part call that kept the operation running (a length query, a too-small buffer):
// only that call may finish it.
R<void> not_after_single(const OpState& o) {
  if (o.single) return err(Errc::operation_active, "a single-part call is in progress; this call ends it");
  return {};
}

}  // namespace

std::optional<OpState>& Session::state(OpKind k) {
  switch (k) {
    case OpKind::sign: return sign_;
    case OpKind::verify: return verify_;
    case OpKind::encrypt: return encrypt_;
    case OpKind::decrypt: return decrypt_;
  }
  return sign_;
}

R<void> Session::begin(OpKind kind, const CK_MECHANISM* pm, CK_OBJECT_HANDLE kh) {
  std::lock_guard ol(mu_);
  auto& st = state(kind);
  if (st) return err(Errc::operation_active, std::string(info(kind).name) + " operation already active");
  CDC_ASSIGN(auto m, mechanism_for(pm, info(kind).flag));
  return token_.with_key(*this, kh, use_of(kind), m, [&](const KeyRef& key) -> R<void> {
    CDC_ASSIGN(auto op, key.home->begin(kind, m, key.obj));
    OpState o;
    o.kind = kind;
    o.mech = m.entry;
    o.op = std::move(op);
    o.context_login_needed = key.always_authenticate && (kind == OpKind::sign || kind == OpKind::decrypt);
    st = std::move(o);
    return {};
  });
}

R<void> Session::single(OpKind kind, Input in, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  std::lock_guard ol(mu_);
  auto& st = state(kind);
  return step(st, info(kind).name, [&]() -> R<void> {
    if (st->multipart) return single_after_update();
    st->single = true;
    CDC_TRY(in);
    CDC_TRY(need_out_len(out_len));
    if (st->context_login_needed) return context_login_missing();
    if (out && !st->pending && !overlaps(*in, out, *out_len)) {
      CDC_ASSIGN(auto n, st->op->one_shot_into(*in, std::span(out, *out_len)));
      if (n) {
        *out_len = static_cast<CK_ULONG>(*n);
        st.reset();
        return {};
      }
    }
    CDC_TRY(compute_once(*st, [&] { return st->op->one_shot(*in); }));
    return deliver_final(st, out, out_len);
  });
}

R<void> Session::update(OpKind kind, Input in, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  std::lock_guard ol(mu_);
  auto& st = state(kind);
  const bool has_output = kind == OpKind::encrypt || kind == OpKind::decrypt;
  return step(st, info(kind).name, [&]() -> R<void> {
    CDC_TRY(not_after_single(*st));
    CDC_TRY(in);
    if (has_output) CDC_TRY(need_out_len(out_len));
    if (!st->mech->multipart) return single_part_only(st->mech);
    if (st->context_login_needed) return context_login_missing();
    st->multipart = true;
    CDC_TRY(compute_once(*st, [&] { return st->op->update(*in); }));
    if (!has_output) {
      st->pending.reset();
      return {};
    }
    auto w = write_output(*st->pending, out, out_len);
    if (w && out) st->pending.reset();
    return w;
  });
}

R<void> Session::final(OpKind kind, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  std::lock_guard ol(mu_);
  auto& st = state(kind);
  return step(st, info(kind).name, [&]() -> R<void> {
    CDC_TRY(not_after_single(*st));
    CDC_TRY(need_out_len(out_len));
    if (st->context_login_needed) return context_login_missing();
    if (!st->mech->multipart) return single_part_only(st->mech);
    CDC_TRY(compute_once(*st, [&] { return st->op->finish(); }));
    return deliver_final(st, out, out_len);
  });
}

// C_Verify and C_VerifyFinal end the operation whatever their result.
R<void> Session::verify_single(Input data, Input sig) {
  std::lock_guard ol(mu_);
  auto& st = verify_;
  if (!st) return err(Errc::operation_not_initialized, "verify operation not initialised");
  auto op = std::move(st->op);
  const bool multipart = st->multipart;
  st.reset();
  if (multipart) return single_after_update();
  CDC_TRY(data);
  CDC_TRY(sig);
  return op->verify_one_shot(*data, *sig);
}

R<void> Session::verify_final(Input sig) {
  std::lock_guard ol(mu_);
  auto& st = verify_;
  if (!st) return err(Errc::operation_not_initialized, "verify operation not initialised");
  auto op = std::move(st->op);
  const MechanismEntry* mech = st->mech;
  st.reset();
  if (!mech->multipart) return single_part_only(mech);
  CDC_TRY(sig);
  return op->verify(*sig);
}

// ---------------------------------------------------------------- digest

R<void> Session::digest_begin(const CK_MECHANISM* pm) {
  std::lock_guard ol(mu_);
  if (digest_) return err(Errc::operation_active, "digest operation already active");
  CDC_ASSIGN(auto m, mechanism_for(pm, CKF_DIGEST));
  CDC_TRY(token_.check_present());
  CDC_ASSIGN(auto op, token_.backend().begin_digest(m));
  OpState o;
  o.mech = m.entry;
  o.op = std::move(op);
  digest_ = std::move(o);
  return {};
}

R<void> Session::digest_single(Input in, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  std::lock_guard ol(mu_);
  auto& st = digest_;
  return step(st, "digest", [&]() -> R<void> {
    if (st->multipart) return single_after_update();
    st->single = true;
    CDC_TRY(in);
    CDC_TRY(need_out_len(out_len));
    CDC_TRY(compute_once(*st, [&] { return st->op->one_shot(*in); }));
    return deliver_final(st, out, out_len);
  });
}

R<void> Session::digest_update(Input in) {
  std::lock_guard ol(mu_);
  auto& st = digest_;
  return step(st, "digest", [&]() -> R<void> {
    CDC_TRY(not_after_single(*st));
    CDC_TRY(in);
    st->multipart = true;
    CDC_TRY(st->op->update(*in));
    return {};
  });
}

R<void> Session::digest_key(CK_OBJECT_HANDLE kh) {
  std::lock_guard ol(mu_);
  auto& st = digest_;
  return step(st, "digest", [&]() -> R<void> {
    CDC_TRY(not_after_single(*st));
    CDC_TRY(token_.digest_key(*this, kh, *st->op));
    st->multipart = true;
    return {};
  });
}

R<void> Session::digest_final(CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  std::lock_guard ol(mu_);
  auto& st = digest_;
  return step(st, "digest", [&]() -> R<void> {
    CDC_TRY(not_after_single(*st));
    CDC_TRY(need_out_len(out_len));
    CDC_TRY(compute_once(*st, [&] { return st->op->finish(); }));
    return deliver_final(st, out, out_len);
  });
}

}  // namespace cdcp11::core
