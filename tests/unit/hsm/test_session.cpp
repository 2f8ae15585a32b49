// Sessions and login: the HSM's CKR comes back as the HSM said it.
#include <dlfcn.h>

#include <atomic>
#include <thread>
#include <vector>

#include "tests/unit/hsm/fake_module.h"
#include "tests/unit/hsm/support.h"

namespace cdcp11::hsm::test {

TEST_CASE("login: user and SO, a wrong PIN keeps CKR_PIN_INCORRECT, logout") {
  SoftHsm h;
  Session s = h.session();
  Error e = err(s.login(UserType::user, pin("wrong-pin")));
  CHECK(e.rv == CKR_PIN_INCORRECT);
  CHECK(e.code == core::Errc::pin_incorrect);
  CHECK(e.message == "C_Login: CKR_PIN_INCORRECT (user)");
  CHECK_FALSE(contains(e.message, "wrong-pin"));

  ok(s.login(UserType::user, pin(kUserPin)));
  CHECK(ok(s.info()).state == CKS_RW_USER_FUNCTIONS);
  e = err(s.login(UserType::user, pin(kUserPin)));
  CHECK(e.rv == CKR_USER_ALREADY_LOGGED_IN);
  ok(s.logout());
  CHECK(ok(s.info()).state == CKS_RW_PUBLIC_SESSION);

  ok(s.login(UserType::so, pin(kSoPin)));
  CHECK(ok(s.info()).state == CKS_RW_SO_FUNCTIONS);
  ok(s.logout());
  ok(s.logout());  // SoftHSM2 2.6.1: CKR_OK when nobody is logged in
}

TEST_CASE("login: SoftHSM2 2.6.1 never locks a PIN, it only flags the count as low") {
  SoftHsm h;
  Session s = h.session();
  for (int i = 0; i < 12; ++i) CHECK(err(s.login(UserType::user, pin("bad!"))).rv == CKR_PIN_INCORRECT);
  TokenInfo ti = ok(h.module->token_info(h.slot));
  CHECK((ti.flags & CKF_USER_PIN_COUNT_LOW));
  CHECK_FALSE((ti.flags & CKF_USER_PIN_LOCKED));
  ok(s.login(UserType::user, pin(kUserPin)));
}

TEST_CASE("login: CKR_PIN_LOCKED passes through (fake module; SoftHSM2 never locks a PIN)") {
  auto m = ok(Module::load(fake_module_path()));
  Session s = ok(m->open_session(7));
  Error e = err(s.login(UserType::user, pin("locked")));
  CHECK(e.rv == CKR_PIN_LOCKED);
  CHECK(e.code == core::Errc::pin_locked);
  core::Error ce = std::move(e);  // what the layer above gets, mapped back to CKR_PIN_LOCKED there
  CHECK(ce.code == core::Errc::pin_locked);
  CHECK(ce.message == "C_Login: CKR_PIN_LOCKED (user)");
}

TEST_CASE("login: CKU_CONTEXT_SPECIFIC between C_SignInit and C_Sign for CKA_ALWAYS_AUTHENTICATE") {
  SoftHsm h;
  Session s = h.user_session();
  Tmpl priv = rsa_private();
  priv.b(CKA_ALWAYS_AUTHENTICATE, true);
  KeyPair kp = ok(s.generate_key_pair(Mechanism(CKM_RSA_PKCS_KEY_PAIR_GEN), rsa_public(), priv));
  const std::uint8_t data[] = {1, 2, 3};

  SignOp op = ok(s.sign_init(Mechanism(CKM_SHA256_RSA_PKCS), kp.private_key));
  Error e = err(s.login(UserType::context_specific, pin("wrong-pin")));
  CHECK(e.rv == CKR_PIN_INCORRECT);
  CHECK(contains(e.message, "context-specific"));
  ok(s.login(UserType::context_specific, pin(kUserPin)));
  Bytes sig = ok(op.sign(data));
  CHECK(sig.size() == 256);
  ok(s.verify(Mechanism(CKM_SHA256_RSA_PKCS), kp.public_key, data, sig));
}

TEST_CASE("session: closed when the Session goes, also after a move") {
  auto m = ok(Module::load(fake_module_path()));
  auto* dl = dlopen(fake_module_path().c_str(), RTLD_NOW | RTLD_NOLOAD);
  REQUIRE(dl);
  auto* st = reinterpret_cast<FakeP11StateFn>(dlsym(dl, "fake_p11_state"))();
  int closes = st->close_calls;
  {
    Session a = ok(m->open_session(7));
    Session b = std::move(a);
    Session c = ok(m->open_session(7));
    c = std::move(b);  // c's first session closes here
    CHECK(st->close_calls == closes + 1);
  }
  CHECK(st->close_calls == closes + 2);
  dlclose(dl);
}

TEST_CASE("session: one per thread, in parallel") {
  SoftHsm h;
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      auto s = h.module->open_session(h.slot, false);
      if (!s) return;
      for (int j = 0; j < 20; ++j)
        if (!s->digest(Mechanism(CKM_SHA256), view("abc"))) return;
      ++good;
    });
  for (auto& t : threads) t.join();
  CHECK(good == 4);
}

}  // namespace cdcp11::hsm::test
