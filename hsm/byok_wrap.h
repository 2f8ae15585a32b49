// Wrapping a key inside the HSM into the CKM_RSA_AES_KEY_WRAP blob Azure's BYOK import takes:
// RSA-OAEP (SHA-1, MGF1-SHA-1) of an AES-256 key under the KEK's public key, followed by
// AES key wrap with padding (RFC 5649) of the target under that AES key. An HSM that offers
// CKM_RSA_AES_KEY_WRAP makes the blob in one C_WrapKey; for one that does not (SoftHSM2 2.6.1,
// several real HSMs) the same blob is composed inside it from an ephemeral AES session key.
// Nothing of the target leaves the HSM unwrapped either way.
#pragma once

#include "cdcp11/pkcs11_3_0.h"
#include "common/bytes.h"
#include "hsm/errors.h"

namespace cdcp11::hsm {

class Module;
class Session;

struct RsaAesWrapPlan {
  bool native = false;                           // one C_WrapKey with CKM_RSA_AES_KEY_WRAP
  CK_MECHANISM_TYPE kwp = CKM_AES_KEY_WRAP_KWP;  // composed: the HSM's RFC 5649 mechanism
};

// Chooses from the token's mechanism list: native when CKM_RSA_AES_KEY_WRAP can wrap; else
// composed from CKM_AES_KEY_GEN, CKM_RSA_PKCS_OAEP and CKM_AES_KEY_WRAP_KWP. The meaning of
// CKM_AES_KEY_WRAP_PAD varies by HSM (PKCS#11 3.1: PKCS#7 padding + RFC 3394, deprecated; SoftHSM2 2.6.1:
// RFC 5649 over the key zero-padded to a multiple of 8, see hsm/README.md): pad_is_rfc5649 says
// this HSM's _PAD may stand in for KWP. mechanism_invalid names what is missing.
R<RsaAesWrapPlan> plan_rsa_aes_wrap(const Module& m, CK_SLOT_ID slot, bool pad_is_rfc5649);

// Imports an RSA public key as a session object usable only to wrap (the KEK).
R<CK_OBJECT_HANDLE> import_rsa_wrapping_key(Session& s, ByteView modulus, ByteView public_exponent);

// The blob for target under kek_public. When the HSM refuses, the error keeps its CKR and says
// what the administrator must change: a key that is not CKA_EXTRACTABLE, or one with
// CKA_WRAP_WITH_TRUSTED whose wrapping key would have to be CKA_TRUSTED (an SO act).
R<Bytes> rsa_aes_wrap(Session& s, const RsaAesWrapPlan& plan, CK_OBJECT_HANDLE kek_public,
                      CK_OBJECT_HANDLE target);

}  // namespace cdcp11::hsm
