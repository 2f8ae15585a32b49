#include "hsm/mechanism.h"

namespace cdcp11::hsm {

OaepParams::OaepParams(CK_MECHANISM_TYPE hash, CK_RSA_PKCS_MGF_TYPE mgf, Bytes label)
    : label_(std::move(label)) {
  p_.hash_alg = hash;
  p_.mgf = mgf;
  p_.source = CKZ_DATA_SPECIFIED;
}

const CK_RSA_PKCS_OAEP_PARAMS& OaepParams::params() {
  // Pointers are set on use so that copies and moves stay valid.
  p_.source_data = label_.empty() ? nullptr : label_.data();
  p_.source_data_len = static_cast<CK_ULONG>(label_.size());
  return p_;
}

Mechanism OaepParams::mechanism() { return Mechanism::with(CKM_RSA_PKCS_OAEP, params()); }

RsaAesKeyWrapParams::RsaAesKeyWrapParams(CK_ULONG aes_bits, OaepParams oaep)
    : oaep_(std::move(oaep)) {
  p_.ulAESKeyBits = aes_bits;
}

Mechanism RsaAesKeyWrapParams::mechanism() {
  p_.pOAEPParams = const_cast<CK_RSA_PKCS_OAEP_PARAMS*>(&oaep_.params());
  return Mechanism::with(CKM_RSA_AES_KEY_WRAP, p_);
}

GcmParams::GcmParams(Bytes iv, Bytes aad, CK_ULONG tag_bits)
    : iv_(std::move(iv)), aad_(std::move(aad)) {
  p_.tag_bits = tag_bits;
}

Mechanism GcmParams::mechanism() {
  p_.iv_ptr = iv_.empty() ? nullptr : iv_.data();
  p_.iv_len = static_cast<CK_ULONG>(iv_.size());
  p_.iv_bits = static_cast<CK_ULONG>(iv_.size() * 8);
  p_.aad_ptr = aad_.empty() ? nullptr : aad_.data();
  p_.aad_len = static_cast<CK_ULONG>(aad_.size());
  return Mechanism::with(CKM_AES_GCM, p_);
}

}  // namespace cdcp11::hsm
