// Mechanisms for the HSM: a type and its parameter passed through as raw bytes (the CK_*_PARAMS
// structure the caller built, and whatever it points at, must outlive the call), plus builders
// for the parameters the BYOK path needs.
#pragma once

#include <cstddef>

#include "cdcp11/pkcs11_3_0.h"
#include "common/bytes.h"

namespace cdcp11::hsm {

struct Mechanism {
  CK_MECHANISM_TYPE type = 0;
  ByteView param{};

  Mechanism() = default;
  explicit Mechanism(CK_MECHANISM_TYPE t, ByteView p = {}) : type(t), param(p) {}
  template <class Params>
  static Mechanism with(CK_MECHANISM_TYPE t, const Params& p) {
    return Mechanism(t, ByteView(reinterpret_cast<const std::uint8_t*>(&p), sizeof p));
  }
  // The CK_MECHANISM handed to the module (its pParameter points into param).
  CK_MECHANISM ck() const {
    return CK_MECHANISM{type, const_cast<std::uint8_t*>(param.data()),
                        static_cast<CK_ULONG>(param.size())};
  }
};

// CK_RSA_PKCS_OAEP_PARAMS; the default is SHA-1 with MGF1-SHA-1 and no label, the only
// combination SoftHSM2 2.6.1 and Azure's BYOK accept.
class OaepParams {
 public:
  explicit OaepParams(CK_MECHANISM_TYPE hash = CKM_SHA_1, CK_RSA_PKCS_MGF_TYPE mgf = CKG_MGF1_SHA1,
                      Bytes label = {});
  // CKM_RSA_PKCS_OAEP with these parameters; valid while this object lives and is not moved.
  Mechanism mechanism();
  const CK_RSA_PKCS_OAEP_PARAMS& params();

 private:
  Bytes label_;
  CK_RSA_PKCS_OAEP_PARAMS p_{};
};

// CK_RSA_AES_KEY_WRAP_PARAMS: the AES key size in bits and the OAEP parameters.
class RsaAesKeyWrapParams {
 public:
  explicit RsaAesKeyWrapParams(CK_ULONG aes_bits = 256, OaepParams oaep = OaepParams());
  // CKM_RSA_AES_KEY_WRAP with these parameters; valid while this object lives and is not moved.
  Mechanism mechanism();

 private:
  OaepParams oaep_;
  CK_RSA_AES_KEY_WRAP_PARAMS p_{};
};

// CK_GCM_PARAMS (the 2.40 layout with ulIvBits, which p11-kit's header and SoftHSM2 use).
class GcmParams {
 public:
  GcmParams(Bytes iv, Bytes aad, CK_ULONG tag_bits = 128);
  // CKM_AES_GCM with these parameters; valid while this object lives and is not moved.
  Mechanism mechanism();

 private:
  Bytes iv_, aad_;
  CK_GCM_PARAMS p_{};
};

}  // namespace cdcp11::hsm
