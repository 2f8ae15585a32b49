// SoftToken: token objects written without a login (pending records) and how the next login
// takes them in.
//
// A public R/W session may create, change and destroy public token objects (PKCS#11 3.0 5.6,
// the session-state table). Nobody who could compute a record's MAC is there, so such a record
// is written pending; a change keeps the authenticated record it changes as its base. Anyone who
// can write the token directory can write a pending record as well, but anyone who can use the
// library can make one through the API: so a pending record is taken in only if it is exactly
// what a public session can write (core's check_public_session_object / _change, the key material
// as C_CreateObject checks it, a change of an authentic base with the same key material), and is
// then rewritten as an authenticated record. Anything else is refused like a record failing its
// MAC.
#include "common/log.h"
#include "core/attribute_policy.h"
#include "softtoken/soft_token.h"

namespace cdcp11::softtoken {

using core::Errc;
using core::err;

namespace {

constexpr const char* kLog = "softtoken";

// Attributes and secrets together, as core's policy sees an object; values are wiped with it.
core::AttrMap all_attributes(const core::AttrMap& attrs, const Secrets& secrets) {
  core::AttrMap all = attrs;
  for (auto& [t, v] : secrets) all.set(t, Bytes(v.begin(), v.end()));
  return all;
}

}  // namespace

core::R<void> SoftToken::check_pending(const std::string& uid, const core::AttrMap& attrs, const Secrets& secrets,
                                       const Bytes& base) {
  const bool at_login = !keys_.empty();
  if (attrs.string_or(CKA_UNIQUE_ID, uid) != uid) return err(Errc::device_error, "its CKA_UNIQUE_ID is another object's");
  const auto cls = attrs.ulong(CKA_CLASS).value_or(CKO_DATA);
  for (auto& [t, v] : secrets)
    if (!core::is_secret_attribute(cls, t))
      return err(Errc::device_error, std::string(core::attribute_name(t)) + " is sealed but is no secret attribute");
  if (base.empty()) {
    CDC_TRY(core::check_public_session_object(all_attributes(attrs, secrets)));
    if (!at_login) return {};  // made through the API: its material was checked then
    core::AttrMap a = attrs;
    Secrets s = secrets;
    CDC_TRY(complete_material(a, s));
    for (auto& [t, v] : a)
      if (const Bytes* stored = attrs.find(t); stored && *stored != v)
        return err(Errc::attribute_value_invalid, std::string(core::attribute_name(t)) + " does not fit the key material");
    for (auto& [t, v] : s)
      if (auto it = secrets.find(t); it != secrets.end() && it->second != v)
        return err(Errc::attribute_value_invalid, std::string(core::attribute_name(t)) + " does not fit the key material");
    return {};
  }
  CDC_ASSIGN(auto b, parse_record(base));
  if (b.is_private || b.pending || b.token_id != meta_->token_id)
    return err(Errc::device_error, "the record it changes is not an authenticated public record of this token");
  if (at_login) CDC_TRY(verify_record(crypto_, keys_, uid, b));
  CDC_ASSIGN(auto opened, open_record(crypto_, keys_, uid, b));
  if (opened.secrets != secrets) return err(Errc::attribute_read_only, "its key material is not that of the record it changes");
  return core::check_public_session_change(b.attrs, attrs);
}

core::R<void> SoftToken::write_pending(const std::string& uid, const core::AttrMap& attrs, const Secrets& secrets) {
  const std::string token_id = meta_->token_id;
  std::optional<core::Error> failure;
  std::optional<ObjectRecord> written;
  // Under the store's lock, so that the base is the record on disk now, whoever wrote it.
  auto r = store_->locked([&]() -> store::R<void> {
    Bytes base;
    if (auto cur = store_->get(uid); cur) {
      auto parsed = parse_record(std::move(*cur));
      if (!parsed) {
        failure = parsed.error();
        return {};
      }
      if (parsed->is_private) {
        failure = core::Error{Errc::user_not_logged_in, "changing a private object needs a login"};
        return {};
      }
      base = parsed->pending ? std::move(parsed->base) : std::move(parsed->raw);
    } else if (cur.error().code != store::Error::Code::not_found) {
      return fail(cur.error());
    }
    if (auto c = check_pending(uid, attrs, secrets, base); !c) {
      failure = core::Error{Errc::user_not_logged_in, "without a login a token object can only be written as a public "
                                                      "session may write it: " + c.error().message};
      return {};
    }
    auto rec = seal_pending(crypto_, uid, token_id, attrs, secrets, std::move(base));
    if (!rec) {
      failure = rec.error();
      return {};
    }
    if (auto p = store_->put(uid, rec->raw); !p) return p;
    written = std::move(*rec);
    return {};
  });
  if (!r) return fail(from_store(r.error()));
  if (failure) return fail(std::move(*failure));
  key_cache_.erase(uid);
  token_objs_[uid] = TokenRecord{std::move(*written), Trust::unverified, false};
  reported_.insert(uid);  // core takes the object from the caller
  return {};
}

void SoftToken::authenticate(const std::string& uid, TokenRecord& r, const Secrets& secrets) {
  auto rec = seal_record(crypto_, keys_, uid, keys_token_id_, r.rec.attrs, secrets);
  bool replaced = false;
  auto w = rec ? store_->locked([&]() -> store::R<void> {
    auto cur = store_->get(uid);
    if (!cur || *cur != r.rec.raw) return {};  // changed or gone meanwhile: the next refresh sees it
    CDC_TRY(store_->put(uid, rec->raw));
    replaced = true;
    return {};
  })
               : store::R<void>{};
  if (!rec || !w) {
    // Checked, so served; written again at the next login.
    log::warn(kLog, "token '" + cfg_.dir + "': object " + uid + " written without a login could not be rewritten as "
                        "an authenticated record: " + (rec ? w.error().message : rec.error().message));
    return;
  }
  if (!replaced) return;
  log::info(kLog, "token '" + cfg_.dir + "': object " + uid + ", written without a login, is authenticated");
  r.rec = std::move(*rec);
}

}  // namespace cdcp11::softtoken
