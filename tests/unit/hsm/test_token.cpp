// Token selection, token info, mechanisms.
#include <algorithm>

#include "tests/unit/hsm/fake_module.h"
#include "tests/unit/hsm/support.h"

namespace cdcp11::hsm::test {

TEST_CASE("token selection by label, serial and slot id") {
  SoftHsm h("cdc-group-a");
  TokenInfo ti = ok(h.module->token_info(h.slot));
  CHECK(ti.label == "cdc-group-a");
  REQUIRE_FALSE(ti.serial.empty());

  CHECK(ok(h.module->find_token(TokenSelector::label("cdc-group-a"))) == h.slot);
  CHECK(ok(h.module->find_token(TokenSelector::serial(ti.serial))) == h.slot);
  CHECK(ok(h.module->find_token(TokenSelector::slot_id(h.slot))) == h.slot);

  SUBCASE("an unknown label or serial is token_not_present, naming what was asked") {
    Error e = err(h.module->find_token(TokenSelector::label("no-such-token")));
    CHECK(e.rv == CKR_TOKEN_NOT_PRESENT);
    CHECK(contains(e.message, "no token with token label 'no-such-token'"));
    e = err(h.module->find_token(TokenSelector::serial("0000000000000000")));
    CHECK(e.rv == CKR_TOKEN_NOT_PRESENT);
  }
  SUBCASE("a slot that does not exist") {
    Error e = err(h.module->find_token(TokenSelector::slot_id(0xdead)));
    CHECK(e.rv == CKR_SLOT_ID_INVALID);
    CHECK(contains(e.message, "slot id 57005 does not exist"));
  }
  SUBCASE("a label longer than a token label can be is a bad argument") {
    Error e = err(h.module->find_token(TokenSelector::label(std::string(33, 'x'))));
    CHECK(e.rv == CKR_ARGUMENTS_BAD);
    CHECK(contains(e.message, "longer than the 32 bytes"));
  }
}

TEST_CASE("token selection: a label two tokens share is ambiguous") {
  SoftHsm h("twin");
  auto free_slots = ok(h.module->slots(true));
  auto other = std::find_if(free_slots.begin(), free_slots.end(), [&](CK_SLOT_ID s) {
    auto ti = h.module->token_info(s);
    return ti && !(ti->flags & CKF_TOKEN_INITIALIZED);
  });
  REQUIRE(other != free_slots.end());
  ok(h.module->init_token(*other, pin(kSoPin), "twin"));
  Error e = err(h.module->find_token(TokenSelector::label("twin")));
  CHECK(e.rv == CKR_ARGUMENTS_BAD);
  CHECK(contains(e.message, "select by serial or slot id"));
}

TEST_CASE("token info: label, model, manufacturer, serial, flags, PIN lengths") {
  SoftHsm h("info");
  TokenInfo ti = ok(h.module->token_info(h.slot));
  CHECK(ti.slot == h.slot);
  CHECK(ti.label == "info");
  CHECK(ti.model == "SoftHSM v2");
  CHECK(ti.manufacturer == "SoftHSM project");
  CHECK(ti.serial.size() == 16);
  CHECK((ti.flags & CKF_TOKEN_INITIALIZED));
  CHECK((ti.flags & CKF_USER_PIN_INITIALIZED));
  CHECK((ti.flags & CKF_LOGIN_REQUIRED));
  CHECK(ti.min_pin_len == 4);
  CHECK(ti.max_pin_len == 255);
}

TEST_CASE("mechanisms: the list and each mechanism's key sizes and flags") {
  SoftHsm h;
  auto mechs = ok(h.module->mechanisms(h.slot));
  CHECK(std::count(mechs.begin(), mechs.end(), CKM_RSA_PKCS_OAEP) == 1);
  auto oaep = ok(h.module->mechanism_info(h.slot, CKM_RSA_PKCS_OAEP));
  CHECK(oaep.type == CKM_RSA_PKCS_OAEP);
  CHECK(oaep.min_key_size == 512);
  CHECK(oaep.max_key_size == 16384);
  CHECK((oaep.flags & CKF_WRAP));
  CHECK((oaep.flags & CKF_UNWRAP));
  auto infos = ok(h.module->mechanism_infos(h.slot));
  CHECK(infos.size() == mechs.size());
  Error e = err(h.module->mechanism_info(h.slot, CKM_AES_KEY_WRAP_KWP));
  CHECK(e.rv == CKR_MECHANISM_INVALID);
}

TEST_CASE("fake module: two-call lists, token info, an empty slot") {
  auto m = ok(Module::load(fake_module_path()));
  auto mechs = ok(m->mechanisms(7));
  REQUIRE(mechs.size() == 2);
  CHECK(mechs[0] == CKM_RSA_AES_KEY_WRAP);
  auto ti = ok(m->token_info(7));
  CHECK(ti.label == "fake");
  CHECK(ti.serial == "FAKE0001");
  CHECK(ti.model == "Fake HSM");
  CHECK(ok(m->find_token(TokenSelector::serial("FAKE0001"))) == 7);
  // SoftHSM2 always shows a token in every slot; the fake has an empty slot 8.
  Error e = err(m->find_token(TokenSelector::slot_id(8)));
  CHECK(e.rv == CKR_TOKEN_NOT_PRESENT);
  CHECK(contains(e.message, "slot id 8 holds no token"));
}

}  // namespace cdcp11::hsm::test
