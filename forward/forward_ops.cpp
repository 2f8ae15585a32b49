// The forwarding backend: key generation, operations, wrapping, and what the mirror needs, all
// inside the HSM.
#include <cstring>
#include <variant>

#include "cdcp11/cdcp11.h"
#include "common/log.h"
#include "core/attribute_policy.h"
#include "core/cloud/key_attrs.h"
#include "forward/forward_token.h"
#include "forward/template.h"
#include "hsm/byok_wrap.h"

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

// One operation in an HSM session of its own. The first part is held back: with nothing after
// it the operation is single-part in the HSM too (C_Sign, C_Encrypt, ...), which mechanisms
// without a multi-part form need; a second part starts the HSM's multi-part operation.
class ForwardOp final : public core::Operation {
 public:
  using Op = std::variant<hsm::SignOp, hsm::VerifyOp, hsm::EncryptOp, hsm::DecryptOp, hsm::DigestOp>;
  ForwardOp(Lease lease, Op op) : lease_(std::move(lease)), op_(std::move(op)) {}

  R<SecureBytes> update(ByteView in) override {
    if (!streaming_ && !held_) {
      first_.assign(in.begin(), in.end());
      held_ = true;
      return SecureBytes{};
    }
    SecureBytes out;
    if (!streaming_) {
      streaming_ = true;
      CDC_ASSIGN(out, feed(first_));
      secure_zero(first_.data(), first_.size());
      first_.clear();
    }
    CDC_ASSIGN(auto more, feed(in));
    out.insert(out.end(), more.begin(), more.end());
    return out;
  }

  R<SecureBytes> finish() override {
    if (streaming_) {
      if (auto* s = std::get_if<hsm::SignOp>(&op_)) return to_r(s->final());
      if (auto* e = std::get_if<hsm::EncryptOp>(&op_)) return to_r(e->final());
      if (auto* d = std::get_if<hsm::DecryptOp>(&op_)) return to_r(d->final());
      if (auto* g = std::get_if<hsm::DigestOp>(&op_)) return to_r(g->final());
      return core::err(Errc::operation_not_initialized, "a verify operation ends with the signature");
    }
    const ByteView data(first_);
    if (auto* s = std::get_if<hsm::SignOp>(&op_)) return to_r(s->sign(data));
    if (auto* e = std::get_if<hsm::EncryptOp>(&op_)) return to_r(e->encrypt(data));
    if (auto* d = std::get_if<hsm::DecryptOp>(&op_)) return to_r(d->decrypt(data));
    if (auto* g = std::get_if<hsm::DigestOp>(&op_)) return to_r(g->digest(data));
    return core::err(Errc::operation_not_initialized, "a verify operation ends with the signature");
  }

  R<void> verify(ByteView signature) override {
    auto* v = std::get_if<hsm::VerifyOp>(&op_);
    if (!v) return core::err(Errc::operation_not_initialized, "not a verify operation");
    if (streaming_) {
      CDC_TRY(v->final(signature));
    } else {
      CDC_TRY(v->verify(first_, signature));
    }
    return {};
  }

  // The HSM checks CKA_ALWAYS_AUTHENTICATE in the session the operation runs in.
  std::optional<R<void>> context_login(ByteView pin) override {
    if (auto r = lease_->login(hsm::UserType::context_specific, pin); !r) return R<void>(fail(std::move(r).error()));
    return R<void>{};
  }

  ~ForwardOp() override { secure_zero(first_.data(), first_.size()); }

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
  SecureBytes first_;
  bool held_ = false, streaming_ = false;
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
  // The HSM gives the value of a key that is neither sensitive nor unextractable; C_DigestKey of
  // any other key would need it digested inside the HSM, which the core's digest does not do.
  return secret_attribute(key.uid, CKA_VALUE);
}

// ---------------------------------------------------------------- wrap, unwrap, derive

R<Bytes> ForwardToken::wrap_key(const core::Mechanism& m, const StoredObject& wrapping_key, const StoredObject& key) {
  CDC_ASSIGN(auto w, as_key_error(handles(wrapping_key.uid, {}), Errc::wrapping_key_handle_invalid, "wrapping key"));
  CDC_ASSIGN(auto k, as_key_error(handles(key.uid, {}), Errc::key_handle_invalid, "key to wrap"));
  CDC_ASSIGN(auto l, lease());
  auto out = l->wrap_key(hsm_mech(m), w.first, k.first);
  if (!out) return as_key_error(R<Bytes>(fail(std::move(out).error())), Errc::key_handle_invalid, "key or its wrapping key");
  return std::move(*out);
}

R<StoredObject> ForwardToken::unwrap_key(const core::Mechanism& m, const StoredObject& unwrapping_key,
                                         ByteView wrapped, const AttrMap& attrs) {
  AttrMap vendor;
  const AttrMap tmpl = hsm_template(attrs, vendor);
  auto made = [&]() -> R<CK_OBJECT_HANDLE> {
    CDC_ASSIGN(auto hs, handles(unwrapping_key.uid, {}));
    CDC_ASSIGN(auto l, lease());
    CDC_ASSIGN(auto h, l->unwrap_key(hsm_mech(m), hs.first, wrapped, tmpl));
    return h;
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

R<core::KeyComponents> ForwardToken::public_components(const StoredObject& key) {
  const AttrMap& a = key.attrs;
  core::KeyComponents out;
  const auto kt = a.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  if (kt == CKK_RSA) {
    const Bytes* n = a.find(CKA_MODULUS);
    const Bytes* e = a.find(CKA_PUBLIC_EXPONENT);
    if (!n || !e) return core::err(Errc::function_failed, "the HSM gave no modulus or public exponent for the key");
    out.kty = "RSA";
    out.parts["n"] = SecureBytes(n->begin(), n->end());
    out.parts["e"] = SecureBytes(e->begin(), e->end());
    return out;
  }
  if (kt != CKK_EC) return core::err(Errc::key_type_inconsistent, "only RSA and EC keys have public components");
  const Bytes* params = a.find(CKA_EC_PARAMS);
  auto crv = params ? core::cloud::curve_of(*params) : std::nullopt;
  if (!crv) return core::err(Errc::key_type_inconsistent, "the key's curve has no Key Vault name");
  Bytes point;
  if (auto* p = a.find(CKA_EC_POINT)) {
    point = *p;
  } else {
    CDC_ASSIGN(point, ec_point_of_private(key));
  }
  // DER OCTET STRING around 04 || x || y.
  const std::size_t len = core::cloud::curve_bytes(*crv);
  if (point.size() < 2 * len + 1) return core::err(Errc::function_failed, "the HSM's EC point is malformed");
  const std::size_t at = point.size() - (2 * len + 1);
  if (point[at] != 0x04) return core::err(Errc::function_failed, "the HSM's EC point is not uncompressed");
  out.kty = "EC";
  out.crv = *crv;
  out.parts["x"] = SecureBytes(point.begin() + at + 1, point.begin() + at + 1 + len);
  out.parts["y"] = SecureBytes(point.begin() + at + 1 + len, point.end());
  return out;
}

R<void> ForwardToken::can_export(const StoredObject& key, bool plain) {
  const std::string who = "group '" + group_ + "': " + (key.uid.empty() ? "the key" : "key " + key.uid) + ": ";
  if (plain) {
    std::string why;
    if (!plain_export_allowed_)
      why = "a Standard vault takes the key as a plain JWK, which would put the clear key outside the HSM; "
            "mirror HSM keys into a Premium vault or a Managed HSM (BYOK: the key is wrapped inside the HSM), or "
            "set the group's mirror.allow_plain_export_from_hsm for keys the HSM lets out in clear";
    else if (key.attrs.bool_or(CKA_SENSITIVE, true))
      why = "CKA_SENSITIVE is true: a sensitive key never leaves an HSM in clear, so it cannot go to a Standard "
            "vault as a plain JWK; mirror it into a Premium vault or a Managed HSM";
    else if (!key.attrs.bool_or(CKA_EXTRACTABLE, false))
      why = "CKA_EXTRACTABLE is false: the HSM will not let it out, so it cannot go to a Standard vault as a "
            "plain JWK";
    if (why.empty()) return {};
    log::warn(kLog, who + why);
    return core::err(Errc::key_unextractable, who + why);
  }
  if (!key.attrs.bool_or(CKA_EXTRACTABLE, false)) {
    const std::string why = who +
        "the HSM will not wrap it for Azure: CKA_EXTRACTABLE is false (it cannot be changed after creation; "
        "make keys to be mirrored with CKA_EXTRACTABLE true)";
    log::warn(kLog, why);
    return core::err(Errc::key_unextractable, why);
  }
  if (key.attrs.bool_or(CKA_WRAP_WITH_TRUSTED, false)) {
    const std::string why = who +
        "CKA_WRAP_WITH_TRUSTED is true: only a CKA_TRUSTED wrapping key (set by the HSM's SO) may wrap it, "
        "which an ephemeral key made for the transfer never is";
    log::warn(kLog, why);
    return core::err(Errc::key_not_wrappable, why);
  }
  auto plan = hsm::plan_rsa_aes_wrap(*module_, slot_, pad_is_rfc5649());
  if (!plan) {
    const std::string why = who + "the HSM has no mechanism to make the BYOK blob: " + plan.error().message;
    log::warn(kLog, why);
    return core::err(Errc::mechanism_invalid, why);
  }
  return {};
}

R<core::KeyComponents> ForwardToken::private_components(const StoredObject& key) {
  CDC_TRY(can_export(key, true));
  CDC_ASSIGN(auto out, public_components(key));
  auto take = [&](const char* part, CK_ATTRIBUTE_TYPE t, std::size_t width) -> R<void> {
    CDC_ASSIGN(auto v, secret_attribute(key.uid, t));
    if (width > v.size()) v.insert(v.begin(), width - v.size(), 0);  // JWK's EC d: the field size
    out.parts[part] = std::move(v);
    return {};
  };
  if (out.kty == "RSA") {
    const std::pair<const char*, CK_ATTRIBUTE_TYPE> parts[] = {
        {"d", CKA_PRIVATE_EXPONENT}, {"p", CKA_PRIME_1},      {"q", CKA_PRIME_2},
        {"dp", CKA_EXPONENT_1},      {"dq", CKA_EXPONENT_2}, {"qi", CKA_COEFFICIENT}};
    for (auto [part, t] : parts) CDC_TRY(take(part, t, 0));
  } else {
    CDC_TRY(take("d", CKA_VALUE, core::cloud::curve_bytes(out.crv)));
  }
  log::warn(kLog, "group '" + group_ + "': key " + key.uid + " (label '" + key.attrs.string_or(CKA_LABEL, "") +
                      "') leaves the HSM in clear for a plain JWK import into Standard vault '" + vault_ +
                      "', as the group's mirror.allow_plain_export_from_hsm allows");
  return out;
}

bool ForwardToken::pad_is_rfc5649() const {
  // SoftHSM2's CKM_AES_KEY_WRAP_PAD is RFC 5649 (hsm/README.md); other HSMs' _PAD is not assumed to be.
  auto info = module_->info();
  return info && info->manufacturer.find("SoftHSM") != std::string::npos;
}

R<Bytes> ForwardToken::wrap_for_byok(const StoredObject& key, ByteView kek_n, ByteView kek_e) {
  CDC_TRY(can_export(key, false));
  CDC_ASSIGN(auto hs, handles(key.uid, {}));
  CDC_ASSIGN(auto plan, hsm::plan_rsa_aes_wrap(*module_, slot_, pad_is_rfc5649()));
  CDC_ASSIGN(auto l, lease());
  CDC_ASSIGN(auto kek, hsm::import_rsa_wrapping_key(*l, kek_n, kek_e));
  hsm::ScopedObject kek_obj(*l, kek);
  CDC_ASSIGN(auto blob, hsm::rsa_aes_wrap(*l, plan, kek, hs.first));
  log::info(kLog, "group '" + group_ + "': key " + key.uid + " wrapped in the HSM for Azure (" +
                      (plan.native ? "CKM_RSA_AES_KEY_WRAP" : "composed RSA-OAEP + AES key wrap with padding") + ")");
  return blob;
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
