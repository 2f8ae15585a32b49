// Links crypto_dep only: default_backend() is the configured backend, the other accessor is null.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <string>

#include "softtoken/crypto/backend.h"

using namespace cdcp11;
using namespace cdcp11::crypto;

TEST_CASE("default_backend follows the crypto_backend option") {
  Backend& b = default_backend();
  CHECK(std::string(b.name()) == CDCP11_EXPECT_BACKEND);
  if (std::string(CDCP11_EXPECT_BACKEND) == "openssl") {
    CHECK(openssl_backend() == &b);
    CHECK(botan_backend() == nullptr);
  } else {
    CHECK(botan_backend() == &b);
    CHECK(openssl_backend() == nullptr);
  }
  // The selected backend works end to end.
  auto key = b.load_secret(view("0123456789abcdef"));
  REQUIRE(key.ok());
  CipherParams p;
  p.scheme = CipherParams::Scheme::aes_gcm;
  p.iv = Bytes(12, 1);
  auto enc = b.encryptor(*key, p);
  REQUIRE(enc.ok());
  auto out = (*enc)->finish();
  REQUIRE(out.ok());
  CHECK(out->size() == 16);
}
