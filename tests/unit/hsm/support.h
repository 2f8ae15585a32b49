// Shared helpers of the HSM client tests: a fresh SoftHSM2 per test, templates, result checks.
#pragma once

#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "hsm/attributes.h"
#include "hsm/module.h"
#include "hsm/session.h"

namespace cdcp11::hsm::test {

inline constexpr const char* kSoftHsm = "/usr/lib/softhsm/libsofthsm2.so";
inline constexpr const char* kSpy = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so";
inline constexpr const char* kUserPin = "1234-user";
inline constexpr const char* kSoPin = "5678-so";

inline ByteView pin(const char* p) { return view(p); }

// Paths of the helper modules built beside the test (meson passes their directory).
std::string fake_module_path();
std::string not_pkcs11_path();

struct TempDir {
  std::string path;
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

// Its own SOFTHSM2_CONF and token directory, one token initialised through the client
// (C_InitToken, C_InitPIN), loaded from module_path (SoftHSM2, or pkcs11-spy in front of it).
// One at a time per process: SoftHSM2 reads SOFTHSM2_CONF in C_Initialize.
struct SoftHsm {
  TempDir dir;
  std::shared_ptr<Module> module;
  CK_SLOT_ID slot = 0;
  std::string label;

  explicit SoftHsm(std::string token_label = "hsm-test", const char* module_path = kSoftHsm);
  ~SoftHsm();
  Session session(bool read_write = true);
  Session user_session();  // read-write, logged in as the user
};

// Fills a core::AttrMap without core's library (hsm links only its header).
class Tmpl {
 public:
  Tmpl& ul(CK_ATTRIBUTE_TYPE t, CK_ULONG v) { m_.set(t, ulong_value(v)); return *this; }
  Tmpl& b(CK_ATTRIBUTE_TYPE t, bool v) { m_.set(t, bool_value(v)); return *this; }
  Tmpl& bytes(CK_ATTRIBUTE_TYPE t, ByteView v) { m_.set(t, v); return *this; }
  Tmpl& str(CK_ATTRIBUTE_TYPE t, std::string_view s) { m_.set(t, view(s)); return *this; }
  operator const core::AttrMap&() const { return m_; }
  const core::AttrMap& map() const { return m_; }

 private:
  core::AttrMap m_;
};

// Templates used across the tests.
Tmpl aes_key(CK_ULONG bytes = 32);  // session AES key: sensitive, extractable, wrap/unwrap/encrypt/decrypt
Tmpl rsa_public(CK_ULONG bits = 2048);
Tmpl rsa_private();                 // sensitive, extractable, sign/decrypt/unwrap
Tmpl ec_params_p256(bool is_private);

template <class T>
T ok(R<T>&& r) {
  if (!r) FAIL_CHECK("unexpected error " << std::string(rv_name(r.error().rv)) << ": " << r.error().message);
  REQUIRE(r.ok());
  return std::move(r).value();
}
inline void ok(R<void>&& r) {
  if (!r) FAIL_CHECK("unexpected error " << std::string(rv_name(r.error().rv)) << ": " << r.error().message);
  REQUIRE(r.ok());
}
template <class T>
Error err(R<T>&& r) {
  REQUIRE_FALSE(r.ok());
  return std::move(r).error();
}

bool contains(std::string_view hay, std::string_view needle);

}  // namespace cdcp11::hsm::test
