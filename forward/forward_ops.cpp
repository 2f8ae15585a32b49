// The forwarding backend: key generation, operations, wrapping, and what the mirror needs, all
// inside the HSM.
#include <algorithm>
#include <cstring>
#include <optional>
#include <variant>

#include "cdcp11/cdcp11.h"
#include "common/log.h"
#include "core/attribute_policy.h"
#include "core/ec_curves.h"
#include "forward/forward_token.h"
#include "forward/template.h"

namespace cdcp11::forward {

using core::AttrMap;
using core::Errc;
using core::R;
using core::StoredObject;

namespace {

constexpr const char* kLog = "hsm";

hsm::Mechanism hsm_mech(const core::Mechanism& m) { return hsm::Mechanism(m.entry->type, ByteView(m.param)); }

template <class B>
SecureBytes secure(B&& b) {
  SecureBytes s(b.begin(), b.end());
  secure_zero(b.data(), b.size());
  return s;
}

// One operation in an HSM session of its own. The single-part calls stay single-part in the HSM
// (C_Sign, C_Encrypt, ...), which mechanisms without a multi-part form need; updates stream.
class ForwardOp final : public core::Operation {
 public:
  using Op = std::variant<hsm::SignOp, hsm::VerifyOp, hsm::EncryptOp, hsm::DecryptOp, hsm::DigestOp>;
  ForwardOp(Lease lease, Op op) : lease_(std::move(lease)), op_(std::move(op)) {}

  R<SecureBytes> update(ByteView in) override { return feed(in); }

  R<SecureBytes> finish() override {
    if (auto* s = std::get_if<hsm::SignOp>(&op_)) return to_r(s->final());
    if (auto* e = std::get_if<hsm::EncryptOp>(&op_)) return to_r(e->final());
    if (auto* d = std::get_if<hsm::DecryptOp>(&op_)) return to_r(d->final());
    if (auto* g = std::get_if<hsm::DigestOp>(&op_)) return to_r(g->final());
    return core::err(Errc::operation_not_initialized, "a verify operation ends with the signature");
  }

  R<SecureBytes> one_shot(ByteView data) override {
    if (auto* s = std::get_if<hsm::SignOp>(&op_)) return to_r(s->sign(data));
    if (auto* e = std::get_if<hsm::EncryptOp>(&op_)) return to_r(e->encrypt(data));
    if (auto* d = std::get_if<hsm::DecryptOp>(&op_)) return to_r(d->decrypt(data));
    if (auto* g = std::get_if<hsm::DigestOp>(&op_)) return to_r(g->digest(data));
    return core::err(Errc::operation_not_initialized, "a verify operation ends with the signature");
  }

  // Into the caller's buffer in one HSM call, where the direct call would be one too (no
  // length query first, no copy).
  R<std::optional<std::size_t>> one_shot_into(ByteView data, std::span<std::uint8_t> out) override {
    hsm::R<std::optional<std::size_t>> r = std::optional<std::size_t>{};
    if (auto* e = std::get_if<hsm::EncryptOp>(&op_)) r = e->encrypt_into(data, out);
    else if (auto* s = std::get_if<hsm::SignOp>(&op_)) r = s->sign_into(data, out);
    else if (auto* d = std::get_if<hsm::DecryptOp>(&op_)) r = d->decrypt_into(data, out);
    if (!r) return fail(std::move(r).error());
    return *r;
  }

  R<void> verify(ByteView signature) override {
    auto* v = std::get_if<hsm::VerifyOp>(&op_);
    if (!v) return core::err(Errc::operation_not_initialized, "not a verify operation");
    CDC_TRY(v->final(signature));
    return {};
  }

  // The HSM checks CKA_ALWAYS_AUTHENTICATE in the session the operation runs in.
  std::optional<R<void>> context_login(ByteView pin) override {
    if (auto r = lease_->login(hsm::UserType::context_specific, pin); !r) return R<void>(fail(std::move(r).error()));
    return R<void>{};
  }

  R<void> update_key(CK_OBJECT_HANDLE key) {
    auto* g = std::get_if<hsm::DigestOp>(&op_);
    if (!g) return core::err(Errc::operation_not_initialized, "not a digest operation");
    CDC_TRY(g->update_key(key));
    return {};
  }

  R<void> verify_one_shot(ByteView data, ByteView signature) override {
    auto* v = std::get_if<hsm::VerifyOp>(&op_);
    if (!v) return core::err(Errc::operation_not_initialized, "not a verify operation");
    CDC_TRY(v->verify(data, signature));
    return {};
  }

 private:
  template <class T>
  static R<SecureBytes> to_r(hsm::R<T> r) {
    if (!r) return fail(std::move(r).error());
    return secure(std::move(*r));
  }

  R<SecureBytes> feed(ByteView in) {
    if (auto* s = std::get_if<hsm::SignOp>(&op_)) {
      CDC_TRY(s->update(in));
      return SecureBytes{};
    }
    if (auto* v = std::get_if<hsm::VerifyOp>(&op_)) {
      CDC_TRY(v->update(in));
      return SecureBytes{};
    }
    if (auto* g = std::get_if<hsm::DigestOp>(&op_)) {
      CDC_TRY(g->update(in));
      return SecureBytes{};
    }
    if (auto* e = std::get_if<hsm::EncryptOp>(&op_)) return to_r(e->update(in));
    return to_r(std::get<hsm::DecryptOp>(op_).update(in));
  }

  Lease lease_;  // first: the operation ends before its session goes back to the pool
  Op op_;
};

// The usage flag a key must have for the HSM to use it, named in refusals.
const char* needed_for(core::OpKind k) {
  switch (k) {
    case core::OpKind::sign: return "CKA_SIGN";
    case core::OpKind::verify: return "CKA_VERIFY";
    case core::OpKind::encrypt: return "CKA_ENCRYPT";
    case core::OpKind::decrypt: return "CKA_DECRYPT";
  }
  return "?";
}

// A key that is gone (destroyed by another process or the HSM's own tools since we listed it) is
// the HSM's CKR_OBJECT_HANDLE_INVALID (or our own lookup's), which the key functions do not
// return: they say which of their keys is invalid.
template <class T>
R<T> as_key_error(R<T> r, Errc which, const char* role) {
  if (r || r.error().code != Errc::object_handle_invalid) return r;
  return core::err(which, std::string("the ") + role + " is no longer in the HSM token (" + r.error().message + ")");
}

// The length of a secret key the HSM has just unwrapped, learnt without the key leaving the HSM
// unless the application made it non-sensitive: the HSM's CKA_VALUE_LEN (SoftHSM2 reports 0 for
// an unwrapped key), RFC 3394's output length, or the value the HSM lets out (wiped at once).
std::optional<CK_ULONG> unwrapped_length(hsm::Session& s, CK_OBJECT_HANDLE h, const core::Mechanism& m,
                                         ByteView wrapped, bool readable) {
  const CK_ATTRIBUTE_TYPE len_t[] = {CKA_VALUE_LEN};
  if (auto a = s.get_attributes(h, len_t); a && a->values.ulong(CKA_VALUE_LEN).value_or(0) > 0)
    return a->values.ulong(CKA_VALUE_LEN);
  if (m.entry->type == CKM_AES_KEY_WRAP && wrapped.size() > 8) return wrapped.size() - 8;
  if (!readable) return std::nullopt;
  const CK_ATTRIBUTE_TYPE value_t[] = {CKA_VALUE};
  auto a = s.get_attributes(h, value_t);
  if (!a || !a->values.find(CKA_VALUE)) return std::nullopt;
  return a->values.find(CKA_VALUE)->size();
}

}  // namespace

R<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> ForwardToken::handles(const std::string& a, const std::string& b) {
  std::lock_guard lk(mu_);
  CDC_ASSIGN(auto ha, handle_of(a));
  if (b.empty()) return std::make_pair(ha, CK_OBJECT_HANDLE{CK_INVALID_HANDLE});
  CDC_ASSIGN(auto hb, handle_of(b));
  return std::make_pair(ha, hb);
}

// ---------------------------------------------------------------- generation

R<StoredObject> ForwardToken::generate_key(const core::Mechanism& m, const AttrMap& attrs) {
  std::lock_guard lk(mu_);
  AttrMap vendor;
  CDC_ASSIGN(auto h, main_.generate_key(hsm_mech(m), hsm_template(attrs, vendor)));
  return adopt(main_, h, vendor);
}

R<std::pair<StoredObject, StoredObject>> ForwardToken::generate_key_pair(const core::Mechanism& m,
                                                                         const AttrMap& pub, const AttrMap& priv) {
  std::lock_guard lk(mu_);
  AttrMap pub_vendor, priv_vendor;
  CDC_ASSIGN(auto kp, main_.generate_key_pair(hsm_mech(m), hsm_template(pub, pub_vendor),
                                              hsm_template(priv, priv_vendor)));
  auto p = adopt(main_, kp.public_key, pub_vendor);
  if (!p) {
    (void)main_.destroy(kp.public_key);
    (void)main_.destroy(kp.private_key);
    return fail(std::move(p).error());
  }
  CDC_ASSIGN(auto v, adopt(main_, kp.private_key, priv_vendor));
  pair_of_[v.uid] = p->uid;
  return std::make_pair(std::move(*p), std::move(v));
}

// ---------------------------------------------------------------- operations

R<std::unique_ptr<core::Operation>> ForwardToken::begin(core::OpKind kind, const core::Mechanism& m,
                                                        const StoredObject& key) {
  return as_key_error(begin_in_hsm(kind, m, key), Errc::key_handle_invalid, "key");
}

R<std::unique_ptr<core::Operation>> ForwardToken::begin_in_hsm(core::OpKind kind, const core::Mechanism& m,
                                                               const StoredObject& key) {
  CDC_ASSIGN(auto hs, handles(key.uid, {}));
  CDC_ASSIGN(auto l, lease());
  const auto hm = hsm_mech(m);
  auto started = [&]() -> hsm::R<ForwardOp::Op> {
    switch (kind) {
      case core::OpKind::sign: {
        CDC_ASSIGN(auto op, l->sign_init(hm, hs.first));
        return ForwardOp::Op(std::move(op));
      }
      case core::OpKind::verify: {
        CDC_ASSIGN(auto op, l->verify_init(hm, hs.first));
        return ForwardOp::Op(std::move(op));
      }
      case core::OpKind::encrypt: {
        CDC_ASSIGN(auto op, l->encrypt_init(hm, hs.first));
        return ForwardOp::Op(std::move(op));
      }
      case core::OpKind::decrypt: {
        CDC_ASSIGN(auto op, l->decrypt_init(hm, hs.first));
        return ForwardOp::Op(std::move(op));
      }
    }
    return hsm::local_failure(CKR_GENERAL_ERROR, "unknown operation");
  }();
  if (!started) {
    auto e = std::move(started).error();
    if (e.rv == CKR_KEY_FUNCTION_NOT_PERMITTED)
      e.message += std::string(" (the HSM's ") + needed_for(kind) + " of the key is false)";
    // The session, the key handle and the mechanism we pass are valid: a bad argument can only be
    // the mechanism's parameter (SoftHSM2 answers so for OAEP other than SHA-1, a CBC without IV).
    if (e.rv == CKR_ARGUMENTS_BAD) {
      e.code = Errc::mechanism_param_invalid;
      e.message += std::string(" (the HSM refuses these parameters of ") + m.entry->name + ")";
    }
    return fail(std::move(e));
  }
  return std::unique_ptr<core::Operation>(new ForwardOp(std::move(l), std::move(*started)));
}

R<std::unique_ptr<core::Operation>> ForwardToken::begin_digest(const core::Mechanism& m) {
  CDC_ASSIGN(auto l, lease());
  CDC_ASSIGN(auto op, l->digest_init(hsm_mech(m)));
  return std::unique_ptr<core::Operation>(new ForwardOp(std::move(l), ForwardOp::Op(std::move(op))));
}

R<SecureBytes> ForwardToken::key_value_for_digest(const StoredObject& key) {
  return secret_attribute(key.uid, CKA_VALUE);
}

// In the digest's HSM session: the HSM digests the key, sensitive or not, without giving it out.
R<void> ForwardToken::digest_key(core::Operation& digest, const StoredObject& key) {
  auto* op = dynamic_cast<ForwardOp*>(&digest);
  if (!op) return core::err(Errc::operation_not_initialized, "not a digest running in the HSM");
  CDC_ASSIGN(auto hs, as_key_error(handles(key.uid, {}), Errc::key_handle_invalid, "key"));
  return op->update_key(hs.first);
}

// ---------------------------------------------------------------- wrap, unwrap, derive

R<Bytes> ForwardToken::wrap_key(const core::Mechanism& m, const StoredObject& wrapping_key, const StoredObject& key) {
  CDC_ASSIGN(auto w, as_key_error(handles(wrapping_key.uid, {}), Errc::wrapping_key_handle_invalid, "wrapping key"));
  CDC_ASSIGN(auto k, as_key_error(handles(key.uid, {}), Errc::key_handle_invalid, "key to wrap"));
  hsm::Mechanism hm = hsm_mech(m);
  // The core asks for RFC 5649 by CKM_AES_KEY_WRAP_KWP; this HSM may name it otherwise.
  if (m.entry->type == CKM_AES_KEY_WRAP_KWP)
    if (const auto t = rfc5649_wrap(); t && t != CKM_AES_KEY_WRAP_KWP) hm = hsm::Mechanism(t, ByteView(m.param));
  CDC_ASSIGN(auto l, lease());
  auto out = l->wrap_key(hm, w.first, k.first);
  if (!out) return as_key_error(R<Bytes>(fail(std::move(out).error())), Errc::key_handle_invalid, "key or its wrapping key");
  return std::move(*out);
}

R<StoredObject> ForwardToken::unwrap_key(const core::Mechanism& m, const StoredObject& unwrapping_key,
                                         ByteView wrapped, const AttrMap& attrs) {
  AttrMap vendor;
  AttrMap tmpl = hsm_template(attrs, vendor);
  auto made = [&]() -> R<CK_OBJECT_HANDLE> {
    CDC_ASSIGN(auto hs, handles(unwrapping_key.uid, {}));
    CDC_ASSIGN(auto l, lease());
    const auto want_len = tmpl.ulong(CKA_VALUE_LEN);
    auto h = l->unwrap_key(hsm_mech(m), hs.first, wrapped, tmpl);
    if (h) return *h;
    if (h.error().rv != CKR_ATTRIBUTE_READ_ONLY || !want_len) return fail(std::move(h).error());
    // PKCS#11 lets an unwrap template give CKA_VALUE_LEN, which SoftHSM2 2.6.1 refuses
    // (CKR_ATTRIBUTE_READ_ONLY): without it the HSM takes the length from the wrapped key, and
    // that length is checked against the template's here.
    tmpl.erase(CKA_VALUE_LEN);
    CDC_ASSIGN(auto made, l->unwrap_key(hsm_mech(m), hs.first, wrapped, tmpl));
    const auto got = unwrapped_length(*l, made, m, wrapped, !tmpl.bool_or(CKA_SENSITIVE, true));
    if (got && *got == *want_len) return made;
    (void)l->destroy(made);
    if (!got)
      return core::err(Errc::attribute_read_only,
                       "the HSM refuses CKA_VALUE_LEN in an unwrap template and does not tell the length of the "
                       "sensitive key it unwrapped: leave CKA_VALUE_LEN out");
    return core::err(Errc::wrapped_key_invalid, "the unwrapped key's length does not fit CKA_KEY_TYPE / CKA_VALUE_LEN");
  }();
  CDC_ASSIGN(auto h, as_key_error(std::move(made), Errc::unwrapping_key_handle_invalid, "unwrapping key"));
  std::lock_guard lk(mu_);
  return adopt(main_, h, vendor);
}

R<StoredObject> ForwardToken::derive_key(const core::Mechanism& m, const StoredObject& base_key, const AttrMap& attrs) {
  AttrMap vendor;
  const AttrMap tmpl = hsm_template(attrs, vendor);
  auto made = [&]() -> R<CK_OBJECT_HANDLE> {
    CDC_ASSIGN(auto hs, handles(base_key.uid, {}));
    CDC_ASSIGN(auto l, lease());
    CDC_ASSIGN(auto h, l->derive_key(hsm_mech(m), hs.first, tmpl));
    return h;
  }();
  CDC_ASSIGN(auto h, as_key_error(std::move(made), Errc::key_handle_invalid, "base key"));
  std::lock_guard lk(mu_);
  return adopt(main_, h, vendor);
}

R<void> ForwardToken::random(std::uint8_t* out, std::size_t n) {
  CDC_ASSIGN(auto l, lease());
  CDC_ASSIGN(auto r, l->generate_random(n));
  if (n) std::memcpy(out, r.data(), n);
  return {};
}

// ---------------------------------------------------------------- for the mirror

R<Bytes> ForwardToken::ec_point_of_private(const StoredObject& key) {
  std::lock_guard lk(mu_);
  if (auto p = pair_of_.find(key.uid); p != pair_of_.end())
    if (auto k = known_.find(p->second); k != known_.end())
      if (auto* pt = k->second.attrs.find(CKA_EC_POINT)) return *pt;
  // Otherwise the token's one EC public key with the same CKA_ID and curve.
  const Bytes* id = key.attrs.find(CKA_ID);
  const Bytes* params = key.attrs.find(CKA_EC_PARAMS);
  const Bytes* found = nullptr;
  int n = 0;
  for (auto& [uid, k] : known_) {
    const AttrMap& a = k.attrs;
    if (a.ulong(CKA_CLASS) != CKO_PUBLIC_KEY || a.ulong(CKA_KEY_TYPE) != CKK_EC) continue;
    if (!id || id->empty() || !a.find(CKA_ID) || *a.find(CKA_ID) != *id) continue;
    if (!params || !a.find(CKA_EC_PARAMS) || *a.find(CKA_EC_PARAMS) != *params) continue;
    if (auto* pt = a.find(CKA_EC_POINT)) found = pt, ++n;
  }
  if (n == 1) return *found;
  return core::err(Errc::function_failed,
                   "the HSM keeps no public point with an EC private key: its public key object (same CKA_ID and "
                   "curve) is needed to mirror it, and " +
                       std::string(n ? "several match" : "none was found"));
}

R<AttrMap> ForwardToken::public_key(const StoredObject& key) {
  const AttrMap& a = key.attrs;
  AttrMap out;
  const auto kt = a.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  out.set_ulong(CKA_KEY_TYPE, kt);
  if (kt == CKK_RSA) {
    const Bytes* n = a.find(CKA_MODULUS);
    const Bytes* e = a.find(CKA_PUBLIC_EXPONENT);
    if (!n || !e) return core::err(Errc::function_failed, "the HSM gave no modulus or public exponent for the key");
    out.set(CKA_MODULUS, *n);
    out.set(CKA_PUBLIC_EXPONENT, *e);
    return out;
  }
  if (kt != CKK_EC) return core::err(Errc::key_type_inconsistent, "only RSA and EC keys have a public key here");
  const Bytes* params = a.find(CKA_EC_PARAMS);
  if (!params) return core::err(Errc::function_failed, "the HSM gave no CKA_EC_PARAMS for the key");
  Bytes point;
  if (auto* p = a.find(CKA_EC_POINT)) {
    point = *p;
  } else {
    CDC_ASSIGN(point, ec_point_of_private(key));
  }
  // Some modules give the raw point where PKCS#11 says DER OCTET STRING.
  if (auto curve = core::ec_curve_of(*params))
    if (auto xy = core::ec_point_xy(*curve, point)) point = core::ec_point_der(xy->x, xy->y);
  out.set(CKA_EC_PARAMS, *params);
  out.set(CKA_EC_POINT, std::move(point));
  return out;
}

// Only what the HSM itself lets out: core checked the group's opt-in, CKA_EXTRACTABLE and
// CKA_SENSITIVE before (mirror::check_exportable); the HSM checks them again on every read.
R<core::SecretAttrs> ForwardToken::export_plain(const StoredObject& key) {
  const auto cls = key.attrs.ulong(CKA_CLASS).value_or(CKO_DATA);
  if (cls != CKO_PRIVATE_KEY && cls != CKO_SECRET_KEY)
    return core::err(Errc::key_type_inconsistent, "only private and secret keys have material to export");
  if (key.attrs.bool_or(CKA_SENSITIVE, true) || !key.attrs.bool_or(CKA_EXTRACTABLE, false))
    return core::err(Errc::key_unextractable, "the HSM lets the key out in clear only when it is CKA_EXTRACTABLE and "
                                              "not CKA_SENSITIVE");
  core::SecretAttrs out;
  auto take = [&](CK_ATTRIBUTE_TYPE t) -> R<void> {
    CDC_ASSIGN(out[t], secret_attribute(key.uid, t));
    return {};
  };
  if (cls == CKO_SECRET_KEY) {
    CDC_TRY(take(CKA_VALUE));
    return out;
  }
  CDC_ASSIGN(auto pub, public_key(key));
  for (CK_ATTRIBUTE_TYPE t : {CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS, CKA_EC_POINT})
    if (auto* v = pub.find(t)) out[t] = SecureBytes(v->begin(), v->end());
  const bool rsa = pub.ulong(CKA_KEY_TYPE) == CKK_RSA;
  if (rsa) {
    for (CK_ATTRIBUTE_TYPE t : {CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1, CKA_EXPONENT_2,
                                CKA_COEFFICIENT})
      CDC_TRY(take(t));
  } else {
    CDC_TRY(take(CKA_VALUE));
  }
  return out;
}

core::Capabilities ForwardToken::capabilities() {
  core::Capabilities c;
  c.holder = "the HSM";
  c.plain_export = false;
  c.enforces_wrap_policy = true;
  c.rfc5649_wrap = rfc5649_wrap();
  return c;
}

bool ForwardToken::pad_is_rfc5649() const {
  // SoftHSM2's CKM_AES_KEY_WRAP_PAD is RFC 5649 (hsm/README.md); other HSMs' _PAD is not assumed to be.
  auto info = module_->info();
  return info && info->manufacturer.find("SoftHSM") != std::string::npos;
}

CK_MECHANISM_TYPE ForwardToken::rfc5649_wrap() {
  std::lock_guard lk(mu_);
  if (rfc5649_) return *rfc5649_;
  auto infos = module_->mechanism_infos(slot_);
  if (!infos) return 0;  // not cached: the next call asks again
  auto wraps = [&](CK_MECHANISM_TYPE t) {
    return std::any_of(infos->begin(), infos->end(),
                       [&](const hsm::MechanismInfo& i) { return i.type == t && (i.flags & CKF_WRAP); });
  };
  rfc5649_ = wraps(CKM_AES_KEY_WRAP_KWP)                       ? CKM_AES_KEY_WRAP_KWP
             : pad_is_rfc5649() && wraps(CKM_AES_KEY_WRAP_PAD) ? CKM_AES_KEY_WRAP_PAD
                                                               : 0;
  return *rfc5649_;
}

// ---------------------------------------------------------------- templates

AttrMap hsm_template(const AttrMap& attrs, AttrMap& vendor) {
  AttrMap out;
  for (auto& [t, v] : attrs) {
    if (is_vendor_attribute(t)) {
      vendor.set(t, v);
      continue;
    }
    switch (t) {
      case CKA_LOCAL: case CKA_KEY_GEN_MECHANISM: case CKA_ALWAYS_SENSITIVE: case CKA_NEVER_EXTRACTABLE:
      case CKA_UNIQUE_ID:
        continue;
      case CKA_START_DATE: case CKA_END_DATE: case CKA_ALLOWED_MECHANISMS: case CKA_PUBLIC_KEY_INFO:
        if (v.empty()) continue;  // the core's "absent" defaults; an HSM may refuse empty values
        break;
      default: break;
    }
    out.set(t, v);
  }
  return out;
}

}  // namespace cdcp11::forward
