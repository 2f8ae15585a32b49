#include "core/attribute_policy.h"

#include "cdcp11/cdcp11.h"
#include "core/mechanisms.h"

#include <cstdio>
#include <vector>

namespace cdcp11::core {
namespace {

enum : unsigned {
  kReqCreate = 1u << 0,     // footnote 1
  kNoCreate = 1u << 1,      // 2
  kReqGenerate = 1u << 2,   // 3
  kNoGenerate = 1u << 3,    // 4
  kReqUnwrap = 1u << 4,     // 5
  kNoUnwrap = 1u << 5,      // 6
  kSensitive = 1u << 6,     // 7: not revealed if CKA_SENSITIVE or !CKA_EXTRACTABLE
  kModifiable = 1u << 7,    // 8
  kSoOnlyTrue = 1u << 8,    // 10
  kStickyTrue = 1u << 9,    // 11
  kStickyFalse = 1u << 10,  // 12
  kReadOnly = kNoCreate | kNoGenerate | kNoUnwrap,
  kKeyOnly = kNoGenerate | kNoUnwrap,  // value made by the token, only on create
};

enum class Kind { boolean, ulong, bytes, date, mech_array };

// Which objects a rule belongs to.
enum class Scope {
  storage, data, cert, key, public_key, private_key, secret_key,
  rsa_public, rsa_private, ec_public, ec_private, secret_value, secret_value_len,
  mirrorable,  // private and secret keys: the cdcp11 vendor attributes
};

struct Rule {
  CK_ATTRIBUTE_TYPE type;
  const char* name;
  Scope scope;
  Kind kind;
  unsigned flags;
};

bool is_ec_like(CK_KEY_TYPE kt) { return kt == CKK_EC || kt == CKK_EC_EDWARDS; }

bool in_scope(Scope s, CK_OBJECT_CLASS c, CK_KEY_TYPE kt) {
  const bool key = c == CKO_PUBLIC_KEY || c == CKO_PRIVATE_KEY || c == CKO_SECRET_KEY;
  switch (s) {
    case Scope::storage: return true;
    case Scope::data: return c == CKO_DATA;
    case Scope::cert: return c == CKO_CERTIFICATE;
    case Scope::key: return key;
    case Scope::public_key: return c == CKO_PUBLIC_KEY;
    case Scope::private_key: return c == CKO_PRIVATE_KEY;
    case Scope::secret_key: return c == CKO_SECRET_KEY;
    case Scope::rsa_public: return c == CKO_PUBLIC_KEY && kt == CKK_RSA;
    case Scope::rsa_private: return c == CKO_PRIVATE_KEY && kt == CKK_RSA;
    case Scope::ec_public: return c == CKO_PUBLIC_KEY && is_ec_like(kt);
    case Scope::ec_private: return c == CKO_PRIVATE_KEY && is_ec_like(kt);
    case Scope::secret_value: return c == CKO_SECRET_KEY;
    case Scope::secret_value_len: return c == CKO_SECRET_KEY;
    case Scope::mirrorable: return c == CKO_PRIVATE_KEY || c == CKO_SECRET_KEY;
  }
  return false;
}

using K = Kind;
using S = Scope;
// clang-format off
const std::vector<Rule>& rules() {
  static const std::vector<Rule> r = {
    // common storage object attributes
    {CKA_CLASS, "CKA_CLASS", S::storage, K::ulong, kReqCreate},
    {CKA_TOKEN, "CKA_TOKEN", S::storage, K::boolean, 0},
    {CKA_PRIVATE, "CKA_PRIVATE", S::storage, K::boolean, 0},
    {CKA_MODIFIABLE, "CKA_MODIFIABLE", S::storage, K::boolean, 0},
    {CKA_LABEL, "CKA_LABEL", S::storage, K::bytes, kModifiable},
    {CKA_COPYABLE, "CKA_COPYABLE", S::storage, K::boolean, kModifiable | kStickyFalse},
    {CKA_DESTROYABLE, "CKA_DESTROYABLE", S::storage, K::boolean, 0},
    {CKA_UNIQUE_ID, "CKA_UNIQUE_ID", S::storage, K::bytes, kReadOnly},
    // data objects
    {CKA_APPLICATION, "CKA_APPLICATION", S::data, K::bytes, kModifiable},
    {CKA_OBJECT_ID, "CKA_OBJECT_ID", S::data, K::bytes, kModifiable},
    {CKA_VALUE, "CKA_VALUE", S::data, K::bytes, kModifiable},
    // certificates (X.509 public key certificates)
    {CKA_CERTIFICATE_TYPE, "CKA_CERTIFICATE_TYPE", S::cert, K::ulong, kReqCreate},
    {CKA_TRUSTED, "CKA_TRUSTED", S::cert, K::boolean, kSoOnlyTrue},
    {CKA_CERTIFICATE_CATEGORY, "CKA_CERTIFICATE_CATEGORY", S::cert, K::ulong, 0},
    {CKA_CHECK_VALUE, "CKA_CHECK_VALUE", S::cert, K::bytes, 0},
    {CKA_START_DATE, "CKA_START_DATE", S::cert, K::date, kModifiable},
    {CKA_END_DATE, "CKA_END_DATE", S::cert, K::date, kModifiable},
    {CKA_PUBLIC_KEY_INFO, "CKA_PUBLIC_KEY_INFO", S::cert, K::bytes, 0},
    {CKA_SUBJECT, "CKA_SUBJECT", S::cert, K::bytes, kReqCreate},
    {CKA_ID, "CKA_ID", S::cert, K::bytes, kModifiable},
    {CKA_ISSUER, "CKA_ISSUER", S::cert, K::bytes, kModifiable},
    {CKA_SERIAL_NUMBER, "CKA_SERIAL_NUMBER", S::cert, K::bytes, kModifiable},
    {CKA_VALUE, "CKA_VALUE", S::cert, K::bytes, kReqCreate},
    {CKA_URL, "CKA_URL", S::cert, K::bytes, 0},
    {CKA_HASH_OF_SUBJECT_PUBLIC_KEY, "CKA_HASH_OF_SUBJECT_PUBLIC_KEY", S::cert, K::bytes, 0},
    {CKA_HASH_OF_ISSUER_PUBLIC_KEY, "CKA_HASH_OF_ISSUER_PUBLIC_KEY", S::cert, K::bytes, 0},
    {CKA_JAVA_MIDP_SECURITY_DOMAIN, "CKA_JAVA_MIDP_SECURITY_DOMAIN", S::cert, K::ulong, 0},
    {CKA_NAME_HASH_ALGORITHM, "CKA_NAME_HASH_ALGORITHM", S::cert, K::ulong, 0},
    // all keys
    {CKA_KEY_TYPE, "CKA_KEY_TYPE", S::key, K::ulong, kReqCreate | kReqUnwrap},
    {CKA_ID, "CKA_ID", S::key, K::bytes, kModifiable},
    {CKA_START_DATE, "CKA_START_DATE", S::key, K::date, kModifiable},
    {CKA_END_DATE, "CKA_END_DATE", S::key, K::date, kModifiable},
    {CKA_DERIVE, "CKA_DERIVE", S::key, K::boolean, kModifiable},
    {CKA_LOCAL, "CKA_LOCAL", S::key, K::boolean, kReadOnly},
    {CKA_KEY_GEN_MECHANISM, "CKA_KEY_GEN_MECHANISM", S::key, K::ulong, kReadOnly},
    {CKA_ALLOWED_MECHANISMS, "CKA_ALLOWED_MECHANISMS", S::key, K::mech_array, 0},
    // public keys
    {CKA_SUBJECT, "CKA_SUBJECT", S::public_key, K::bytes, kModifiable},
    {CKA_ENCRYPT, "CKA_ENCRYPT", S::public_key, K::boolean, kModifiable},
    {CKA_VERIFY, "CKA_VERIFY", S::public_key, K::boolean, kModifiable},
    {CKA_VERIFY_RECOVER, "CKA_VERIFY_RECOVER", S::public_key, K::boolean, kModifiable},
    {CKA_WRAP, "CKA_WRAP", S::public_key, K::boolean, kModifiable},
    {CKA_TRUSTED, "CKA_TRUSTED", S::public_key, K::boolean, kSoOnlyTrue},
    {CKA_PUBLIC_KEY_INFO, "CKA_PUBLIC_KEY_INFO", S::public_key, K::bytes, 0},
    // private keys
    {CKA_SUBJECT, "CKA_SUBJECT", S::private_key, K::bytes, kModifiable},
    {CKA_SENSITIVE, "CKA_SENSITIVE", S::private_key, K::boolean, kModifiable | kStickyTrue},
    {CKA_DECRYPT, "CKA_DECRYPT", S::private_key, K::boolean, kModifiable},
    {CKA_SIGN, "CKA_SIGN", S::private_key, K::boolean, kModifiable},
    {CKA_SIGN_RECOVER, "CKA_SIGN_RECOVER", S::private_key, K::boolean, kModifiable},
    {CKA_UNWRAP, "CKA_UNWRAP", S::private_key, K::boolean, kModifiable},
    {CKA_EXTRACTABLE, "CKA_EXTRACTABLE", S::private_key, K::boolean, kModifiable | kStickyFalse},
    {CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", S::private_key, K::boolean, kReadOnly},
    {CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", S::private_key, K::boolean, kReadOnly},
    {CKA_WRAP_WITH_TRUSTED, "CKA_WRAP_WITH_TRUSTED", S::private_key, K::boolean, kModifiable | kStickyTrue},
    {CKA_ALWAYS_AUTHENTICATE, "CKA_ALWAYS_AUTHENTICATE", S::private_key, K::boolean, 0},
    {CKA_PUBLIC_KEY_INFO, "CKA_PUBLIC_KEY_INFO", S::private_key, K::bytes, 0},
    // secret keys
    {CKA_SENSITIVE, "CKA_SENSITIVE", S::secret_key, K::boolean, kModifiable | kStickyTrue},
    {CKA_ENCRYPT, "CKA_ENCRYPT", S::secret_key, K::boolean, kModifiable},
    {CKA_DECRYPT, "CKA_DECRYPT", S::secret_key, K::boolean, kModifiable},
    {CKA_SIGN, "CKA_SIGN", S::secret_key, K::boolean, kModifiable},
    {CKA_VERIFY, "CKA_VERIFY", S::secret_key, K::boolean, kModifiable},
    {CKA_WRAP, "CKA_WRAP", S::secret_key, K::boolean, kModifiable},
    {CKA_UNWRAP, "CKA_UNWRAP", S::secret_key, K::boolean, kModifiable},
    {CKA_EXTRACTABLE, "CKA_EXTRACTABLE", S::secret_key, K::boolean, kModifiable | kStickyFalse},
    {CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", S::secret_key, K::boolean, kReadOnly},
    {CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", S::secret_key, K::boolean, kReadOnly},
    // Any template may give it (compared with the key's by the backend; zero length: none), and
    // C_SetAttributeValue may clear it (check_modify).
    {CKA_CHECK_VALUE, "CKA_CHECK_VALUE", S::secret_key, K::bytes, 0},
    {CKA_WRAP_WITH_TRUSTED, "CKA_WRAP_WITH_TRUSTED", S::secret_key, K::boolean, kModifiable | kStickyTrue},
    {CKA_TRUSTED, "CKA_TRUSTED", S::secret_key, K::boolean, kSoOnlyTrue},
    {CKA_VALUE, "CKA_VALUE", S::secret_value, K::bytes, kReqCreate | kKeyOnly | kSensitive},
    {CKA_VALUE_LEN, "CKA_VALUE_LEN", S::secret_value_len, K::ulong, kNoCreate},
    // RSA
    {CKA_MODULUS, "CKA_MODULUS", S::rsa_public, K::bytes, kReqCreate | kKeyOnly},
    {CKA_MODULUS_BITS, "CKA_MODULUS_BITS", S::rsa_public, K::ulong, kNoCreate | kReqGenerate | kNoUnwrap},
    {CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT", S::rsa_public, K::bytes, kReqCreate | kNoUnwrap},
    {CKA_MODULUS, "CKA_MODULUS", S::rsa_private, K::bytes, kReqCreate | kKeyOnly},
    {CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT", S::rsa_private, K::bytes, kKeyOnly},
    {CKA_PRIVATE_EXPONENT, "CKA_PRIVATE_EXPONENT", S::rsa_private, K::bytes, kReqCreate | kKeyOnly | kSensitive},
    {CKA_PRIME_1, "CKA_PRIME_1", S::rsa_private, K::bytes, kKeyOnly | kSensitive},
    {CKA_PRIME_2, "CKA_PRIME_2", S::rsa_private, K::bytes, kKeyOnly | kSensitive},
    {CKA_EXPONENT_1, "CKA_EXPONENT_1", S::rsa_private, K::bytes, kKeyOnly | kSensitive},
    {CKA_EXPONENT_2, "CKA_EXPONENT_2", S::rsa_private, K::bytes, kKeyOnly | kSensitive},
    {CKA_COEFFICIENT, "CKA_COEFFICIENT", S::rsa_private, K::bytes, kKeyOnly | kSensitive},
    // EC and EdDSA
    {CKA_EC_PARAMS, "CKA_EC_PARAMS", S::ec_public, K::bytes, kReqCreate | kReqGenerate},
    {CKA_EC_POINT, "CKA_EC_POINT", S::ec_public, K::bytes, kReqCreate | kKeyOnly},
    {CKA_EC_PARAMS, "CKA_EC_PARAMS", S::ec_private, K::bytes, kReqCreate | kKeyOnly},
    {CKA_VALUE, "CKA_VALUE", S::ec_private, K::bytes, kReqCreate | kKeyOnly | kSensitive},
    // cdcp11 vendor attributes (include/cdcp11/cdcp11.h); the state ones are written by the
    // mirror engine only
    {CKA_CDC_MIRROR, "CKA_CDC_MIRROR", S::mirrorable, K::boolean, kModifiable},
    {CKA_CDC_AZURE_KEY_NAME, "CKA_CDC_AZURE_KEY_NAME", S::mirrorable, K::bytes, kModifiable},
    {CKA_CDC_MIRROR_STATE, "CKA_CDC_MIRROR_STATE", S::mirrorable, K::ulong, kReadOnly},
    {CKA_CDC_AZURE_KEY_ID, "CKA_CDC_AZURE_KEY_ID", S::mirrorable, K::bytes, kReadOnly},
    {CKA_CDC_MIRROR_ERROR, "CKA_CDC_MIRROR_ERROR", S::mirrorable, K::bytes, kReadOnly},
    {CKA_CDC_ORIGIN, "CKA_CDC_ORIGIN", S::mirrorable, K::ulong, kReadOnly},
    // Public halves of Azure-resident keys carry where they came from, for sync.
    {CKA_CDC_ORIGIN, "CKA_CDC_ORIGIN", S::public_key, K::ulong, kReadOnly},
    {CKA_CDC_AZURE_KEY_ID, "CKA_CDC_AZURE_KEY_ID", S::public_key, K::bytes, kReadOnly},
    {CKA_CDC_CLOUD_NATIVE, "CKA_CDC_CLOUD_NATIVE", S::private_key, K::boolean, kNoCreate | kNoUnwrap},
    // Key versions (rotation, core/mirror/rotation.h): written by the rotation only, but the
    // per-key policy.
    {CKA_CDC_KEY_VERSION, "CKA_CDC_KEY_VERSION", S::mirrorable, K::ulong, kReadOnly},
    {CKA_CDC_VERSION_STATE, "CKA_CDC_VERSION_STATE", S::mirrorable, K::ulong, kReadOnly},
    {CKA_CDC_VERSION_SINCE, "CKA_CDC_VERSION_SINCE", S::mirrorable, K::ulong, kReadOnly},
    {CKA_CDC_FORMER_SINCE, "CKA_CDC_FORMER_SINCE", S::mirrorable, K::ulong, kReadOnly},
    {CKA_CDC_ROTATE_EVERY_DAYS, "CKA_CDC_ROTATE_EVERY_DAYS", S::mirrorable, K::ulong, kModifiable},
    {CKA_CDC_RETIRE_FORMER_AFTER_DAYS, "CKA_CDC_RETIRE_FORMER_AFTER_DAYS", S::mirrorable, K::ulong, kModifiable},
    {CKA_CDC_ROTATION_ERROR, "CKA_CDC_ROTATION_ERROR", S::mirrorable, K::bytes, kReadOnly},
    {CKA_CDC_KEY_VERSION, "CKA_CDC_KEY_VERSION", S::public_key, K::ulong, kReadOnly},
    {CKA_CDC_VERSION_STATE, "CKA_CDC_VERSION_STATE", S::public_key, K::ulong, kReadOnly},
  };
  return r;
}
// clang-format on

const Rule* find_rule(CK_OBJECT_CLASS c, CK_KEY_TYPE kt, CK_ATTRIBUTE_TYPE t) {
  for (auto& r : rules())
    if (r.type == t && in_scope(r.scope, c, kt)) return &r;
  return nullptr;
}

bool is_known_class(CK_OBJECT_CLASS c) {
  return c == CKO_DATA || c == CKO_CERTIFICATE || c == CKO_PUBLIC_KEY || c == CKO_PRIVATE_KEY ||
         c == CKO_SECRET_KEY;
}

bool is_known_key_type(CK_KEY_TYPE kt) {
  switch (kt) {
    case CKK_RSA: case CKK_EC: case CKK_EC_EDWARDS: case CKK_AES: case CKK_GENERIC_SECRET:
    case CKK_SHA_1_HMAC: case CKK_SHA224_HMAC: case CKK_SHA256_HMAC: case CKK_SHA384_HMAC:
    case CKK_SHA512_HMAC:
      return true;
  }
  return false;
}

R<void> check_value_shape(const Rule& r, const Bytes& v) {
  bool ok = true;
  switch (r.kind) {
    case Kind::boolean: ok = v.size() == sizeof(CK_BBOOL); break;
    case Kind::ulong: ok = v.size() == sizeof(CK_ULONG); break;
    case Kind::date: ok = v.empty() || v.size() == sizeof(CK_DATE); break;
    case Kind::mech_array: ok = v.size() % sizeof(CK_MECHANISM_TYPE) == 0; break;
    case Kind::bytes: break;
  }
  if (!ok)
    return err(Errc::attribute_value_invalid,
               std::string(r.name) + " has a value of the wrong size (" + std::to_string(v.size()) + " bytes)");
  return {};
}

}  // namespace

const char* attribute_name(CK_ATTRIBUTE_TYPE t) {
  for (auto& r : rules())
    if (r.type == t) return r.name;
  thread_local char buf[24];
  std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(t));
  return buf;
}

R<CK_OBJECT_CLASS> object_class(const AttrMap& a) {
  if (!a.has(CKA_CLASS)) return err(Errc::template_incomplete, "CKA_CLASS is missing");
  auto c = a.ulong(CKA_CLASS);
  if (!c) return err(Errc::attribute_value_invalid, "CKA_CLASS has a value of the wrong size");
  if (!is_known_class(*c))
    return err(Errc::attribute_value_invalid, "object class " + std::to_string(*c) + " is not supported");
  return *c;
}

CK_KEY_TYPE key_type_or(const AttrMap& a, CK_KEY_TYPE def) { return a.ulong(CKA_KEY_TYPE).value_or(def); }

R<void> check_template(CreateOp op, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, const AttrMap& tmpl) {
  const bool key = cls == CKO_PUBLIC_KEY || cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY;
  if (key && op != CreateOp::copy && !is_known_key_type(kt))
    return err(Errc::attribute_value_invalid, "key type " + std::to_string(kt) + " is not supported");
  if (cls == CKO_CERTIFICATE) {
    auto ct = tmpl.ulong(CKA_CERTIFICATE_TYPE);
    if (ct && *ct != CKC_X_509)
      return err(Errc::attribute_value_invalid, "only X.509 certificates (CKC_X_509) are supported");
  }
  for (auto& [t, v] : tmpl) {
    const Rule* r = find_rule(cls, kt, t);
    if (!r)
      return err(Errc::attribute_type_invalid,
                 std::string(attribute_name(t)) + " is not an attribute of this kind of object");
    CDC_TRY(check_value_shape(*r, v));
    unsigned forbid = op == CreateOp::create ? kNoCreate
                      : op == CreateOp::generate ? kNoGenerate
                      : op == CreateOp::copy ? 0u
                                             : kNoUnwrap;  // unwrap and derive
    if (r->flags & forbid)
      return err(Errc::attribute_read_only,
                 std::string(r->name) + " may not be given in the template of this operation");
    // Copy may change what C_SetAttributeValue may (check_modify decides), and the four flags.
    if (op == CreateOp::copy && t != CKA_TOKEN && t != CKA_PRIVATE && t != CKA_MODIFIABLE &&
        t != CKA_DESTROYABLE && !(r->flags & (kModifiable | kSoOnlyTrue)))
      return err(Errc::attribute_read_only, std::string(r->name) + " cannot be changed while copying");
  }
  if (op == CreateOp::copy) return {};
  unsigned req = op == CreateOp::create ? kReqCreate : op == CreateOp::generate ? kReqGenerate : kReqUnwrap;
  for (auto& r : rules()) {
    if (!(r.flags & req) || !in_scope(r.scope, cls, kt) || tmpl.has(r.type)) continue;
    // The key type of an unwrapped/generated key may come from the mechanism, and the class is
    // checked by the caller.
    if (r.type == CKA_CLASS || (r.type == CKA_KEY_TYPE && op != CreateOp::create)) continue;
    return err(Errc::template_incomplete, std::string(r.name) + " is required and missing");
  }
  return {};
}

R<void> check_so_only(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, const AttrMap& given, bool so_logged_in) {
  if (so_logged_in) return {};
  for (auto& [t, v] : given) {
    const Rule* r = find_rule(cls, kt, t);
    if (r && (r->flags & kSoOnlyTrue) && !v.empty() && v[0] != CK_FALSE)
      return err(Errc::attribute_read_only, std::string(r->name) + " can only be set to true by the SO");
  }
  return {};
}

R<void> check_consistent(const AttrMap& a) {
  if (a.bool_or(CKA_ALWAYS_AUTHENTICATE, false) && !a.bool_or(CKA_PRIVATE, false))
    return err(Errc::template_inconsistent, "CKA_ALWAYS_AUTHENTICATE may only be true on a private object (CKA_PRIVATE)");
  return {};
}

AttrMap vendor_defaults(CK_OBJECT_CLASS cls) {
  AttrMap a;
  if (cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY) {
    a.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_NONE);
    a.set_ulong(CKA_CDC_ORIGIN, CDC_ORIGIN_LOCAL);
    if (cls == CKO_PRIVATE_KEY) a.set_bool(CKA_CDC_CLOUD_NATIVE, false);
    a.set(CKA_CDC_AZURE_KEY_ID, Bytes{});
    a.set(CKA_CDC_MIRROR_ERROR, Bytes{});
  }
  return a;
}

void apply_vendor_defaults(CK_OBJECT_CLASS cls, AttrMap& a) {
  for (auto& [t, v] : vendor_defaults(cls))
    if (!a.has(t)) a.set(t, v);
}

void apply_defaults(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, AttrMap& a) {
  auto def_bool = [&](CK_ATTRIBUTE_TYPE t, bool v) {
    if (!a.has(t)) a.set_bool(t, v);
  };
  auto def_bytes = [&](CK_ATTRIBUTE_TYPE t) {
    if (!a.has(t)) a.set(t, Bytes{});
  };
  const bool is_key = cls == CKO_PUBLIC_KEY || cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY;
  def_bool(CKA_TOKEN, false);
  def_bool(CKA_PRIVATE, cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY);
  def_bool(CKA_MODIFIABLE, true);
  def_bool(CKA_COPYABLE, true);
  def_bool(CKA_DESTROYABLE, true);
  def_bytes(CKA_LABEL);
  if (cls == CKO_DATA) {
    def_bytes(CKA_APPLICATION);
    def_bytes(CKA_OBJECT_ID);
    def_bytes(CKA_VALUE);
  }
  if (cls == CKO_CERTIFICATE) {
    def_bool(CKA_TRUSTED, false);
    if (!a.has(CKA_CERTIFICATE_CATEGORY)) a.set_ulong(CKA_CERTIFICATE_CATEGORY, 0);
    def_bytes(CKA_ID);
    def_bytes(CKA_ISSUER);
    def_bytes(CKA_SERIAL_NUMBER);
    def_bytes(CKA_START_DATE);
    def_bytes(CKA_END_DATE);
  }
  if (is_key) {
    if (!a.has(CKA_KEY_TYPE)) a.set_ulong(CKA_KEY_TYPE, kt);
    def_bytes(CKA_ID);
    def_bytes(CKA_START_DATE);
    def_bytes(CKA_END_DATE);
    def_bool(CKA_DERIVE, false);
    def_bool(CKA_LOCAL, false);
    if (!a.has(CKA_KEY_GEN_MECHANISM)) a.set_ulong(CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION);
  }
  const bool rsa_or_ec = kt == CKK_RSA || kt == CKK_EC;
  if (cls == CKO_PUBLIC_KEY) {
    def_bytes(CKA_SUBJECT);
    def_bool(CKA_ENCRYPT, kt == CKK_RSA);
    def_bool(CKA_VERIFY, true);
    def_bool(CKA_VERIFY_RECOVER, false);
    def_bool(CKA_WRAP, kt == CKK_RSA);
    def_bool(CKA_TRUSTED, false);
    if (kt == CKK_EC) def_bool(CKA_DERIVE, false);
  }
  if (cls == CKO_PRIVATE_KEY) {
    def_bytes(CKA_SUBJECT);
    def_bool(CKA_SENSITIVE, true);
    def_bool(CKA_DECRYPT, kt == CKK_RSA);
    def_bool(CKA_SIGN, true);
    def_bool(CKA_SIGN_RECOVER, false);
    def_bool(CKA_UNWRAP, kt == CKK_RSA);
    def_bool(CKA_EXTRACTABLE, false);
    def_bool(CKA_WRAP_WITH_TRUSTED, false);
    def_bool(CKA_ALWAYS_AUTHENTICATE, false);
    (void)rsa_or_ec;
  }
  apply_vendor_defaults(cls, a);
  if (cls == CKO_SECRET_KEY) {
    const bool aes = kt == CKK_AES;
    def_bool(CKA_SENSITIVE, true);
    def_bool(CKA_ENCRYPT, aes);
    def_bool(CKA_DECRYPT, aes);
    def_bool(CKA_SIGN, !aes);
    def_bool(CKA_VERIFY, !aes);
    def_bool(CKA_WRAP, aes);
    def_bool(CKA_UNWRAP, aes);
    def_bool(CKA_EXTRACTABLE, false);
    def_bool(CKA_WRAP_WITH_TRUSTED, false);
    def_bool(CKA_TRUSTED, false);
  }
}

bool is_secret_attribute(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE t) {
  if (cls == CKO_SECRET_KEY) return t == CKA_VALUE;
  if (cls != CKO_PRIVATE_KEY) return false;
  switch (t) {
    case CKA_VALUE: case CKA_PRIVATE_EXPONENT: case CKA_PRIME_1: case CKA_PRIME_2:
    case CKA_EXPONENT_1: case CKA_EXPONENT_2: case CKA_COEFFICIENT:
      return true;
  }
  return false;
}

R<void> check_readable(const AttrMap& obj, CK_ATTRIBUTE_TYPE t) {
  auto cls = obj.ulong(CKA_CLASS).value_or(CKO_DATA);
  auto kt = obj.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  const Rule* r = find_rule(cls, kt, t);
  if (!r && !obj.has(t))
    return err(Errc::attribute_type_invalid, std::string(attribute_name(t)) + " is not an attribute of this object");
  if (r && (r->flags & kSensitive) &&
      (obj.bool_or(CKA_SENSITIVE, false) || !obj.bool_or(CKA_EXTRACTABLE, true)))
    return err(Errc::attribute_sensitive,
               std::string(r->name) + " is sensitive or unextractable and cannot be revealed");
  return {};
}

R<void> check_modify(const AttrMap& obj, CK_ATTRIBUTE_TYPE t, const Bytes& value, bool so_logged_in,
                     bool copying) {
  auto cls = obj.ulong(CKA_CLASS).value_or(CKO_DATA);
  auto kt = obj.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  const Rule* r = find_rule(cls, kt, t);
  if (!r)
    return err(Errc::attribute_type_invalid, std::string(attribute_name(t)) + " is not an attribute of this object");
  CDC_TRY(check_value_shape(*r, value));
  const bool copy_flag = copying && (t == CKA_TOKEN || t == CKA_PRIVATE || t == CKA_MODIFIABLE ||
                                     t == CKA_DESTROYABLE);
  const bool clears_check_value = t == CKA_CHECK_VALUE && cls == CKO_SECRET_KEY && value.empty() && !copying;
  if (!(r->flags & kModifiable) && !copy_flag && !(r->flags & kSoOnlyTrue) && !clears_check_value)
    return err(Errc::attribute_read_only, std::string(r->name) + " cannot be changed");
  if (copy_flag && t == CKA_MODIFIABLE && !obj.bool_or(CKA_MODIFIABLE, true) &&
      value == Bytes{CK_TRUE})
    return err(Errc::attribute_read_only, "CKA_MODIFIABLE cannot be set back to true on a copy");
  if (!copying && !obj.bool_or(CKA_MODIFIABLE, true))
    return err(Errc::action_prohibited, "the object is not modifiable (CKA_MODIFIABLE is false)");
  const bool new_true = r->kind == Kind::boolean && value[0] != CK_FALSE;
  const bool cur = obj.bool_or(t, false);
  if ((r->flags & kStickyTrue) && cur && !new_true)
    return err(Errc::attribute_read_only, std::string(r->name) + " cannot be changed once true");
  if ((r->flags & kStickyFalse) && !obj.bool_or(t, true) && new_true)
    return err(Errc::attribute_read_only, std::string(r->name) + " cannot be changed once false");
  if ((r->flags & kSoOnlyTrue) && new_true && !so_logged_in)
    return err(Errc::attribute_read_only, std::string(r->name) + " can only be set to true by the SO");
  return {};
}


namespace {

// Where a key came from, as the attributes only the token sets say: what C_GenerateKey[Pair]
// (CKA_LOCAL, its mechanism), C_CreateObject / C_UnwrapKey (neither) and C_DeriveKey (a secret
// key, sensitive-always only if its base was) can give.
R<void> check_provenance(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, const AttrMap& a) {
  const bool local = a.bool_or(CKA_LOCAL, false);
  const CK_MECHANISM_TYPE mech = a.ulong(CKA_KEY_GEN_MECHANISM).value_or(CK_UNAVAILABLE_INFORMATION);
  if (local) {
    const MechanismEntry* m = mech == CK_UNAVAILABLE_INFORMATION ? nullptr : find_mechanism(mech);
    const bool fits = m && (cls == CKO_SECRET_KEY
                                ? (m->flags & CKF_GENERATE) && (kt == CKK_AES) == (m->family == MechFamily::aes_keygen)
                                : (m->flags & CKF_GENERATE_KEY_PAIR) && m->allows_key_type(kt));
    if (!fits)
      return err(Errc::attribute_read_only, "CKA_LOCAL is true but CKA_KEY_GEN_MECHANISM is not a generation "
                                            "mechanism of this key type");
  } else if (mech != CK_UNAVAILABLE_INFORMATION) {
    return err(Errc::attribute_read_only, "CKA_KEY_GEN_MECHANISM is set on a key that is not CKA_LOCAL");
  }
  const bool always_sensitive = a.bool_or(CKA_ALWAYS_SENSITIVE, false);
  const bool never_extractable = a.bool_or(CKA_NEVER_EXTRACTABLE, false);
  if (always_sensitive && !a.bool_or(CKA_SENSITIVE, false))
    return err(Errc::attribute_read_only, "CKA_ALWAYS_SENSITIVE is true on a key that is not sensitive");
  if (never_extractable && a.bool_or(CKA_EXTRACTABLE, true))
    return err(Errc::attribute_read_only, "CKA_NEVER_EXTRACTABLE is true on an extractable key");
  if (!local && cls != CKO_SECRET_KEY && (always_sensitive || never_extractable))
    return err(Errc::attribute_read_only, "CKA_ALWAYS_SENSITIVE or CKA_NEVER_EXTRACTABLE is true on a key the "
                                          "token did not generate");
  return {};
}

}  // namespace

R<void> check_public_session_object(const AttrMap& a) {
  CDC_ASSIGN(auto cls, object_class(a));
  const CK_KEY_TYPE kt = key_type_or(a, CK_UNAVAILABLE_INFORMATION);
  if (!a.bool_or(CKA_TOKEN, false)) return err(Errc::template_inconsistent, "not a token object");
  if (a.bool_or(CKA_PRIVATE, true))
    return err(Errc::user_not_logged_in, "CKA_PRIVATE is true (or missing): a private object needs the user");
  AttrMap given;  // what a C_CreateObject template could have held
  std::vector<CK_ATTRIBUTE_TYPE> token_set;
  for (auto& [t, v] : a) {
    const Rule* r = find_rule(cls, kt, t);
    if (!r)
      return err(Errc::attribute_type_invalid, std::string(attribute_name(t)) + " is not an attribute of this kind of object");
    CDC_TRY(check_value_shape(*r, v));
    if (r->flags & kNoCreate) token_set.push_back(t);
    else given.set(t, v);
  }
  CDC_TRY(check_template(CreateOp::create, cls, kt, given));
  CDC_TRY(check_so_only(cls, kt, a, false));
  CDC_TRY(check_consistent(a));
  if (cls == CKO_PUBLIC_KEY || cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY) CDC_TRY(check_provenance(cls, kt, a));
  AttrMap defaults;
  apply_defaults(cls, kt, defaults);
  for (auto t : token_set) {
    switch (t) {
      case CKA_UNIQUE_ID:  // the token's own: the backend checks it against the object
      case CKA_VALUE_LEN: case CKA_MODULUS_BITS:  // sizes of the key material
      case CKA_LOCAL: case CKA_KEY_GEN_MECHANISM: case CKA_ALWAYS_SENSITIVE: case CKA_NEVER_EXTRACTABLE:
        continue;
    }
    const Bytes* want = defaults.find(t);
    if (!want || *want != *a.find(t))
      return err(Errc::attribute_read_only, std::string(attribute_name(t)) +
                                                " has a value only the token sets, and not without a login");
  }
  return {};
}

R<void> check_public_session_change(const AttrMap& before, const AttrMap& after) {
  if (before.bool_or(CKA_PRIVATE, true))
    return err(Errc::user_not_logged_in, "the object changed is private: that needs the user");
  for (auto& [t, v] : before)
    if (!after.has(t))
      return err(Errc::template_inconsistent, std::string(attribute_name(t)) + " was removed from the object");
  for (auto& [t, v] : after) {
    if (const Bytes* old = before.find(t); old && *old == v) continue;
    CDC_TRY(check_modify(before, t, v, false, false));
  }
  return {};
}

}  // namespace cdcp11::core
