// SoftToken: the meta record, PINs and login.
#include "softtoken/soft_token.h"

#include "common/log.h"

namespace cdcp11::softtoken {

using core::Errc;
using core::err;

namespace {

constexpr const char* kLog = "softtoken";
constexpr std::size_t kMinPin = 4, kMaxPin = 255;
const char* const kLegacyProblem =
    "the token was written by an earlier cdcp11 (meta format 1: object records neither sealed nor "
    "authenticated) and is not used; re-initialise it with C_InitToken and its SO PIN";

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

core::Error from_store(const store::Error& e) {
  switch (e.code) {
    case store::Error::Code::no_space: return {Errc::device_memory, e.message};
    case store::Error::Code::not_found: return {Errc::object_handle_invalid, e.message};
    default: return {Errc::device_error, e.message};
  }
}

SoftToken::SoftToken(core::TokenConfig cfg, std::unique_ptr<store::ObjectStore> st, crypto::Backend& crypto)
    : cfg_(std::move(cfg)), store_(std::move(st)), crypto_(crypto) {}

core::R<std::unique_ptr<SoftToken>> SoftToken::open(const core::GroupConfig& g, crypto::Backend& crypto) {
  auto st = store::ObjectStore::open(g.token.dir, true);
  if (!st) return fail(from_store(st.error()));
  auto t = std::unique_ptr<SoftToken>(new SoftToken(g.token, std::move(*st), crypto));
  std::lock_guard lk(t->mu_);
  // Not fatal: every later call reads it again.
  if (auto m = t->load_meta(); !m) log::warn(kLog, "token '" + g.token.dir + "': " + m.error().message);
  return t;
}

// ---------------------------------------------------------------- the meta record

core::R<void> SoftToken::load_meta() {
  auto b = store_->read_meta();
  store::MetaSnapshot m;
  if (b) {
    m.state = store::MetaSnapshot::State::present;
    m.data = std::move(*b);
  } else if (b.error().code == store::Error::Code::not_found) {
    m.state = store::MetaSnapshot::State::absent;
  } else if (b.error().code == store::Error::Code::corrupt) {
    m.state = store::MetaSnapshot::State::corrupt;
    m.reason = b.error().message;
  } else {
    return err(Errc::device_error, "the token meta record cannot be read now: " + b.error().message);
  }
  apply_meta(m);
  return {};
}

void SoftToken::apply_meta(const store::MetaSnapshot& s) {
  MetaState st = MetaState::absent;
  std::string why;
  std::optional<TokenMeta> m;
  if (s.state == store::MetaSnapshot::State::corrupt) {
    st = MetaState::corrupt;
    why = s.reason;
  } else if (s.state == store::MetaSnapshot::State::present) {
    auto d = decode_meta(s.data);
    if (!d) {
      st = MetaState::corrupt;
      why = d.error().message;
    } else {
      st = d->format == TokenMeta::kLegacyFormat ? MetaState::legacy : MetaState::valid;
      m = std::move(*d);
    }
  }
  if (st == MetaState::corrupt && (meta_state_ != MetaState::corrupt || why != meta_problem_))
    log::error(kLog, "token '" + cfg_.dir + "': the meta record is corrupt (" + why +
                         "): the token is unusable until C_InitToken re-initialises it");
  if (st == MetaState::legacy) {
    why = kLegacyProblem;
    if (meta_state_ != MetaState::legacy) log::error(kLog, "token '" + cfg_.dir + "': " + why);
  }
  meta_state_ = st;
  meta_problem_ = std::move(why);
  meta_ = std::move(m);
}

core::R<TokenMeta*> SoftToken::usable_meta(bool allow_legacy) {
  switch (meta_state_) {
    case MetaState::valid: return &*meta_;
    case MetaState::legacy:
      if (allow_legacy) return &*meta_;
      return err(Errc::token_not_recognized, meta_problem_);
    case MetaState::corrupt:
      return err(Errc::device_error, "the token meta record is corrupt (" + meta_problem_ +
                                         "): C_InitToken re-initialises the token");
    case MetaState::absent:
    case MetaState::unknown: break;
  }
  return err(Errc::token_not_recognized, "the token is not initialised");
}

core::TokenStatus SoftToken::status() {
  std::lock_guard lk(mu_);
  core::TokenStatus s;
  s.min_pin_len = kMinPin;
  s.max_pin_len = kMaxPin;
  if (auto l = load_meta(); !l)
    log::warn(kLog, "token '" + cfg_.dir + "': " + l.error().message + " (reporting its last known state)");
  if (meta_state_ != MetaState::valid && meta_state_ != MetaState::legacy) return s;
  const TokenMeta& m = *meta_;
  s.initialized = true;
  s.label = m.label;
  s.serial = m.token_id.substr(0, 16);
  const unsigned max = cfg_.max_pin_retries;
  auto flags = [&](const PinSlot& p, bool& low, bool& final_try, bool& locked) {
    if (!max) return;
    locked = p.failures >= max;
    final_try = !locked && p.failures + 1 == max;
    low = !locked && p.failures > 0;
  };
  flags(m.so, s.so_pin_count_low, s.so_pin_final_try, s.so_pin_locked);
  if (m.user) {
    s.user_pin_initialized = true;
    flags(*m.user, s.user_pin_count_low, s.user_pin_final_try, s.user_pin_locked);
  }
  return s;
}

// ---------------------------------------------------------------- PINs

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
  CDC_ASSIGN(auto sealed, aes_gcm(crypto_, key, true, s.nonce, aad_for("cdcp11-token-key-v1", who, token_id), token_key));
  s.wrapped.assign(sealed.begin(), sealed.end());
  return s;
}

core::R<SecureBytes> SoftToken::open_pin_slot(const PinSlot& slot, ByteView pin, const std::string& who,
                                              const std::string& token_id) {
  CDC_ASSIGN(auto key, pin_key(pin, slot));
  auto tk = aes_gcm(crypto_, key, false, slot.nonce, aad_for("cdcp11-token-key-v1", who, token_id), slot.wrapped);
  if (!tk) return err(Errc::pin_incorrect, "wrong PIN");
  return std::move(*tk);
}

core::R<SecureBytes> SoftToken::verify_pin(CK_USER_TYPE who, ByteView pin, bool allow_legacy) {
  SecureBytes result;
  std::optional<core::Error> failure;
  bool logged = false;
  const std::string slot_name = who == CKU_SO ? "so" : "user";  // bound into the PIN slot's AAD
  const std::string whos = who == CKU_SO ? "SO" : "user";
  const unsigned max = cfg_.max_pin_retries;
  auto r = store_->locked([&]() -> store::R<void> {
    if (auto l = load_meta(); !l) {
      failure = l.error();
      return {};
    }
    auto current = usable_meta(allow_legacy);
    if (!current) {
      failure = current.error();
      logged = true;
      return {};
    }
    TokenMeta m = **current;
    PinSlot* slot = who == CKU_SO ? &m.so : (m.user ? &*m.user : nullptr);
    if (!slot) {
      failure = core::Error{Errc::user_pin_not_initialized, "the user PIN is not initialised"};
      return {};
    }
    if (max && slot->failures >= max) {
      failure = core::Error{Errc::pin_locked, "the " + whos + " PIN is locked after " +
                                                  std::to_string(slot->failures) + " wrong attempts"};
      return {};
    }
    // Durably or not at all: a counter that only lives in memory allows unlimited guessing.
    auto write = [&](const std::string& consequence) {
      const auto enc = encode_meta(m);
      auto w = store_->write_meta(view(enc));
      if (w) {
        meta_ = m;
        return true;
      }
      failure = core::Error{Errc::device_error, "the " + whos + " PIN retry counter cannot be written (" +
                                                    w.error().message + "): " + consequence};
      return false;
    };
    // The attempt is counted before the PIN is tried, so that neither a refused write nor a
    // process killed during the KDF gives a free guess.
    if (max) {
      ++slot->failures;
      if (!write("the PIN was not tried")) return {};
    }
    auto key = open_pin_slot(*slot, pin, slot_name, m.token_id);
    if (!key) {
      if (key.error().code == Errc::pin_incorrect) {
        failure = core::Error{Errc::pin_incorrect, "wrong " + whos + " PIN (" + std::to_string(slot->failures) +
                                                       " consecutive failure(s))"};
      } else {
        failure = key.error();  // the KDF itself failed: not the caller's attempt
        if (max) {
          --slot->failures;
          const auto enc = encode_meta(m);
          if (store_->write_meta(view(enc))) meta_ = m;
        }
      }
      return {};
    }
    if (max) {
      slot->failures = 0;
      if (!write("the login is refused")) return {};
    }
    result = std::move(*key);
    return {};
  });
  if (!r) failure = from_store(r.error());
  if (failure) {
    // A meta record that is missing, corrupt or of the old format was logged when it was read.
    if (!logged) {
      if (failure->code == Errc::device_error) log::error(kLog, "token '" + cfg_.dir + "': " + failure->message);
      else log::warn(kLog, "token '" + cfg_.dir + "': " + failure->message);
    }
    return fail(std::move(*failure));
  }
  return result;
}

core::R<void> SoftToken::init_token(ByteView so_pin, const std::string& label) {
  std::lock_guard lk(mu_);
  CDC_TRY(check_pin_len(so_pin));
  CDC_TRY(load_meta());
  switch (meta_state_) {
    case MetaState::valid: CDC_TRY(verify_pin(CKU_SO, so_pin)); break;
    case MetaState::legacy: CDC_TRY(verify_pin(CKU_SO, so_pin, true)); break;
    case MetaState::corrupt:
      // Nothing left to check the SO PIN against. Whoever can corrupt the record could as well
      // delete it, which leaves an uninitialised token anybody may initialise.
      log::warn(kLog, "token '" + cfg_.dir + "': re-initialising a token whose meta record is corrupt (" +
                          meta_problem_ + "); its objects are wiped");
      break;
    case MetaState::absent:
    case MetaState::unknown: break;
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
    if (auto w = store_->write_meta(view(enc)); !w) return w;
    // No records are left to hold vendor attributes.
    return store_->format() < store::ObjectStore::kNewestFormat ? store_->set_format(store::ObjectStore::kNewestFormat)
                                                                 : store::R<void>{};
  });
  if (!r) return fail(from_store(r.error()));
  meta_ = nm;
  meta_state_ = MetaState::valid;
  meta_problem_.clear();
  forget_keys();
  session_objs_.clear();
  // core drops every object of the slot itself; the store reports the wiped files as removed.
  token_objs_.clear();
  reported_.clear();
  reported_token_id_ = nm.token_id;
  return {};
}

core::R<void> SoftToken::store_pin_slot(CK_USER_TYPE who, ByteView pin, ByteView token_key) {
  std::optional<core::Error> failure;
  auto r = store_->locked([&]() -> store::R<void> {
    if (auto l = load_meta(); !l) {
      failure = l.error();
      return {};
    }
    auto current = usable_meta();
    if (!current) {
      failure = current.error();
      return {};
    }
    TokenMeta m = **current;
    auto slot = make_pin_slot(pin, token_key, who == CKU_SO ? "so" : "user", m.token_id);
    if (!slot) {
      failure = slot.error();
      return {};
    }
    if (who == CKU_SO) m.so = std::move(*slot);
    else m.user = std::move(*slot);
    auto enc = encode_meta(m);
    if (auto w = store_->write_meta(view(enc)); !w) return w;
    meta_ = std::move(m);
    return {};
  });
  if (!r) return fail(from_store(r.error()));
  if (failure) return fail(std::move(*failure));
  return {};
}

core::R<void> SoftToken::init_pin(ByteView user_pin) {
  std::lock_guard lk(mu_);
  CDC_TRY(check_pin_len(user_pin));
  if (keys_.empty()) return err(Errc::user_not_logged_in, "C_InitPIN needs the SO to be logged in");
  return store_pin_slot(CKU_USER, user_pin, keys_.token_key());
}

core::R<void> SoftToken::set_pin(CK_USER_TYPE who, ByteView old_pin, ByteView new_pin) {
  std::lock_guard lk(mu_);
  CDC_TRY(check_pin_len(new_pin));
  CDC_ASSIGN(auto tk, verify_pin(who, old_pin));
  return store_pin_slot(who, new_pin, tk);
}

core::R<void> SoftToken::login(CK_USER_TYPE who, ByteView pin) {
  std::lock_guard lk(mu_);
  CDC_ASSIGN(auto tk, verify_pin(who, pin));
  return take_token_key(tk);
}

core::R<void> SoftToken::check_pin(ByteView pin) {
  std::lock_guard lk(mu_);
  CDC_TRY(verify_pin(CKU_USER, pin));
  return {};
}

void SoftToken::logout() {
  std::lock_guard lk(mu_);
  forget_keys();
}

core::R<void> SoftToken::take_token_key(ByteView token_key) {
  forget_keys();
  CDC_TRY(keys_.set(crypto_, token_key));
  keys_token_id_ = meta_->token_id;
  vendor_move_tried_ = false;
  for (auto& [uid, r] : token_objs_) admit(uid, r);
  rescan_ = true;
  settled_.store(false, std::memory_order_release);
  return {};
}

void SoftToken::forget_keys() {
  keys_.wipe();
  keys_token_id_.clear();
  key_cache_.clear();
  for (auto& [uid, r] : token_objs_) {
    if (!r.rec.is_private || !r.opened) continue;
    r.rec.attrs = {};
    r.opened = false;
  }
  rescan_ = true;
  settled_.store(false, std::memory_order_release);
}

bool SoftToken::LockedVendorSeal::ready() {
  std::lock_guard lk(t_.mu_);
  return !t_.keys_.empty();
}

core::R<Bytes> SoftToken::LockedVendorSeal::mac(const std::string& uid, ByteView canonical) {
  std::lock_guard lk(t_.mu_);
  return VendorKeysSeal(t_.crypto_, t_.keys_, t_.keys_token_id_).mac(uid, canonical);
}

core::R<Bytes> SoftToken::LockedVendorSeal::seal(const std::string& uid, ByteView canonical) {
  std::lock_guard lk(t_.mu_);
  return VendorKeysSeal(t_.crypto_, t_.keys_, t_.keys_token_id_).seal(uid, canonical);
}

core::R<SecureBytes> SoftToken::LockedVendorSeal::open(const std::string& uid, ByteView sealed) {
  std::lock_guard lk(t_.mu_);
  return VendorKeysSeal(t_.crypto_, t_.keys_, t_.keys_token_id_).open(uid, sealed);
}

core::R<void> SoftToken::random(std::uint8_t* out, std::size_t n) {
  if (auto r = crypto_.random(out, n); !r) return fail(from_crypto(r.error(), CryptoContext::other));
  return {};
}

}  // namespace cdcp11::softtoken
