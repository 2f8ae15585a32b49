#include "tests/unit/hsm/support.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace cdcp11::hsm::test {

std::string fake_module_path() { return std::string(HSM_TEST_MODULE_DIR) + "/libfake_p11.so"; }
std::string not_pkcs11_path() { return std::string(HSM_TEST_MODULE_DIR) + "/libnot_pkcs11.so"; }

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "hsm-test-XXXXXX").string();
  REQUIRE(mkdtemp(tmpl.data()) != nullptr);
  path = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

SoftHsm::SoftHsm(std::string token_label, const char* module_path) : label(std::move(token_label)) {
  std::filesystem::create_directory(dir.path + "/tokens");
  std::string conf = dir.path + "/softhsm2.conf";
  std::ofstream(conf) << "directories.tokendir = " << dir.path << "/tokens\n"
                      << "objectstore.backend = file\nlog.level = ERROR\n";
  setenv("SOFTHSM2_CONF", conf.c_str(), 1);
  module = ok(Module::load(module_path));
  auto free_slots = ok(module->slots(true));
  REQUIRE_FALSE(free_slots.empty());
  ok(module->init_token(free_slots.front(), pin(kSoPin), label));
  // SoftHSM2 gives an initialised token a new slot id.
  slot = ok(module->find_token(TokenSelector::label(label)));
  Session so = session();
  ok(so.login(UserType::so, pin(kSoPin)));
  ok(so.init_pin(pin(kUserPin)));
  ok(so.logout());
}

SoftHsm::~SoftHsm() { module.reset(); }

Session SoftHsm::session(bool read_write) { return ok(module->open_session(slot, read_write)); }

Session SoftHsm::user_session() {
  Session s = session();
  ok(s.login(UserType::user, pin(kUserPin)));
  return s;
}

Tmpl aes_key(CK_ULONG bytes) {
  Tmpl t;
  t.ul(CKA_CLASS, CKO_SECRET_KEY).ul(CKA_KEY_TYPE, CKK_AES).ul(CKA_VALUE_LEN, bytes)
      .b(CKA_TOKEN, false).b(CKA_SENSITIVE, true).b(CKA_EXTRACTABLE, true).b(CKA_WRAP, true)
      .b(CKA_UNWRAP, true).b(CKA_ENCRYPT, true).b(CKA_DECRYPT, true);
  return t;
}

Tmpl rsa_public(CK_ULONG bits) {
  Tmpl t;
  static const std::uint8_t f4[] = {1, 0, 1};
  t.ul(CKA_CLASS, CKO_PUBLIC_KEY).ul(CKA_KEY_TYPE, CKK_RSA).ul(CKA_MODULUS_BITS, bits)
      .bytes(CKA_PUBLIC_EXPONENT, f4).b(CKA_TOKEN, false).b(CKA_VERIFY, true)
      .b(CKA_ENCRYPT, true).b(CKA_WRAP, true);
  return t;
}

Tmpl rsa_private() {
  Tmpl t;
  t.ul(CKA_CLASS, CKO_PRIVATE_KEY).ul(CKA_KEY_TYPE, CKK_RSA).b(CKA_TOKEN, false)
      .b(CKA_PRIVATE, true).b(CKA_SENSITIVE, true).b(CKA_EXTRACTABLE, true).b(CKA_SIGN, true)
      .b(CKA_DECRYPT, true).b(CKA_UNWRAP, true);
  return t;
}

Tmpl ec_params_p256(bool is_private) {
  static const std::uint8_t p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
  Tmpl t;
  t.ul(CKA_CLASS, is_private ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY).ul(CKA_KEY_TYPE, CKK_EC)
      .b(CKA_TOKEN, false);
  if (is_private)
    t.b(CKA_PRIVATE, true).b(CKA_SENSITIVE, true).b(CKA_EXTRACTABLE, true).b(CKA_SIGN, true)
        .b(CKA_DERIVE, true);
  else
    t.bytes(CKA_EC_PARAMS, p256).b(CKA_VERIFY, true);
  return t;
}

bool contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

}  // namespace cdcp11::hsm::test
