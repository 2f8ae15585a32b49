// The object functions of a token: create, copy, destroy, attributes, search.
#include <cstring>

#include "cdcp11/cdcp11.h"
#include "core/attribute_policy.h"
#include "core/session/session.h"
#include "core/token/token.h"

namespace cdcp11::core {

R<void> Token::check_can_create(const Session& s, const AttrMap& attrs, const AttrMap* given) {
  std::lock_guard lk(mu_);
  return check_can_create_locked(s, attrs, given);
}

// The SO-only values of the caller's template (`given`; `attrs` itself when null, as every
// SO-only default is false), the consistency of the whole, the session's R/W state and the
// login the object needs.
R<void> Token::check_can_create_locked(const Session& s, const AttrMap& attrs, const AttrMap* given) {
  auto cls = attrs.ulong(CKA_CLASS).value_or(CKO_DATA);
  auto kt = attrs.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  CDC_TRY(check_so_only(cls, kt, given ? *given : attrs, login_ == LoginState::so));
  CDC_TRY(check_consistent(attrs));
  if (attrs.bool_or(CKA_TOKEN, false) && !s.read_write())
    return err(Errc::session_read_only, "a token object cannot be created in a read-only session");
  if (attrs.bool_or(CKA_PRIVATE, false) && login_ != LoginState::user)
    return err(Errc::user_not_logged_in, "a private object needs the user to be logged in");
  return {};
}

R<CK_OBJECT_HANDLE> Token::added(const Session& s, R<StoredObject> made) {
  if (!made) return fail(std::move(made).error());
  // Made without the lock held (an unwrap in the vault): a refresh may have cached it already.
  if (auto h = cache_.handle_of(made->uid)) {
    cache_.set_attrs(*h, std::move(made->attrs));
    return *h;
  }
  const bool token = made->attrs.bool_or(CKA_TOKEN, false);
  return add_object(std::move(*made), token, token ? 0 : s.handle());
}

R<void> Token::before_key_made(const AttrMap& attrs, std::size_t rsa_bits) {
  return observer_ ? observer_->before_key_made(attrs, rsa_bits) : R<void>{};
}

R<void> Token::key_made(Session& s, CK_OBJECT_HANDLE h) { return observer_ ? observer_->key_made(s, h) : R<void>{}; }

R<CK_OBJECT_HANDLE> Token::create_object(Session& s, const AttrMap& tmpl) {
  CDC_ASSIGN(auto cls, object_class(tmpl));
  const bool is_key = cls == CKO_PUBLIC_KEY || cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY;
  CK_KEY_TYPE kt = key_type_or(tmpl, CK_UNAVAILABLE_INFORMATION);
  if (is_key && !tmpl.has(CKA_KEY_TYPE)) return err(Errc::template_incomplete, "CKA_KEY_TYPE is required");
  CDC_TRY(check_template(CreateOp::create, cls, kt, tmpl));
  if (const auto* v = tmpl.find(CKA_VALUE); v && cls == CKO_SECRET_KEY && kt == CKK_AES && v->size() != 16 &&
                                            v->size() != 24 && v->size() != 32)
    return err(Errc::attribute_value_invalid,
               "an AES key must be 16, 24 or 32 bytes; CKA_VALUE has " + std::to_string(v->size()));
  AttrMap a = tmpl;
  new_object_defaults(cls, kt, a);
  if (cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY) {
    a.set_bool(CKA_ALWAYS_SENSITIVE, false);
    a.set_bool(CKA_NEVER_EXTRACTABLE, false);
  }
  CK_OBJECT_HANDLE oh;
  {
    std::lock_guard lk(mu_);
    CDC_TRY(check_can_create_locked(s, a, nullptr));
    const auto* modulus = a.find(CKA_MODULUS);
    CDC_TRY(before_key_made(a, modulus && kt == CKK_RSA ? modulus->size() * 8 : 0));
    // The new object needs no listing to be known (added() caches what the backend returns);
    // other processes' changes are taken in here only where that is cheap, not from an HSM.
    if (backend_->refresh_before_operations()) CDC_TRY(refresh());
    CDC_ASSIGN(oh, added(s, backend_->create_object(a)));
  }
  CDC_TRY(key_made(s, oh));
  return oh;
}

R<CK_OBJECT_HANDLE> Token::copy_object(Session& s, CK_OBJECT_HANDLE oh, const AttrMap& tmpl) {
  CK_OBJECT_HANDLE nh;
  {
    std::lock_guard lk(mu_);
    CDC_TRY(refresh_for(oh));
    CDC_ASSIGN(Object * src, visible(oh, Errc::object_handle_invalid));
    const AttrMap& cur = src->attrs();
    if (!cur.bool_or(CKA_COPYABLE, true))
      return err(Errc::action_prohibited, "the object is not copyable (CKA_COPYABLE is false)");
    CDC_TRY(check_template(CreateOp::copy, src->cls(), key_type_or(cur, CK_UNAVAILABLE_INFORMATION), tmpl));
    for (auto& [t, v] : tmpl) CDC_TRY(check_modify(cur, t, v, login_ == LoginState::so, true));
    AttrMap a = cur;
    a.merge(tmpl);
    a.erase(CKA_UNIQUE_ID);
    CDC_TRY(check_can_create_locked(s, a, &tmpl));
    if (a.has(CKA_CDC_MIRROR_STATE)) {
      // A copy is a new key: it has not been mirrored.
      a.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_NONE);
      a.set_string(CKA_CDC_AZURE_KEY_ID, "");
      a.set_string(CKA_CDC_MIRROR_ERROR, "");
    }
    CDC_TRY(before_key_made(a, 0));
    CDC_ASSIGN(nh, added(s, backend_->copy_object(src->obj.uid, a)));
  }
  // A session key copied into the token (Java's keytool does this for EC keys) is a new token key.
  CDC_TRY(key_made(s, nh));
  return nh;
}

R<void> Token::destroy_object(Session& s, CK_OBJECT_HANDLE oh) {
  std::string uid;
  AttrMap last;
  {
    std::lock_guard lk(mu_);
    CDC_TRY(refresh_for(oh));
    CDC_ASSIGN(Object * o, visible(oh, Errc::object_handle_invalid));
    if (o->token && !s.read_write())
      return err(Errc::session_read_only, "a token object cannot be destroyed in a read-only session");
    if (!o->attrs().bool_or(CKA_DESTROYABLE, true))
      return err(Errc::action_prohibited, "the object is not destroyable (CKA_DESTROYABLE is false)");
    if (o->token && (o->cls() == CKO_PRIVATE_KEY || o->cls() == CKO_SECRET_KEY)) {
      uid = o->obj.uid;
      last = o->attrs();
    }
    CDC_TRY(backend_->destroy_object(o->obj.uid));
    cache_.remove(oh);
  }
  // The remote side is handled without the lock (network calls).
  if (!uid.empty() && observer_) observer_->key_destroyed(uid, last);
  return {};
}

R<CK_ULONG> Token::object_size(const Session&, CK_OBJECT_HANDLE oh) {
  std::lock_guard lk(mu_);
  CDC_TRY(refresh_for(oh));
  CDC_ASSIGN(Object * o, visible(oh, Errc::object_handle_invalid));
  CDC_ASSIGN(auto n, backend_->object_size(o->obj.uid));
  return static_cast<CK_ULONG>(n);
}

R<void> Token::get_attributes(const Session&, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE* t, CK_ULONG n) {
  std::lock_guard lk(mu_);
  CDC_TRY(refresh_for(oh));
  CDC_ASSIGN(Object * o, visible(oh, Errc::object_handle_invalid));
  const AttrMap& a = o->attrs();
  const auto cls = o->cls();
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
      auto v = backend_->secret_attribute(o->obj.uid, t[i].type);
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

R<void> Token::set_attributes(const Session& s, CK_OBJECT_HANDLE oh, const AttrMap& tmpl) {
  std::lock_guard lk(mu_);
  CDC_TRY(refresh_for(oh));
  CDC_ASSIGN(Object * o, visible(oh, Errc::object_handle_invalid));
  if (o->token && !s.read_write())
    return err(Errc::session_read_only, "a token object cannot be changed in a read-only session");
  for (auto& [t, v] : tmpl) CDC_TRY(check_modify(o->attrs(), t, v, login_ == LoginState::so, false));
  AttrMap a = o->attrs();
  a.merge(tmpl);
  CDC_TRY(backend_->update_object(o->obj.uid, a));
  cache_.set_attrs(oh, std::move(a));
  return {};
}

R<std::vector<CK_OBJECT_HANDLE>> Token::find(const Session&, const AttrMap& tmpl) {
  std::lock_guard lk(mu_);
  CDC_TRY(refresh());
  std::vector<CK_OBJECT_HANDLE> found;
  for (auto oh : cache_.candidates(tmpl)) {
    const Object* o = cache_.get(oh);
    if (!o || (o->is_private() && login_ != LoginState::user) || !o->attrs().matches(tmpl)) continue;
    found.push_back(oh);
  }
  return found;
}

}  // namespace cdcp11::core
