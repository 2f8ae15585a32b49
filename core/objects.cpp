// Object handles, visibility, the find index and the object functions of Library.
#include <algorithm>
#include <cstring>

#include "cdcp11/cdcp11.h"
#include "common/log.h"
#include "core/attribute_policy.h"
#include "core/library.h"

namespace cdcp11::core {

namespace {
constexpr CK_ATTRIBUTE_TYPE kIndexed[] = {CKA_CLASS, CKA_LABEL, CKA_ID, CKA_KEY_TYPE};
}

void ObjectIndex::add(CK_OBJECT_HANDLE h, const AttrMap& a) {
  for (auto t : kIndexed)
    if (auto* v = a.find(t)) idx_[{t, *v}].insert(h);
}

void ObjectIndex::remove(CK_OBJECT_HANDLE h, const AttrMap& a) {
  for (auto t : kIndexed)
    if (auto* v = a.find(t)) {
      auto it = idx_.find({t, *v});
      if (it == idx_.end()) continue;
      it->second.erase(h);
      if (it->second.empty()) idx_.erase(it);
    }
}

std::optional<std::vector<CK_OBJECT_HANDLE>> ObjectIndex::candidates(const AttrMap& tmpl) const {
  const std::set<CK_OBJECT_HANDLE>* best = nullptr;
  static const std::set<CK_OBJECT_HANDLE> kEmpty;
  bool any = false;
  for (auto t : kIndexed) {
    auto* v = tmpl.find(t);
    if (!v) continue;
    any = true;
    auto it = idx_.find({t, *v});
    const auto* set = it == idx_.end() ? &kEmpty : &it->second;
    if (!best || set->size() < best->size()) best = set;
  }
  if (!any) return std::nullopt;
  return std::vector<CK_OBJECT_HANDLE>(best->begin(), best->end());
}

CK_OBJECT_HANDLE Library::add_object(Slot& slot, StoredObject obj, bool token, CK_SESSION_HANDLE owner) {
  CK_OBJECT_HANDLE h = next_object_++;
  slot.index.add(h, obj.attrs);
  slot.by_uid[obj.uid] = h;
  slot.objects[h] = ObjectEntry{std::move(obj), token, owner};
  return h;
}

void Library::remove_object(Slot& slot, CK_OBJECT_HANDLE h) {
  auto it = slot.objects.find(h);
  if (it == slot.objects.end()) return;
  slot.index.remove(h, it->second.obj.attrs);
  slot.by_uid.erase(it->second.obj.uid);
  slot.objects.erase(it);
}

R<void> Library::sync(Slot& slot) {
  CDC_ASSIGN(auto ch, slot.backend->refresh());
  if (ch.full_reload) {
    std::vector<CK_OBJECT_HANDLE> drop;
    for (auto& [h, e] : slot.objects)
      if (e.token) drop.push_back(h);
    for (auto h : drop) remove_object(slot, h);
  }
  for (auto& uid : ch.removed)
    if (auto it = slot.by_uid.find(uid); it != slot.by_uid.end()) remove_object(slot, it->second);
  for (auto& o : ch.upserted) {
    auto it = slot.by_uid.find(o.uid);
    if (it != slot.by_uid.end()) {
      // Same object changed elsewhere: keep its handle.
      auto& e = slot.objects[it->second];
      slot.index.remove(it->second, e.obj.attrs);
      e.obj = std::move(o);
      slot.index.add(it->second, e.obj.attrs);
    } else {
      // Private objects are cached too; visible_object() and find hide them until login.
      add_object(slot, std::move(o), true, 0);
    }
  }
  return {};
}

R<ObjectEntry*> Library::visible_object(Slot& slot, const Session& s, CK_OBJECT_HANDLE h, Errc invalid) {
  auto it = slot.objects.find(h);
  if (it == slot.objects.end())
    return err(invalid, "handle " + std::to_string(h) + " is not an object of this token");
  auto& e = it->second;
  if (e.obj.attrs.bool_or(CKA_PRIVATE, false) && slot.login != LoginState::user)
    return err(invalid, "handle " + std::to_string(h) + " is a private object and the user is not logged in");
  (void)s;
  return &e;
}

R<void> Library::check_can_create(const Slot& slot, const Session& s, const AttrMap& attrs, const AttrMap* given) {
  auto cls = attrs.ulong(CKA_CLASS).value_or(CKO_DATA);
  auto kt = attrs.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  CDC_TRY(check_so_only(cls, kt, given ? *given : attrs, slot.login == LoginState::so));
  CDC_TRY(check_consistent(attrs));
  const bool token = attrs.bool_or(CKA_TOKEN, false);
  if (token && !(s.flags & CKF_RW_SESSION))
    return err(Errc::session_read_only, "a token object cannot be created in a read-only session");
  if (attrs.bool_or(CKA_PRIVATE, false) && slot.login != LoginState::user)
    return err(Errc::user_not_logged_in, "a private object needs the user to be logged in");
  return {};
}

R<CK_OBJECT_HANDLE> Library::create_object(CK_SESSION_HANDLE h, const AttrMap& tmpl) {
  CDC_ASSIGN(auto s, session(h));
  CDC_ASSIGN(auto cls, object_class(tmpl));
  const bool is_key = cls == CKO_PUBLIC_KEY || cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY;
  CK_KEY_TYPE kt = key_type_or(tmpl, CK_UNAVAILABLE_INFORMATION);
  if (is_key && !tmpl.has(CKA_KEY_TYPE)) return err(Errc::template_incomplete, "CKA_KEY_TYPE is required");
  CDC_TRY(check_template(CreateOp::create, cls, kt, tmpl));
  AttrMap a = tmpl;
  apply_defaults(cls, kt, a);
  if (cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY) {
    a.set_bool(CKA_ALWAYS_SENSITIVE, false);
    a.set_bool(CKA_NEVER_EXTRACTABLE, false);
  }
  Slot& slot = *s->slot;
  CK_OBJECT_HANDLE oh;
  {
    std::lock_guard sl(slot.mu);
    CDC_TRY(check_can_create(slot, *s, a));
    const auto* modulus = a.find(CKA_MODULUS);
    CDC_TRY(precheck_mirror(slot, a, modulus && kt == CKK_RSA ? modulus->size() * 8 : 0));
    CDC_TRY(sync(slot));
    CDC_ASSIGN(auto stored, slot.backend->create_object(a));
    const bool token = a.bool_or(CKA_TOKEN, false);
    oh = add_object(slot, std::move(stored), token, token ? 0 : h);
  }
  CDC_TRY(after_new_key(*s, oh));
  return oh;
}

R<CK_OBJECT_HANDLE> Library::copy_object(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, const AttrMap& tmpl) {
  CDC_ASSIGN(auto s, session(h));
  // A session key copied into the token (Java's keytool does this for EC keys) is a new token key.
  CDC_ASSIGN(auto nh, copy_object_locked(*s, oh, tmpl));
  CDC_TRY(after_new_key(*s, nh));
  return nh;
}

R<CK_OBJECT_HANDLE> Library::copy_object_locked(Session& session, CK_OBJECT_HANDLE oh, const AttrMap& tmpl) {
  Session* s = &session;
  const CK_SESSION_HANDLE h = s->handle;
  Slot& slot = *s->slot;
  std::lock_guard sl(slot.mu);
  CDC_TRY(sync(slot));
  CDC_ASSIGN(ObjectEntry * src, visible_object(slot, *s, oh, Errc::object_handle_invalid));
  const AttrMap& cur = src->obj.attrs;
  if (!cur.bool_or(CKA_COPYABLE, true))
    return err(Errc::action_prohibited, "the object is not copyable (CKA_COPYABLE is false)");
  auto cls = cur.ulong(CKA_CLASS).value_or(CKO_DATA);
  CDC_TRY(check_template(CreateOp::copy, cls, key_type_or(cur, CK_UNAVAILABLE_INFORMATION), tmpl));
  for (auto& [t, v] : tmpl) CDC_TRY(check_modify(cur, t, v, slot.login == LoginState::so, true));
  AttrMap a = cur;
  a.merge(tmpl);
  a.erase(CKA_UNIQUE_ID);
  CDC_TRY(check_can_create(slot, *s, a, &tmpl));
  if (a.has(CKA_CDC_MIRROR_STATE)) {
    // A copy is a new key: it has not been mirrored.
    a.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_NONE);
    a.set_string(CKA_CDC_AZURE_KEY_ID, "");
    a.set_string(CKA_CDC_MIRROR_ERROR, "");
  }
  CDC_TRY(precheck_mirror(slot, a, 0));
  CDC_ASSIGN(auto stored, slot.backend->copy_object(src->obj.uid, a));
  const bool token = a.bool_or(CKA_TOKEN, false);
  return add_object(slot, std::move(stored), token, token ? 0 : h);
}

R<void> Library::destroy_object(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh) {
  CDC_ASSIGN(auto s, session(h));
  Slot& slot = *s->slot;
  std::string azure_kid, uid;
  {
  std::lock_guard sl(slot.mu);
  CDC_TRY(sync(slot));
  CDC_ASSIGN(ObjectEntry * e, visible_object(slot, *s, oh, Errc::object_handle_invalid));
  if (e->token && !(s->flags & CKF_RW_SESSION))
    return err(Errc::session_read_only, "a token object cannot be destroyed in a read-only session");
  if (!e->obj.attrs.bool_or(CKA_DESTROYABLE, true))
    return err(Errc::action_prohibited, "the object is not destroyable (CKA_DESTROYABLE is false)");
  // The key's Azure copy, not the public half of an Azure-resident pair (same kid).
  const auto cls = e->obj.attrs.ulong(CKA_CLASS).value_or(CKO_DATA);
  const bool mirrorable = e->token && (cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY);
  azure_kid = mirrorable ? e->obj.attrs.string_or(CKA_CDC_AZURE_KEY_ID, "") : "";
  if (mirrorable) uid = e->obj.uid;
  CDC_TRY(slot.backend->destroy_object(e->obj.uid));
  remove_object(slot, oh);
  }
  // The remote side is handled after the slot lock is released (network calls).
  if (!uid.empty() && slot.mirror) slot.mirror->abandon(uid);
  apply_destroy_policy(slot, azure_kid);
  return {};
}

R<CK_ULONG> Library::object_size(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh) {
  CDC_ASSIGN(auto s, session(h));
  Slot& slot = *s->slot;
  std::lock_guard sl(slot.mu);
  CDC_TRY(sync(slot));
  CDC_ASSIGN(ObjectEntry * e, visible_object(slot, *s, oh, Errc::object_handle_invalid));
  CDC_ASSIGN(auto n, slot.backend->object_size(e->obj.uid));
  return static_cast<CK_ULONG>(n);
}

R<void> Library::get_attributes(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE* t, CK_ULONG n) {
  CDC_ASSIGN(auto s, session(h));
  Slot& slot = *s->slot;
  std::lock_guard sl(slot.mu);
  CDC_TRY(sync(slot));
  CDC_ASSIGN(ObjectEntry * e, visible_object(slot, *s, oh, Errc::object_handle_invalid));
  const AttrMap& a = e->obj.attrs;
  auto cls = a.ulong(CKA_CLASS).value_or(CKO_DATA);
  // Per the spec every attribute is processed; the call reports one of the errors met.
  std::optional<Error> first;
  for (CK_ULONG i = 0; i < n; ++i) {
    auto note = [&](Error e2) {
      t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
      if (!first || (first->code == Errc::buffer_too_small && e2.code != Errc::buffer_too_small)) first = std::move(e2);
    };
    if (auto ok = check_readable(a, t[i].type); !ok) {
      note(ok.error());
      continue;
    }
    SecureBytes secret;
    ByteView value;
    if (is_secret_attribute(cls, t[i].type)) {
      auto v = slot.backend->secret_attribute(e->obj.uid, t[i].type);
      if (!v) {
        note(v.error());
        continue;
      }
      secret = std::move(*v);
      value = secret;
    } else if (auto* v = a.find(t[i].type)) {
      value = *v;
    } else {
      note(Error{Errc::attribute_type_invalid, std::string(attribute_name(t[i].type)) + " is not set on this object"});
      continue;
    }
    if (!t[i].pValue) {
      t[i].ulValueLen = value.size();
    } else if (t[i].ulValueLen < value.size()) {
      note(Error{Errc::buffer_too_small, std::string(attribute_name(t[i].type)) + " needs " +
                                             std::to_string(value.size()) + " bytes"});
    } else {
      if (!value.empty()) std::memcpy(t[i].pValue, value.data(), value.size());
      t[i].ulValueLen = value.size();
    }
  }
  if (first) return fail(std::move(*first));
  return {};
}

R<void> Library::set_attributes(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, const AttrMap& tmpl) {
  CDC_ASSIGN(auto s, session(h));
  Slot& slot = *s->slot;
  std::lock_guard sl(slot.mu);
  CDC_TRY(sync(slot));
  CDC_ASSIGN(ObjectEntry * e, visible_object(slot, *s, oh, Errc::object_handle_invalid));
  if (e->token && !(s->flags & CKF_RW_SESSION))
    return err(Errc::session_read_only, "a token object cannot be changed in a read-only session");
  for (auto& [t, v] : tmpl) CDC_TRY(check_modify(e->obj.attrs, t, v, slot.login == LoginState::so, false));
  AttrMap a = e->obj.attrs;
  a.merge(tmpl);
  CDC_TRY(slot.backend->update_object(e->obj.uid, a));
  slot.index.remove(oh, e->obj.attrs);
  e->obj.attrs = std::move(a);
  slot.index.add(oh, e->obj.attrs);
  return {};
}

R<void> Library::find_init(CK_SESSION_HANDLE h, const AttrMap& tmpl) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  if (s->find) return err(Errc::operation_active, "a find operation is already active");
  Slot& slot = *s->slot;
  std::lock_guard sl(slot.mu);
  CDC_TRY(sync(slot));
  FindState f;
  auto consider = [&](CK_OBJECT_HANDLE oh, const ObjectEntry& e) {
    if (e.obj.attrs.bool_or(CKA_PRIVATE, false) && slot.login != LoginState::user) return;
    if (!e.obj.attrs.matches(tmpl)) return;
    f.results.push_back(oh);
  };
  if (auto cand = slot.index.candidates(tmpl)) {
    for (auto oh : *cand)
      if (auto it = slot.objects.find(oh); it != slot.objects.end()) consider(oh, it->second);
  } else {
    for (auto& [oh, e] : slot.objects) consider(oh, e);
    std::sort(f.results.begin(), f.results.end());
  }
  s->find = std::move(f);
  return {};
}

R<CK_ULONG> Library::find(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE* out, CK_ULONG max) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  if (!s->find) return err(Errc::operation_not_initialized, "C_FindObjectsInit was not called");
  auto& f = *s->find;
  CK_ULONG n = 0;
  while (n < max && f.pos < f.results.size()) out[n++] = f.results[f.pos++];
  return n;
}

R<void> Library::find_final(CK_SESSION_HANDLE h) {
  CDC_ASSIGN(auto s, session(h));
  std::lock_guard ol(s->mu);
  if (!s->find) return err(Errc::operation_not_initialized, "C_FindObjectsInit was not called");
  s->find.reset();
  return {};
}

}  // namespace cdcp11::core
