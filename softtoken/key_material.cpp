#include "softtoken/key_material.h"

#include "softtoken/der.h"

namespace cdcp11::softtoken {

using core::Errc;
using core::err;

SecureBytes serialize_secrets(const Secrets& s) {
  SecureBytes out;
  auto put = [&](std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  };
  put(s.size(), 4);
  for (auto& [t, v] : s) {
    put(t, 8);
    put(v.size(), 4);
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

core::R<Secrets> deserialize_secrets(ByteView b) {
  std::size_t off = 0;
  auto get = [&](int n, std::uint64_t& v) {
    if (b.size() < off + n) return false;
    v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(b[off + i]) << (8 * i);
    off += n;
    return true;
  };
  std::uint64_t count;
  if (!get(4, count)) return err(Errc::device_error, "sealed attributes truncated");
  Secrets s;
  for (std::uint64_t i = 0; i < count; ++i) {
    std::uint64_t t, len;
    if (!get(8, t) || !get(4, len) || b.size() - off < len) return err(Errc::device_error, "sealed attributes truncated");
    s[static_cast<CK_ATTRIBUTE_TYPE>(t)] = SecureBytes(b.begin() + off, b.begin() + off + len);
    off += len;
  }
  return s;
}

namespace {

Bytes strip_zeros(ByteView v) {
  std::size_t i = 0;
  while (i + 1 < v.size() && v[i] == 0) ++i;
  return Bytes(v.begin() + i, v.end());
}

SecureBytes secret_or_empty(const Secrets& s, CK_ATTRIBUTE_TYPE t) {
  auto it = s.find(t);
  return it == s.end() ? SecureBytes{} : it->second;
}

}  // namespace

core::R<crypto::Curve> curve_of(const core::AttrMap& attrs) {
  auto* p = attrs.find(CKA_EC_PARAMS);
  if (!p) return err(Errc::template_incomplete, "CKA_EC_PARAMS is missing");
  auto c = curve_from_params(*p);
  if (!c) return err(Errc::curve_not_supported, "CKA_EC_PARAMS names a curve this token does not support");
  return *c;
}

core::R<crypto::PrivateMaterial> private_material(const core::AttrMap& attrs, const Secrets& sec) {
  auto kt = attrs.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  if (kt == CKK_RSA) {
    crypto::RsaPrivate k;
    if (auto* n = attrs.find(CKA_MODULUS)) k.n = strip_zeros(*n);
    if (auto* e = attrs.find(CKA_PUBLIC_EXPONENT)) k.e = strip_zeros(*e);
    k.d = secret_or_empty(sec, CKA_PRIVATE_EXPONENT);
    k.p = secret_or_empty(sec, CKA_PRIME_1);
    k.q = secret_or_empty(sec, CKA_PRIME_2);
    k.dp = secret_or_empty(sec, CKA_EXPONENT_1);
    k.dq = secret_or_empty(sec, CKA_EXPONENT_2);
    k.qinv = secret_or_empty(sec, CKA_COEFFICIENT);
    if (k.n.empty() || k.d.empty()) return err(Errc::template_incomplete, "RSA private key lacks CKA_MODULUS or CKA_PRIVATE_EXPONENT");
    return crypto::PrivateMaterial{std::move(k)};
  }
  if (kt == CKK_EC || kt == CKK_EC_EDWARDS) {
    crypto::EcPrivate k;
    CDC_ASSIGN(k.curve, curve_of(attrs));
    if ((kt == CKK_EC_EDWARDS) != (k.curve == crypto::Curve::ed25519))
      return err(Errc::template_inconsistent, "CKA_EC_PARAMS does not fit the key type");
    k.d = secret_or_empty(sec, CKA_VALUE);
    if (k.d.empty()) return err(Errc::template_incomplete, "EC private key lacks CKA_VALUE");
    return crypto::PrivateMaterial{std::move(k)};
  }
  return err(Errc::key_type_inconsistent, "not an asymmetric private key");
}

core::R<crypto::PublicMaterial> public_material(const core::AttrMap& attrs) {
  auto kt = attrs.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  if (kt == CKK_RSA) {
    crypto::RsaPublic k;
    if (auto* n = attrs.find(CKA_MODULUS)) k.n = strip_zeros(*n);
    if (auto* e = attrs.find(CKA_PUBLIC_EXPONENT)) k.e = strip_zeros(*e);
    if (k.n.empty() || k.e.empty()) return err(Errc::template_incomplete, "RSA public key lacks CKA_MODULUS or CKA_PUBLIC_EXPONENT");
    return crypto::PublicMaterial{std::move(k)};
  }
  if (kt == CKK_EC || kt == CKK_EC_EDWARDS) {
    crypto::EcPublic k;
    CDC_ASSIGN(k.curve, curve_of(attrs));
    auto* pt = attrs.find(CKA_EC_POINT);
    if (!pt) return err(Errc::template_incomplete, "EC public key lacks CKA_EC_POINT");
    // DER OCTET STRING per the spec; some applications pass the raw point.
    auto content = der_octet_string_content(*pt);
    k.point = content ? *content : *pt;
    return crypto::PublicMaterial{std::move(k)};
  }
  return err(Errc::key_type_inconsistent, "not an asymmetric public key");
}

void private_key_attrs(const crypto::PrivateMaterial& m, core::AttrMap& attrs, Secrets& sec) {
  if (auto* r = std::get_if<crypto::RsaPrivate>(&m)) {
    attrs.set(CKA_MODULUS, r->n);
    attrs.set(CKA_PUBLIC_EXPONENT, r->e);
    sec[CKA_PRIVATE_EXPONENT] = r->d;
    if (!r->p.empty()) {
      sec[CKA_PRIME_1] = r->p;
      sec[CKA_PRIME_2] = r->q;
      sec[CKA_EXPONENT_1] = r->dp;
      sec[CKA_EXPONENT_2] = r->dq;
      sec[CKA_COEFFICIENT] = r->qinv;
    }
  } else {
    auto& e = std::get<crypto::EcPrivate>(m);
    attrs.set(CKA_EC_PARAMS, params_for_curve(e.curve));
    sec[CKA_VALUE] = e.d;
  }
}

void public_key_attrs(const crypto::PrivateMaterial& m, core::AttrMap& attrs) {
  if (auto* r = std::get_if<crypto::RsaPrivate>(&m)) {
    attrs.set(CKA_MODULUS, r->n);
    attrs.set(CKA_PUBLIC_EXPONENT, r->e);
    attrs.set_ulong(CKA_MODULUS_BITS, r->n.empty() ? 0 : (r->n.size() - 1) * 8 + [&] {
      unsigned b = 0;
      for (unsigned v = r->n[0]; v; v >>= 1) ++b;
      return b;
    }());
  } else {
    auto& e = std::get<crypto::EcPrivate>(m);
    attrs.set(CKA_EC_PARAMS, params_for_curve(e.curve));
    attrs.set(CKA_EC_POINT, der_octet_string(e.point));
  }
}

core::R<void> set_check_value(crypto::Backend& c, core::AttrMap& attrs, const Secrets& sec) {
  auto v = sec.find(CKA_VALUE);
  if (attrs.ulong(CKA_CLASS).value_or(CKO_DATA) != CKO_SECRET_KEY || v == sec.end()) return {};
  const Bytes* given = attrs.find(CKA_CHECK_VALUE);
  if (given && given->empty()) return {};
  SecureBytes full;
  if (attrs.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION) == CKK_AES) {
    auto k = c.load_secret(v->second);
    if (!k) return fail(from_crypto(k.error(), CryptoContext::other));
    crypto::CipherParams p;
    p.scheme = crypto::CipherParams::Scheme::aes_ecb;
    auto e = c.encryptor(*k, p);
    if (!e) return fail(from_crypto(e.error(), CryptoContext::encrypt));
    const std::uint8_t zero[16] = {};
    auto a = (*e)->update(ByteView(zero, sizeof zero));
    if (!a) return fail(from_crypto(a.error(), CryptoContext::encrypt));
    auto b = (*e)->finish();
    if (!b) return fail(from_crypto(b.error(), CryptoContext::encrypt));
    full = std::move(*a);
    full.insert(full.end(), b->begin(), b->end());
  } else {
    auto d = c.digest(crypto::Hash::sha1);
    d->update(v->second);
    auto h = d->finish();
    full.assign(h.begin(), h.end());
  }
  if (full.size() < 3) return err(Errc::general_error, "the key check value could not be computed");
  const Bytes kcv(full.begin(), full.begin() + 3);
  if (given && *given != kcv)
    return err(Errc::attribute_value_invalid, "CKA_CHECK_VALUE in the template is not the key's check value");
  attrs.set(CKA_CHECK_VALUE, kcv);
  return {};
}

std::optional<crypto::Hash> hash_of(CK_MECHANISM_TYPE m) {
  switch (m) {
    case CKM_SHA_1: return crypto::Hash::sha1;
    case CKM_SHA224: return crypto::Hash::sha224;
    case CKM_SHA256: return crypto::Hash::sha256;
    case CKM_SHA384: return crypto::Hash::sha384;
    case CKM_SHA512: return crypto::Hash::sha512;
  }
  return std::nullopt;
}

std::optional<crypto::Hash> mgf_hash(CK_RSA_PKCS_MGF_TYPE mgf) {
  switch (mgf) {
    case CKG_MGF1_SHA1: return crypto::Hash::sha1;
    case CKG_MGF1_SHA224: return crypto::Hash::sha224;
    case CKG_MGF1_SHA256: return crypto::Hash::sha256;
    case CKG_MGF1_SHA384: return crypto::Hash::sha384;
    case CKG_MGF1_SHA512: return crypto::Hash::sha512;
  }
  return std::nullopt;
}

core::Error from_crypto(const crypto::Error& e, CryptoContext ctx) {
  using C = crypto::Error::Code;
  Errc c = Errc::function_failed;
  switch (e.code) {
    case C::bad_key: c = ctx == CryptoContext::unwrap ? Errc::wrapped_key_invalid : Errc::key_type_inconsistent; break;
    case C::bad_param: c = Errc::mechanism_param_invalid; break;
    case C::bad_input_length:
      c = ctx == CryptoContext::decrypt ? Errc::encrypted_data_len_range
          : ctx == CryptoContext::unwrap ? Errc::wrapped_key_len_range
                                         : Errc::data_len_range;
      break;
    case C::bad_encrypted_input:
      c = ctx == CryptoContext::unwrap ? Errc::wrapped_key_invalid : Errc::encrypted_data_invalid;
      break;
    case C::bad_signature: c = Errc::signature_invalid; break;
    case C::bad_signature_length: c = Errc::signature_len_range; break;
    case C::bad_wrapped_key: c = Errc::wrapped_key_invalid; break;
    case C::unsupported: c = Errc::mechanism_param_invalid; break;
    case C::internal: c = Errc::function_failed; break;
  }
  return core::Error{c, e.message};
}

}  // namespace cdcp11::softtoken
