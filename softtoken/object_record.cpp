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
constexpr std::string_view kVendorEncLabel = "cdcp11 vendor state encryption key v1";
constexpr std::string_view kVendorMacLabel = "cdcp11 vendor state authentication key v1";

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

// nonce || AES-256-GCM of plain under key, with a fresh nonce.
core::R<Bytes> seal_with(crypto::Backend& c, const crypto::KeyPtr& key, Bytes aad, ByteView plain) {
  Bytes out(kNonce);
  if (auto rr = c.random(out.data(), out.size()); !rr) return fail(crypto_error(rr.error()));
  CDC_ASSIGN(auto ct, aes_gcm(c, key, true, out, std::move(aad), plain));
  out.insert(out.end(), ct.begin(), ct.end());
  return out;
}

core::R<Bytes> seal(crypto::Backend& c, const RecordKeys& k, const std::string& uid, const ObjectRecord& r,
                    ByteView plain) {
  CDC_ASSIGN(auto key, sealing_key(c, k, r));
  return seal_with(c, key, aad(r, uid), plain);
}

}  // namespace

core::R<void> RecordKeys::set(crypto::Backend& c, ByteView token_key) {
  if (token_key.size() != kKeyLen) return err(Errc::device_error, "the token key has the wrong length");
  SecureBytes all(token_key.begin(), token_key.end());
  // In the order of the accessors.
  for (auto label : {kEncLabel, kMacLabel, kVendorEncLabel, kVendorMacLabel}) {
    CDC_ASSIGN(Bytes derived, hmac_sha256(c, token_key, {view(label)}));
    all.insert(all.end(), derived.begin(), derived.end());
    secure_zero(derived.data(), derived.size());
  }
  if (!buf_.assign(all)) return err(Errc::host_memory, "no memory for the token key");
  return {};
}

core::R<Bytes> VendorKeysSeal::mac(const std::string& uid, ByteView canonical) {
  if (k_.empty()) return err(Errc::user_not_logged_in, "vendor state is authenticated under the token key: no login");
  const std::string ctx = context(uid) + "|";
  return hmac_sha256(c_, k_.vendor_mac_key(), {view(ctx), canonical});
}

core::R<crypto::KeyPtr> VendorKeysSeal::enc_key() {
  if (k_.empty()) return err(Errc::user_not_logged_in, "vendor state is sealed under the token key: no login");
  auto l = c_.load_secret(k_.vendor_enc_key());
  if (!l) return fail(crypto_error(l.error()));
  return std::move(*l);
}

core::R<Bytes> VendorKeysSeal::seal(const std::string& uid, ByteView canonical) {
  CDC_ASSIGN(auto key, enc_key());
  const std::string ctx = context(uid);
  return seal_with(c_, key, Bytes(ctx.begin(), ctx.end()), canonical);
}

core::R<SecureBytes> VendorKeysSeal::open(const std::string& uid, ByteView sealed) {
  CDC_ASSIGN(auto key, enc_key());
  if (sealed.size() < kNonce + kTag) return err(Errc::device_error, "object " + uid + ": sealed vendor state truncated");
  const std::string ctx = context(uid);
  auto plain = aes_gcm(c_, key, false, sealed.first(kNonce), Bytes(ctx.begin(), ctx.end()), sealed.subspan(kNonce));
  if (!plain) return err(Errc::device_error, "object " + uid + ": sealed vendor state does not open");
  return std::move(*plain);
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
