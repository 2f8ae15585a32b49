// SoftToken: the object records (sealing, authentication, refresh) and object management.
#include "common/log.h"
#include "core/attribute_policy.h"
#include "softtoken/soft_token.h"

namespace cdcp11::softtoken {

using core::Errc;
using core::err;

namespace {

constexpr const char* kLog = "softtoken";

#define STORE_TRY(expr)                                           \
  do {                                                            \
    auto&& st_r_ = (expr);                                        \
    if (!st_r_) return ::cdcp11::fail(from_store(st_r_.error())); \
  } while (0)

}  // namespace

// ---------------------------------------------------------------- records

void SoftToken::admit(const std::string& uid, TokenRecord& r) {
  if (keys_.empty() || r.rec.token_id != keys_token_id_ || r.trust == Trust::refused) return;
  if (r.trust == Trust::verified && (!r.rec.is_private || r.opened)) return;
  auto refuse = [&](const core::Error& e) {
    log::error(kLog, "token '" + cfg_.dir + "': " + e.message + ": the object is refused");
    r.trust = Trust::refused;
    r.opened = false;
  };
  if (r.rec.pending) {
    auto o = open_record(crypto_, keys_, uid, r.rec);
    if (!o) return refuse(o.error());
    if (auto c = check_pending(uid, r.rec.attrs, o->secrets, r.rec.base); !c)
      return refuse({c.error().code, "object record " + uid + ", written without a login, is not what a public "
                                     "session can write: " + c.error().message});
    r.trust = Trust::verified;
    authenticate(uid, r, o->secrets);
    return;
  }
  if (auto v = verify_record(crypto_, keys_, uid, r.rec); !v) return refuse(v.error());
  r.trust = Trust::verified;
  if (!r.rec.is_private) return;
  auto o = open_record(crypto_, keys_, uid, r.rec);
  if (!o) return refuse(o.error());
  r.rec.attrs = std::move(o->attrs);
  r.opened = true;
}

bool SoftToken::servable(const TokenRecord& r) const {
  return r.rec.token_id == reported_token_id_ && r.trust != Trust::refused && (!r.rec.is_private || r.opened);
}

void SoftToken::drop_record(const std::string& uid) {
  token_objs_.erase(uid);
  key_cache_.erase(uid);
  dirty_.insert(uid);
  settled_.store(false, std::memory_order_release);
}

core::R<Secrets> SoftToken::secrets_of(const std::string& uid) {
  if (auto it = session_objs_.find(uid); it != session_objs_.end()) return it->second.secrets;
  auto it = token_objs_.find(uid);
  if (it == token_objs_.end()) return err(Errc::object_handle_invalid, "object " + uid + " no longer exists");
  TokenRecord& r = it->second;
  if (r.rec.is_private && keys_.empty()) return err(Errc::user_not_logged_in, "using this key needs a login");
  // Without a login a public object is used unauthenticated, as it is served.
  admit(uid, r);
  if (r.trust == Trust::refused || (!keys_.empty() && r.trust != Trust::verified))
    return err(Errc::object_handle_invalid, "object " + uid + " is refused");
  CDC_ASSIGN(auto o, open_record(crypto_, keys_, uid, r.rec));
  return std::move(o.secrets);
}

core::R<void> SoftToken::write_record(const std::string& uid, const core::AttrMap& attrs, const Secrets& secrets) {
  CDC_TRY(usable_meta());
  if (keys_.empty()) return write_pending(uid, attrs, secrets);
  CDC_ASSIGN(auto rec, seal_record(crypto_, keys_, uid, keys_token_id_, attrs, secrets));
  STORE_TRY(store_->put(uid, rec.raw));
  key_cache_.erase(uid);
  token_objs_[uid] = TokenRecord{std::move(rec), Trust::verified, true};
  reported_.insert(uid);  // core takes the object from the caller
  return {};
}

core::R<core::StoredObject> SoftToken::store_new(core::AttrMap attrs, Secrets secrets) {
  CDC_TRY(set_check_value(crypto_, attrs, secrets));
  std::string uid = store::ObjectStore::new_uid();
  attrs.set_string(CKA_UNIQUE_ID, uid);
  if (!attrs.bool_or(CKA_TOKEN, false)) {
    session_objs_[uid] = SessionRecord{attrs, std::move(secrets)};
    return core::StoredObject{uid, std::move(attrs)};
  }
  CDC_TRY(write_record(uid, attrs, secrets));
  return core::StoredObject{uid, std::move(attrs)};
}

// ---------------------------------------------------------------- refresh

core::R<core::ObjectChanges> SoftToken::refresh() {
  std::lock_guard lk(mu_);
  settled_.store(false, std::memory_order_release);
  auto ch = store_->refresh();
  if (!ch) {
    // Nothing was taken from the store: the next refresh sees the same changes.
    log::warn(kLog, "token '" + cfg_.dir + "': the store cannot be read now: " + ch.error().message);
    return err(Errc::device_error, "the token store cannot be read now: " + ch.error().message);
  }
  if (ch->meta_changed) apply_meta(ch->meta);
  if (meta_state_ == MetaState::legacy) return err(Errc::token_not_recognized, meta_problem_);

  // A corrupt (or unknown) meta record says nothing about the token's identity: keep it.
  static const std::string kNoToken;
  const std::string& current = meta_state_ == MetaState::valid    ? meta_->token_id
                               : meta_state_ == MetaState::absent ? kNoToken
                                                                  : reported_token_id_;
  bool full = ch->full_reload;
  if (current != reported_token_id_) {
    if (!reported_token_id_.empty())
      log::info(kLog, "token '" + cfg_.dir + "' was re-initialised by another process: its objects are reloaded");
    if (keys_token_id_ != current) forget_keys();
    reported_token_id_ = current;
    full = true;
  }

  for (auto& uid : ch->removed) drop_record(uid);
  for (auto& uid : ch->corrupt) {
    log::error(kLog, "token '" + cfg_.dir + "': object record " + uid + " is damaged: the object is refused");
    drop_record(uid);
  }
  for (auto& uid : ch->unreadable) drop_record(uid);  // the store logged why
  for (auto& rec : ch->upserted) {
    key_cache_.erase(rec.uid);
    auto parsed = parse_record(std::move(rec.data));
    if (!parsed) {
      log::error(kLog, "token '" + cfg_.dir + "': object record " + rec.uid + ": " + parsed.error().message +
                           ": the object is refused");
      drop_record(rec.uid);
      continue;
    }
    TokenRecord r{std::move(*parsed)};
    if (auto old = token_objs_.find(rec.uid); r.rec.pending && r.rec.base.empty() && old != token_objs_.end() &&
                                              !old->second.rec.pending && old->second.rec.token_id == r.rec.token_id) {
      // A public session's change keeps the record it changes as its base: this one would take
      // an authenticated object's place (and id).
      log::error(kLog, "token '" + cfg_.dir + "': object record " + rec.uid + " was replaced by one written without "
                           "a login that is not a change of it: the object is refused");
      r.trust = Trust::refused;
    }
    admit(rec.uid, r);
    token_objs_[rec.uid] = std::move(r);
    dirty_.insert(rec.uid);
  }
  if (meta_state_ == MetaState::corrupt) return fail(usable_meta().error());
  if (meta_state_ == MetaState::valid && !keys_.empty() && keys_token_id_ == current && store_->format() < 2 &&
      !vendor_move_tried_) {
    if (auto m = move_vendor_state(); !m) {
      vendor_move_tried_ = true;
      log::error(kLog, "token '" + cfg_.dir + "': " + m.error().message);
    }
  }

  core::ObjectChanges out;
  if (full) {
    out.full_reload = true;
    reported_.clear();
    for (auto& [uid, r] : token_objs_) {
      if (!servable(r)) continue;
      out.upserted.push_back({uid, r.rec.attrs});
      reported_.insert(uid);
    }
  } else {
    std::set<std::string> candidates = dirty_;
    if (rescan_) {
      for (auto& [uid, r] : token_objs_) candidates.insert(uid);
      candidates.insert(reported_.begin(), reported_.end());
    }
    for (auto& uid : candidates) {
      auto it = token_objs_.find(uid);
      if (it != token_objs_.end() && servable(it->second)) {
        if (dirty_.contains(uid) || !reported_.contains(uid)) out.upserted.push_back({uid, it->second.rec.attrs});
        reported_.insert(uid);
      } else if (reported_.erase(uid)) {
        out.removed.push_back(uid);
      }
    }
  }
  dirty_.clear();
  rescan_ = false;
  settled_.store(true, std::memory_order_release);
  return out;
}

// ---------------------------------------------------------------- objects

core::R<core::StoredObject> SoftToken::create_object(const core::AttrMap& in) {
  std::lock_guard lk(mu_);
  auto cls = in.ulong(CKA_CLASS).value_or(CKO_DATA);
  core::AttrMap attrs;
  Secrets secrets;
  for (auto& [t, v] : in) {
    if (core::is_secret_attribute(cls, t)) secrets[t] = SecureBytes(v.begin(), v.end());
    else attrs.set(t, v);
  }
  CDC_TRY(complete_material(attrs, secrets));
  return store_new(std::move(attrs), std::move(secrets));
}

core::R<void> SoftToken::complete_material(core::AttrMap& attrs, Secrets& secrets) {
  auto cls = attrs.ulong(CKA_CLASS).value_or(CKO_DATA);
  auto kt = attrs.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
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
  return {};
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
  if (!token_objs_.contains(uid)) return err(Errc::object_handle_invalid, "object " + uid + " no longer exists");
  CDC_ASSIGN(auto secrets, secrets_of(uid));
  return write_record(uid, attrs, secrets);
}

core::R<void> SoftToken::destroy_object(const std::string& uid) {
  std::lock_guard lk(mu_);
  key_cache_.erase(uid);
  if (session_objs_.erase(uid)) return {};
  auto r = store_->remove(uid);
  if (!r && r.error().code != store::Error::Code::not_found) return fail(from_store(r.error()));
  token_objs_.erase(uid);
  reported_.erase(uid);  // core drops it itself
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
  return it->second.rec.raw.size();
}

}  // namespace cdcp11::softtoken
