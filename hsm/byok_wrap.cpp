#include "hsm/byok_wrap.h"

#include <algorithm>

#include "hsm/attributes.h"
#include "hsm/mechanism.h"
#include "hsm/module.h"
#include "hsm/session.h"

namespace cdcp11::hsm {
namespace {

bool can(const std::vector<MechanismInfo>& infos, CK_MECHANISM_TYPE t, CK_FLAGS need) {
  return std::any_of(infos.begin(), infos.end(), [&](const MechanismInfo& i) {
    return i.type == t && (i.flags & need) == need;
  });
}

// Rewrites the HSM's refusal to wrap the target into what the administrator must change.
Error explain_refusal(Session& s, CK_OBJECT_HANDLE target, Error e, bool native) {
  if (e.rv == CKR_KEY_UNEXTRACTABLE) {
    e.message += ": the key is not CKA_EXTRACTABLE, so the HSM wraps it under no key; "
                 "CKA_EXTRACTABLE must be set when the key is created (it cannot be turned on later)";
  } else if (e.rv == CKR_KEY_NOT_WRAPPABLE) {
    const CK_ATTRIBUTE_TYPE want[] = {CKA_WRAP_WITH_TRUSTED};
    auto a = s.get_attributes(target, want);
    if (a && a->boolean(CKA_WRAP_WITH_TRUSTED).value_or(false)) {
      e.message += native
                       ? ": the key has CKA_WRAP_WITH_TRUSTED, so the HSM wraps it only under a "
                         "CKA_TRUSTED key: the SO must import the KEK with CKA_TRUSTED"
                       : ": the key has CKA_WRAP_WITH_TRUSTED, so the HSM wraps it only under a "
                         "CKA_TRUSTED key, and only the SO can mark one: an ephemeral session key "
                         "cannot be; create the key without CKA_WRAP_WITH_TRUSTED, or use an HSM "
                         "that offers CKM_RSA_AES_KEY_WRAP and have the SO import the KEK with "
                         "CKA_TRUSTED";
    } else {
      e.message += ": the HSM does not wrap this kind of key with this mechanism";
    }
  }
  return e;
}

}  // namespace

R<RsaAesWrapPlan> plan_rsa_aes_wrap(const Module& m, CK_SLOT_ID slot, bool pad_is_rfc5649) {
  return guarded([&]() -> R<RsaAesWrapPlan> {
    CDC_ASSIGN(auto infos, m.mechanism_infos(slot));
    if (can(infos, CKM_RSA_AES_KEY_WRAP, CKF_WRAP)) return RsaAesWrapPlan{true, 0};
    RsaAesWrapPlan p;
    if (can(infos, CKM_AES_KEY_WRAP_KWP, CKF_WRAP))
      p.kwp = CKM_AES_KEY_WRAP_KWP;
    else if (pad_is_rfc5649 && can(infos, CKM_AES_KEY_WRAP_PAD, CKF_WRAP))
      p.kwp = CKM_AES_KEY_WRAP_PAD;
    else
      return local_failure(CKR_MECHANISM_INVALID,
                           "the HSM offers neither CKM_RSA_AES_KEY_WRAP nor an RFC 5649 AES key "
                           "wrap (CKM_AES_KEY_WRAP_KWP" +
                               std::string(pad_is_rfc5649 ? ", CKM_AES_KEY_WRAP_PAD" : "") +
                               ") to compose it from");
    if (!can(infos, CKM_RSA_PKCS_OAEP, CKF_WRAP))
      return local_failure(CKR_MECHANISM_INVALID,
                           "the HSM does not wrap with CKM_RSA_PKCS_OAEP, needed to compose "
                           "CKM_RSA_AES_KEY_WRAP");
    if (!can(infos, CKM_AES_KEY_GEN, CKF_GENERATE))
      return local_failure(CKR_MECHANISM_INVALID,
                           "the HSM does not generate AES keys, needed to compose "
                           "CKM_RSA_AES_KEY_WRAP");
    return p;
  });
}

R<CK_OBJECT_HANDLE> import_rsa_wrapping_key(Session& s, ByteView modulus,
                                            ByteView public_exponent) {
  return guarded([&]() -> R<CK_OBJECT_HANDLE> {
    core::AttrMap t;
    t.set(CKA_CLASS, ulong_value(CKO_PUBLIC_KEY));
    t.set(CKA_KEY_TYPE, ulong_value(CKK_RSA));
    t.set(CKA_TOKEN, bool_value(false));
    t.set(CKA_PRIVATE, bool_value(false));
    t.set(CKA_WRAP, bool_value(true));
    t.set(CKA_ENCRYPT, bool_value(false));
    t.set(CKA_VERIFY, bool_value(false));
    t.set(CKA_MODULUS, modulus);
    t.set(CKA_PUBLIC_EXPONENT, public_exponent);
    return s.create(t);
  });
}

R<Bytes> rsa_aes_wrap(Session& s, const RsaAesWrapPlan& plan, CK_OBJECT_HANDLE kek_public,
                      CK_OBJECT_HANDLE target) {
  return guarded([&]() -> R<Bytes> {
    if (plan.native) {
      RsaAesKeyWrapParams params(256);
      auto blob = s.wrap_key(params.mechanism(), kek_public, target);
      if (!blob) return fail(explain_refusal(s, target, std::move(blob).error(), true));
      return blob;
    }
    core::AttrMap t;
    t.set(CKA_CLASS, ulong_value(CKO_SECRET_KEY));
    t.set(CKA_KEY_TYPE, ulong_value(CKK_AES));
    t.set(CKA_VALUE_LEN, ulong_value(32));
    t.set(CKA_TOKEN, bool_value(false));
    t.set(CKA_PRIVATE, bool_value(true));
    t.set(CKA_SENSITIVE, bool_value(true));
    t.set(CKA_EXTRACTABLE, bool_value(true));  // it must itself be wrapped under the KEK
    t.set(CKA_WRAP, bool_value(true));
    t.set(CKA_UNWRAP, bool_value(false));
    t.set(CKA_ENCRYPT, bool_value(false));
    t.set(CKA_DECRYPT, bool_value(false));
    CDC_ASSIGN(CK_OBJECT_HANDLE eph_handle, s.generate_key(Mechanism(CKM_AES_KEY_GEN), t));
    ScopedObject ephemeral(s, eph_handle);

    auto wrapped_target = s.wrap_key(Mechanism(plan.kwp), ephemeral.get(), target);
    if (!wrapped_target)
      return fail(explain_refusal(s, target, std::move(wrapped_target).error(), false));
    OaepParams oaep;
    CDC_ASSIGN(Bytes wrapped_aes, s.wrap_key(oaep.mechanism(), kek_public, ephemeral.get()));
    wrapped_aes.insert(wrapped_aes.end(), wrapped_target->begin(), wrapped_target->end());
    return wrapped_aes;
  });
}

}  // namespace cdcp11::hsm
