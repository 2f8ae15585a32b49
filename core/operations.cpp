// Cryptographic operations of Library: init checks from the mechanism and attribute tables,
// single- and multi-part calls with the PKCS#11 output-buffer and length-query rules.
#include <cstring>

#include "common/log.h"
#include "core/attribute_policy.h"
#include "core/cloud/key_attrs.h"
#include "core/library.h"

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

std::optional<OpState>& slot_for(Session& s, OpKind k) {
  switch (k) {
    case OpKind::sign: return s.sign;
    case OpKind::verify: return s.verify;
    case OpKind::encrypt: return s.encrypt;
    case OpKind::decrypt: return s.decrypt;
  }
  return s.sign;
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

R<Mechanism> Library::mechanism(const CK_MECHANISM* m, CK_FLAGS needed) {
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

R<void> Library::check_key_for(const ObjectEntry& key, const Mechanism& m, CK_ATTRIBUTE_TYPE usage,
                               Errc wrong_type) {
  const AttrMap& a = key.obj.attrs;
  auto cls = a.ulong(CKA_CLASS).value_or(CKO_DATA);
  auto kt = a.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  if (!m.entry->allows_key_type(kt))
    return err(wrong_type, std::string(m.entry->name) + " cannot use a key of type " + std::to_string(kt));
  if (!a.bool_or(usage, false))
    return err(Errc::key_function_not_permitted,
               std::string("the key does not allow this use (") + attribute_name(usage) + " is false)");
  if (auto* am = a.find(CKA_ALLOWED_MECHANISMS); am && !am->empty()) {
    bool ok = false;
    for (std::size_t i = 0; i + sizeof(CK_MECHANISM_TYPE) <= am->size(); i += sizeof(CK_MECHANISM_TYPE)) {
      CK_MECHANISM_TYPE t;
      std::memcpy(&t, am->data() + i, sizeof t);
      ok |= t == m.entry->type;
    }
    if (!ok)
      return err(Errc::mechanism_invalid, std::string(m.entry->name) + " is not in the key's CKA_ALLOWED_MECHANISMS");
  }
  std::size_t size = 0;
  if (kt == CKK_RSA) {
    if (auto* n = a.find(CKA_MODULUS)) size = n->size() * 8;
  } else if (cls == CKO_SECRET_KEY && kt == CKK_AES) {
    size = a.ulong(CKA_VALUE_LEN).value_or(0);
  }
  if (size && m.entry->max_key && (size < m.entry->min_key || size > m.entry->max_key))
    return err(Errc::key_size_range, std::string(m.entry->name) + " does not take a key of size " + std::to_string(size));
  return {};
}

R<void> Library::op_init(CK_SESSION_HANDLE h, OpKind kind, const CK_MECHANISM* pm, CK_OBJECT_HANDLE kh) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = slot_for(*s, kind);
  if (st) return err(Errc::operation_active, std::string(info(kind).name) + " operation already active");
  KindInfo ki = info(kind);
  CDC_ASSIGN(auto m, mechanism(pm, ki.flag));
  Slot& slot = *s->slot;
  std::unique_lock sl(slot.mu);
  CDC_TRY(sync(slot));
  CDC_ASSIGN(ObjectEntry * key, visible_object(slot, *s, kh, Errc::key_handle_invalid));
  auto cls = key->obj.attrs.ulong(CKA_CLASS).value_or(CKO_DATA);
  if (cls != CKO_SECRET_KEY && cls != CKO_PUBLIC_KEY && cls != CKO_PRIVATE_KEY)
    return err(Errc::key_handle_invalid, "handle " + std::to_string(kh) + " is not a key");
  if (cls != CKO_SECRET_KEY && cls != ki.asym_class)
    return err(Errc::key_type_inconsistent, std::string("a ") + (cls == CKO_PUBLIC_KEY ? "public" : "private") +
                                                " key cannot " + ki.name);
  CDC_TRY(check_key_for(*key, m, ki.usage, Errc::key_type_inconsistent));
  StoredObject key_copy = key->obj;
  const bool always_auth = cls == CKO_PRIVATE_KEY && key->obj.attrs.bool_or(CKA_ALWAYS_AUTHENTICATE, false);
  sl.unlock();
  std::unique_ptr<Operation> op;
  if (cloud::azure_resident(key_copy.attrs)) {
    CDC_ASSIGN(op, begin_vault_op(slot, kind, m, key_copy));
  } else {
    CDC_ASSIGN(op, slot.backend->begin(kind, m, key_copy));
  }
  OpState o;
  o.kind = kind;
  o.mech = m.entry;
  o.op = std::move(op);
  o.context_login_needed = always_auth && (kind == OpKind::sign || kind == OpKind::decrypt);
  st = std::move(o);
  return {};
}

R<void> Library::op_single(CK_SESSION_HANDLE h, OpKind kind, Input in, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = slot_for(*s, kind);
  return step(st, info(kind).name, [&]() -> R<void> {
    if (st->multipart) return single_after_update();
    st->single = true;
    CDC_TRY(in);
    CDC_TRY(need_out_len(out_len));
    if (st->context_login_needed) return context_login_missing();
    CDC_TRY(compute_once(*st, [&]() -> R<SecureBytes> {
      CDC_ASSIGN(auto a, st->op->update(*in));
      CDC_ASSIGN(auto b, st->op->finish());
      a.insert(a.end(), b.begin(), b.end());
      return a;
    }));
    return deliver_final(st, out, out_len);
  });
}

R<void> Library::op_update(CK_SESSION_HANDLE h, OpKind kind, Input in, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = slot_for(*s, kind);
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

R<void> Library::op_final(CK_SESSION_HANDLE h, OpKind kind, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = slot_for(*s, kind);
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
R<void> Library::verify_single(CK_SESSION_HANDLE h, Input data, Input sig) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = s->verify;
  if (!st) return err(Errc::operation_not_initialized, "verify operation not initialised");
  auto op = std::move(st->op);
  const bool multipart = st->multipart;
  st.reset();
  if (multipart) return single_after_update();
  CDC_TRY(data);
  CDC_TRY(sig);
  CDC_TRY(op->update(*data));
  return op->verify(*sig);
}

R<void> Library::verify_update(CK_SESSION_HANDLE h, Input data) {
  return op_update(h, OpKind::verify, std::move(data), nullptr, nullptr);
}

R<void> Library::verify_final(CK_SESSION_HANDLE h, Input sig) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = s->verify;
  if (!st) return err(Errc::operation_not_initialized, "verify operation not initialised");
  auto op = std::move(st->op);
  const MechanismEntry* mech = st->mech;
  st.reset();
  if (!mech->multipart) return single_part_only(mech);
  CDC_TRY(sig);
  return op->verify(*sig);
}

// ---------------------------------------------------------------- digest

R<void> Library::digest_init(CK_SESSION_HANDLE h, const CK_MECHANISM* pm) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  if (s->digest) return err(Errc::operation_active, "digest operation already active");
  CDC_ASSIGN(auto m, mechanism(pm, CKF_DIGEST));
  CDC_ASSIGN(auto op, s->slot->backend->begin_digest(m));
  OpState o;
  o.mech = m.entry;
  o.op = std::move(op);
  s->digest = std::move(o);
  return {};
}

R<void> Library::digest_single(CK_SESSION_HANDLE h, Input in, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = s->digest;
  return step(st, "digest", [&]() -> R<void> {
    if (st->multipart) return single_after_update();
    st->single = true;
    CDC_TRY(in);
    CDC_TRY(need_out_len(out_len));
    CDC_TRY(compute_once(*st, [&]() -> R<SecureBytes> {
      CDC_TRY(st->op->update(*in));
      return st->op->finish();
    }));
    return deliver_final(st, out, out_len);
  });
}

R<void> Library::digest_update(CK_SESSION_HANDLE h, Input in) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = s->digest;
  return step(st, "digest", [&]() -> R<void> {
    CDC_TRY(not_after_single(*st));
    CDC_TRY(in);
    st->multipart = true;
    CDC_TRY(st->op->update(*in));
    return {};
  });
}

R<void> Library::digest_key(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE kh) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = s->digest;
  return step(st, "digest", [&]() -> R<void> {
    CDC_TRY(not_after_single(*st));
    Slot& slot = *s->slot;
    std::unique_lock sl(slot.mu);
    CDC_TRY(sync(slot));
    CDC_ASSIGN(ObjectEntry * key, visible_object(slot, *s, kh, Errc::key_handle_invalid));
    // Any secret key: the spec sets no sensitivity rule here, and a key's digest reveals no
    // more than its use would.
    if (key->obj.attrs.ulong(CKA_CLASS).value_or(0) != CKO_SECRET_KEY)
      return err(Errc::key_indigestible, "C_DigestKey digests secret keys only");
    if (cloud::azure_resident(key->obj.attrs))
      return err(Errc::key_indigestible, "the key's material is in Key Vault, not in the token");
    StoredObject copy = key->obj;
    sl.unlock();
    CDC_ASSIGN(auto value, slot.backend->key_value_for_digest(copy));
    st->multipart = true;
    CDC_TRY(st->op->update(value));
    return {};
  });
}

R<void> Library::digest_final(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = s->digest;
  return step(st, "digest", [&]() -> R<void> {
    CDC_TRY(not_after_single(*st));
    CDC_TRY(need_out_len(out_len));
    CDC_TRY(compute_once(*st, [&] { return st->op->finish(); }));
    return deliver_final(st, out, out_len);
  });
}

}  // namespace cdcp11::core
