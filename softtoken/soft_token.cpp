// SoftToken: PINs, the meta record, sealing and the object records.
#include "softtoken/soft_token.h"

#include <cstring>

#include "common/log.h"
#include "core/attribute_policy.h"

namespace cdcp11::softtoken {

using core::Errc;
using core::err;

namespace {

constexpr const char* kLog = "softtoken";
constexpr std::size_t kMinPin = 4, kMaxPin = 255;
constexpr std::uint8_t kRecordVersion = 1;

core::Error from_store(const store::Error& e) {
  switch (e.code) {
    case store::Error::Code::no_space: return {Errc::device_memory, e.message};
    case store::Error::Code::not_found: return {Errc::object_handle_invalid, e.message};
    default: return {Errc::device_error, e.message};
  }
}

#define STORE_TRY(expr)                                  \
  do {                                                   \
    auto&& st_r_ = (expr);                               \
    if (!st_r_) return ::cdcp11::fail(from_store(st_r_.error())); \
  } while (0)

Bytes aad_for(std::string_view a, std::string_view b, std::string_view c) {
  std::string s;
  s += a; s += '|'; s += b; s += '|'; s += c;
  return Bytes(s.begin(), s.end());
}

core::R<void> check_pin_len(ByteView pin) {
  if (pin.size() < kMinPin || pin.size() > kMaxPin)
    return err(Errc::pin_len_range, "a PIN must be " + std::to_string(kMinPin) + " to " + std::to_string(kMaxPin) + " bytes");
  return {};
}

}  // namespace

SoftToken::SoftToken(core::TokenConfig cfg, std::unique_ptr<store::ObjectStore> st, crypto::Backend& crypto)
    : cfg_(std::move(cfg)), store_(std::move(st)), crypto_(crypto) {}

core::R<std::unique_ptr<SoftToken>> SoftToken::open(const core::GroupConfig& g, crypto::Backend& crypto) {
  auto st = store::ObjectStore::open(g.token.dir, true);
  if (!st) return fail(from_store(st.error()));
  auto t = std::unique_ptr<SoftToken>(new SoftToken(g.token, std::move(*st), crypto));
  std::lock_guard lk(t->mu_);
  if (auto m = t->read_meta(); !m && m.error().code != Errc::token_not_present) return fail(std::move(m).error());
  return t;
}

// ---------------------------------------------------------------- meta and PINs

core::R<TokenMeta> SoftToken::read_meta() {
  auto b = store_->read_meta();
  if (!b) {
    meta_.reset();
    if (b.error().code == store::Error::Code::not_found)
      return err(Errc::token_not_present, "the token is not initialised");
    return fail(from_store(b.error()));
  }
  CDC_ASSIGN(auto m, decode_meta(*b));
  meta_ = m;
  return m;
}

core::TokenStatus SoftToken::status() {
  std::lock_guard lk(mu_);
  core::TokenStatus s;
  s.min_pin_len = kMinPin;
  s.max_pin_len = kMaxPin;
  auto m = read_meta();
  if (!m) return s;
  s.initialized = true;
  s.label = m->label;
  s.serial = m->token_id.substr(0, 16);
  const unsigned max = cfg_.max_pin_retries;
  auto flags = [&](const PinSlot& p, bool& low, bool& final_try, bool& locked) {
    if (!max) return;
    locked = p.failures >= max;
    final_try = !locked && p.failures + 1 == max;
    low = !locked && p.failures > 0;
  };
  flags(m->so, s.so_pin_count_low, s.so_pin_final_try, s.so_pin_locked);
  if (m->user) {
    s.user_pin_initialized = true;
    flags(*m->user, s.user_pin_count_low, s.user_pin_final_try, s.user_pin_locked);
  }
  return s;
}

core::R<crypto::KeyPtr> SoftToken::pin_key(ByteView pin, const PinSlot& slot) {
  auto kek = crypto_.scrypt(pin, slot.salt, std::uint64_t{1} << slot.log2_n, 8, 1, 32);
  if (!kek) return fail(from_crypto(kek.error(), CryptoContext::other));
  auto key = crypto_.load_secret(*kek);
  if (!key) return fail(from_crypto(key.error(), CryptoContext::other));
  return *key;
}

core::R<PinSlot> SoftToken::make_pin_slot(ByteView pin, ByteView token_key, const std::string& who,
                                          const std::string& token_id) {
  PinSlot s;
  s.log2_n = cfg_.kdf_scrypt_log2_n;
  s.salt.resize(16);
  s.nonce.resize(12);
  CDC_TRY(random(s.salt.data(), s.salt.size()));
  CDC_TRY(random(s.nonce.data(), s.nonce.size()));
  CDC_ASSIGN(auto key, pin_key(pin, s));
  CDC_ASSIGN(auto sealed, gcm(key, true, s.nonce, aad_for("cdcp11-token-key-v1", who, token_id), token_key));
  s.wrapped.assign(sealed.begin(), sealed.end());
  return s;
}

core::R<SecureBytes> SoftToken::open_pin_slot(const PinSlot& slot, ByteView pin, const std::string& who,
                                              const std::string& token_id) {
  CDC_ASSIGN(auto key, pin_key(pin, slot));
  auto tk = gcm(key, false, slot.nonce, aad_for("cdcp11-token-key-v1", who, token_id), slot.wrapped);
  if (!tk) return err(Errc::pin_incorrect, "wrong PIN");
  return std::move(*tk);
}

core::R<SecureBytes> SoftToken::gcm(const crypto::KeyPtr& key, bool encrypt, ByteView nonce, Bytes aad,
                                    ByteView in) {
  crypto::CipherParams p;
  p.scheme = crypto::CipherParams::Scheme::aes_gcm;
  p.iv.assign(nonce.begin(), nonce.end());
  p.aad = std::move(aad);
  auto c = encrypt ? crypto_.encryptor(key, p) : crypto_.decryptor(key, p);
  if (!c) return fail(from_crypto(c.error(), CryptoContext::other));
  auto a = (*c)->update(in);
  if (!a) return fail(from_crypto(a.error(), CryptoContext::other));
  auto b = (*c)->finish();
  if (!b) return fail(from_crypto(b.error(), CryptoContext::other));
  a->insert(a->end(), b->begin(), b->end());
  return std::move(*a);
}

core::R<SecureBytes> SoftToken::verify_pin(CK_USER_TYPE who, ByteView pin) {
  SecureBytes result;
  std::optional<core::Error> failure;
  const std::string whos = who == CKU_SO ? "so" : "user";
  auto r = store_->locked([&]() -> store::R<void> {
    auto m = read_meta();
    if (!m) {
      failure = m.error();
      return {};
    }
    PinSlot* slot = who == CKU_SO ? &m->so : (m->user ? &*m->user : nullptr);
    if (!slot) {
      failure = core::Error{Errc::user_pin_not_initialized, "the user PIN is not initialised"};
      return {};
    }
    if (cfg_.max_pin_retries && slot->failures >= cfg_.max_pin_retries) {
      failure = core::Error{Errc::pin_locked, "the " + whos + " PIN is locked after " +
                                                  std::to_string(slot->failures) + " wrong attempts"};
      return {};
    }
    auto key = open_pin_slot(*slot, pin, whos, m->token_id);
    if (!key) {
      if (key.error().code != Errc::pin_incorrect) {
        failure = key.error();
        return {};
      }
      ++slot->failures;
      failure = core::Error{Errc::pin_incorrect, "wrong " + whos + " PIN (" + std::to_string(slot->failures) +
                                                     " consecutive failure(s))"};
      auto enc = encode_meta(*m);
      if (auto w = store_->write_meta(view(enc)); !w) return w;
      meta_ = *m;
      return {};
    }
    if (slot->failures) {
      slot->failures = 0;
      auto enc = encode_meta(*m);
      if (auto w = store_->write_meta(view(enc)); !w) return w;
      meta_ = *m;
    }
    result = std::move(*key);
    return {};
  });
  if (!r) return fail(from_store(r.error()));
  if (failure) {
    log::warn(kLog, "token '" + cfg_.dir + "': " + failure->message);
    return fail(std::move(*failure));
  }
  return result;
}

core::R<void> SoftToken::init_token(ByteView so_pin, const std::string& label) {
  std::lock_guard lk(mu_);
  CDC_TRY(check_pin_len(so_pin));
  if (auto m = read_meta(); m) {
    CDC_TRY(verify_pin(CKU_SO, so_pin));
  } else if (m.error().code != Errc::token_not_present) {
    return fail(std::move(m).error());
  }
  TokenMeta nm;
  Bytes id(16);
  SecureBytes tk(32);
  CDC_TRY(random(id.data(), id.size()));
  CDC_TRY(random(tk.data(), tk.size()));
  nm.token_id = to_hex(id);
  nm.label = label;
  CDC_ASSIGN(nm.so, make_pin_slot(so_pin, tk, "so", nm.token_id));
  auto r = store_->locked([&]() -> store::R<void> {
    if (auto w = store_->wipe(); !w) return w;
    auto enc = encode_meta(nm);
    return store_->write_meta(view(enc));
  });
  if (!r) return fail(from_store(r.error()));
  meta_ = nm;
  token_key_.clear();
  session_objs_.clear();
  key_cache_.clear();
  return {};
}

core::R<void> SoftToken::store_pin_slot(CK_USER_TYPE who, ByteView pin, ByteView token_key) {
  std::optional<core::Error> failure;
  auto r = store_->locked([&]() -> store::R<void> {
    auto m = read_meta();
    if (!m) {
      failure = m.error();
      return {};
    }
    auto slot = make_pin_slot(pin, token_key, who == CKU_SO ? "so" : "user", m->token_id);
    if (!slot) {
      failure = slot.error();
      return {};
    }
    if (who == CKU_SO) m->so = std::move(*slot);
    else m->user = std::move(*slot);
    auto enc = encode_meta(*m);
    return store_->write_meta(view(enc));
  });
  if (!r) return fail(from_store(r.error()));
  if (failure) return fail(std::move(*failure));
  return {};
}

core::R<void> SoftToken::init_pin(ByteView user_pin) {
  std::lock_guard lk(mu_);
  CDC_TRY(check_pin_len(user_pin));
  if (token_key_.empty()) return err(Errc::user_not_logged_in, "C_InitPIN needs the SO to be logged in");
  return store_pin_slot(CKU_USER, user_pin, token_key_);
}

core::R<void> SoftToken::set_pin(CK_USER_TYPE who, ByteView old_pin, ByteView new_pin) {
  std::lock_guard lk(mu_);
  CDC_TRY(check_pin_len(new_pin));
  CDC_ASSIGN(auto tk, verify_pin(who, old_pin));
  return store_pin_slot(who, new_pin, tk);
}

core::R<void> SoftToken::login(CK_USER_TYPE who, ByteView pin) {
  std::lock_guard lk(mu_);
  CDC_ASSIGN(token_key_, verify_pin(who, pin));
  return {};
}

core::R<void> SoftToken::check_pin(ByteView pin) {
  std::lock_guard lk(mu_);
  CDC_TRY(verify_pin(CKU_USER, pin));
  return {};
}

void SoftToken::logout() {
  std::lock_guard lk(mu_);
  token_key_.clear();
  token_key_.shrink_to_fit();
  key_cache_.clear();
}

// ---------------------------------------------------------------- records and sealing

Bytes SoftToken::encode_record(const TokenRecord& r) {
  Bytes out{'C', 'D', 'C', 'O', kRecordVersion};
  Bytes id;
  from_hex(r.token_id, id);
  out.insert(out.end(), id.begin(), id.end());
  auto put32 = [&](std::size_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  };
  Bytes attrs = r.attrs.serialize();
  put32(attrs.size());
  out.insert(out.end(), attrs.begin(), attrs.end());
  put32(r.sealed.size());
  out.insert(out.end(), r.sealed.begin(), r.sealed.end());
  return out;
}

core::R<SoftToken::TokenRecord> SoftToken::decode_record(ByteView b) {
  if (b.size() < 5 + 16 + 8 || std::memcmp(b.data(), "CDCO", 4) != 0 || b[4] != kRecordVersion)
    return err(Errc::device_error, "object record has an unknown format");
  TokenRecord r;
  r.token_id = to_hex(b.subspan(5, 16));
  std::size_t off = 21;
  auto get32 = [&](std::size_t& v) {
    if (b.size() - off < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::size_t>(b[off + i]) << (8 * i);
    off += 4;
    return true;
  };
  std::size_t n;
  if (!get32(n) || b.size() - off < n) return err(Errc::device_error, "object record truncated");
  CDC_ASSIGN(r.attrs, core::AttrMap::deserialize(b.subspan(off, n)));
  off += n;
  if (!get32(n) || b.size() - off != n) return err(Errc::device_error, "object record truncated");
  r.sealed.assign(b.begin() + off, b.end());
  return r;
}

core::R<crypto::KeyPtr> SoftToken::sealing_key(bool private_object, const std::string& token_id) {
  SecureBytes k;
  if (private_object) {
    if (token_key_.empty()) return err(Errc::user_not_logged_in, "the key material of a private object needs a login");
    k = token_key_;
  } else {
    auto d = crypto_.digest(crypto::Hash::sha256);
    d->update(view("cdcp11-public-object-key-v1|" + token_id));
    Bytes h = d->finish();
    k.assign(h.begin(), h.end());
  }
  auto key = crypto_.load_secret(k);
  if (!key) return fail(from_crypto(key.error(), CryptoContext::other));
  return std::move(*key);
}

core::R<Bytes> SoftToken::seal(const std::string& uid, const Secrets& s, bool private_object) {
  if (s.empty()) return Bytes{};
  const std::string token_id = meta_ ? meta_->token_id : "";
  CDC_ASSIGN(auto key, sealing_key(private_object, token_id));
  Bytes out(12);
  CDC_TRY(random(out.data(), out.size()));
  CDC_ASSIGN(auto sealed, gcm(key, true, out, aad_for("cdcp11-object-v1", token_id, uid), serialize_secrets(s)));
  out.insert(out.end(), sealed.begin(), sealed.end());
  return out;
}

core::R<Secrets> SoftToken::unseal(const std::string& uid, const TokenRecord& r) {
  if (r.sealed.empty()) return Secrets{};
  if (r.sealed.size() < 12 + 16) return err(Errc::device_error, "sealed key material truncated");
  const bool private_object = r.attrs.bool_or(CKA_PRIVATE, true);
  CDC_ASSIGN(auto key, sealing_key(private_object, r.token_id));
  const ByteView sealed(r.sealed);
  const Bytes aad = aad_for("cdcp11-object-v1", r.token_id, uid);
  auto plain = gcm(key, false, sealed.first(12), aad, sealed.subspan(12));
  if (!plain && !private_object && !token_key_.empty()) {
    // A public object sealed under the token key, as earlier versions did.
    CDC_ASSIGN(auto token_key, sealing_key(true, r.token_id));
    plain = gcm(token_key, false, sealed.first(12), aad, sealed.subspan(12));
  }
  if (!plain) {
    log::error(kLog, "object " + uid + ": sealed key material does not open (damaged, or moved from another object)");
    return err(Errc::device_error, "sealed key material of object " + uid + " does not open");
  }
  return deserialize_secrets(*plain);
}

core::R<Secrets> SoftToken::secrets_of(const std::string& uid) {
  if (auto it = session_objs_.find(uid); it != session_objs_.end()) return it->second.secrets;
  auto it = token_objs_.find(uid);
  if (it == token_objs_.end()) return err(Errc::object_handle_invalid, "object " + uid + " no longer exists");
  return unseal(uid, it->second);
}

core::R<core::StoredObject> SoftToken::store_new(core::AttrMap attrs, Secrets secrets) {
  std::string uid = store::ObjectStore::new_uid();
  attrs.set_string(CKA_UNIQUE_ID, uid);
  if (!attrs.bool_or(CKA_TOKEN, false)) {
    session_objs_[uid] = SessionRecord{attrs, std::move(secrets)};
    return core::StoredObject{uid, std::move(attrs)};
  }
  if (!meta_) return err(Errc::token_not_recognized, "the token is not initialised");
  TokenRecord rec{meta_->token_id, attrs, {}};
  CDC_ASSIGN(rec.sealed, seal(uid, secrets, attrs.bool_or(CKA_PRIVATE, true)));
  STORE_TRY(store_->put(uid, encode_record(rec)));
  token_objs_[uid] = std::move(rec);
  return core::StoredObject{uid, std::move(attrs)};
}

// ---------------------------------------------------------------- objects

core::R<core::ObjectChanges> SoftToken::refresh() {
  std::lock_guard lk(mu_);
  core::ObjectChanges out;
  auto ch = store_->refresh();
  if (!ch) return fail(from_store(ch.error()));
  std::string current_id;
  if (auto m = read_meta(); m) current_id = m->token_id;
  if (ch->full_reload) token_objs_.clear();
  for (auto& uid : ch->removed) {
    token_objs_.erase(uid);
    key_cache_.erase(uid);
  }
  for (auto& uid : ch->corrupt) log::error(kLog, "object record " + uid + " is damaged and is skipped");
  for (auto& rec : ch->upserted) {
    auto r = decode_record(rec.data);
    key_cache_.erase(rec.uid);
    if (!r) {
      log::error(kLog, "object record " + rec.uid + ": " + r.error().message);
      token_objs_.erase(rec.uid);
      continue;
    }
    token_objs_[rec.uid] = std::move(*r);
  }
  const bool epoch_changed = current_id != reported_token_id_;
  if (ch->full_reload || epoch_changed) {
    if (epoch_changed && !reported_token_id_.empty()) {
      // Re-initialised by another process: whoever was logged in is no longer.
      token_key_.clear();
      key_cache_.clear();
    }
    reported_token_id_ = current_id;
    out.full_reload = true;
    for (auto& [uid, r] : token_objs_)
      if (r.token_id == current_id) out.upserted.push_back({uid, r.attrs});
    return out;
  }
  out.removed = std::move(ch->removed);
  for (auto& rec : ch->upserted) {
    auto it = token_objs_.find(rec.uid);
    if (it != token_objs_.end() && it->second.token_id == current_id)
      out.upserted.push_back({rec.uid, it->second.attrs});
  }
  return out;
}

core::R<core::StoredObject> SoftToken::create_object(const core::AttrMap& in) {
  std::lock_guard lk(mu_);
  auto cls = in.ulong(CKA_CLASS).value_or(CKO_DATA);
  core::AttrMap attrs;
  Secrets secrets;
  for (auto& [t, v] : in) {
    if (core::is_secret_attribute(cls, t)) secrets[t] = SecureBytes(v.begin(), v.end());
    else attrs.set(t, v);
  }
  auto kt = in.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  if (cls == CKO_PRIVATE_KEY) {
    auto m = private_material(attrs, secrets);
    if (!m) return fail(std::move(m).error());
    // Validate and complete (CRT parameters, EC public point) so every key is usable.
    if (auto* rsa = std::get_if<crypto::RsaPrivate>(&*m)) {
      auto full = crypto_.complete_rsa(*rsa);
      if (!full) return err(Errc::attribute_value_invalid, "the RSA private key is not consistent: " + full.error().message);
      secrets.clear();
      private_key_attrs(*full, attrs, secrets);
    } else {
      auto full = crypto_.complete_ec(std::get<crypto::EcPrivate>(*m));
      if (!full) return err(Errc::attribute_value_invalid, "the EC private key is not valid: " + full.error().message);
    }
  } else if (cls == CKO_PUBLIC_KEY) {
    CDC_ASSIGN(auto pm, public_material(attrs));
    if (auto k = crypto_.load_public(pm); !k)
      return err(Errc::attribute_value_invalid, "the public key is not valid: " + k.error().message);
    if (kt == CKK_RSA) {
      crypto::RsaPrivate tmp;
      tmp.n = std::get<crypto::RsaPublic>(pm).n;
      tmp.e = std::get<crypto::RsaPublic>(pm).e;
      public_key_attrs(tmp, attrs);
    }
  } else if (cls == CKO_SECRET_KEY) {
    auto& v = secrets[CKA_VALUE];
    if (kt == CKK_AES && v.size() != 16 && v.size() != 24 && v.size() != 32)
      return err(Errc::attribute_value_invalid, "an AES key must be 16, 24 or 32 bytes");
    if (v.empty()) return err(Errc::attribute_value_invalid, "a secret key value must not be empty");
    attrs.set_ulong(CKA_VALUE_LEN, v.size());
  }
  return store_new(std::move(attrs), std::move(secrets));
}

core::R<core::StoredObject> SoftToken::create_key_reference(const core::AttrMap& attrs) {
  std::lock_guard lk(mu_);
  if (attrs.ulong(CKA_CLASS).value_or(CKO_DATA) != CKO_PRIVATE_KEY || !attrs.bool_or(CKA_TOKEN, false))
    return err(Errc::template_inconsistent, "a key reference is a private key token object");
  for (auto& [t, v] : attrs)
    if (core::is_secret_attribute(CKO_PRIVATE_KEY, t))
      return err(Errc::template_inconsistent, "a key reference carries no private key material");
  return store_new(attrs, {});
}

core::R<core::StoredObject> SoftToken::copy_object(const std::string& src, const core::AttrMap& attrs) {
  std::lock_guard lk(mu_);
  CDC_ASSIGN(auto secrets, secrets_of(src));
  return store_new(attrs, std::move(secrets));
}

core::R<void> SoftToken::update_object(const std::string& uid, const core::AttrMap& attrs) {
  std::lock_guard lk(mu_);
  if (auto it = session_objs_.find(uid); it != session_objs_.end()) {
    it->second.attrs = attrs;
    return {};
  }
  auto it = token_objs_.find(uid);
  if (it == token_objs_.end()) return err(Errc::object_handle_invalid, "object " + uid + " no longer exists");
  TokenRecord rec = it->second;
  rec.attrs = attrs;
  STORE_TRY(store_->put(uid, encode_record(rec)));
  it->second = std::move(rec);
  return {};
}

core::R<void> SoftToken::destroy_object(const std::string& uid) {
  std::lock_guard lk(mu_);
  key_cache_.erase(uid);
  if (session_objs_.erase(uid)) return {};
  auto r = store_->remove(uid);
  if (!r && r.error().code != store::Error::Code::not_found) return fail(from_store(r.error()));
  token_objs_.erase(uid);
  return {};
}

core::R<SecureBytes> SoftToken::secret_attribute(const std::string& uid, CK_ATTRIBUTE_TYPE t) {
  std::lock_guard lk(mu_);
  CDC_ASSIGN(auto s, secrets_of(uid));
  auto it = s.find(t);
  if (it == s.end()) return err(Errc::attribute_type_invalid, "the object has no such attribute");
  return it->second;
}

core::R<std::size_t> SoftToken::object_size(const std::string& uid) {
  std::lock_guard lk(mu_);
  if (auto it = session_objs_.find(uid); it != session_objs_.end())
    return it->second.attrs.serialize().size() + serialize_secrets(it->second.secrets).size();
  auto it = token_objs_.find(uid);
  if (it == token_objs_.end()) return err(Errc::object_handle_invalid, "object " + uid + " no longer exists");
  return encode_record(it->second).size();
}

core::R<void> SoftToken::random(std::uint8_t* out, std::size_t n) {
  if (auto r = crypto_.random(out, n); !r) return fail(from_crypto(r.error(), CryptoContext::other));
  return {};
}

}  // namespace cdcp11::softtoken
