// Keys of a token: generation, wrapping, unwrapping, derivation, and opening a key for an
// operation. Template policy here; the key material in the key's home (the backend or the vault).
#include <cstring>
#include <shared_mutex>

#include "cdcp11/cdcp11.h"
#include "core/attribute_policy.h"
#include "core/cloud/native_keys.h"
#include "core/session/session.h"
#include "core/token/token.h"

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

// What each use of a key needs: the attribute allowing it, the classes that may serve, and the
// errors for a handle of the wrong kind and for a key of the wrong type.
struct UseRule {
  CK_ATTRIBUTE_TYPE usage;
  CK_FLAGS flag;  // the mechanism flag the use needs
  CK_OBJECT_CLASS asym_class;  // the asymmetric class that serves (secret keys serve every use but derive)
  Errc invalid_handle, wrong_type;
  const char* verb;
};

UseRule rule_for(KeyUse u) {
  switch (u) {
    case KeyUse::sign: return {CKA_SIGN, CKF_SIGN, CKO_PRIVATE_KEY, Errc::key_handle_invalid, Errc::key_type_inconsistent, "sign"};
    case KeyUse::verify:
      return {CKA_VERIFY, CKF_VERIFY, CKO_PUBLIC_KEY, Errc::key_handle_invalid, Errc::key_type_inconsistent, "verify"};
    case KeyUse::encrypt:
      return {CKA_ENCRYPT, CKF_ENCRYPT, CKO_PUBLIC_KEY, Errc::key_handle_invalid, Errc::key_type_inconsistent, "encrypt"};
    case KeyUse::decrypt:
      return {CKA_DECRYPT, CKF_DECRYPT, CKO_PRIVATE_KEY, Errc::key_handle_invalid, Errc::key_type_inconsistent, "decrypt"};
    case KeyUse::wrap:
      return {CKA_WRAP, CKF_WRAP, CKO_PUBLIC_KEY, Errc::wrapping_key_handle_invalid, Errc::wrapping_key_type_inconsistent,
              "wrap"};
    case KeyUse::unwrap:
      return {CKA_UNWRAP, CKF_UNWRAP, CKO_PRIVATE_KEY, Errc::unwrapping_key_handle_invalid,
              Errc::unwrapping_key_type_inconsistent, "unwrap"};
    case KeyUse::derive:
      return {CKA_DERIVE, CKF_DERIVE, CKO_PRIVATE_KEY, Errc::key_handle_invalid, Errc::key_type_inconsistent, "derive"};
  }
  return {};
}

// The key's type, usage attribute, CKA_ALLOWED_MECHANISMS and size against the mechanism as the
// slot serves it.
R<void> check_key_for(const AttrMap& a, const Mechanism& m, const SlotMechanism& slot, CK_ATTRIBUTE_TYPE usage,
                      Errc wrong_type) {
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
  if (size && slot.max_key && (size < slot.min_key || size > slot.max_key))
    return err(Errc::key_size_range, std::string(m.entry->name) + " does not take a key of size " + std::to_string(size));
  return {};
}

}  // namespace

void Token::new_object_defaults(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, AttrMap& a) const {
  if ((cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY) && backend_ && backend_->capabilities().enforces_wrap_policy &&
      cfg_.azure && cfg_.mirror.trigger == MirrorTrigger::on_generate && !a.has(CKA_EXTRACTABLE))
    a.set_bool(CKA_EXTRACTABLE, true);
  apply_defaults(cls, kt, a);
}

R<SlotMechanism> Token::slot_mechanism(const Mechanism& m, CK_FLAGS flag) const {
  for (const auto& s : slot_list_)
    if (s.type == m.entry->type) {
      if (!(s.flags & flag)) break;
      return s;
    }
  return err(Errc::mechanism_invalid,
             std::string(m.entry->name) + " is not offered for this use by the token of group '" + cfg_.name + "'");
}

bool Token::opens_shared(CK_OBJECT_HANDLE h) const {
  const Object* o = cache_.get(h);
  if (!o || !o->for_ops || slot_list_.empty()) return false;
  // A token object may have changed elsewhere: unless the backend can tell that nothing did, the
  // exclusive path refreshes first.
  return !o->token || !backend_->refresh_before_operations() || backend_->unchanged_since_refresh();
}

bool Token::always_authenticate(const Object& key) {
  return key.cls() == CKO_PRIVATE_KEY && key.attrs().bool_or(CKA_ALWAYS_AUTHENTICATE, false);
}

R<OpenKey> Token::open_key(const Session&, CK_OBJECT_HANDLE h, KeyUse use, const Mechanism& m) {
  std::lock_guard lk(mu_);
  // Only token objects change elsewhere: a session object needs no refresh.
  if (const Object* o = cache_.get(h); (!o || o->token) && backend_->refresh_before_operations())
    CDC_TRY(refresh());
  if (slot_list_.empty()) slot_list_ = slot_mechanisms(backend_.get());  // empty: the HSM did not answer
  if (Object* o = cache_.get(h)) (void)cache_.for_ops(*o);
  CDC_ASSIGN(const Object* key, checked_key(h, use, m));
  return OpenKey{key->for_ops, key->home, always_authenticate(*key)};
}

R<const Object*> Token::checked_key(CK_OBJECT_HANDLE h, KeyUse use, const Mechanism& m) const {
  const UseRule r = rule_for(use);
  CDC_ASSIGN(const Object* key, visible(h, r.invalid_handle));
  const auto cls = key->cls();
  if (cls != CKO_SECRET_KEY && cls != CKO_PUBLIC_KEY && cls != CKO_PRIVATE_KEY)
    return err(r.invalid_handle, "handle " + std::to_string(h) + " is not a key");
  if (cls != r.asym_class && (cls != CKO_SECRET_KEY || use == KeyUse::derive)) {
    if (use == KeyUse::wrap) return err(r.invalid_handle, "the wrapping key must be a public or secret key");
    if (use == KeyUse::unwrap) return err(r.invalid_handle, "the unwrapping key must be a private or secret key");
    if (use == KeyUse::derive) return err(r.wrong_type, "ECDH derivation needs a private key");
    return err(r.wrong_type, std::string("a ") + (cls == CKO_PUBLIC_KEY ? "public" : "private") + " key cannot " +
                                 r.verb);
  }
  CDC_ASSIGN(const SlotMechanism slot, slot_mechanism(m, r.flag));
  CDC_TRY(check_key_for(key->attrs(), m, slot, r.usage, r.wrong_type));
  return key;
}

R<void> Token::digest_key(const Session&, CK_OBJECT_HANDLE h, Operation& digest) {
  StoredObject key;
  KeyHome* home;
  {
    std::lock_guard lk(mu_);
    CDC_TRY(refresh());
    CDC_ASSIGN(Object * o, visible(h, Errc::key_handle_invalid));
    if (o->cls() != CKO_SECRET_KEY) return err(Errc::key_indigestible, "C_DigestKey digests secret keys only");
    key = o->obj;
    home = o->home;
  }
  return home->digest_into(digest, key);
}

R<CK_OBJECT_HANDLE> Token::generate_key(Session& s, const CK_MECHANISM* pm, const AttrMap& tmpl) {
  CDC_ASSIGN(auto m, mechanism_for(pm, CKF_GENERATE));
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
  new_object_defaults(CKO_SECRET_KEY, kt, a);
  mark_generated(a, m.entry->type, true);
  CK_OBJECT_HANDLE kh;
  {
    std::lock_guard lk(mu_);
    CDC_TRY(check_can_create_locked(s, a, nullptr));
    CDC_TRY(before_key_made(a, 0));
    CDC_ASSIGN(kh, added(s, backend_->generate_key(m, a)));
  }
  CDC_TRY(key_made(s, kh));
  return kh;
}

R<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> Token::generate_key_pair(Session& s, const CK_MECHANISM* pm,
                                                                          const AttrMap& pub_t, const AttrMap& priv_t) {
  CDC_ASSIGN(auto m, mechanism_for(pm, CKF_GENERATE_KEY_PAIR));
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
  new_object_defaults(CKO_PUBLIC_KEY, kt, pub);
  new_object_defaults(CKO_PRIVATE_KEY, kt, priv);
  mark_generated(pub, m.entry->type, true);
  mark_generated(priv, m.entry->type, true);
  if (priv.bool_or(CKA_CDC_CLOUD_NATIVE, false))
    return cloud::generate_native_pair(*this, s, m, std::move(pub), std::move(priv));
  CK_OBJECT_HANDLE ph, vh;
  {
    std::lock_guard lk(mu_);
    CDC_TRY(check_can_create_locked(s, pub, nullptr));
    CDC_TRY(check_can_create_locked(s, priv, nullptr));
    CDC_TRY(before_key_made(priv, kt == CKK_RSA ? pub.ulong(CKA_MODULUS_BITS).value_or(0) : 0));
    CDC_ASSIGN(auto pair, backend_->generate_key_pair(m, pub, priv));
    ph = *added(s, std::move(pair.first));
    vh = *added(s, std::move(pair.second));
  }
  CDC_TRY(key_made(s, vh));
  return std::make_pair(ph, vh);
}

R<void> Token::wrap_key(const Session& s, const CK_MECHANISM* pm, CK_OBJECT_HANDLE wh, CK_OBJECT_HANDLE kh,
                        CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
  CDC_ASSIGN(auto m, mechanism_for(pm, CKF_WRAP));
  CDC_ASSIGN(auto wk, open_key(s, wh, KeyUse::wrap, m));
  StoredObject key;
  {
    std::lock_guard lk(mu_);
    CDC_ASSIGN(Object * o, visible(kh, Errc::key_handle_invalid));
    if (o->cls() != CKO_SECRET_KEY && o->cls() != CKO_PRIVATE_KEY)
      return err(Errc::key_not_wrappable, "only secret and private keys can be wrapped");
    if (!o->attrs().bool_or(CKA_EXTRACTABLE, false))
      return err(Errc::key_unextractable, "the key is not extractable (CKA_EXTRACTABLE is false)");
    if (o->attrs().bool_or(CKA_WRAP_WITH_TRUSTED, false) && !wk.obj->attrs.bool_or(CKA_TRUSTED, false))
      return err(Errc::key_not_wrappable, "the key may only be wrapped with a trusted key (CKA_WRAP_WITH_TRUSTED)");
    key = o->obj;
  }
  CDC_ASSIGN(auto wrapped, backend_->wrap_key(m, *wk.obj, key));
  return write_output(wrapped, out, out_len);
}

R<CK_OBJECT_HANDLE> Token::unwrap_key(Session& s, const CK_MECHANISM* pm, CK_OBJECT_HANDLE uh, ByteView wrapped,
                                      const AttrMap& tmpl) {
  CDC_ASSIGN(auto m, mechanism_for(pm, CKF_UNWRAP));
  CDC_ASSIGN(auto cls, object_class(tmpl));
  if (cls != CKO_SECRET_KEY && cls != CKO_PRIVATE_KEY)
    return err(Errc::template_inconsistent, "C_UnwrapKey makes secret or private keys only");
  if (!tmpl.has(CKA_KEY_TYPE)) return err(Errc::template_incomplete, "CKA_KEY_TYPE is required to unwrap");
  CK_KEY_TYPE kt = key_type_or(tmpl, 0);
  CDC_TRY(check_template(CreateOp::unwrap, cls, kt, tmpl));
  AttrMap a = tmpl;
  new_object_defaults(cls, kt, a);
  mark_generated(a, m.entry->type, false);
  CDC_ASSIGN(auto uk, open_key(s, uh, KeyUse::unwrap, m));
  {
    std::lock_guard lk(mu_);
    CDC_TRY(check_can_create_locked(s, a, nullptr));
    CDC_TRY(before_key_made(a, 0));
  }
  // The key's home unwraps (the vault over the network): no lock held.
  auto made = uk.home->unwrap(m, *uk.obj, wrapped, a);
  CK_OBJECT_HANDLE kh;
  {
    std::lock_guard lk(mu_);
    CDC_ASSIGN(kh, added(s, std::move(made)));
  }
  CDC_TRY(key_made(s, kh));
  return kh;
}

R<CK_OBJECT_HANDLE> Token::derive_key(Session& s, const CK_MECHANISM* pm, CK_OBJECT_HANDLE bh, const AttrMap& tmpl) {
  CDC_ASSIGN(auto m, mechanism_for(pm, CKF_DERIVE));
  CDC_TRY(expect_class(tmpl, CKO_SECRET_KEY, "C_DeriveKey"));
  CK_KEY_TYPE kt = key_type_or(tmpl, CKK_GENERIC_SECRET);
  CDC_TRY(check_template(CreateOp::derive, CKO_SECRET_KEY, kt, tmpl));
  AttrMap a = tmpl;
  a.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
  a.set_ulong(CKA_KEY_TYPE, kt);
  new_object_defaults(CKO_SECRET_KEY, kt, a);
  CDC_ASSIGN(auto base, open_key(s, bh, KeyUse::derive, m));
  // A derived key is never "always sensitive"/"never extractable" unless its base was.
  a.set_bool(CKA_LOCAL, false);
  a.set_ulong(CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION);
  a.set_bool(CKA_ALWAYS_SENSITIVE,
             a.bool_or(CKA_SENSITIVE, true) && base.obj->attrs.bool_or(CKA_ALWAYS_SENSITIVE, false));
  a.set_bool(CKA_NEVER_EXTRACTABLE,
             !a.bool_or(CKA_EXTRACTABLE, false) && base.obj->attrs.bool_or(CKA_NEVER_EXTRACTABLE, false));
  std::lock_guard lk(mu_);
  CDC_TRY(check_can_create_locked(s, a, nullptr));
  return added(s, base.home->derive(m, *base.obj, a));
}

}  // namespace cdcp11::core
