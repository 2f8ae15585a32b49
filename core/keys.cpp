// Key generation, wrapping, unwrapping and derivation: template policy in core, the key
// material in the backend.
#include "cdcp11/cdcp11.h"
#include "common/log.h"
#include "core/attribute_policy.h"
#include "core/cloud/key_attrs.h"
#include "core/library.h"

namespace cdcp11::core {

namespace {

R<void> expect_class(const AttrMap& t, CK_OBJECT_CLASS want, const char* what) {
  if (auto c = t.ulong(CKA_CLASS); t.has(CKA_CLASS) && (!c || *c != want))
    return err(Errc::template_inconsistent, std::string(what) + ": CKA_CLASS does not match the operation");
  return {};
}

R<void> expect_key_type(const AttrMap& t, CK_KEY_TYPE want, const char* what) {
  if (auto k = t.ulong(CKA_KEY_TYPE); t.has(CKA_KEY_TYPE) && (!k || *k != want))
    return err(Errc::template_inconsistent, std::string(what) + ": CKA_KEY_TYPE does not match the mechanism");
  return {};
}

void mark_generated(AttrMap& a, CK_MECHANISM_TYPE mech, bool local) {
  a.set_bool(CKA_LOCAL, local);
  a.set_ulong(CKA_KEY_GEN_MECHANISM, local ? mech : CK_UNAVAILABLE_INFORMATION);
  auto cls = a.ulong(CKA_CLASS).value_or(0);
  if (cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY) {
    a.set_bool(CKA_ALWAYS_SENSITIVE, local && a.bool_or(CKA_SENSITIVE, true));
    a.set_bool(CKA_NEVER_EXTRACTABLE, local && !a.bool_or(CKA_EXTRACTABLE, false));
  }
}

}  // namespace

R<CK_OBJECT_HANDLE> Library::finish_new_key(Slot& slot, Session& s, R<StoredObject> made) {
  if (!made) return fail(std::move(made).error());
  const bool token = made->attrs.bool_or(CKA_TOKEN, false);
  return add_object(slot, std::move(*made), token, token ? 0 : s.handle);
}

R<CK_OBJECT_HANDLE> Library::generate_key(CK_SESSION_HANDLE h, const CK_MECHANISM* pm, const AttrMap& tmpl) {
  CDC_ASSIGN(auto s, session(h));
  CDC_ASSIGN(auto m, mechanism(pm, CKF_GENERATE));
  CK_KEY_TYPE kt = m.entry->family == MechFamily::aes_keygen ? CKK_AES : CKK_GENERIC_SECRET;
  if (m.entry->family == MechFamily::generic_keygen) {
    // HMAC-specific key types may be asked for with the generic generator.
    auto want = key_type_or(tmpl, CKK_GENERIC_SECRET);
    if (m.entry->allows_key_type(want) || want == CKK_SHA256_HMAC || want == CKK_SHA384_HMAC ||
        want == CKK_SHA512_HMAC || want == CKK_SHA_1_HMAC || want == CKK_SHA224_HMAC)
      kt = want;
  }
  CDC_TRY(expect_class(tmpl, CKO_SECRET_KEY, "C_GenerateKey"));
  CDC_TRY(expect_key_type(tmpl, kt, "C_GenerateKey"));
  CDC_TRY(check_template(CreateOp::generate, CKO_SECRET_KEY, kt, tmpl));
  AttrMap a = tmpl;
  a.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
  a.set_ulong(CKA_KEY_TYPE, kt);
  apply_defaults(CKO_SECRET_KEY, kt, a);
  mark_generated(a, m.entry->type, true);
  Slot& slot = *s->slot;
  CK_OBJECT_HANDLE kh;
  {
    std::lock_guard sl(slot.mu);
    CDC_TRY(check_can_create(slot, *s, a));
    CDC_TRY(precheck_mirror(slot, a, 0));
    CDC_ASSIGN(kh, finish_new_key(slot, *s, slot.backend->generate_key(m, a)));
  }
  CDC_TRY(after_new_key(*s, kh));
  return kh;
}

R<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> Library::generate_key_pair(CK_SESSION_HANDLE h,
                                                                            const CK_MECHANISM* pm,
                                                                            const AttrMap& pub_t,
                                                                            const AttrMap& priv_t) {
  CDC_ASSIGN(auto s, session(h));
  CDC_ASSIGN(auto m, mechanism(pm, CKF_GENERATE_KEY_PAIR));
  CK_KEY_TYPE kt = m.entry->key_types.front();
  CDC_TRY(expect_class(pub_t, CKO_PUBLIC_KEY, "public key template"));
  CDC_TRY(expect_class(priv_t, CKO_PRIVATE_KEY, "private key template"));
  CDC_TRY(expect_key_type(pub_t, kt, "public key template"));
  CDC_TRY(expect_key_type(priv_t, kt, "private key template"));
  CDC_TRY(check_template(CreateOp::generate, CKO_PUBLIC_KEY, kt, pub_t));
  CDC_TRY(check_template(CreateOp::generate, CKO_PRIVATE_KEY, kt, priv_t));
  if (priv_t.bool_or(CKA_CDC_CLOUD_NATIVE, false) && kt != CKK_RSA && kt != CKK_EC)
    return err(Errc::mechanism_invalid, "Key Vault generates RSA and EC key pairs only");
  AttrMap pub = pub_t, priv = priv_t;
  pub.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
  priv.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  pub.set_ulong(CKA_KEY_TYPE, kt);
  priv.set_ulong(CKA_KEY_TYPE, kt);
  apply_defaults(CKO_PUBLIC_KEY, kt, pub);
  apply_defaults(CKO_PRIVATE_KEY, kt, priv);
  mark_generated(pub, m.entry->type, true);
  mark_generated(priv, m.entry->type, true);
  if (priv.bool_or(CKA_CDC_CLOUD_NATIVE, false)) return generate_cloud_native(*s, m, std::move(pub), std::move(priv));
  Slot& slot = *s->slot;
  CK_OBJECT_HANDLE ph, vh;
  {
    std::lock_guard sl(slot.mu);
    CDC_TRY(check_can_create(slot, *s, pub));
    CDC_TRY(check_can_create(slot, *s, priv));
    CDC_TRY(precheck_mirror(slot, priv, kt == CKK_RSA ? pub.ulong(CKA_MODULUS_BITS).value_or(0) : 0));
    CDC_ASSIGN(auto pair, slot.backend->generate_key_pair(m, pub, priv));
    const bool pt = pair.first.attrs.bool_or(CKA_TOKEN, false);
    const bool vt = pair.second.attrs.bool_or(CKA_TOKEN, false);
    ph = add_object(slot, std::move(pair.first), pt, pt ? 0 : h);
    vh = add_object(slot, std::move(pair.second), vt, vt ? 0 : h);
  }
  CDC_TRY(after_new_key(*s, vh));
  return std::make_pair(ph, vh);
}

R<void> Library::wrap_key(CK_SESSION_HANDLE h, const CK_MECHANISM* pm, CK_OBJECT_HANDLE wh,
                          CK_OBJECT_HANDLE kh, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CDC_ASSIGN(auto s, session(h));
  CDC_ASSIGN(auto m, mechanism(pm, CKF_WRAP));
  Slot& slot = *s->slot;
  std::unique_lock sl(slot.mu);
  CDC_TRY(sync(slot));
  CDC_ASSIGN(ObjectEntry * wk, visible_object(slot, *s, wh, Errc::wrapping_key_handle_invalid));
  CDC_ASSIGN(ObjectEntry * key, visible_object(slot, *s, kh, Errc::key_handle_invalid));
  auto wcls = wk->obj.attrs.ulong(CKA_CLASS).value_or(0);
  if (wcls != CKO_SECRET_KEY && wcls != CKO_PUBLIC_KEY)
    return err(Errc::wrapping_key_handle_invalid, "the wrapping key must be a public or secret key");
  CDC_TRY(check_key_for(*wk, m, CKA_WRAP, Errc::wrapping_key_type_inconsistent));
  auto kcls = key->obj.attrs.ulong(CKA_CLASS).value_or(0);
  if (kcls != CKO_SECRET_KEY && kcls != CKO_PRIVATE_KEY)
    return err(Errc::key_not_wrappable, "only secret and private keys can be wrapped");
  if (!key->obj.attrs.bool_or(CKA_EXTRACTABLE, false))
    return err(Errc::key_unextractable, "the key is not extractable (CKA_EXTRACTABLE is false)");
  if (key->obj.attrs.bool_or(CKA_WRAP_WITH_TRUSTED, false) && !wk->obj.attrs.bool_or(CKA_TRUSTED, false))
    return err(Errc::key_not_wrappable, "the key may only be wrapped with a trusted key (CKA_WRAP_WITH_TRUSTED)");
  StoredObject wcopy = wk->obj, kcopy = key->obj;
  sl.unlock();
  CDC_ASSIGN(auto wrapped, slot.backend->wrap_key(m, wcopy, kcopy));
  return write_output(wrapped, out, out_len);
}

R<CK_OBJECT_HANDLE> Library::unwrap_key(CK_SESSION_HANDLE h, const CK_MECHANISM* pm, CK_OBJECT_HANDLE uh,
                                        ByteView wrapped, const AttrMap& tmpl) {
  CDC_ASSIGN(auto s, session(h));
  CDC_ASSIGN(auto m, mechanism(pm, CKF_UNWRAP));
  CDC_ASSIGN(auto cls, object_class(tmpl));
  if (cls != CKO_SECRET_KEY && cls != CKO_PRIVATE_KEY)
    return err(Errc::template_inconsistent, "C_UnwrapKey makes secret or private keys only");
  if (!tmpl.has(CKA_KEY_TYPE)) return err(Errc::template_incomplete, "CKA_KEY_TYPE is required to unwrap");
  CK_KEY_TYPE kt = key_type_or(tmpl, 0);
  CDC_TRY(check_template(CreateOp::unwrap, cls, kt, tmpl));
  AttrMap a = tmpl;
  apply_defaults(cls, kt, a);
  mark_generated(a, m.entry->type, false);
  Slot& slot = *s->slot;
  CK_OBJECT_HANDLE kh;
  {
    std::unique_lock sl(slot.mu);
    CDC_TRY(sync(slot));
    CDC_ASSIGN(ObjectEntry * uk, visible_object(slot, *s, uh, Errc::unwrapping_key_handle_invalid));
    auto ucls = uk->obj.attrs.ulong(CKA_CLASS).value_or(0);
    if (ucls != CKO_SECRET_KEY && ucls != CKO_PRIVATE_KEY)
      return err(Errc::unwrapping_key_handle_invalid, "the unwrapping key must be a private or secret key");
    CDC_TRY(check_key_for(*uk, m, CKA_UNWRAP, Errc::unwrapping_key_type_inconsistent));
    CDC_TRY(check_can_create(slot, *s, a));
    CDC_TRY(precheck_mirror(slot, a, 0));
    if (cloud::azure_resident(uk->obj.attrs)) {
      // The vault unwraps; the key it returns becomes a token secret key like any other.
      if (cls != CKO_SECRET_KEY)
        return err(Errc::template_inconsistent, "a key in Key Vault unwraps secret keys only");
      StoredObject ucopy = uk->obj;
      sl.unlock();
      CDC_ASSIGN(auto plain, vault_unwrap(slot, m, ucopy, wrapped));
      if (auto len = a.ulong(CKA_VALUE_LEN); len && *len != plain.size())
        return err(Errc::template_inconsistent, "CKA_VALUE_LEN says " + std::to_string(*len) +
                                                    " bytes but the unwrapped key has " + std::to_string(plain.size()));
      a.erase(CKA_VALUE_LEN);
      a.set(CKA_VALUE, Bytes(plain.begin(), plain.end()));
      sl.lock();
      auto made = slot.backend->create_object(a);
      a.wipe(CKA_VALUE);
      CDC_ASSIGN(kh, finish_new_key(slot, *s, std::move(made)));
    } else {
      CDC_ASSIGN(kh, finish_new_key(slot, *s, slot.backend->unwrap_key(m, uk->obj, wrapped, a)));
    }
  }
  CDC_TRY(after_new_key(*s, kh));
  return kh;
}

R<CK_OBJECT_HANDLE> Library::derive_key(CK_SESSION_HANDLE h, const CK_MECHANISM* pm, CK_OBJECT_HANDLE bh,
                                        const AttrMap& tmpl) {
  CDC_ASSIGN(auto s, session(h));
  CDC_ASSIGN(auto m, mechanism(pm, CKF_DERIVE));
  CDC_TRY(expect_class(tmpl, CKO_SECRET_KEY, "C_DeriveKey"));
  CK_KEY_TYPE kt = key_type_or(tmpl, CKK_GENERIC_SECRET);
  CDC_TRY(check_template(CreateOp::derive, CKO_SECRET_KEY, kt, tmpl));
  AttrMap a = tmpl;
  a.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
  a.set_ulong(CKA_KEY_TYPE, kt);
  apply_defaults(CKO_SECRET_KEY, kt, a);
  Slot& slot = *s->slot;
  std::lock_guard sl(slot.mu);
  CDC_TRY(sync(slot));
  CDC_ASSIGN(ObjectEntry * base, visible_object(slot, *s, bh, Errc::key_handle_invalid));
  if (base->obj.attrs.ulong(CKA_CLASS).value_or(0) != CKO_PRIVATE_KEY)
    return err(Errc::key_type_inconsistent, "ECDH derivation needs a private key");
  CDC_TRY(check_key_for(*base, m, CKA_DERIVE, Errc::key_type_inconsistent));
  // A derived key is never "always sensitive"/"never extractable" unless its base was.
  a.set_bool(CKA_LOCAL, false);
  a.set_ulong(CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION);
  a.set_bool(CKA_ALWAYS_SENSITIVE, a.bool_or(CKA_SENSITIVE, true) && base->obj.attrs.bool_or(CKA_ALWAYS_SENSITIVE, false));
  a.set_bool(CKA_NEVER_EXTRACTABLE, !a.bool_or(CKA_EXTRACTABLE, false) && base->obj.attrs.bool_or(CKA_NEVER_EXTRACTABLE, false));
  CDC_TRY(check_can_create(slot, *s, a));
  return finish_new_key(slot, *s, slot.backend->derive_key(m, base->obj, a));
}

}  // namespace cdcp11::core
