#include "softtoken/object_record.h"

#include <cstring>

namespace cdcp11::softtoken {

using core::Errc;
using core::err;

namespace {

constexpr std::uint8_t kVersion = 2, kLegacyVersion = 1;
constexpr std::uint8_t kPublic = 0, kPrivate = 1, kPending = 2;
constexpr std::size_t kHeader = 22, kIdLen = 16, kNonce = 12, kTag = 16, kMac = 32;
constexpr std::string_view kEncLabel = "cdcp11 object encryption key v2";
constexpr std::string_view kMacLabel = "cdcp11 object authentication key v2";
constexpr std::string_view kMacContext = "cdcp11-record-v2|";
constexpr std::string_view kPublicLabel = "cdcp11 public object sealing key v2";

template <class Buf>
void put32(Buf& out, std::size_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
bool get32(ByteView b, std::size_t& off, std::size_t& v) {
  if (off > b.size() || b.size() - off < 4) return false;
  v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<std::size_t>(b[off + i]) << (8 * i);
  off += 4;
  return true;
}

core::Error crypto_error(const crypto::Error& e) { return from_crypto(e, CryptoContext::other); }

core::R<Bytes> hmac_sha256(crypto::Backend& c, ByteView key, std::initializer_list<ByteView> parts) {
  auto k = c.load_secret(key);
  if (!k) return fail(crypto_error(k.error()));
  crypto::SignParams p;
  p.scheme = crypto::SignParams::Scheme::hmac;
  p.hash = crypto::Hash::sha256;
  auto s = c.signer(*k, p);
  if (!s) return fail(crypto_error(s.error()));
  for (auto part : parts)
    if (auto u = (*s)->update(part); !u) return fail(crypto_error(u.error()));
  auto mac = (*s)->finish();
  if (!mac) return fail(crypto_error(mac.error()));
  return std::move(*mac);
}

// The key a record's sealed part is under: the encryption key (private) or the public sealing
// key of the record's token.
core::R<crypto::KeyPtr> sealing_key(crypto::Backend& c, const RecordKeys& k, const ObjectRecord& r) {
  if (r.is_private) {
    if (k.empty()) return err(Errc::user_not_logged_in, "a private object needs a login");
    auto l = c.load_secret(k.enc_key());
    if (!l) return fail(crypto_error(l.error()));
    return std::move(*l);
  }
  CDC_ASSIGN(Bytes pk, hmac_sha256(c, view(kPublicLabel), {view(r.token_id)}));
  auto l = c.load_secret(pk);
  if (!l) return fail(crypto_error(l.error()));
  return std::move(*l);
}

Bytes aad(const ObjectRecord& r, const std::string& uid) {
  std::string s = "cdcp11-object-v2|" + r.token_id + "|" + uid + (r.is_private ? "|1" : "|0");
  return Bytes(s.begin(), s.end());
}

core::R<Bytes> record_mac(crypto::Backend& c, const RecordKeys& k, const std::string& uid, ByteView body) {
  return hmac_sha256(c, k.mac_key(), {view(kMacContext), view(uid), view("|"), body});
}

core::R<SecureBytes> unseal(crypto::Backend& c, const RecordKeys& k, const std::string& uid, const ObjectRecord& r) {
  if (r.sealed.size() < kNonce + kTag) return err(Errc::device_error, "object " + uid + ": sealed data truncated");
  CDC_ASSIGN(auto key, sealing_key(c, k, r));
  const ByteView sealed(r.sealed);
  auto plain = aes_gcm(c, key, false, sealed.first(kNonce), aad(r, uid), sealed.subspan(kNonce));
  if (!plain) return err(Errc::device_error, "object " + uid + ": sealed data does not open");
  return std::move(*plain);
}

core::R<Bytes> seal(crypto::Backend& c, const RecordKeys& k, const std::string& uid, const ObjectRecord& r,
                    ByteView plain) {
  Bytes out(kNonce);
  if (auto rr = c.random(out.data(), out.size()); !rr) return fail(crypto_error(rr.error()));
  CDC_ASSIGN(auto key, sealing_key(c, k, r));
  CDC_ASSIGN(auto ct, aes_gcm(c, key, true, out, aad(r, uid), plain));
  out.insert(out.end(), ct.begin(), ct.end());
  return out;
}

}  // namespace

core::R<void> RecordKeys::set(crypto::Backend& c, ByteView token_key) {
  if (token_key.size() != kKeyLen) return err(Errc::device_error, "the token key has the wrong length");
  CDC_ASSIGN(Bytes enc, hmac_sha256(c, token_key, {view(kEncLabel)}));
  auto mac = hmac_sha256(c, token_key, {view(kMacLabel)});
  if (!mac) {
    secure_zero(enc.data(), enc.size());
    return fail(std::move(mac).error());
  }
  SecureBytes all(token_key.begin(), token_key.end());
  all.insert(all.end(), enc.begin(), enc.end());
  all.insert(all.end(), mac->begin(), mac->end());
  secure_zero(enc.data(), enc.size());
  secure_zero(mac->data(), mac->size());
  if (!buf_.assign(all)) return err(Errc::host_memory, "no memory for the token key");
  return {};
}

core::R<SecureBytes> aes_gcm(crypto::Backend& c, const crypto::KeyPtr& key, bool encrypt, ByteView nonce,
                             Bytes aad, ByteView in) {
  crypto::CipherParams p;
  p.scheme = crypto::CipherParams::Scheme::aes_gcm;
  p.iv.assign(nonce.begin(), nonce.end());
  p.aad = std::move(aad);
  auto ci = encrypt ? c.encryptor(key, p) : c.decryptor(key, p);
  if (!ci) return fail(crypto_error(ci.error()));
  auto a = (*ci)->update(in);
  if (!a) return fail(crypto_error(a.error()));
  auto b = (*ci)->finish();
  if (!b) return fail(crypto_error(b.error()));
  a->insert(a->end(), b->begin(), b->end());
  return std::move(*a);
}

bool is_legacy_record(ByteView raw) {
  return raw.size() > 4 && std::memcmp(raw.data(), "CDCO", 4) == 0 && raw[4] == kLegacyVersion;
}

core::R<ObjectRecord> parse_record(Bytes raw) {
  auto bad = [](const std::string& why) { return err(Errc::device_error, "object record " + why); };
  const ByteView b(raw);
  if (is_legacy_record(b))
    return bad("has format 1 (written before records were authenticated)");
  if (b.size() < kHeader + 8 || std::memcmp(b.data(), "CDCO", 4) != 0 || b[4] != kVersion || b[5] > kPending)
    return bad("has an unknown format");
  ObjectRecord r;
  r.is_private = b[5] == kPrivate;
  r.pending = b[5] == kPending;
  r.token_id = to_hex(b.subspan(6, kIdLen));
  if (!r.pending && b.size() < kHeader + 8 + kMac) return bad("truncated");
  const ByteView body = r.pending ? b : b.first(b.size() - kMac);
  std::size_t off = kHeader, n = 0;
  if (!get32(body, off, n) || body.size() - off < n) return bad("truncated");
  if (r.is_private && n != 0) return bad("of a private object has attributes in clear");
  if (!r.is_private) {
    CDC_ASSIGN(r.attrs, core::AttrMap::deserialize(body.subspan(off, n)));
  }
  off += n;
  if (!get32(body, off, n) || body.size() - off < n || (!r.pending && body.size() - off != n)) return bad("truncated");
  if (r.is_private && n == 0) return bad("of a private object has no sealed attributes");
  r.sealed.assign(body.begin() + off, body.begin() + off + n);
  off += n;
  if (r.pending) {
    if (!get32(body, off, n) || body.size() - off != n) return bad("truncated");
    r.base.assign(body.begin() + off, body.end());
  }
  r.raw = std::move(raw);
  return r;
}

core::R<void> verify_record(crypto::Backend& c, const RecordKeys& k, const std::string& uid,
                            const ObjectRecord& r) {
  if (r.pending) return err(Errc::device_error, "object record " + uid + " is not authenticated (written without a login)");
  const ByteView b(r.raw);
  CDC_ASSIGN(Bytes mac, record_mac(c, k, uid, b.first(b.size() - kMac)));
  if (!ct_equal(mac, b.last(kMac)))
    return err(Errc::device_error, "object record " + uid + " fails authentication (changed on disk?)");
  return {};
}

core::R<OpenedRecord> open_record(crypto::Backend& c, const RecordKeys& k, const std::string& uid,
                                  const ObjectRecord& r) {
  OpenedRecord out;
  if (r.sealed.empty()) return out;
  CDC_ASSIGN(auto plain, unseal(c, k, uid, r));
  ByteView secrets = plain;
  if (r.is_private) {
    std::size_t off = 0, n = 0;
    if (!get32(plain, off, n) || plain.size() - off < n)
      return err(Errc::device_error, "object " + uid + ": sealed attributes truncated");
    CDC_ASSIGN(out.attrs, core::AttrMap::deserialize(ByteView(plain).subspan(off, n)));
    secrets = ByteView(plain).subspan(off + n);
  }
  if (!secrets.empty()) {
    CDC_ASSIGN(out.secrets, deserialize_secrets(secrets));
  }
  return out;
}

core::R<ObjectRecord> seal_record(crypto::Backend& c, const RecordKeys& k, const std::string& uid,
                                  const std::string& token_id, const core::AttrMap& attrs,
                                  const Secrets& secrets) {
  if (k.empty()) return err(Errc::user_not_logged_in, "writing a token object needs a login");
  ObjectRecord r;
  r.token_id = token_id;
  r.is_private = attrs.bool_or(CKA_PRIVATE, false);
  Bytes id;
  if (!from_hex(token_id, id) || id.size() != kIdLen) return err(Errc::general_error, "bad token id");
  Bytes& out = r.raw;
  out = {'C', 'D', 'C', 'O', kVersion, r.is_private ? kPrivate : kPublic};
  out.insert(out.end(), id.begin(), id.end());
  if (r.is_private) {
    SecureBytes plain;
    SecureBytes a = attrs.serialize_secure();
    SecureBytes s = serialize_secrets(secrets);
    plain.reserve(4 + a.size() + s.size());
    put32(plain, a.size());
    plain.insert(plain.end(), a.begin(), a.end());
    plain.insert(plain.end(), s.begin(), s.end());
    CDC_ASSIGN(r.sealed, seal(c, k, uid, r, plain));
    put32(out, 0);
  } else {
    Bytes a = attrs.serialize();
    put32(out, a.size());
    out.insert(out.end(), a.begin(), a.end());
    if (!secrets.empty()) {
      CDC_ASSIGN(r.sealed, seal(c, k, uid, r, serialize_secrets(secrets)));
    }
  }
  put32(out, r.sealed.size());
  out.insert(out.end(), r.sealed.begin(), r.sealed.end());
  CDC_ASSIGN(Bytes mac, record_mac(c, k, uid, out));
  out.insert(out.end(), mac.begin(), mac.end());
  r.attrs = attrs;
  return r;
}

core::R<ObjectRecord> seal_pending(crypto::Backend& c, const std::string& uid, const std::string& token_id,
                                   const core::AttrMap& attrs, const Secrets& secrets, Bytes base) {
  if (attrs.bool_or(CKA_PRIVATE, false)) return err(Errc::user_not_logged_in, "a private object needs a login");
  ObjectRecord r;
  r.token_id = token_id;
  r.pending = true;
  Bytes id;
  if (!from_hex(token_id, id) || id.size() != kIdLen) return err(Errc::general_error, "bad token id");
  Bytes& out = r.raw;
  out = {'C', 'D', 'C', 'O', kVersion, kPending};
  out.insert(out.end(), id.begin(), id.end());
  Bytes a = attrs.serialize();
  put32(out, a.size());
  out.insert(out.end(), a.begin(), a.end());
  if (!secrets.empty()) {
    CDC_ASSIGN(r.sealed, seal(c, RecordKeys{}, uid, r, serialize_secrets(secrets)));
  }
  put32(out, r.sealed.size());
  out.insert(out.end(), r.sealed.begin(), r.sealed.end());
  put32(out, base.size());
  out.insert(out.end(), base.begin(), base.end());
  r.base = std::move(base);
  r.attrs = attrs;
  return r;
}

}  // namespace cdcp11::softtoken
