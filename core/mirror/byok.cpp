#include "core/mirror/byok.h"

#include <algorithm>
#include <cstring>

#include "common/log.h"

namespace cdcp11::core::mirror {

namespace {

constexpr const char* kLog = "mirror";

bool can(const std::vector<SlotMechanism>& list, CK_MECHANISM_TYPE t, CK_FLAGS need) {
  return std::any_of(list.begin(), list.end(),
                     [&](const SlotMechanism& m) { return m.type == t && (m.flags & need) == need; });
}

std::string who(const std::string& group, const StoredObject& key) {
  return "group '" + group + "': " + (key.uid.empty() ? "the key" : "key " + key.uid) + ": ";
}

Unexpected<Error> refuse(Errc code, const std::string& why) {
  log::warn(kLog, why);
  return err(code, why);
}

// native: one wrap_key with CKM_RSA_AES_KEY_WRAP; else composed. The error says what is missing.
R<bool> plan(Backend& b, const Capabilities& caps) {
  const auto list = slot_mechanisms(&b);
  if (can(list, CKM_RSA_AES_KEY_WRAP, CKF_WRAP)) return true;
  if (!caps.rfc5649_wrap)
    return err(Errc::mechanism_invalid, caps.holder + " offers neither CKM_RSA_AES_KEY_WRAP nor an RFC 5649 AES key "
                                                      "wrap (CKM_AES_KEY_WRAP_KWP) to compose it from");
  if (!can(list, CKM_RSA_PKCS_OAEP, CKF_WRAP))
    return err(Errc::mechanism_invalid,
               caps.holder + " does not wrap with CKM_RSA_PKCS_OAEP, needed to compose CKM_RSA_AES_KEY_WRAP");
  if (!can(list, CKM_AES_KEY_GEN, CKF_GENERATE))
    return err(Errc::mechanism_invalid,
               caps.holder + " does not generate AES keys, needed to compose CKM_RSA_AES_KEY_WRAP");
  return false;
}

// A session object of the backend, destroyed with this.
class SessionObject {
 public:
  SessionObject(Backend& b, StoredObject o) : b_(b), o_(std::move(o)) {}
  SessionObject(const SessionObject&) = delete;
  SessionObject& operator=(const SessionObject&) = delete;
  ~SessionObject() { (void)b_.destroy_object(o_.uid); }
  const StoredObject& operator*() const { return o_; }

 private:
  Backend& b_;
  StoredObject o_;
};

template <class T>
Mechanism mechanism(CK_MECHANISM_TYPE type, const T* param) {
  Mechanism m{find_mechanism(type), {}};
  if (param) {
    m.param.resize(sizeof(T));
    std::memcpy(m.param.data(), param, sizeof(T));
  }
  return m;
}

// The backend's refusal to wrap the target, with what the administrator must change.
Error explain(Error e, const AttrMap& key, bool native, const std::string& holder) {
  if (e.code == Errc::key_unextractable) {
    e.message += ": the key is not CKA_EXTRACTABLE, so " + holder +
                 " wraps it under no key; CKA_EXTRACTABLE must be set when the key is created (it cannot be turned "
                 "on later)";
  } else if (e.code == Errc::key_not_wrappable && key.bool_or(CKA_WRAP_WITH_TRUSTED, false)) {
    e.message += native ? ": the key has CKA_WRAP_WITH_TRUSTED, so " + holder +
                              " wraps it only under a CKA_TRUSTED key: the SO must import the KEK with CKA_TRUSTED"
                        : ": the key has CKA_WRAP_WITH_TRUSTED, so " + holder +
                              " wraps it only under a CKA_TRUSTED key, and only the SO can mark one: an ephemeral "
                              "session key cannot be; create the key without CKA_WRAP_WITH_TRUSTED";
  }
  return e;
}

R<StoredObject> import_kek(Backend& b, ByteView n, ByteView e) {
  AttrMap t;
  t.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
  t.set_ulong(CKA_KEY_TYPE, CKK_RSA);
  t.set_bool(CKA_TOKEN, false);
  t.set_bool(CKA_PRIVATE, false);
  t.set_bool(CKA_WRAP, true);
  t.set_bool(CKA_ENCRYPT, false);
  t.set_bool(CKA_VERIFY, false);
  t.set(CKA_MODULUS, Bytes(n.begin(), n.end()));
  t.set(CKA_PUBLIC_EXPONENT, Bytes(e.begin(), e.end()));
  auto made = b.create_object(t);
  if (made) return made;
  // The backend refusing the key itself (its modulus, exponent or size) says the KEK is unfit;
  // anything else (the device, the session) is the backend's failure and keeps its code.
  switch (made.error().code) {
    case Errc::attribute_value_invalid:
    case Errc::attribute_type_invalid:
    case Errc::template_incomplete:
    case Errc::template_inconsistent:
    case Errc::key_size_range:
    case Errc::domain_params_invalid:
      return err(Errc::wrapping_key_type_inconsistent,
                 "the key-exchange key is not a valid RSA public key: " + made.error().message);
    default:
      return err(made.error().code, "the key-exchange key could not be loaded into the backend: " + made.error().message);
  }
}

R<StoredObject> ephemeral_aes(Backend& b) {
  AttrMap t;
  t.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
  t.set_ulong(CKA_KEY_TYPE, CKK_AES);
  t.set_ulong(CKA_VALUE_LEN, 32);
  t.set_bool(CKA_TOKEN, false);
  t.set_bool(CKA_PRIVATE, true);
  t.set_bool(CKA_SENSITIVE, true);
  t.set_bool(CKA_EXTRACTABLE, true);  // it is itself wrapped under the KEK
  t.set_bool(CKA_WRAP, true);
  t.set_bool(CKA_UNWRAP, false);
  t.set_bool(CKA_ENCRYPT, false);
  t.set_bool(CKA_DECRYPT, false);
  return b.generate_key(Mechanism{find_mechanism(CKM_AES_KEY_GEN), {}}, t);
}

// The target wrapped for Azure: refused where the backend's policy forbids it; else whether the
// backend wraps natively (CKM_RSA_AES_KEY_WRAP) or the blob is composed.
R<bool> wrap_plan(Backend& b, const std::string& group, const StoredObject& key, const Capabilities& caps) {
  if (caps.enforces_wrap_policy && !key.attrs.bool_or(CKA_EXTRACTABLE, false))
    return refuse(Errc::key_unextractable,
                  who(group, key) + caps.holder + " will not wrap it for Azure: CKA_EXTRACTABLE is false (it cannot "
                                                  "be changed after creation; make keys to be mirrored with "
                                                  "CKA_EXTRACTABLE true)");
  if (caps.enforces_wrap_policy && key.attrs.bool_or(CKA_WRAP_WITH_TRUSTED, false))
    return refuse(Errc::key_not_wrappable,
                  who(group, key) + "CKA_WRAP_WITH_TRUSTED is true: only a CKA_TRUSTED wrapping key (set by the "
                                    "SO) may wrap it, which an ephemeral key made for the transfer never is");
  auto native = plan(b, caps);
  if (!native)
    return refuse(Errc::mechanism_invalid,
                  who(group, key) + caps.holder + " has no mechanism to make the BYOK blob: " + native.error().message);
  return native;
}

}  // namespace

R<void> check_exportable(Backend& b, const std::string& group, const StoredObject& key, bool plain,
                         bool hardware_plain_opt_in) {
  const Capabilities caps = b.capabilities();
  if (plain) {
    if (caps.plain_export) return {};
    if (!hardware_plain_opt_in)
      return refuse(Errc::key_unextractable,
                    who(group, key) + "a Standard vault takes the key as a plain JWK, which would put the clear key "
                                      "outside " + caps.holder + "; mirror such keys into a Premium vault or a "
                                      "Managed HSM (BYOK: the key is wrapped inside " + caps.holder + "), or set the "
                                      "group's mirror.allow_plain_export_from_hsm for keys " + caps.holder +
                                      " lets out in clear");
    if (key.attrs.bool_or(CKA_SENSITIVE, true))
      return refuse(Errc::key_unextractable,
                    who(group, key) + "CKA_SENSITIVE is true: a sensitive key never leaves " + caps.holder +
                        " in clear, so it cannot go to a Standard vault as a plain JWK; mirror it into a Premium "
                        "vault or a Managed HSM");
    if (!key.attrs.bool_or(CKA_EXTRACTABLE, false))
      return refuse(Errc::key_unextractable,
                    who(group, key) + "CKA_EXTRACTABLE is false: " + caps.holder + " will not let it out, so it "
                                      "cannot go to a Standard vault as a plain JWK");
    return {};
  }
  if (auto p = wrap_plan(b, group, key, caps); !p) return fail(std::move(p).error());
  return {};
}

R<Bytes> wrap_for_byok(Backend& b, const std::string& group, const StoredObject& key, ByteView kek_n,
                       ByteView kek_e) {
  const Capabilities caps = b.capabilities();
  CDC_ASSIGN(const bool native, wrap_plan(b, group, key, caps));
  CDC_ASSIGN(auto kek_obj, import_kek(b, kek_n, kek_e));
  SessionObject kek(b, std::move(kek_obj));
  // Azure BYOK: OAEP with SHA-1 and MGF1-SHA-1, no label.
  const CK_RSA_PKCS_OAEP_PARAMS oaep{CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, nullptr, 0};
  Bytes blob;
  if (native) {
    const CK_RSA_AES_KEY_WRAP_PARAMS p{256, const_cast<CK_RSA_PKCS_OAEP_PARAMS*>(&oaep)};
    auto wrapped = b.wrap_key(mechanism(CKM_RSA_AES_KEY_WRAP, &p), *kek, key);
    if (!wrapped) return fail(explain(std::move(wrapped).error(), key.attrs, true, caps.holder));
    blob = std::move(*wrapped);
  } else {
    CDC_ASSIGN(auto eph_obj, ephemeral_aes(b));
    SessionObject eph(b, std::move(eph_obj));
    auto wrapped_key = b.wrap_key(Mechanism{find_mechanism(CKM_AES_KEY_WRAP_KWP), {}}, *eph, key);
    if (!wrapped_key) return fail(explain(std::move(wrapped_key).error(), key.attrs, false, caps.holder));
    CDC_ASSIGN(blob, b.wrap_key(mechanism(CKM_RSA_PKCS_OAEP, &oaep), *kek, *eph));
    blob.insert(blob.end(), wrapped_key->begin(), wrapped_key->end());
  }
  log::info(kLog, "group '" + group + "': key " + key.uid + " wrapped in " + caps.holder +
                      " for Azure (" + (native ? "CKM_RSA_AES_KEY_WRAP" : "composed RSA-OAEP + AES key wrap with padding") +
                      ")");
  return blob;
}

}  // namespace cdcp11::core::mirror
