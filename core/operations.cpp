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

// Runs the step once and keeps its result, so a length query (or a too-small buffer) and the
// call that follows return the same bytes; a failed step ends the operation.
template <class Step>
R<void> compute_once(std::optional<OpState>& st, Step step) {
  if (st->pending) return {};
  R<SecureBytes> r = step();
  if (!r) {
    st.reset();
    return fail(std::move(r).error());
  }
  st->pending = std::move(*r);
  return {};
}

// Hands the computed result to the caller; the operation ends once the caller has it.
R<void> deliver_final(std::optional<OpState>& st, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  auto w = write_output(*st->pending, out, out_len);
  if (w && out) st.reset();
  return w;
}

Unexpected<Error> end_single_part_only(std::optional<OpState>& st) {
  const char* name = st->mech->name;
  st.reset();
  return err(Errc::not_supported, std::string(name) + " is single-part only: no Update/Final");
}

Unexpected<Error> end_for_context_login(std::optional<OpState>& st) {
  st.reset();  // an error ends the operation (PKCS#11 3.0 5.12/5.13)
  return err(Errc::user_not_logged_in, "the key needs a context-specific login (CKA_ALWAYS_AUTHENTICATE)");
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

R<void> Library::op_single(CK_SESSION_HANDLE h, OpKind kind, ByteView in, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = slot_for(*s, kind);
  if (!st) return err(Errc::operation_not_initialized, std::string(info(kind).name) + " operation not initialised");
  if (st->multipart) {
    st.reset();
    return err(Errc::operation_active, "a multi-part operation is in progress; the single-part call ends it");
  }
  if (st->context_login_needed) return end_for_context_login(st);
  CDC_TRY(compute_once(st, [&]() -> R<SecureBytes> {
    CDC_ASSIGN(auto a, st->op->update(in));
    CDC_ASSIGN(auto b, st->op->finish());
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }));
  return deliver_final(st, out, out_len);
}

R<void> Library::op_update(CK_SESSION_HANDLE h, OpKind kind, ByteView in, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = slot_for(*s, kind);
  if (!st) return err(Errc::operation_not_initialized, std::string(info(kind).name) + " operation not initialised");
  if (!st->mech->multipart) return end_single_part_only(st);
  if (st->context_login_needed) return end_for_context_login(st);
  st->multipart = true;
  CDC_TRY(compute_once(st, [&] { return st->op->update(in); }));
  if (kind == OpKind::sign || kind == OpKind::verify) {
    st->pending.reset();
    return {};
  }
  auto w = write_output(*st->pending, out, out_len);
  if (w && out) st->pending.reset();
  else if (!w && w.error().code != Errc::buffer_too_small) st.reset();
  return w;
}

R<void> Library::op_final(CK_SESSION_HANDLE h, OpKind kind, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = slot_for(*s, kind);
  if (!st) return err(Errc::operation_not_initialized, std::string(info(kind).name) + " operation not initialised");
  if (st->context_login_needed) return end_for_context_login(st);
  if (!st->mech->multipart) return end_single_part_only(st);
  CDC_TRY(compute_once(st, [&] { return st->op->finish(); }));
  return deliver_final(st, out, out_len);
}

R<void> Library::verify_single(CK_SESSION_HANDLE h, ByteView data, ByteView sig) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = s->verify;
  if (!st) return err(Errc::operation_not_initialized, "verify operation not initialised");
  auto op = std::move(st->op);
  const bool multipart = st->multipart;
  st.reset();  // C_Verify always ends the operation
  if (multipart) return err(Errc::operation_active, "a multi-part verify is in progress; C_Verify ends it");
  CDC_TRY(op->update(data));
  return op->verify(sig);
}

R<void> Library::verify_update(CK_SESSION_HANDLE h, ByteView data) {
  return op_update(h, OpKind::verify, data, nullptr, nullptr);
}

R<void> Library::verify_final(CK_SESSION_HANDLE h, ByteView sig) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = s->verify;
  if (!st) return err(Errc::operation_not_initialized, "verify operation not initialised");
  auto op = std::move(st->op);
  const bool multi = st->mech->multipart;
  const char* name = st->mech->name;
  st.reset();
  if (!multi) return err(Errc::not_supported, std::string(name) + " is single-part only: no Update/Final");
  return op->verify(sig);
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

R<void> Library::digest_single(CK_SESSION_HANDLE h, ByteView in, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = s->digest;
  if (!st) return err(Errc::operation_not_initialized, "digest operation not initialised");
  if (st->multipart) {
    st.reset();
    return err(Errc::operation_active, "a multi-part digest is in progress; C_Digest ends it");
  }
  CDC_TRY(compute_once(st, [&]() -> R<SecureBytes> {
    CDC_TRY(st->op->update(in));
    return st->op->finish();
  }));
  return deliver_final(st, out, out_len);
}

R<void> Library::digest_update(CK_SESSION_HANDLE h, ByteView in) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  if (!s->digest) return err(Errc::operation_not_initialized, "digest operation not initialised");
  s->digest->multipart = true;
  auto r = s->digest->op->update(in);
  if (!r) {
    s->digest.reset();
    return fail(std::move(r).error());
  }
  return {};
}

R<void> Library::digest_key(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE kh) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  if (!s->digest) return err(Errc::operation_not_initialized, "digest operation not initialised");
  Slot& slot = *s->slot;
  std::unique_lock sl(slot.mu);
  auto key = visible_object(slot, *s, kh, Errc::key_handle_invalid);
  if (!key) return fail(std::move(key).error());
  if ((*key)->obj.attrs.ulong(CKA_CLASS).value_or(0) != CKO_SECRET_KEY)
    return err(Errc::key_handle_invalid, "C_DigestKey takes a secret key");
  if ((*key)->obj.attrs.bool_or(CKA_SENSITIVE, true) || !(*key)->obj.attrs.bool_or(CKA_EXTRACTABLE, false))
    return err(Errc::key_unextractable, "C_DigestKey refuses a sensitive or unextractable key");
  StoredObject copy = (*key)->obj;
  sl.unlock();
  CDC_ASSIGN(auto value, slot.backend->key_value_for_digest(copy));
  s->digest->multipart = true;
  CDC_TRY(s->digest->op->update(value));
  return {};
}

R<void> Library::digest_final(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  auto& st = s->digest;
  if (!st) return err(Errc::operation_not_initialized, "digest operation not initialised");
  CDC_TRY(compute_once(st, [&] { return st->op->finish(); }));
  return deliver_final(st, out, out_len);
}

}  // namespace cdcp11::core
