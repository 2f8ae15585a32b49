#include "tests/unit/core/fake_backend.h"

#include <cstdio>

#include "core/attribute_policy.h"

namespace cdcp11::core::test {

namespace {

std::string str(ByteView v) { return std::string(v.begin(), v.end()); }

// Toy "crypto": the output names the key and the mechanism, so a test sees where a call went.
class ToyOp final : public Operation {
 public:
  ToyOp(std::string tag) : tag_(std::move(tag)) {}
  R<SecureBytes> update(ByteView in) override {
    data_.insert(data_.end(), in.begin(), in.end());
    return SecureBytes{};
  }
  R<SecureBytes> finish() override {
    std::string out = tag_ + ":" + str(data_);
    return SecureBytes(out.begin(), out.end());
  }
  R<void> verify(ByteView sig) override {
    auto expected = finish();
    if (str(sig) != std::string(expected->begin(), expected->end()))
      return err(Errc::signature_invalid, "toy signature differs");
    return {};
  }

 private:
  std::string tag_;
  Bytes data_;
};

}  // namespace

void FakeBackend::push_upsert(StoredObject o) { pending_.upserted.push_back(std::move(o)); }

void FakeBackend::push_remove(const std::string& uid) {
  objects_.erase(uid);
  secrets_.erase(uid);
  pending_.removed.push_back(uid);
}

void FakeBackend::push_full_reload(std::vector<StoredObject> objects) {
  pending_ = {};
  pending_.full_reload = true;
  pending_.upserted = std::move(objects);
}

StoredObject FakeBackend::make_external(AttrMap attrs) { return store(std::move(attrs), {}); }

TokenStatus FakeBackend::status() {
  TokenStatus s;
  s.label = "fake";
  s.serial = "0000000000000001";
  s.initialized = true;
  s.user_pin_initialized = true;
  s.manufacturer = "tests";
  s.model = "fake backend";
  return s;
}

R<void> FakeBackend::init_token(ByteView, const std::string&) { return err(Errc::not_supported, "fake"); }
R<void> FakeBackend::init_pin(ByteView pin) {
  user_pin = str(pin);
  return {};
}
R<void> FakeBackend::set_pin(CK_USER_TYPE, ByteView, ByteView) { return err(Errc::not_supported, "fake"); }

R<void> FakeBackend::login(CK_USER_TYPE who, ByteView pin) {
  calls.push_back("login");
  if (str(pin) != (who == CKU_SO ? so_pin : user_pin)) return err(Errc::pin_incorrect, "wrong PIN");
  logged_in_ = true;
  return {};
}

R<void> FakeBackend::check_pin(ByteView pin) {
  if (str(pin) != user_pin) return err(Errc::pin_incorrect, "wrong PIN");
  return {};
}

R<ObjectChanges> FakeBackend::refresh_object(const std::string& uid) {
  object_refreshes.push_back(uid);
  const int listings = refreshes;
  auto ch = refresh();
  refreshes = listings;
  return ch;
}

R<ObjectChanges> FakeBackend::refresh() {
  ++refreshes;
  ObjectChanges out = std::move(pending_);
  pending_ = {};
  for (auto& o : out.upserted) objects_[o.uid] = o;
  if (out.full_reload) {
    std::map<std::string, StoredObject> kept;
    for (auto& o : out.upserted) kept[o.uid] = o;
    for (auto& [uid, o] : objects_)
      if (!o.attrs.bool_or(CKA_TOKEN, false)) kept[uid] = o;  // session objects are not the store's
    objects_ = std::move(kept);
  }
  return out;
}

StoredObject FakeBackend::store(AttrMap attrs, SecretAttrs secrets) {
  char uid[33];
  std::snprintf(uid, sizeof uid, "%032x", next_uid_++);
  attrs.set_string(CKA_UNIQUE_ID, uid);
  StoredObject o{uid, std::move(attrs)};
  objects_[uid] = o;
  secrets_[uid] = std::move(secrets);
  return o;
}

R<StoredObject> FakeBackend::create_object(const AttrMap& in) {
  calls.push_back("create");
  if (fail_create) return Unexpected<Error>{*fail_create};
  const auto cls = in.ulong(CKA_CLASS).value_or(CKO_DATA);
  AttrMap attrs;
  SecretAttrs secrets;
  for (auto& [t, v] : in) {
    if (is_secret_attribute(cls, t)) secrets[t] = SecureBytes(v.begin(), v.end());
    else attrs.set(t, v);
  }
  if (cls == CKO_SECRET_KEY && secrets.count(CKA_VALUE)) attrs.set_ulong(CKA_VALUE_LEN, secrets[CKA_VALUE].size());
  return store(std::move(attrs), std::move(secrets));
}

R<StoredObject> FakeBackend::create_key_reference(const AttrMap& attrs) { return store(attrs, {}); }

R<StoredObject> FakeBackend::copy_object(const std::string& src, const AttrMap& attrs) {
  auto it = secrets_.find(src);
  if (it == secrets_.end()) return err(Errc::object_handle_invalid, "no such object");
  return store(attrs, it->second);
}

R<void> FakeBackend::update_object(const std::string& uid, const AttrMap& attrs) {
  auto it = objects_.find(uid);
  if (it == objects_.end()) return err(Errc::object_handle_invalid, "no such object");
  it->second.attrs = attrs;
  return {};
}

R<void> FakeBackend::destroy_object(const std::string& uid) {
  calls.push_back("destroy");
  objects_.erase(uid);
  secrets_.erase(uid);
  return {};
}

R<SecureBytes> FakeBackend::secret_attribute(const std::string& uid, CK_ATTRIBUTE_TYPE t) {
  auto it = secrets_.find(uid);
  if (it == secrets_.end() || !it->second.count(t)) return err(Errc::attribute_sensitive, "no such secret");
  return it->second.at(t);
}

R<std::size_t> FakeBackend::object_size(const std::string& uid) {
  auto it = objects_.find(uid);
  if (it == objects_.end()) return err(Errc::object_handle_invalid, "no such object");
  return it->second.attrs.serialize_secure().size();
}

R<StoredObject> FakeBackend::generate_key(const Mechanism& m, const AttrMap& attrs) {
  calls.push_back(std::string("generate ") + m.entry->name);
  const std::size_t len = attrs.ulong(CKA_VALUE_LEN).value_or(32);
  return store(attrs, SecretAttrs{{CKA_VALUE, SecureBytes(len, 0x5a)}});
}

R<std::pair<StoredObject, StoredObject>> FakeBackend::generate_key_pair(const Mechanism& m, const AttrMap& pub,
                                                                        const AttrMap& priv) {
  calls.push_back(std::string("generate ") + m.entry->name);
  AttrMap p = pub, q = priv;
  const Bytes n(pub.ulong(CKA_MODULUS_BITS).value_or(2048) / 8, 0xc5);
  for (AttrMap* a : {&p, &q}) {
    a->set(CKA_MODULUS, n);
    a->set(CKA_PUBLIC_EXPONENT, Bytes{1, 0, 1});
  }
  auto a = store(std::move(p), {});
  auto b = store(std::move(q), SecretAttrs{{CKA_PRIVATE_EXPONENT, SecureBytes(n.size(), 7)}});
  return std::make_pair(std::move(a), std::move(b));
}

R<std::unique_ptr<Operation>> FakeBackend::begin(OpKind kind, const Mechanism& m, const StoredObject& key) {
  if (!objects_.count(key.uid)) return err(Errc::key_handle_invalid, "the key is gone");
  std::lock_guard lk(calls_mu);
  calls.push_back(std::string("begin ") + m.entry->name);
  (void)kind;
  return std::unique_ptr<Operation>(new ToyOp(std::string(m.entry->name) + "/" + key.uid));
}

R<std::unique_ptr<Operation>> FakeBackend::begin_digest(const Mechanism& m) {
  return std::unique_ptr<Operation>(new ToyOp(m.entry->name));
}

R<SecureBytes> FakeBackend::key_value_for_digest(const StoredObject& key) {
  return secret_attribute(key.uid, CKA_VALUE);
}

R<Bytes> FakeBackend::wrap_key(const Mechanism& m, const StoredObject& wrapping, const StoredObject& key) {
  calls.push_back(std::string("wrap ") + m.entry->name);
  if (!objects_.count(wrapping.uid) || !objects_.count(key.uid)) return err(Errc::key_handle_invalid, "gone");
  if (caps.enforces_wrap_policy && !key.attrs.bool_or(CKA_EXTRACTABLE, false))
    return err(Errc::key_unextractable, "the fake will not wrap it");
  const std::string out = std::string("[") + m.entry->name + "(" + wrapping.uid.substr(28) + "," + key.uid.substr(28) + ")]";
  return Bytes(out.begin(), out.end());
}

R<StoredObject> FakeBackend::unwrap_key(const Mechanism&, const StoredObject&, ByteView, const AttrMap& attrs) {
  return store(attrs, SecretAttrs{{CKA_VALUE, SecureBytes(32, 1)}});
}

R<StoredObject> FakeBackend::derive_key(const Mechanism&, const StoredObject&, const AttrMap& attrs) {
  return store(attrs, SecretAttrs{{CKA_VALUE, SecureBytes(32, 2)}});
}

R<void> FakeBackend::random(std::uint8_t* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(i);
  return {};
}

R<AttrMap> FakeBackend::public_key(const StoredObject& key) {
  AttrMap out;
  out.set_ulong(CKA_KEY_TYPE, key.attrs.ulong(CKA_KEY_TYPE).value_or(0));
  for (auto t : {CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS, CKA_EC_POINT})
    if (auto* v = key.attrs.find(t)) out.set(t, *v);
  return out;
}

R<SecretAttrs> FakeBackend::export_plain(const StoredObject& key) {
  if (!caps.plain_export) return err(Errc::key_unextractable, "no plain export");
  return secrets_[key.uid];
}

}  // namespace cdcp11::core::test
