// The core (Provider -> Token -> Session) against an in-memory backend: no .so, no soft token,
// nothing on disk but the configuration file. Each case names the core behaviour it checks.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <cstring>
#include <optional>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "cdcp11/cdcp11.h"
#include "core/mirror/byok.h"
#include "core/mirror/service.h"
#include "core/provider/provider.h"
#include "tests/unit/core/fake_backend.h"

using namespace cdcp11;
using namespace cdcp11::core;
using cdcp11::core::test::FakeBackend;
namespace fs = std::filesystem;

namespace {

Bytes pin(const char* p) { return Bytes(p, p + std::strlen(p)); }

// A provider with one slot (1) served by a FakeBackend.
struct Fixture {
  fs::path dir;
  Provider lib;
  FakeBackend* fake = nullptr;
  Token* token = nullptr;
  std::function<void(FakeBackend&)> setup;

  explicit Fixture(std::function<void(FakeBackend&)> before_open = {}) : setup(std::move(before_open)) {
    char tmpl[] = "/tmp/cdcp11-fake-XXXXXX";
    dir = ::mkdtemp(tmpl);
    std::ofstream(dir / "conf.json")
        << R"({"version": 1, "groups": [{"name": "g", "slot_id": 1, "token": {"dir": "unused"}}]})";
    auto r = lib.initialize((dir / "conf.json").string(), [this](const GroupConfig&) -> R<std::unique_ptr<Backend>> {
      auto f = std::make_unique<FakeBackend>();
      if (setup) setup(*f);
      fake = f.get();
      return std::unique_ptr<Backend>(std::move(f));
    });
    REQUIRE(r);
    token = *lib.present_token(1);
  }
  ~Fixture() {
    lib.finalize();
    fs::remove_all(dir);
  }
  std::shared_ptr<Session> open() {
    auto h = lib.open_session(1, CKF_SERIAL_SESSION | CKF_RW_SESSION);
    REQUIRE(h);
    return *lib.session(*h);
  }
  std::vector<CK_OBJECT_HANDLE> find(Session& s, const AttrMap& tmpl = {}) {
    auto r = token->find(s, tmpl);
    REQUIRE(r);
    return *r;
  }
};

AttrMap data_object(bool token, bool priv, const char* label) {
  AttrMap a;
  a.set_ulong(CKA_CLASS, CKO_DATA);
  a.set_bool(CKA_TOKEN, token);
  a.set_bool(CKA_PRIVATE, priv);
  a.set_string(CKA_LABEL, label);
  a.set(CKA_VALUE, Bytes{1, 2, 3});
  return a;
}

AttrMap aes_key(std::size_t len, bool encrypt = true) {
  AttrMap a;
  a.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
  a.set_ulong(CKA_KEY_TYPE, CKK_AES);
  a.set_bool(CKA_TOKEN, true);
  a.set_bool(CKA_ENCRYPT, encrypt);
  a.set_bool(CKA_DECRYPT, true);
  a.set(CKA_VALUE, Bytes(len, 0x11));
  return a;
}

// The error C_*Init gives, or nullopt when it starts the operation (in s, so one each).
std::optional<Errc> begin_error(Session& s, OpKind kind, CK_MECHANISM_TYPE type, CK_OBJECT_HANDLE h) {
  CK_MECHANISM m{type, nullptr, 0};
  auto r = s.begin(kind, &m, h);
  if (r) return std::nullopt;
  return r.error().code;
}

struct Recorder final : KeyObserver {
  std::vector<CK_OBJECT_HANDLE> made;
  std::vector<std::string> destroyed;
  std::mutex mu;
  R<void> before_key_made(const AttrMap&, std::size_t) override { return {}; }
  R<void> key_made(Session&, CK_OBJECT_HANDLE h) override {
    made.push_back(h);
    return {};
  }
  void key_destroyed(const std::string& uid, const AttrMap&) override { destroyed.push_back(uid); }
  void user_logged_in() override {}
  std::unique_lock<std::mutex> hold_for_logout() override { return std::unique_lock(mu); }
};

}  // namespace

TEST_CASE("fake core: the login state is the token's, shared by every session, and ends with the last one") {
  Fixture f;
  auto s1 = f.open();
  auto s2 = f.open();
  CHECK(f.lib.login(*s1, CKU_USER, pin("wrong")).error().code == Errc::pin_incorrect);
  REQUIRE(f.lib.login(*s1, CKU_USER, pin("1234")));
  CHECK(f.token->state_of(*s2) == CKS_RW_USER_FUNCTIONS);
  CHECK(f.lib.login(*s2, CKU_USER, pin("1234")).error().code == Errc::user_already_logged_in);
  REQUIRE(f.lib.logout(*s2));
  CHECK(f.token->state_of(*s1) == CKS_RW_PUBLIC_SESSION);
  REQUIRE(f.lib.login(*s2, CKU_USER, pin("1234")));
  REQUIRE(f.lib.close_session(s1->handle()));
  CHECK(f.token->login_state() == LoginState::user);  // s2 is still open
  REQUIRE(f.lib.close_session(s2->handle()));
  CHECK(f.token->login_state() == LoginState::none);
}

TEST_CASE("fake core: private objects are visible only when logged in; session objects die with their session") {
  Fixture f;
  auto s1 = f.open();
  auto s2 = f.open();
  REQUIRE(f.lib.login(*s1, CKU_USER, pin("1234")));
  REQUIRE(f.token->create_object(*s1, data_object(true, true, "private")));
  REQUIRE(f.token->create_object(*s1, data_object(true, false, "public")));
  auto sess_obj = f.token->create_object(*s1, data_object(false, false, "of s1"));
  REQUIRE(sess_obj);
  CHECK(f.find(*s2).size() == 3);
  REQUIRE(f.lib.logout(*s1));
  CHECK(f.find(*s2).size() == 2);  // the private one is hidden
  AttrMap priv;
  priv.set_string(CKA_LABEL, "private");
  CHECK(f.find(*s2, priv).empty());

  REQUIRE(f.lib.close_session(s1->handle()));
  AttrMap of_s1;
  of_s1.set_string(CKA_LABEL, "of s1");
  CHECK(f.find(*s2, of_s1).empty());
  CHECK(f.find(*s2).size() == 1);
  CHECK(f.fake->size() == 2);  // the backend let go of the session object too
}

TEST_CASE("fake core: login/logout cycles leave the search index as they found it") {
  Fixture f;
  auto s = f.open();
  REQUIRE(f.lib.login(*s, CKU_USER, pin("1234")));
  REQUIRE(f.token->create_object(*s, data_object(true, true, "private token")));
  REQUIRE(f.token->create_object(*s, data_object(true, false, "public token")));
  REQUIRE(f.lib.logout(*s));
  const auto before = f.token->lock().cache().index_size();
  for (int i = 0; i < 5; ++i) {
    REQUIRE(f.lib.login(*s, CKU_USER, pin("1234")));
    REQUIRE(f.token->create_object(*s, data_object(false, true, "private session")));
    REQUIRE(f.lib.logout(*s));
    CHECK(f.token->lock().cache().index_size() == before);
  }
  REQUIRE(f.lib.login(*s, CKU_USER, pin("1234")));
  AttrMap priv;
  priv.set_string(CKA_LABEL, "private token");
  CHECK(f.find(*s, priv).size() == 1);
}

TEST_CASE("fake core: open_key refuses the wrong class, a false usage attribute, a mechanism the slot lacks, a size "
          "out of the slot's range") {
  Fixture f([](FakeBackend& b) {
    b.slot_list = std::vector<SlotMechanism>{{CKM_AES_KEY_GEN, 16, 32, CKF_GENERATE},
                                             {CKM_AES_CBC_PAD, 32, 32, CKF_ENCRYPT | CKF_DECRYPT},
                                             {CKM_RSA_PKCS, 1024, 4096, CKF_ENCRYPT | CKF_DECRYPT}};
  });
  auto s = f.open();
  REQUIRE(f.lib.login(*s, CKU_USER, pin("1234")));
  auto k256 = f.token->create_object(*s, aes_key(32));
  auto k128 = f.token->create_object(*s, aes_key(16, false));
  auto data = f.token->create_object(*s, data_object(true, false, "d"));
  AttrMap rsa_pub;
  rsa_pub.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
  rsa_pub.set_ulong(CKA_KEY_TYPE, CKK_RSA);
  rsa_pub.set_bool(CKA_TOKEN, true);
  rsa_pub.set_bool(CKA_ENCRYPT, true);
  rsa_pub.set(CKA_MODULUS, Bytes(256, 0xc5));
  rsa_pub.set(CKA_PUBLIC_EXPONENT, Bytes{1, 0, 1});
  auto pub = f.token->create_object(*s, rsa_pub);
  REQUIRE(k256);
  REQUIRE(k128);
  REQUIRE(data);
  REQUIRE(pub);

  CHECK_FALSE(begin_error(*f.open(), OpKind::encrypt, CKM_AES_CBC_PAD, *k256));
  CHECK(begin_error(*f.open(), OpKind::encrypt, CKM_AES_CBC_PAD, *data) == Errc::key_handle_invalid);  // not a key
  CHECK(begin_error(*f.open(), OpKind::decrypt, CKM_RSA_PKCS, *pub) == Errc::key_type_inconsistent);   // a public key
  CHECK(begin_error(*f.open(), OpKind::encrypt, CKM_AES_CBC_PAD, *k128) == Errc::key_function_not_permitted);  // CKA_ENCRYPT false
  CHECK(begin_error(*f.open(), OpKind::encrypt, CKM_AES_GCM, *k256) == Errc::mechanism_invalid);    // not in the slot's list
  CHECK(begin_error(*f.open(), OpKind::decrypt, CKM_AES_CBC_PAD, *k128) == Errc::key_size_range);   // the slot takes 32 only
  CHECK(std::count(f.fake->calls.begin(), f.fake->calls.end(), "begin CKM_AES_CBC_PAD") == 1);
}

TEST_CASE("fake core: an operation on a token key refreshes first, unless the backend saw no change since its last "
          "refresh") {
  Fixture f([](FakeBackend& b) { b.slot_list = std::vector<SlotMechanism>{{CKM_AES_CBC_PAD, 32, 32, CKF_ENCRYPT}}; });
  auto s = f.open();
  REQUIRE(f.lib.login(*s, CKU_USER, pin("1234")));
  auto k = f.token->create_object(*s, aes_key(32));  // a token object
  REQUIRE(k);
  // A session for each operation (one stays active in its session); opening one may refresh.
  std::vector<std::shared_ptr<Session>> ss;
  for (int i = 0; i < 6; ++i) ss.push_back(f.open());
  int next = 0;
  const auto begin_next = [&] { return begin_error(*ss.at(next++), OpKind::encrypt, CKM_AES_CBC_PAD, *k); };
  const auto begins = [&] { return std::count(f.fake->calls.begin(), f.fake->calls.end(), "begin CKM_AES_CBC_PAD"); };

  int before = f.fake->refreshes;
  CHECK_FALSE(begin_next());
  CHECK_FALSE(begin_next());
  CHECK(f.fake->refreshes == before + 2);  // the backend cannot tell: each refreshes

  f.fake->quiet = true;
  before = f.fake->refreshes;
  CHECK_FALSE(begin_next());
  CHECK_FALSE(begin_next());
  CHECK(f.fake->refreshes == before);
  CHECK(begins() == 4);

  // Gone elsewhere (the token's objects reloaded without it): while the backend says nothing
  // changed (wrongly, here) the key is used as last seen; once it says otherwise, the refresh
  // takes the key away.
  f.fake->push_full_reload({});
  CHECK_FALSE(begin_next());
  f.fake->quiet = false;
  CHECK(begin_next() == Errc::key_handle_invalid);
  CHECK(f.fake->refreshes == before + 1);
  CHECK(begins() == 5);
}

TEST_CASE("fake core: threads beginning operations on one session key while it changes and goes get the key as it "
          "is or a precise error") {
  Fixture f([](FakeBackend& b) { b.slot_list = std::vector<SlotMechanism>{{CKM_AES_CBC_PAD, 32, 32, CKF_ENCRYPT}}; });
  auto owner = f.open();
  REQUIRE(f.lib.login(*owner, CKU_USER, pin("1234")));
  AttrMap a = aes_key(32);
  a.set_bool(CKA_TOKEN, false);  // a session object: opened under the token's shared lock
  auto k = f.token->create_object(*owner, a);
  REQUIRE(k);
  std::vector<std::shared_ptr<Session>> sessions{f.open(), f.open()};
  std::atomic<bool> destroyed{false};
  std::atomic<int> began{0}, refused{0}, gone_after{0}, wrong{0};
  std::vector<std::thread> threads;
  for (auto& s : sessions)
    threads.emplace_back([&, s] {
      while (gone_after.load() < 20) {
        const bool was_destroyed = destroyed.load();
        const auto e = begin_error(*s, OpKind::encrypt, CKM_AES_CBC_PAD, *k);
        if (!e) {
          ++began;
          s->cancel(CKF_ENCRYPT);
          if (was_destroyed) ++wrong;  // began on a key destroyed before the call
        } else if (*e == Errc::key_function_not_permitted) {
          ++refused;
          if (was_destroyed) ++wrong;
        } else if (*e == Errc::key_handle_invalid) {
          if (was_destroyed) ++gone_after;
        } else {
          ++wrong;
        }
      }
    });
  for (int i = 0; i < 100; ++i) {
    AttrMap change;
    change.set_bool(CKA_ENCRYPT, i % 2 == 1);
    REQUIRE(f.token->set_attributes(*owner, *k, change));
    std::this_thread::yield();
  }
  // The last change left CKA_ENCRYPT true: before the key goes, the threads begin with it (a slow
  // start, e.g. under ASan, could otherwise miss every window).
  for (int i = 0; i < 10000 && began.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(f.token->destroy_object(*owner, *k));
  destroyed = true;
  for (auto& t : threads) t.join();
  CHECK(wrong.load() == 0);
  CHECK(began.load() > 0);
  CHECK(gone_after.load() >= 20);
}

TEST_CASE("fake core: C_FindObjects follows what refresh() reports: upserted, removed, full reload") {
  Fixture f;
  auto s = f.open();
  AttrMap label;
  label.set_string(CKA_LABEL, "from elsewhere");
  auto other = f.fake->make_external(data_object(true, false, "from elsewhere"));
  CHECK(f.find(*s, label).empty());  // not reported yet
  f.fake->push_upsert(other);
  CHECK(f.find(*s, label).size() == 1);

  AttrMap renamed = other.attrs;
  renamed.set_string(CKA_LABEL, "renamed");
  f.fake->push_upsert(StoredObject{other.uid, renamed});
  CHECK(f.find(*s, label).empty());
  AttrMap new_label;
  new_label.set_string(CKA_LABEL, "renamed");
  CHECK(f.find(*s, new_label).size() == 1);

  f.fake->push_remove(other.uid);
  CHECK(f.find(*s, new_label).empty());

  auto mine = f.token->create_object(*s, data_object(true, false, "mine"));
  REQUIRE(mine);
  auto kept = f.fake->make_external(data_object(true, false, "kept"));
  f.fake->push_full_reload({kept});
  auto all = f.find(*s);
  REQUIRE(all.size() == 1);  // "mine" is gone from the token, "kept" came
  AttrMap kept_label;
  kept_label.set_string(CKA_LABEL, "kept");
  CHECK(f.find(*s, kept_label) == all);
}

TEST_CASE("fake core: the key observer is told of keys made and token keys destroyed") {
  Fixture f;
  Recorder rec;
  f.token->set_observer(&rec);
  auto s = f.open();
  REQUIRE(f.lib.login(*s, CKU_USER, pin("1234")));
  AttrMap t;
  t.set_bool(CKA_TOKEN, true);
  t.set_ulong(CKA_VALUE_LEN, 32);
  CK_MECHANISM gen{CKM_AES_KEY_GEN, nullptr, 0};
  auto k = f.token->generate_key(*s, &gen, t);
  REQUIRE(k);
  REQUIRE(rec.made == std::vector<CK_OBJECT_HANDLE>{*k});
  auto created = f.token->create_object(*s, aes_key(16));
  REQUIRE(created);
  CHECK(rec.made.back() == *created);
  REQUIRE(f.token->destroy_object(*s, *k));
  REQUIRE(rec.destroyed.size() == 1);
  CHECK(f.fake->calls.back() == "destroy");
  CHECK_FALSE(f.fake->holds(rec.destroyed[0]));
  f.token->set_observer(nullptr);
}

TEST_CASE("fake core: the slot's mechanism list is the backend's, or core's table when it has none") {
  {
    Fixture f([](FakeBackend& b) { b.slot_list = std::vector<SlotMechanism>{{CKM_SHA256, 0, 0, CKF_DIGEST}}; });
    auto list = f.token->mechanisms();
    REQUIRE(list.size() == 1);
    CHECK(list[0].type == CKM_SHA256);
  }
  Fixture f;
  CHECK(f.token->mechanisms().size() == mechanism_table().size());
}

TEST_CASE("fake core: the BYOK blob is one CKM_RSA_AES_KEY_WRAP where the slot has it, else composed from the "
          "backend's mechanisms; its session objects are destroyed") {
  const Bytes n(256, 0xc5), e{1, 0, 1};
  auto text = [](const Bytes& b) { return std::string(b.begin(), b.end()); };
  {
    FakeBackend b;  // core's table: CKM_RSA_AES_KEY_WRAP
    auto target = b.make_external(aes_key(32));
    auto blob = mirror::wrap_for_byok(b, "g", target, n, e);
    REQUIRE(blob);
    CHECK(text(*blob) == "[CKM_RSA_AES_KEY_WRAP(0002,0001)]");  // under the KEK session object (uid ...2)
    CHECK(b.calls == std::vector<std::string>{"create", "wrap CKM_RSA_AES_KEY_WRAP", "destroy"});
    CHECK(b.size() == 1);
  }
  FakeBackend b;
  b.slot_list = std::vector<SlotMechanism>{{CKM_AES_KEY_GEN, 16, 32, CKF_GENERATE},
                                           {CKM_RSA_PKCS_OAEP, 1024, 4096, CKF_WRAP | CKF_ENCRYPT}};
  b.caps.rfc5649_wrap = CKM_AES_KEY_WRAP_PAD;  // the backend's name for RFC 5649; core asks for KWP
  auto target = b.make_external(aes_key(32));
  auto blob = mirror::wrap_for_byok(b, "g", target, n, e);
  REQUIRE(blob);
  // RSA-OAEP of the ephemeral AES key (uid ...3) under the KEK (...2), then the target under it.
  CHECK(text(*blob) == "[CKM_RSA_PKCS_OAEP(0002,0003)][CKM_AES_KEY_WRAP_KWP(0003,0001)]");
  CHECK(b.calls == std::vector<std::string>{"create", "generate CKM_AES_KEY_GEN", "wrap CKM_AES_KEY_WRAP_KWP",
                                            "wrap CKM_RSA_PKCS_OAEP", "destroy", "destroy"});
  CHECK(b.size() == 1);
}

TEST_CASE("fake core: BYOK calls a KEK the backend refuses as a key wrapping_key_type_inconsistent; other "
          "failures keep their own code") {
  const Bytes n(256, 0xc5), e{1, 0, 1};
  struct Case {
    Errc backend, expected;
  };
  for (auto c : {Case{Errc::attribute_value_invalid, Errc::wrapping_key_type_inconsistent},
                 Case{Errc::template_inconsistent, Errc::wrapping_key_type_inconsistent},
                 Case{Errc::key_size_range, Errc::wrapping_key_type_inconsistent},
                 Case{Errc::device_error, Errc::device_error},
                 Case{Errc::session_handle_invalid, Errc::session_handle_invalid},
                 Case{Errc::device_memory, Errc::device_memory}}) {
    CAPTURE(std::string(errc_name(c.backend)));
    FakeBackend b;
    auto target = b.make_external(aes_key(32));
    b.fail_create = Error{c.backend, "the backend says no"};
    auto blob = mirror::wrap_for_byok(b, "g", target, n, e);
    REQUIRE_FALSE(blob);
    CHECK(blob.error().code == c.expected);
    CHECK(blob.error().message.find("the backend says no") != std::string::npos);
  }
}

TEST_CASE("fake core: what the backend cannot wrap for BYOK is refused before any wrap, with its CKR and sentence") {
  FakeBackend b;
  b.slot_list = std::vector<SlotMechanism>{{CKM_AES_KEY_GEN, 16, 32, CKF_GENERATE},
                                           {CKM_RSA_PKCS_OAEP, 1024, 4096, CKF_WRAP}};
  b.caps.rfc5649_wrap = 0;
  AttrMap a = aes_key(32);
  a.set_bool(CKA_EXTRACTABLE, true);
  auto target = b.make_external(a);
  auto none = mirror::check_exportable(b, "g", target, false);
  REQUIRE_FALSE(none);
  CHECK(none.error().code == Errc::mechanism_invalid);
  CHECK(none.error().message.find("neither CKM_RSA_AES_KEY_WRAP nor an RFC 5649 AES key wrap") != std::string::npos);

  b.slot_list.reset();
  b.caps = Capabilities{"the HSM", false, true, CKM_AES_KEY_WRAP_KWP};
  CHECK(mirror::check_exportable(b, "g", target, false));
  auto plain = mirror::check_exportable(b, "g", target, true);
  REQUIRE_FALSE(plain);
  CHECK(plain.error().code == Errc::key_unextractable);
  CHECK(plain.error().message.find("Premium vault or a Managed HSM") != std::string::npos);

  auto fixed = b.make_external(aes_key(32));  // CKA_EXTRACTABLE absent: false
  b.calls.clear();
  auto unextractable = mirror::wrap_for_byok(b, "g", fixed, Bytes(256, 1), Bytes{1, 0, 1});
  REQUIRE_FALSE(unextractable);
  CHECK(unextractable.error().code == Errc::key_unextractable);
  CHECK(unextractable.error().message.find("CKA_EXTRACTABLE is false") != std::string::npos);
  CHECK(b.calls.empty());

  a.set_bool(CKA_WRAP_WITH_TRUSTED, true);
  auto trusted = mirror::check_exportable(b, "g", b.make_external(a), false);
  REQUIRE_FALSE(trusted);
  CHECK(trusted.error().code == Errc::key_not_wrappable);
  CHECK(trusted.error().message.find("CKA_WRAP_WITH_TRUSTED") != std::string::npos);
}

TEST_CASE("fake core: a key no host made (no vendor attributes in the backend) answers the vendor defaults") {
  Fixture f;
  auto s = f.open();
  AttrMap k = aes_key(32);
  k.set_bool(CKA_PRIVATE, false);
  k.set_string(CKA_LABEL, "made by the HSM's own tools");
  k.erase(CKA_VALUE);
  auto ext = f.fake->make_external(k);
  f.fake->push_upsert(ext);
  AttrMap label;
  label.set_string(CKA_LABEL, "made by the HSM's own tools");
  auto found = f.find(*s, label);
  REQUIRE(found.size() == 1);
  CK_ULONG state = 99, origin = 99;
  CK_ATTRIBUTE t[] = {{CKA_CDC_MIRROR_STATE, &state, sizeof state}, {CKA_CDC_ORIGIN, &origin, sizeof origin}};
  auto r = f.token->get_attributes(*s, found[0], t, 2);
  CHECK_MESSAGE(r.ok(), (r ? std::string() : r.error().message));
  CHECK(state == CDC_MIRROR_STATE_NONE);
  CHECK(origin == CDC_ORIGIN_LOCAL);
  // The same as a key made through the slot answers.
  AttrMap mine = aes_key(16);
  mine.set_bool(CKA_PRIVATE, false);
  auto made = f.token->create_object(*s, mine);
  REQUIRE_MESSAGE(made, (made ? std::string() : made.error().message));
  CK_ULONG state2 = 99, origin2 = 99;
  CK_ATTRIBUTE t2[] = {{CKA_CDC_MIRROR_STATE, &state2, sizeof state2}, {CKA_CDC_ORIGIN, &origin2, sizeof origin2}};
  REQUIRE(f.token->get_attributes(*s, *made, t2, 2));
  CHECK(state2 == state);
  CHECK(origin2 == origin);
}

TEST_CASE("fake core: C_CreateObject does not list a backend that is not refreshed before operations") {
  Fixture f([](FakeBackend& b) { b.refresh_first = false; });
  auto s = f.open();
  const int before = f.fake->refreshes;
  auto h = f.token->create_object(*s, data_object(true, false, "made here"));
  REQUIRE(h);
  CHECK(f.fake->refreshes == before);
  // Known without a listing: found, under the handle C_CreateObject gave, also after one.
  AttrMap label;
  label.set_string(CKA_LABEL, "made here");
  CHECK(f.find(*s, label) == std::vector<CK_OBJECT_HANDLE>{*h});
  // The backend's next listing reports it (as an HSM's does): still one object, the same handle.
  char uid[64] = {};
  CK_ATTRIBUTE t{CKA_UNIQUE_ID, uid, sizeof uid - 1};
  REQUIRE(f.token->get_attributes(*s, *h, &t, 1));
  AttrMap listed = data_object(true, false, "made here");
  listed.set_string(CKA_UNIQUE_ID, uid);
  f.fake->push_upsert(StoredObject{uid, listed});
  CHECK(f.find(*s, label) == std::vector<CK_OBJECT_HANDLE>{*h});
}

TEST_CASE("fake core: a call on one token object refreshes that object only; C_FindObjects refreshes all") {
  Fixture f([](FakeBackend& b) { b.refresh_first = false; });
  auto s = f.open();
  auto h = f.token->create_object(*s, data_object(true, false, "one"));
  REQUIRE(h);
  auto sess = f.token->create_object(*s, data_object(false, false, "session"));
  REQUIRE(sess);
  char uid[64] = {};
  CK_ATTRIBUTE t{CKA_UNIQUE_ID, uid, sizeof uid - 1};
  const int listings = f.fake->refreshes;
  REQUIRE(f.token->get_attributes(*s, *h, &t, 1));
  const std::string one_uid = uid;
  AttrMap label;
  label.set_string(CKA_LABEL, "two");
  REQUIRE(f.token->set_attributes(*s, *h, label));
  REQUIRE(f.token->object_size(*s, *h));
  auto copy = f.token->copy_object(*s, *h, {});
  REQUIRE(copy);
  REQUIRE(f.token->destroy_object(*s, *copy));
  CHECK(f.fake->refreshes == listings);
  CHECK(f.fake->object_refreshes.size() == 5);
  CHECK(f.fake->object_refreshes.front() == one_uid);
  // A session object is no backend's to refresh.
  REQUIRE(f.token->get_attributes(*s, *sess, &t, 1));
  CHECK(f.fake->object_refreshes.size() == 5);
  CHECK(f.fake->refreshes == listings);
  // What the object's refresh reports applies: destroyed elsewhere, the handle is invalid.
  f.fake->push_remove(one_uid);
  CHECK(f.token->get_attributes(*s, *h, &t, 1).error().code == Errc::object_handle_invalid);
  f.find(*s);
  CHECK(f.fake->refreshes == listings + 1);
}

TEST_CASE("fake core: a full reload keeps the handle of every object it still lists; only the others go") {
  Fixture f;
  auto s = f.open();
  REQUIRE(f.lib.login(*s, CKU_USER, pin("1234")));
  auto key = f.token->create_object(*s, aes_key(32));
  auto gone = f.token->create_object(*s, data_object(true, false, "gone"));
  REQUIRE(key);
  REQUIRE(gone);
  const StoredObject listed = f.token->lock().cache().get(*key)->obj;
  // The backend lists everything again (its first listing, or a re-read of its whole store):
  // the key is still there, so the handle the application holds still names it.
  f.fake->push_full_reload({listed});
  CHECK_FALSE(begin_error(*f.open(), OpKind::encrypt, CKM_AES_CBC_PAD, *key));
  CHECK(f.find(*s) == std::vector<CK_OBJECT_HANDLE>{*key});
  CHECK(f.token->get_attributes(*s, *gone, nullptr, 0).error().code == Errc::object_handle_invalid);
}

TEST_CASE("fake core: the mirror's writes of a key's state and the refreshes that report them keep the key's handle") {
  Fixture f;
  auto s = f.open();
  REQUIRE(f.lib.login(*s, CKU_USER, pin("1234")));
  auto key = f.token->create_object(*s, aes_key(32));
  REQUIRE(key);
  const std::string uid = f.token->lock().cache().get(*key)->obj.uid;
  auto state_of = [&] {
    CK_ULONG state = 99;
    CK_ATTRIBUTE t{CKA_CDC_MIRROR_STATE, &state, sizeof state};
    REQUIRE(f.token->get_attributes(*s, *key, &t, 1));
    return state;
  };
  for (CK_ULONG st : {CK_ULONG(CDC_MIRROR_STATE_PENDING), CK_ULONG(CDC_MIRROR_STATE_MIRRORED)}) {
    // As the worker records it (Service::record), then as the backend reports the rewritten object.
    REQUIRE(f.token->mirror()->update_key(uid, [&](AttrMap& a) { a.set_ulong(CKA_CDC_MIRROR_STATE, st); }));
    f.fake->push_upsert(f.token->lock().cache().get(*key)->obj);
    CHECK_FALSE(begin_error(*f.open(), OpKind::encrypt, CKM_AES_CBC_PAD, *key));
    CHECK(state_of() == st);
  }
  CHECK(f.find(*s) == std::vector<CK_OBJECT_HANDLE>{*key});
}
