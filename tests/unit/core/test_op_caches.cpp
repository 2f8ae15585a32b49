// What an operation's key lookup keeps between calls (the key object opened for operations, the
// parsed key in the soft token) must not outlive a change of the key: destroyed, its usage
// attribute turned off, or either done by another process (another provider on the same token).
#include <doctest/doctest.h>

#include <filesystem>
#include <atomic>
#include <fstream>

#include "core/provider/provider.h"
#include "softtoken/crypto/backend.h"
#include "softtoken/soft_token.h"

using namespace cdcp11;
using namespace cdcp11::core;
namespace fs = std::filesystem;

namespace {

const Bytes kP256Oid = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
const Bytes kDigest(32, 0x5a);

R<std::unique_ptr<Backend>> soft_factory(const GroupConfig& g) {
  auto t = softtoken::SoftToken::open(g, crypto::default_backend());
  if (!t) return fail(std::move(t).error());
  return std::unique_ptr<Backend>(std::move(*t));
}

struct Dir {
  fs::path path;
  Dir() {
    char tmpl[] = "/tmp/cdcp11-opcache-XXXXXX";
    path = ::mkdtemp(tmpl);
    std::ofstream(path / "conf.json")
        << R"({"version":1,"groups":[{"name":"t","token":{"dir":"tok","kdf_scrypt_log2_n":10}}]})";
  }
  ~Dir() { fs::remove_all(path); }
  std::string conf() const { return (path / "conf.json").string(); }
};

// One application: a provider with a logged-in R/W session.
struct App {
  Provider lib;
  CK_SLOT_ID slot = 0;
  std::shared_ptr<Session> s;

  explicit App(const Dir& d, bool init = false) {
    REQUIRE(lib.initialize(d.conf(), soft_factory));
    slot = lib.slot_ids().at(0);
    if (init) {
      REQUIRE(lib.init_token(slot, view("so-pin-1"), "t"));
      open();
      REQUIRE(lib.login(*s, CKU_SO, view("so-pin-1")));
      REQUIRE(s->token().init_pin(*s, view("user-pin-1")));
      REQUIRE(lib.logout(*s));
    } else {
      open();
    }
    REQUIRE(lib.login(*s, CKU_USER, view("user-pin-1")));
  }
  ~App() { lib.finalize(); }
  void open() {
    auto h = lib.open_session(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION);
    REQUIRE(h);
    s = *lib.session(*h);
  }

  std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE> ec_pair(bool token, const std::string& label) {
    AttrMap pub, priv;
    pub.set(CKA_EC_PARAMS, kP256Oid);
    pub.set_bool(CKA_VERIFY, true);
    pub.set_bool(CKA_TOKEN, token);
    pub.set_string(CKA_LABEL, label);
    priv.set_bool(CKA_SIGN, true);
    priv.set_bool(CKA_TOKEN, token);
    priv.set_bool(CKA_PRIVATE, true);
    priv.set_string(CKA_LABEL, label);
    CK_MECHANISM m{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    auto r = s->token().generate_key_pair(*s, &m, pub, priv);
    REQUIRE(r);
    return *r;
  }

  CK_OBJECT_HANDLE find(const std::string& label, CK_OBJECT_CLASS cls) {
    AttrMap t;
    t.set_string(CKA_LABEL, label);
    t.set_ulong(CKA_CLASS, cls);
    REQUIRE(s->find_begin(t));
    CK_OBJECT_HANDLE h = 0;
    auto n = s->find_next(&h, 1);
    REQUIRE(s->find_end());
    REQUIRE(n);
    REQUIRE(*n == 1);
    return h;
  }

  R<Bytes> sign(CK_OBJECT_HANDLE key) {
    CK_MECHANISM m{CKM_ECDSA, nullptr, 0};
    CDC_TRY(s->begin(OpKind::sign, &m, key));
    Bytes sig(64);
    CK_ULONG len = sig.size();
    CDC_TRY(s->single(OpKind::sign, ByteView(kDigest), sig.data(), &len));
    sig.resize(len);
    return sig;
  }

  R<void> verify(CK_OBJECT_HANDLE key, const Bytes& sig) {
    CK_MECHANISM m{CKM_ECDSA, nullptr, 0};
    CDC_TRY(s->begin(OpKind::verify, &m, key));
    return s->verify_single(ByteView(kDigest), ByteView(sig));
  }

  R<void> set_bool(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t, bool v) {
    AttrMap a;
    a.set_bool(t, v);
    return s->token().set_attributes(*s, h, a);
  }
};

std::optional<Errc> code(const R<void>& r) { return r ? std::nullopt : std::optional(r.error().code); }
template <class T>
std::optional<Errc> code(const R<T>& r) { return r ? std::nullopt : std::optional(r.error().code); }

}  // namespace

TEST_CASE("an opened key follows its object: CKA_VERIFY/CKA_SIGN turned off, then destroyed") {
  Dir d;
  App a(d, true);
  for (bool token : {false, true}) {
    CAPTURE(token);
    auto [pub, priv] = a.ec_pair(token, token ? "tok" : "ses");
    auto sig = a.sign(priv);
    REQUIRE(sig);
    // Used twice, so whatever the first use kept is in place.
    REQUIRE(a.verify(pub, *sig));
    REQUIRE(a.verify(pub, *sig));

    REQUIRE(a.set_bool(pub, CKA_VERIFY, false));
    CHECK(code(a.verify(pub, *sig)) == Errc::key_function_not_permitted);
    REQUIRE(a.set_bool(pub, CKA_VERIFY, true));
    CHECK(a.verify(pub, *sig));

    REQUIRE(a.set_bool(priv, CKA_SIGN, false));
    CHECK(code(a.sign(priv)) == Errc::key_function_not_permitted);
    REQUIRE(a.set_bool(priv, CKA_SIGN, true));
    CHECK(a.sign(priv));

    REQUIRE(a.s->token().destroy_object(*a.s, pub));
    CHECK(code(a.verify(pub, *sig)) == Errc::key_handle_invalid);
    REQUIRE(a.s->token().destroy_object(*a.s, priv));
    CHECK(code(a.sign(priv)) == Errc::key_handle_invalid);
  }
}

TEST_CASE("a token key changed or destroyed by another process is not used from what was kept") {
  Dir d;
  App a(d, true);
  auto [pub, priv] = a.ec_pair(true, "shared");
  auto sig = a.sign(priv);
  REQUIRE(sig);
  REQUIRE(a.verify(pub, *sig));
  REQUIRE(a.verify(pub, *sig));

  App b(d);
  const auto b_pub = b.find("shared", CKO_PUBLIC_KEY);
  const auto b_priv = b.find("shared", CKO_PRIVATE_KEY);
  REQUIRE(b.set_bool(b_pub, CKA_VERIFY, false));
  CHECK(code(a.verify(pub, *sig)) == Errc::key_function_not_permitted);
  REQUIRE(b.set_bool(b_pub, CKA_VERIFY, true));
  CHECK(a.verify(pub, *sig));

  REQUIRE(b.s->token().destroy_object(*b.s, b_pub));
  CHECK(code(a.verify(pub, *sig)) == Errc::key_handle_invalid);
  REQUIRE(b.s->token().destroy_object(*b.s, b_priv));
  CHECK(code(a.sign(priv)) == Errc::key_handle_invalid);
}

TEST_CASE("after a logout a private key is not usable from what was kept") {
  Dir d;
  App a(d, true);
  for (bool token : {false, true}) {
    CAPTURE(token);
    auto [pub, priv] = a.ec_pair(token, token ? "tok" : "ses");
    REQUIRE(a.sign(priv));
    REQUIRE(a.sign(priv));
    REQUIRE(a.lib.logout(*a.s));
    // PKCS#11 5.6: the handles of private objects are invalid for good after C_Logout.
    CHECK(code(a.sign(priv)) == Errc::key_handle_invalid);
    REQUIRE(a.lib.login(*a.s, CKU_USER, view("user-pin-1")));
    CHECK(code(a.sign(priv)) == Errc::key_handle_invalid);
    if (token) CHECK(a.sign(a.find("tok", CKO_PRIVATE_KEY)));
  }
}

TEST_CASE("operations share one copy of an object, replaced when its attributes change") {
  std::atomic<CK_OBJECT_HANDLE> next{1};
  ObjectCache c(next);
  AttrMap a;
  a.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
  a.set_string(CKA_LABEL, "before");
  const auto h = c.add(StoredObject{"u1", a}, true, 0, nullptr);
  auto first = c.for_ops(*c.get(h));
  CHECK(c.for_ops(*c.get(h)) == first);  // not copied per operation

  a.set_string(CKA_LABEL, "after");
  c.set_attrs(h, a);
  auto second = c.for_ops(*c.get(h));
  CHECK(second != first);
  CHECK(second->attrs.string_or(CKA_LABEL, "") == "after");
  CHECK(first->attrs.string_or(CKA_LABEL, "") == "before");  // a running operation keeps its own
}

TEST_CASE("the search index follows added, changed and removed objects") {
  std::atomic<CK_OBJECT_HANDLE> next{1};
  ObjectCache c(next);
  auto label = [](const char* l) {
    AttrMap t;
    t.set_string(CKA_LABEL, l);
    return t;
  };
  std::vector<CK_OBJECT_HANDLE> hs;
  for (int i = 0; i < 1000; ++i) {
    AttrMap a;
    a.set_ulong(CKA_CLASS, CKO_DATA);
    a.set_string(CKA_LABEL, "obj-" + std::to_string(i));
    hs.push_back(c.add(StoredObject{"u" + std::to_string(i), a}, true, 0, nullptr));
  }
  CHECK(c.candidates(label("obj-7")) == std::vector<CK_OBJECT_HANDLE>{hs[7]});
  CHECK(c.candidates(label("nothing")).empty());
  AttrMap a;
  a.set_ulong(CKA_CLASS, CKO_DATA);
  a.set_string(CKA_LABEL, "renamed");
  c.set_attrs(hs[7], a);
  CHECK(c.candidates(label("obj-7")).empty());
  CHECK(c.candidates(label("renamed")) == std::vector<CK_OBJECT_HANDLE>{hs[7]});
  c.remove(hs[7]);
  CHECK(c.candidates(label("renamed")).empty());
  AttrMap cls;
  cls.set_ulong(CKA_CLASS, CKO_DATA);
  CHECK(c.candidates(cls).size() == 999);
}

namespace {
std::atomic<int> g_big_wipes{0};
void count_big_wipes(const void*, std::size_t n) noexcept {
  if (n >= 16384) ++g_big_wipes;
}
}  // namespace

TEST_CASE("C_Encrypt of 16 KiB AES-GCM writes into the caller's buffer; a length query or a short buffer "
          "still keeps the operation and gives the same bytes") {
  Dir d;
  App a(d, true);
  AttrMap k;
  k.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
  k.set_ulong(CKA_KEY_TYPE, CKK_AES);
  k.set_bool(CKA_ENCRYPT, true);
  k.set_bool(CKA_DECRYPT, true);
  k.set(CKA_VALUE, Bytes(32, 0x42));
  auto key = a.s->token().create_object(*a.s, k);
  REQUIRE(key);
  std::uint8_t iv[12] = {1, 2, 3};
  CK_GCM_PARAMS gcm{iv, sizeof iv, 96, nullptr, 0, 128};
  CK_MECHANISM m{CKM_AES_GCM, &gcm, sizeof gcm};
  const Bytes plain(16384, 0x17);

  // Straight into a big enough buffer: no copy of the output is made (and wiped) on the way.
  REQUIRE(a.s->begin(OpKind::encrypt, &m, *key));
  Bytes direct(plain.size() + 16);
  CK_ULONG len = direct.size();
  g_big_wipes = 0;
  set_wipe_observer(count_big_wipes);
  auto r = a.s->single(OpKind::encrypt, ByteView(plain), direct.data(), &len);
  set_wipe_observer(nullptr);
  REQUIRE(r);
  CHECK(len == plain.size() + 16);
  CHECK(g_big_wipes == 0);
  CHECK(code(a.s->single(OpKind::encrypt, ByteView(plain), direct.data(), &len)) == Errc::operation_not_initialized);

  // Length query, then a short buffer, then the call: one operation, the same ciphertext.
  REQUIRE(a.s->begin(OpKind::encrypt, &m, *key));
  CK_ULONG q = 0;
  REQUIRE(a.s->single(OpKind::encrypt, ByteView(plain), nullptr, &q));
  CHECK(q == plain.size() + 16);
  Bytes out(q);
  CK_ULONG small = 10;
  CHECK(code(a.s->single(OpKind::encrypt, ByteView(plain), out.data(), &small)) == Errc::buffer_too_small);
  CHECK(small == q);
  REQUIRE(a.s->single(OpKind::encrypt, ByteView(plain), out.data(), &q));
  CHECK(out == direct);

  REQUIRE(a.s->begin(OpKind::decrypt, &m, *key));
  Bytes back(direct.size());
  CK_ULONG blen = back.size();
  REQUIRE(a.s->single(OpKind::decrypt, ByteView(direct), back.data(), &blen));
  back.resize(blen);
  CHECK(back == plain);
}
