#include "tests/unit/hsm/ossl.h"

#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/rsa.h>

namespace cdcp11::hsm::test {

Pkey rsa_generate(unsigned bits) {
  Pkey k(EVP_RSA_gen(bits));
  REQUIRE(k);
  return k;
}

Bytes bn_param(const EVP_PKEY* k, const char* name, std::size_t width) {
  BIGNUM* bn = nullptr;
  REQUIRE(EVP_PKEY_get_bn_param(k, name, &bn) == 1);
  Bytes out(width ? width : static_cast<std::size_t>(BN_num_bytes(bn)));
  REQUIRE(BN_bn2binpad(bn, out.data(), static_cast<int>(out.size())) > 0);
  BN_clear_free(bn);
  return out;
}

Bytes oaep_sha1_decrypt(const EVP_PKEY* k, ByteView ct) {
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> c(
      EVP_PKEY_CTX_new(const_cast<EVP_PKEY*>(k), nullptr), EVP_PKEY_CTX_free);
  REQUIRE(c);
  REQUIRE(EVP_PKEY_decrypt_init(c.get()) == 1);
  REQUIRE(EVP_PKEY_CTX_set_rsa_padding(c.get(), RSA_PKCS1_OAEP_PADDING) == 1);
  REQUIRE(EVP_PKEY_CTX_set_rsa_oaep_md(c.get(), EVP_sha1()) == 1);
  REQUIRE(EVP_PKEY_CTX_set_rsa_mgf1_md(c.get(), EVP_sha1()) == 1);
  std::size_t n = 0;
  REQUIRE(EVP_PKEY_decrypt(c.get(), nullptr, &n, ct.data(), ct.size()) == 1);
  Bytes out(n);
  REQUIRE(EVP_PKEY_decrypt(c.get(), out.data(), &n, ct.data(), ct.size()) == 1);
  out.resize(n);
  return out;
}

Bytes kwp_unwrap(ByteView kek, ByteView wrapped) {
  const EVP_CIPHER* cipher = kek.size() == 16   ? EVP_aes_128_wrap_pad()
                             : kek.size() == 24 ? EVP_aes_192_wrap_pad()
                                                : EVP_aes_256_wrap_pad();
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> c(EVP_CIPHER_CTX_new(),
                                                                   EVP_CIPHER_CTX_free);
  REQUIRE(c);
  EVP_CIPHER_CTX_set_flags(c.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  REQUIRE(EVP_DecryptInit_ex(c.get(), cipher, nullptr, kek.data(), nullptr) == 1);
  Bytes out(wrapped.size() + 16);
  int n = 0, m = 0;
  bool good = EVP_DecryptUpdate(c.get(), out.data(), &n, wrapped.data(),
                                static_cast<int>(wrapped.size())) == 1 &&
              EVP_DecryptFinal_ex(c.get(), out.data() + n, &m) == 1;
  REQUIRE_MESSAGE(good, "RFC 5649 unwrap failed: not AES-KWP, or the wrong key");
  out.resize(static_cast<std::size_t>(n + m));
  return out;
}

}  // namespace cdcp11::hsm::test
