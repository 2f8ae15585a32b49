// SoftToken: key generation and cryptographic operations. Mechanism parameters are parsed here
// (PKCS#11 3.0 structures) into the crypto seam's parameter structs.
#include <cstring>

#include "common/log.h"
#include "core/attribute_policy.h"
#include "softtoken/der.h"
#include "softtoken/soft_token.h"

namespace cdcp11::softtoken {

using core::Errc;
using core::err;
using core::MechFamily;

namespace {

template <class T>
core::R<T> param_as(const core::Mechanism& m) {
  if (m.param.size() != sizeof(T))
    return err(Errc::mechanism_param_invalid, std::string(m.entry->name) + ": parameter has " +
                                                  std::to_string(m.param.size()) + " bytes, " +
                                                  std::to_string(sizeof(T)) + " expected");
  T t;
  std::memcpy(&t, m.param.data(), sizeof t);
  return t;
}

core::R<void> no_param(const core::Mechanism& m) {
  if (!m.param.empty()) return err(Errc::mechanism_param_invalid, std::string(m.entry->name) + " takes no parameter");
  return {};
}

Bytes copy_ptr(const void* p, CK_ULONG n) {
  if (!p || !n) return {};
  auto* b = static_cast<const std::uint8_t*>(p);
  return Bytes(b, b + n);
}

core::R<crypto::SignParams> sign_params(const core::Mechanism& m) {
  crypto::SignParams p;
  if (m.entry->hash) p.hash = hash_of(m.entry->hash);
  switch (m.entry->family) {
    case MechFamily::rsa_pkcs1:
      CDC_TRY(no_param(m));
      p.scheme = crypto::SignParams::Scheme::rsa_pkcs1;
      break;
    case MechFamily::rsa_pss: {
      CDC_ASSIGN(auto pp, param_as<CK_RSA_PKCS_PSS_PARAMS>(m));
      auto h = hash_of(pp.hashAlg);
      auto mg = mgf_hash(pp.mgf);
      if (!h || !mg) return err(Errc::mechanism_param_invalid, "PSS: unsupported hash or MGF");
      if (m.entry->hash && pp.hashAlg != m.entry->hash)
        return err(Errc::mechanism_param_invalid, std::string(m.entry->name) + ": hashAlg does not match the mechanism");
      p.scheme = crypto::SignParams::Scheme::rsa_pss;
      p.pss = {*h, *mg, pp.sLen};
      break;
    }
    case MechFamily::ecdsa:
      CDC_TRY(no_param(m));
      p.scheme = crypto::SignParams::Scheme::ecdsa;
      break;
    case MechFamily::eddsa:
      if (!m.param.empty()) {
        CDC_ASSIGN(auto ep, param_as<CK_EDDSA_PARAMS>(m));
        if (ep.phFlag || ep.ulContextDataLen)
          return err(Errc::mechanism_param_invalid, "CKM_EDDSA: only pure Ed25519 without context is supported");
      }
      p.scheme = crypto::SignParams::Scheme::eddsa;
      break;
    case MechFamily::hmac:
      CDC_TRY(no_param(m));
      p.scheme = crypto::SignParams::Scheme::hmac;
      break;
    default:
      return err(Errc::mechanism_invalid, std::string(m.entry->name) + " does not sign");
  }
  return p;
}

core::R<crypto::CipherParams> oaep_params(const CK_RSA_PKCS_OAEP_PARAMS& op) {
  crypto::CipherParams p;
  p.scheme = crypto::CipherParams::Scheme::rsa_oaep;
  auto h = hash_of(op.hashAlg);
  auto mg = mgf_hash(op.mgf);
  if (!h || !mg) return err(Errc::mechanism_param_invalid, "OAEP: unsupported hash or MGF");
  if (op.source && op.source != CKZ_DATA_SPECIFIED) return err(Errc::mechanism_param_invalid, "OAEP: source must be CKZ_DATA_SPECIFIED");
  p.oaep_hash = *h;
  p.mgf1 = *mg;
  p.label = copy_ptr(op.pSourceData, op.ulSourceDataLen);
  return p;
}

// The CK_GCM_PARAMS of PKCS#11 2.40 errata lacked ulIvBits; applications built against either
// layout exist, so both are accepted (told apart by size).
struct GcmParams240 {
  CK_BYTE_PTR pIv;
  CK_ULONG ulIvLen;
  CK_BYTE_PTR pAAD;
  CK_ULONG ulAADLen;
  CK_ULONG ulTagBits;
};

core::R<crypto::CipherParams> cipher_params(const core::Mechanism& m) {
  crypto::CipherParams p;
  switch (m.entry->family) {
    case MechFamily::aes_gcm: {
      p.scheme = crypto::CipherParams::Scheme::aes_gcm;
      if (m.param.size() == sizeof(CK_GCM_PARAMS)) {
        CDC_ASSIGN(auto g, param_as<CK_GCM_PARAMS>(m));
        p.iv = copy_ptr(g.pIv, g.ulIvLen);
        p.aad = copy_ptr(g.pAAD, g.ulAADLen);
        p.tag_bits = g.ulTagBits;
      } else {
        CDC_ASSIGN(auto g, param_as<GcmParams240>(m));
        p.iv = copy_ptr(g.pIv, g.ulIvLen);
        p.aad = copy_ptr(g.pAAD, g.ulAADLen);
        p.tag_bits = g.ulTagBits;
      }
      if (p.iv.empty()) return err(Errc::mechanism_param_invalid, "CKM_AES_GCM: the IV must not be empty");
      if (p.tag_bits < 32 || p.tag_bits > 128 || p.tag_bits % 8)
        return err(Errc::mechanism_param_invalid, "CKM_AES_GCM: ulTagBits must be 32..128 and a multiple of 8");
      break;
    }
    case MechFamily::aes_cbc_pad:
    case MechFamily::aes_cbc:
      p.scheme = m.entry->family == MechFamily::aes_cbc ? crypto::CipherParams::Scheme::aes_cbc
                                                        : crypto::CipherParams::Scheme::aes_cbc_pad;
      if (m.param.size() != 16)
        return err(Errc::mechanism_param_invalid, std::string(m.entry->name) + ": the IV must be 16 bytes, got " +
                                                      std::to_string(m.param.size()));
      p.iv = m.param;
      break;
    case MechFamily::aes_ecb:
      CDC_TRY(no_param(m));
      p.scheme = crypto::CipherParams::Scheme::aes_ecb;
      break;
    case MechFamily::aes_ctr: {
      CDC_ASSIGN(auto c, param_as<CK_AES_CTR_PARAMS>(m));
      p.scheme = crypto::CipherParams::Scheme::aes_ctr;
      if (c.ulCounterBits == 0 || c.ulCounterBits > 128)
        return err(Errc::mechanism_param_invalid, "CKM_AES_CTR: ulCounterBits must be 1..128");
      p.counter_bits = c.ulCounterBits;
      p.iv.assign(c.cb, c.cb + 16);
      break;
    }
    case MechFamily::rsa_oaep: {
      CDC_ASSIGN(auto op, param_as<CK_RSA_PKCS_OAEP_PARAMS>(m));
      return oaep_params(op);
    }
    case MechFamily::rsa_pkcs1:
      CDC_TRY(no_param(m));
      p.scheme = crypto::CipherParams::Scheme::rsa_pkcs1;
      break;
    default:
      return err(Errc::mechanism_invalid, std::string(m.entry->name) + " does not encrypt");
  }
  return p;
}

class SignOp final : public core::Operation {
 public:
  explicit SignOp(std::unique_ptr<crypto::Signer> s) : s_(std::move(s)) {}
  core::R<SecureBytes> update(ByteView in) override {
    if (auto r = s_->update(in); !r) return fail(from_crypto(r.error(), CryptoContext::sign));
    return SecureBytes{};
  }
  core::R<SecureBytes> finish() override {
    auto r = s_->finish();
    if (!r) return fail(from_crypto(r.error(), CryptoContext::sign));
    return SecureBytes(r->begin(), r->end());
  }
  core::R<void> verify(ByteView) override { return err(Errc::general_error, "not a verify operation"); }

 private:
  std::unique_ptr<crypto::Signer> s_;
};

class VerifyOp final : public core::Operation {
 public:
  explicit VerifyOp(std::unique_ptr<crypto::Verifier> v) : v_(std::move(v)) {}
  core::R<SecureBytes> update(ByteView in) override {
    if (auto r = v_->update(in); !r) return fail(from_crypto(r.error(), CryptoContext::verify));
    return SecureBytes{};
  }
  core::R<SecureBytes> finish() override { return err(Errc::general_error, "verify takes a signature"); }
  core::R<void> verify(ByteView sig) override {
    if (auto r = v_->finish(sig); !r) return fail(from_crypto(r.error(), CryptoContext::verify));
    return {};
  }

 private:
  std::unique_ptr<crypto::Verifier> v_;
};

class CipherOp final : public core::Operation {
 public:
  // block: for a block-mode decryption (CBC-PAD), the ciphertext must be a multiple of it.
  CipherOp(std::unique_ptr<crypto::Cipher> c, CryptoContext ctx, std::size_t block = 0)
      : c_(std::move(c)), ctx_(ctx), block_(block) {}
  core::R<SecureBytes> update(ByteView in) override {
    total_ += in.size();
    auto r = c_->update(in);
    if (!r) return fail(from_crypto(r.error(), ctx_));
    return std::move(*r);
  }
  core::R<SecureBytes> finish() override {
    if (block_ && total_ % block_)
      return err(Errc::encrypted_data_len_range, "the ciphertext is not a multiple of the block size");
    auto r = c_->finish();
    if (!r) return fail(from_crypto(r.error(), ctx_));
    return std::move(*r);
  }
  core::R<std::optional<std::size_t>> one_shot_into(ByteView in, std::span<std::uint8_t> out) override {
    if (block_) return std::optional<std::size_t>{};
    auto r = c_->one_shot_into(in, out);
    if (!r) return fail(from_crypto(r.error(), ctx_));
    return *r;
  }
  core::R<void> verify(ByteView) override { return err(Errc::general_error, "not a verify operation"); }

 private:
  std::unique_ptr<crypto::Cipher> c_;
  CryptoContext ctx_;
  std::size_t block_ = 0;
  std::size_t total_ = 0;
};

class DigestOp final : public core::Operation {
 public:
  explicit DigestOp(std::unique_ptr<crypto::Digest> d) : d_(std::move(d)) {}
  core::R<SecureBytes> update(ByteView in) override {
    d_->update(in);
    return SecureBytes{};
  }
  core::R<SecureBytes> finish() override {
    auto r = d_->finish();
    return SecureBytes(r.begin(), r.end());
  }
  core::R<void> verify(ByteView) override { return err(Errc::general_error, "not a verify operation"); }

 private:
  std::unique_ptr<crypto::Digest> d_;
};

// ANSI X9.63 KDF (CKD_SHA*_KDF): K = H(Z || counter || shared) || ...
SecureBytes x963_kdf(crypto::Backend& c, crypto::Hash h, ByteView z, ByteView shared, std::size_t len) {
  SecureBytes out;
  for (std::uint32_t ctr = 1; out.size() < len; ++ctr) {
    auto d = c.digest(h);
    d->update(z);
    std::uint8_t be[4] = {std::uint8_t(ctr >> 24), std::uint8_t(ctr >> 16), std::uint8_t(ctr >> 8), std::uint8_t(ctr)};
    d->update(ByteView(be, 4));
    d->update(shared);
    auto blk = d->finish();
    out.insert(out.end(), blk.begin(), blk.end());
  }
  out.resize(len);
  return out;
}

}  // namespace

// ---------------------------------------------------------------- keys

core::R<crypto::KeyPtr> SoftToken::load_key(const core::StoredObject& obj) {
  crypto::KeyPtr cached;
  if (key_cache_.visit(obj.uid, [&](const crypto::KeyPtr& k) { cached = k; })) return cached;
  auto cls = obj.attrs.ulong(CKA_CLASS).value_or(CKO_DATA);
  crypto::R<crypto::KeyPtr> k = fail(crypto::Error{crypto::Error::Code::bad_key, "not a key"});
  if (cls == CKO_PUBLIC_KEY) {
    CDC_ASSIGN(auto pm, public_material(obj.attrs));
    k = crypto_.load_public(pm);
  } else {
    CDC_ASSIGN(auto sec, secrets_of(obj.uid));
    if (cls == CKO_PRIVATE_KEY) {
      CDC_ASSIGN(auto pm, private_material(obj.attrs, sec));
      k = crypto_.load_private(pm);
    } else if (cls == CKO_SECRET_KEY) {
      k = crypto_.load_secret(sec[CKA_VALUE]);
    }
  }
  if (!k) return fail(from_crypto(k.error(), CryptoContext::other));
  key_cache_.put(obj.uid, *k);
  return *k;
}

core::R<std::unique_ptr<core::Operation>> SoftToken::begin(core::OpKind kind, const core::Mechanism& m,
                                                           const core::StoredObject& key) {
  // A cached key starts its operation under the cache's shared lock, which keeps it alive.
  core::R<std::unique_ptr<core::Operation>> op{std::unique_ptr<core::Operation>()};
  if (key_cache_.visit(key.uid, [&](const crypto::KeyPtr& k) { op = start(kind, m, k); })) return op;
  crypto::KeyPtr k;
  {
    // load_key looks in the cache again, under mu_: another thread may have loaded the key since.
    std::lock_guard lk(mu_);
    CDC_ASSIGN(k, load_key(key));
  }
  return start(kind, m, k);
}

core::R<std::unique_ptr<core::Operation>> SoftToken::start(core::OpKind kind, const core::Mechanism& m,
                                                           const crypto::KeyPtr& k) {
  switch (kind) {
    case core::OpKind::sign: {
      CDC_ASSIGN(auto p, sign_params(m));
      auto s = crypto_.signer(k, p);
      if (!s) return fail(from_crypto(s.error(), CryptoContext::sign));
      return std::unique_ptr<core::Operation>(new SignOp(std::move(*s)));
    }
    case core::OpKind::verify: {
      CDC_ASSIGN(auto p, sign_params(m));
      auto v = crypto_.verifier(k, p);
      if (!v) return fail(from_crypto(v.error(), CryptoContext::verify));
      return std::unique_ptr<core::Operation>(new VerifyOp(std::move(*v)));
    }
    case core::OpKind::encrypt:
    case core::OpKind::decrypt: {
      CDC_ASSIGN(auto p, cipher_params(m));
      const bool enc = kind == core::OpKind::encrypt;
      auto c = enc ? crypto_.encryptor(k, p) : crypto_.decryptor(k, p);
      if (!c) return fail(from_crypto(c.error(), enc ? CryptoContext::encrypt : CryptoContext::decrypt));
      const std::size_t block = !enc && m.entry->family == MechFamily::aes_cbc_pad ? 16 : 0;
      return std::unique_ptr<core::Operation>(
          new CipherOp(std::move(*c), enc ? CryptoContext::encrypt : CryptoContext::decrypt, block));
    }
  }
  return err(Errc::general_error, "unknown operation");
}

core::R<std::unique_ptr<core::Operation>> SoftToken::begin_digest(const core::Mechanism& m) {
  CDC_TRY(no_param(m));
  auto h = hash_of(m.entry->hash);
  if (!h) return err(Errc::mechanism_invalid, std::string(m.entry->name) + " is not a digest");
  return std::unique_ptr<core::Operation>(new DigestOp(crypto_.digest(*h)));
}

core::R<SecureBytes> SoftToken::key_value_for_digest(const core::StoredObject& key) {
  std::lock_guard lk(mu_);
  CDC_ASSIGN(auto s, secrets_of(key.uid));
  return s[CKA_VALUE];
}

core::R<core::StoredObject> SoftToken::make_key_object(core::AttrMap attrs, const crypto::PrivateMaterial* priv,
                                                       SecureBytes secret_value) {
  Secrets sec;
  if (priv) {
    private_key_attrs(*priv, attrs, sec);
  } else {
    attrs.set_ulong(CKA_VALUE_LEN, secret_value.size());
    sec[CKA_VALUE] = std::move(secret_value);
  }
  return store_new(std::move(attrs), std::move(sec));
}

core::R<core::StoredObject> SoftToken::generate_key(const core::Mechanism& m, const core::AttrMap& attrs) {
  CDC_TRY(no_param(m));
  auto len = attrs.ulong(CKA_VALUE_LEN);
  if (!len) return err(Errc::template_incomplete, std::string(m.entry->name) + " needs CKA_VALUE_LEN");
  if (m.entry->family == MechFamily::aes_keygen ? (*len != 16 && *len != 24 && *len != 32)
                                                : (*len < m.entry->min_key / 8 || *len > m.entry->max_key / 8))
    return err(Errc::key_size_range, std::string(m.entry->name) + " cannot make a key of " + std::to_string(*len) + " bytes");
  SecureBytes v(*len);
  CDC_TRY(random(v.data(), v.size()));
  std::lock_guard lk(mu_);
  return make_key_object(attrs, nullptr, std::move(v));
}

core::R<std::pair<core::StoredObject, core::StoredObject>> SoftToken::generate_key_pair(
    const core::Mechanism& m, const core::AttrMap& pub_in, const core::AttrMap& priv_in) {
  CDC_TRY(no_param(m));
  crypto::R<crypto::PrivateMaterial> made = fail(crypto::Error{});
  if (m.entry->family == MechFamily::rsa_keygen) {
    auto bits = pub_in.ulong(CKA_MODULUS_BITS);
    if (!bits) return err(Errc::template_incomplete, "CKA_MODULUS_BITS is required");
    if (*bits < m.entry->min_key || *bits > m.entry->max_key || *bits % 8)
      return err(Errc::key_size_range, "RSA keys of " + std::to_string(*bits) + " bits are not supported (2048..4096)");
    Bytes e;
    if (auto* pe = pub_in.find(CKA_PUBLIC_EXPONENT)) e = *pe;
    auto r = crypto_.generate_rsa(*bits, e);
    if (!r) return fail(from_crypto(r.error(), CryptoContext::generate));
    made = crypto::PrivateMaterial{std::move(*r)};
  } else {
    CDC_ASSIGN(auto curve, curve_of(pub_in));
    const bool ed = m.entry->family == MechFamily::ed_keygen;
    if (ed != (curve == crypto::Curve::ed25519))
      return err(Errc::curve_not_supported, std::string(m.entry->name) + " cannot make keys on that curve");
    auto r = crypto_.generate_ec(curve);
    if (!r) return fail(from_crypto(r.error(), CryptoContext::generate));
    made = crypto::PrivateMaterial{std::move(*r)};
  }
  core::AttrMap pub = pub_in, priv = priv_in;
  public_key_attrs(*made, pub);
  std::lock_guard lk(mu_);
  CDC_ASSIGN(auto po, store_new(pub, {}));
  auto vo = make_key_object(priv, &*made, {});
  if (!vo) {
    // Do not leave half a pair behind.
    if (!session_objs_.erase(po.uid)) {
      (void)store_->remove(po.uid);
      drop_record(po.uid);
    }
    return fail(std::move(vo).error());
  }
  return std::make_pair(std::move(po), std::move(*vo));
}

// ---------------------------------------------------------------- wrap, unwrap, derive

core::R<SecureBytes> SoftToken::key_to_wrap(const core::StoredObject& key) {
  CDC_ASSIGN(auto sec, secrets_of(key.uid));
  if (key.attrs.ulong(CKA_CLASS).value_or(0) == CKO_SECRET_KEY) return sec[CKA_VALUE];
  CDC_ASSIGN(auto pm, private_material(key.attrs, sec));
  auto der = crypto_.encode_pkcs8(pm);
  if (!der) return fail(from_crypto(der.error(), CryptoContext::wrap));
  return std::move(*der);
}

core::R<Bytes> SoftToken::wrap_key(const core::Mechanism& m, const core::StoredObject& wk,
                                   const core::StoredObject& key) {
  std::unique_lock lk(mu_);
  CDC_ASSIGN(auto data, key_to_wrap(key));
  CDC_ASSIGN(auto kek, load_key(wk));
  SecureBytes kek_value;
  if (wk.attrs.ulong(CKA_CLASS).value_or(0) == CKO_SECRET_KEY) {
    CDC_ASSIGN(auto s, secrets_of(wk.uid));
    kek_value = s[CKA_VALUE];
  }
  lk.unlock();
  auto encrypt_all = [&](const crypto::KeyPtr& k, const crypto::CipherParams& p, ByteView in) -> core::R<Bytes> {
    auto c = crypto_.encryptor(k, p);
    if (!c) return fail(from_crypto(c.error(), CryptoContext::wrap));
    auto a = (*c)->update(in);
    if (!a) return fail(from_crypto(a.error(), CryptoContext::wrap));
    auto b = (*c)->finish();
    if (!b) return fail(from_crypto(b.error(), CryptoContext::wrap));
    Bytes out(a->begin(), a->end());
    out.insert(out.end(), b->begin(), b->end());
    return out;
  };
  switch (m.entry->family) {
    case MechFamily::aes_kw:
    case MechFamily::aes_kwp: {
      const bool pad = m.entry->family == MechFamily::aes_kwp;
      auto r = crypto_.aes_key_wrap(kek_value, data, pad, m.param);
      if (!r) {
        auto e = from_crypto(r.error(), CryptoContext::wrap);
        if (e.code == Errc::data_len_range) e.code = Errc::key_size_range;
        return fail(std::move(e));
      }
      return std::move(*r);
    }
    case MechFamily::aes_ecb:
    case MechFamily::aes_cbc: {
      // The spec's rule for these: the key's value, zero-padded to a whole number of blocks.
      if (key.attrs.ulong(CKA_CLASS).value_or(0) != CKO_SECRET_KEY)
        return err(Errc::key_not_wrappable, std::string(m.entry->name) + " wraps secret keys only");
      CDC_ASSIGN(auto p, cipher_params(m));
      data.resize((data.size() + 15) / 16 * 16, 0);
      return encrypt_all(kek, p, data);
    }
    case MechFamily::aes_cbc_pad:
    case MechFamily::rsa_oaep:
    case MechFamily::rsa_pkcs1: {
      CDC_ASSIGN(auto p, cipher_params(m));
      return encrypt_all(kek, p, data);
    }
    case MechFamily::rsa_aes_kw: {
      CDC_ASSIGN(auto rp, param_as<CK_RSA_AES_KEY_WRAP_PARAMS>(m));
      if (rp.ulAESKeyBits != 128 && rp.ulAESKeyBits != 192 && rp.ulAESKeyBits != 256)
        return err(Errc::mechanism_param_invalid, "CKM_RSA_AES_KEY_WRAP: ulAESKeyBits must be 128, 192 or 256");
      if (!rp.pOAEPParams) return err(Errc::mechanism_param_invalid, "CKM_RSA_AES_KEY_WRAP: pOAEPParams is NULL");
      CDC_ASSIGN(auto op, oaep_params(*rp.pOAEPParams));
      return rsa_aes_wrap(kek, rp.ulAESKeyBits, op, data);
    }
    default:
      return err(Errc::mechanism_invalid, std::string(m.entry->name) + " does not wrap");
  }
}

core::R<core::StoredObject> SoftToken::unwrap_key(const core::Mechanism& m, const core::StoredObject& uk,
                                                  ByteView wrapped, const core::AttrMap& attrs) {
  std::unique_lock lk(mu_);
  CDC_ASSIGN(auto kek, load_key(uk));
  SecureBytes kek_value;
  if (uk.attrs.ulong(CKA_CLASS).value_or(0) == CKO_SECRET_KEY) {
    CDC_ASSIGN(auto s, secrets_of(uk.uid));
    kek_value = s[CKA_VALUE];
  }
  lk.unlock();
  auto decrypt_all = [&](const crypto::KeyPtr& k, const crypto::CipherParams& p, ByteView in) -> core::R<SecureBytes> {
    auto c = crypto_.decryptor(k, p);
    if (!c) return fail(from_crypto(c.error(), CryptoContext::unwrap));
    auto a = (*c)->update(in);
    if (!a) return fail(from_crypto(a.error(), CryptoContext::unwrap));
    auto b = (*c)->finish();
    if (!b) return fail(from_crypto(b.error(), CryptoContext::unwrap));
    a->insert(a->end(), b->begin(), b->end());
    return std::move(*a);
  };
  SecureBytes plain;
  switch (m.entry->family) {
    case MechFamily::aes_kw:
    case MechFamily::aes_kwp: {
      auto r = crypto_.aes_key_unwrap(kek_value, wrapped, m.entry->family == MechFamily::aes_kwp, m.param);
      if (!r) return fail(from_crypto(r.error(), CryptoContext::unwrap));
      plain = std::move(*r);
      break;
    }
    case MechFamily::aes_ecb:
    case MechFamily::aes_cbc:
      if (attrs.ulong(CKA_CLASS).value_or(0) != CKO_SECRET_KEY)
        return err(Errc::template_inconsistent, std::string(m.entry->name) + " unwraps secret keys only");
      if (wrapped.empty()) return err(Errc::wrapped_key_len_range, "the wrapped key is empty");
      [[fallthrough]];
    case MechFamily::aes_cbc_pad:
    case MechFamily::rsa_oaep:
    case MechFamily::rsa_pkcs1: {
      CDC_ASSIGN(auto p, cipher_params(m));
      CDC_ASSIGN(plain, decrypt_all(kek, p, wrapped));
      break;
    }
    case MechFamily::rsa_aes_kw: {
      CDC_ASSIGN(auto rp, param_as<CK_RSA_AES_KEY_WRAP_PARAMS>(m));
      if (!rp.pOAEPParams) return err(Errc::mechanism_param_invalid, "CKM_RSA_AES_KEY_WRAP: pOAEPParams is NULL");
      CDC_ASSIGN(auto op, oaep_params(*rp.pOAEPParams));
      auto bits = uk.attrs.find(CKA_MODULUS);
      std::size_t k = bits ? bits->size() : 0;
      while (bits && k > 0 && (*bits)[bits->size() - k] == 0) --k;
      if (wrapped.size() <= k) return err(Errc::wrapped_key_len_range, "CKM_RSA_AES_KEY_WRAP: wrapped key too short");
      CDC_ASSIGN(auto aes, decrypt_all(kek, op, wrapped.first(k)));
      auto r = crypto_.aes_key_unwrap(aes, wrapped.subspan(k), true, {});
      if (!r) return fail(from_crypto(r.error(), CryptoContext::unwrap));
      plain = std::move(*r);
      break;
    }
    default:
      return err(Errc::mechanism_invalid, std::string(m.entry->name) + " does not unwrap");
  }
  auto cls = attrs.ulong(CKA_CLASS).value_or(0);
  auto kt = attrs.ulong(CKA_KEY_TYPE).value_or(0);
  core::AttrMap a = attrs;
  if (cls == CKO_SECRET_KEY) {
    // An RSA-encrypted value is exact. With implicit rejection (CKM_RSA_PKCS) a wrapped key with
    // bad padding yields a synthetic value of pseudo-random length, so these checks must reject
    // it exactly as they reject a well-padded value of the wrong length, and never truncate.
    const bool exact = m.entry->family == MechFamily::rsa_pkcs1 || m.entry->family == MechFamily::rsa_oaep;
    auto want = attrs.ulong(CKA_VALUE_LEN);
    if (want && *want < plain.size() && !exact) plain.resize(*want);  // block-mode wraps are zero-padded
    const bool aes_len = plain.size() == 16 || plain.size() == 24 || plain.size() == 32;
    if (plain.empty() || (want && *want != plain.size()) || (kt == CKK_AES && !aes_len))
      return err(Errc::wrapped_key_invalid, "the unwrapped key's length does not fit CKA_KEY_TYPE / CKA_VALUE_LEN");
    std::lock_guard lk2(mu_);
    return make_key_object(std::move(a), nullptr, std::move(plain));
  }
  auto pm = crypto_.decode_pkcs8(plain);
  if (!pm) return err(Errc::wrapped_key_invalid, "the unwrapped data is not a PKCS#8 private key");
  const bool is_rsa = std::holds_alternative<crypto::RsaPrivate>(*pm);
  const bool is_ed = !is_rsa && std::get<crypto::EcPrivate>(*pm).curve == crypto::Curve::ed25519;
  if ((kt == CKK_RSA) != is_rsa || (kt == CKK_EC_EDWARDS) != is_ed)
    return err(Errc::template_inconsistent, "CKA_KEY_TYPE does not match the unwrapped key");
  std::lock_guard lk2(mu_);
  return make_key_object(std::move(a), &*pm, {});
}

core::R<core::StoredObject> SoftToken::derive_key(const core::Mechanism& m, const core::StoredObject& base,
                                                  const core::AttrMap& attrs) {
  if (m.entry->family != MechFamily::ecdh) return err(Errc::mechanism_invalid, "only ECDH derivation is supported");
  CDC_ASSIGN(auto dp, param_as<CK_ECDH1_DERIVE_PARAMS>(m));
  Bytes peer = copy_ptr(dp.pPublicData, dp.ulPublicDataLen);
  if (peer.empty()) return err(Errc::mechanism_param_invalid, "CKM_ECDH1_DERIVE: no public data");
  // The spec says a raw point; some applications pass CKA_EC_POINT's DER OCTET STRING instead.
  // An uncompressed point has odd length and starts with 04, which tells the two apart.
  if (auto c = der_octet_string_content(peer); c && !c->empty() && (*c)[0] == 0x04 && c->size() % 2 == 1)
    peer = *c;
  crypto::KeyPtr k;
  {
    std::lock_guard lk(mu_);
    CDC_ASSIGN(k, load_key(base));
  }
  auto z = crypto_.ecdh(k, peer);
  if (!z) return fail(from_crypto(z.error(), CryptoContext::other));
  auto kt = attrs.ulong(CKA_KEY_TYPE).value_or(CKK_GENERIC_SECRET);
  std::size_t len = attrs.ulong(CKA_VALUE_LEN).value_or(kt == CKK_AES ? 0 : z->size());
  if (kt == CKK_AES && len != 16 && len != 24 && len != 32)
    return err(Errc::template_incomplete, "an AES key derived with ECDH needs CKA_VALUE_LEN of 16, 24 or 32");
  SecureBytes value;
  Bytes shared = copy_ptr(dp.pSharedData, dp.ulSharedDataLen);
  if (dp.kdf == CKD_NULL) {
    if (!shared.empty()) return err(Errc::mechanism_param_invalid, "CKD_NULL takes no shared data");
    if (len > z->size()) return err(Errc::template_inconsistent, "CKA_VALUE_LEN exceeds the shared secret");
    value.assign(z->begin(), z->begin() + len);
  } else {
    static const std::pair<CK_ULONG, crypto::Hash> kKdfs[] = {
        {CKD_SHA1_KDF, crypto::Hash::sha1}, {CKD_SHA224_KDF, crypto::Hash::sha224},
        {CKD_SHA256_KDF, crypto::Hash::sha256}, {CKD_SHA384_KDF, crypto::Hash::sha384},
        {CKD_SHA512_KDF, crypto::Hash::sha512}};
    const crypto::Hash* h = nullptr;
    for (auto& [kdf, hh] : kKdfs)
      if (kdf == dp.kdf) h = &hh;
    if (!h) return err(Errc::mechanism_param_invalid, "CKM_ECDH1_DERIVE: unsupported KDF");
    value = x963_kdf(crypto_, *h, *z, shared, len);
  }
  std::lock_guard lk(mu_);
  return make_key_object(attrs, nullptr, std::move(value));
}

}  // namespace cdcp11::softtoken
