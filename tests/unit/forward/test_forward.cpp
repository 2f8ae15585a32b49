// The forwarding backend (forward/) against a SoftHSM2 token: what the core's seam asks of it.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "backends/factory.h"
#include "cdcp11/cdcp11.h"
#include "core/attribute_policy.h"
#include "core/mechanisms.h"
#include "core/mirror/byok.h"
#include "forward/forward_token.h"
#include "core/token/metadata_store.h"
#include "core/token/vendor_state.h"
#include "tests/unit/hsm/support.h"

using namespace cdcp11;
using core::AttrMap;
using hsm::test::SoftHsm;

namespace {

template <class T>
T got(core::R<T>&& r) {
  if (!r) FAIL_CHECK("unexpected error: " << r.error().message);
  REQUIRE(r.ok());
  return std::move(r).value();
}
inline void got(core::R<void>&& r) {
  if (!r) FAIL_CHECK("unexpected error: " << r.error().message);
  REQUIRE(r.ok());
}
template <class T>
core::Error refused(core::R<T>&& r) {
  REQUIRE_FALSE(r.ok());
  return std::move(r).error();
}

struct Fixture {
  SoftHsm hsm{"fwd-test"};
  core::GroupConfig g;
  Fixture() {
    g.name = "hsmgroup";
    g.token.backend = "pkcs11";
    g.token.module = hsm::test::kSoftHsm;
    g.token.selector = core::TokenConfig::Select::label;
    g.token.token_label = "fwd-test";
    g.token.dir = hsm.dir.path + "/meta";
  }
  // As the Token sees it: vendor attributes in the metadata store (core/token/vendor_state.h).
  std::unique_ptr<core::Backend> open() {
    return std::make_unique<core::VendorState>(got(backends::make_token_backend(g)),
                                               got(core::MetadataStore::open(g.token.dir)));
  }
  std::unique_ptr<core::Backend> open_user() {
    auto b = open();
    got(b->login(CKU_USER, view(hsm::test::kUserPin)));
    return b;
  }
};

core::Mechanism mech(CK_MECHANISM_TYPE t, Bytes param = {}) { return {core::find_mechanism(t), std::move(param)}; }

// A template as the core makes it: the caller's attributes, then the defaults.
AttrMap complete(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, AttrMap a) {
  a.set_ulong(CKA_CLASS, cls);
  a.set_ulong(CKA_KEY_TYPE, kt);
  core::apply_defaults(cls, kt, a);
  a.set_bool(CKA_LOCAL, true);
  return a;
}

AttrMap aes_template(bool token, bool extractable = false) {
  AttrMap a;
  a.set_bool(CKA_TOKEN, token);
  a.set_ulong(CKA_VALUE_LEN, 32);
  a.set_bool(CKA_ENCRYPT, true);
  a.set_bool(CKA_DECRYPT, true);
  a.set_bool(CKA_EXTRACTABLE, extractable);
  a.set_string(CKA_LABEL, "aes");
  return complete(CKO_SECRET_KEY, CKK_AES, a);
}

std::pair<core::StoredObject, core::StoredObject> rsa_pair(core::Backend& b, bool token, bool extractable = false) {
  AttrMap pub, priv;
  pub.set_bool(CKA_TOKEN, token);
  pub.set_ulong(CKA_MODULUS_BITS, 2048);
  const std::uint8_t f4[] = {1, 0, 1};
  pub.set(CKA_PUBLIC_EXPONENT, ByteView(f4, 3));
  pub.set_string(CKA_ID, "k1");
  priv.set_bool(CKA_TOKEN, token);
  priv.set_bool(CKA_EXTRACTABLE, extractable);
  priv.set_string(CKA_ID, "k1");
  return got(b.generate_key_pair(mech(CKM_RSA_PKCS_KEY_PAIR_GEN), complete(CKO_PUBLIC_KEY, CKK_RSA, pub),
                                 complete(CKO_PRIVATE_KEY, CKK_RSA, priv)));
}

Bytes run(core::Operation& op, ByteView in) {
  auto a = got(op.update(in));
  auto b = got(op.finish());
  Bytes out(a.begin(), a.end());
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

}  // namespace

TEST_CASE("forward: the HSM token's status, model, and a mechanism list that is the HSM's within the core's table") {
  Fixture f;
  auto b = f.open();
  auto st = b->status();
  CHECK(st.label == "fwd-test");
  CHECK_FALSE(st.serial.empty());
  CHECK(st.initialized);
  CHECK(st.user_pin_initialized);
  CHECK(st.model == "PKCS#11 forward");
  CHECK(st.manufacturer.find("via cdcp11") != std::string::npos);
  auto mechs = b->mechanisms();
  REQUIRE(mechs);
  bool rsa = false, kwp = false, ecdsa = false;
  for (auto& m : *mechs) {
    CHECK(core::find_mechanism(m.type) != nullptr);  // nothing the core does not know
    rsa |= m.type == CKM_RSA_PKCS;
    ecdsa |= m.type == CKM_ECDSA;
    kwp |= m.type == CKM_AES_KEY_WRAP_KWP;
  }
  CHECK(rsa);
  CHECK(ecdsa);
  CHECK_FALSE(kwp);  // SoftHSM2 2.6.1 has no KWP: the HSM's answer, not the table's
}

TEST_CASE("forward: a missing module or token leaves the group without a token, saying why") {
  Fixture f;
  f.g.token.module = "/nonexistent/libhsm.so";
  auto e = refused(backends::make_token_backend(f.g));
  CHECK(e.code == core::Errc::token_not_present);
  CHECK(e.message.find("/nonexistent/libhsm.so") != std::string::npos);
  f.g.token.module = hsm::test::kSoftHsm;
  f.g.token.token_label = "no-such-token";
  e = refused(backends::make_token_backend(f.g));
  CHECK(e.code == core::Errc::token_not_present);
  CHECK(e.message.find("no-such-token") != std::string::npos);
}

TEST_CASE("forward: login passes the PIN through; the HSM's answer comes back; C_InitToken is refused") {
  Fixture f;
  auto b = f.open();
  auto e = refused(b->login(CKU_USER, view("wrong-pin")));
  CHECK(e.code == core::Errc::pin_incorrect);
  CHECK(b->status().user_pin_count_low);  // what SoftHSM2 says after a wrong PIN
  got(b->login(CKU_USER, view(hsm::test::kUserPin)));
  b->logout();
  e = refused(b->init_token(view(hsm::test::kSoPin), "x"));
  CHECK(e.code == core::Errc::not_supported);
  CHECK(e.message.find("HSM's own tools") != std::string::npos);
}

TEST_CASE("forward: objects already in the HSM appear with an identity that another process finds again") {
  Fixture f;
  {
    auto s = f.hsm.user_session();
    auto t = hsm::test::aes_key(32);
    AttrMap a = t.map();
    a.set_bool(CKA_TOKEN, true);
    a.set_string(CKA_LABEL, "made-by-the-hsm-tools");
    (void)hsm::test::ok(s.generate_key(hsm::Mechanism(CKM_AES_KEY_GEN), a));
  }
  std::string uid;
  {
    auto b = f.open_user();
    auto ch = got(b->refresh());
    REQUIRE(ch.upserted.size() == 1);
    const auto& o = ch.upserted[0];
    uid = o.uid;
    CHECK(uid.size() == 32);  // SoftHSM2 has no CKA_UNIQUE_ID: the backend's own id
    CHECK(o.attrs.string_or(CKA_LABEL, "") == "made-by-the-hsm-tools");
    CHECK(o.attrs.string_or(CKA_UNIQUE_ID, "") == uid);
    CHECK_FALSE(o.attrs.has(CKA_VALUE));  // key material stays in the HSM
    CHECK(got(b->refresh()).upserted.empty());  // nothing changed
    // Vendor attributes go to the metadata store, not the HSM.
    AttrMap upd = o.attrs;
    upd.set_string(CKA_CDC_AZURE_KEY_ID, "https://v.vault.azure.net/keys/k/1");
    upd.set_string(CKA_LABEL, "renamed");
    got(b->update_object(uid, upd));
  }
  auto b2 = f.open_user();  // a new backend: no memory of handles, only the store
  auto ch = got(b2->refresh());
  REQUIRE(ch.upserted.size() == 1);
  CHECK(ch.upserted[0].uid == uid);
  CHECK(ch.upserted[0].attrs.string_or(CKA_LABEL, "") == "renamed");
  CHECK(ch.upserted[0].attrs.string_or(CKA_CDC_AZURE_KEY_ID, "") == "https://v.vault.azure.net/keys/k/1");
}

TEST_CASE("forward: an object deleted behind our back is removed and leaves no metadata") {
  Fixture f;
  auto b = f.open_user();
  auto key = got(b->generate_key(mech(CKM_AES_KEY_GEN), aes_template(true)));
  AttrMap upd = key.attrs;
  upd.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_MIRRORED);
  got(b->update_object(key.uid, upd));
  (void)got(b->refresh());
  {
    auto s = f.hsm.session();  // the backend's login is the application's: this session has it too
    AttrMap t;
    t.set_string(CKA_LABEL, "aes");
    auto hs = hsm::test::ok(s.find(t));
    REQUIRE(hs.size() == 1);
    hsm::test::ok(s.destroy(hs[0]));
  }
  auto ch = got(b->refresh());
  REQUIRE(ch.removed.size() == 1);
  CHECK(ch.removed[0] == key.uid);
  auto meta = got(core::MetadataStore::open(f.g.token.dir));
  CHECK(meta->data().objects.count(key.uid) == 0);
}

TEST_CASE("forward: keys generated in the HSM; AES-GCM and CBC (multi-part) round trips; RSA sign and verify") {
  Fixture f;
  auto b = f.open_user();
  auto aes = got(b->generate_key(mech(CKM_AES_KEY_GEN), aes_template(false)));
  CHECK(aes.attrs.bool_or(CKA_LOCAL, false));
  CHECK(aes.attrs.bool_or(CKA_SENSITIVE, false));
  CHECK(aes.attrs.ulong(CKA_VALUE_LEN) == 32);

  hsm::GcmParams gp(Bytes(12, 7), Bytes{1, 2, 3});
  auto gm = gp.mechanism();
  core::Mechanism gcm = mech(CKM_AES_GCM, Bytes(gm.param.begin(), gm.param.end()));
  const Bytes msg = {'h', 'e', 'l', 'l', 'o'};
  auto enc = got(b->begin(core::OpKind::encrypt, gcm, aes));
  Bytes ct = run(*enc, msg);
  CHECK(ct.size() == msg.size() + 16);
  auto dec = got(b->begin(core::OpKind::decrypt, gcm, aes));
  CHECK(run(*dec, ct) == msg);

  // CBC with padding in three parts.
  core::Mechanism cbc = mech(CKM_AES_CBC_PAD, Bytes(16, 1));
  Bytes long_msg(100, 'x');
  auto e2 = got(b->begin(core::OpKind::encrypt, cbc, aes));
  Bytes ct2;
  for (std::size_t at = 0; at < long_msg.size(); at += 40) {
    auto part = got(e2->update(ByteView(long_msg).subspan(at, std::min<std::size_t>(40, long_msg.size() - at))));
    ct2.insert(ct2.end(), part.begin(), part.end());
  }
  auto tail = got(e2->finish());
  ct2.insert(ct2.end(), tail.begin(), tail.end());
  CHECK(ct2.size() == 112);
  auto d2 = got(b->begin(core::OpKind::decrypt, cbc, aes));
  CHECK(run(*d2, ct2) == long_msg);

  auto [pub, priv] = rsa_pair(*b, false);
  CHECK(pub.attrs.find(CKA_MODULUS)->size() == 256);
  CHECK_FALSE(priv.attrs.has(CKA_PRIVATE_EXPONENT));
  auto sign = got(b->begin(core::OpKind::sign, mech(CKM_SHA256_RSA_PKCS), priv));
  (void)got(sign->update(msg));
  (void)got(sign->update(msg));  // multi-part in the HSM
  auto sig = got(sign->finish());
  CHECK(sig.size() == 256);
  Bytes twice = msg;
  twice.insert(twice.end(), msg.begin(), msg.end());
  auto ver = got(b->begin(core::OpKind::verify, mech(CKM_SHA256_RSA_PKCS), pub));
  (void)got(ver->update(twice));
  got(ver->verify(sig));
  auto bad = got(b->begin(core::OpKind::verify, mech(CKM_SHA256_RSA_PKCS), pub));
  (void)got(bad->update(msg));
  CHECK(refused(bad->verify(sig)).code == core::Errc::signature_invalid);

  auto pc = got(b->public_key(priv));
  CHECK(pc.ulong(CKA_KEY_TYPE) == CKK_RSA);
  CHECK(pc.find(CKA_MODULUS)->size() == 256);

  std::uint8_t rnd[32] = {};
  got(b->random(rnd, sizeof rnd));
  auto digest = got(b->begin_digest(mech(CKM_SHA256)));
  CHECK(run(*digest, msg).size() == 32);
}

TEST_CASE("forward: wrapping for Azure happens in the HSM, and what it cannot wrap is refused before Azure") {
  Fixture f;
  auto b = f.open_user();
  auto [pub, priv] = rsa_pair(*b, true, /*extractable=*/false);
  auto e = refused(core::mirror::check_exportable(*b, "g", priv, false));
  CHECK(e.code == core::Errc::key_unextractable);
  CHECK(e.message.find("CKA_EXTRACTABLE is false") != std::string::npos);
  e = refused(core::mirror::check_exportable(*b, "g", priv, true));
  CHECK(e.message.find("Premium vault or a Managed HSM") != std::string::npos);
  CHECK(refused(b->export_plain(priv)).code == core::Errc::key_unextractable);

  auto [pub2, priv2] = rsa_pair(*b, true, /*extractable=*/true);
  got(core::mirror::check_exportable(*b, "g", priv2, false));
  auto [kek_pub, kek_priv] = rsa_pair(*b, false);
  const std::uint8_t f4[] = {1, 0, 1};
  auto blob = got(core::mirror::wrap_for_byok(*b, "g", priv2, *kek_pub.attrs.find(CKA_MODULUS), ByteView(f4, 3)));
  // RSA-OAEP of the AES key (256 bytes) then the padded PKCS#8 wrapped under it.
  CHECK(blob.size() > 256 + 1000);
  auto still = got(b->refresh());
  (void)still;
}

TEST_CASE("forward: key references (Azure-resident keys) live in the metadata store only") {
  Fixture f;
  std::string uid;
  {
    auto b = f.open_user();
    AttrMap a;
    a.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
    a.set_ulong(CKA_KEY_TYPE, CKK_EC);
    a.set_bool(CKA_TOKEN, true);
    a.set_string(CKA_LABEL, "in-the-vault");
    a.set_ulong(CKA_CDC_ORIGIN, CDC_ORIGIN_AZURE);
    auto ref = got(b->create_key_reference(a));
    uid = ref.uid;
    CHECK(uid.size() == 32);
  }
  auto b = f.open_user();
  auto ch = got(b->refresh());
  REQUIRE(ch.upserted.size() == 1);
  CHECK(ch.upserted[0].uid == uid);
  CHECK(ch.upserted[0].attrs.ulong(CKA_CDC_ORIGIN) == CDC_ORIGIN_AZURE);
  {
    auto s = f.hsm.session();
    CHECK(hsm::test::ok(s.find(AttrMap{})).empty());  // nothing of it in the HSM
  }
  got(b->destroy_object(uid));
  auto meta = got(core::MetadataStore::open(f.g.token.dir));
  CHECK(meta->data().refs.empty());
}

TEST_CASE("forward: objects alike in every attribute still get distinct identities, found again elsewhere") {
  Fixture f;
  {
    auto s = f.hsm.user_session();
    for (int i = 0; i < 3; ++i) {
      AttrMap d;
      d.set_ulong(CKA_CLASS, CKO_DATA);
      d.set_bool(CKA_TOKEN, true);
      d.set_bool(CKA_PRIVATE, false);
      d.set_string(CKA_LABEL, "same");
      d.set_string(CKA_VALUE, "same value");
      (void)hsm::test::ok(s.create(d));
    }
  }
  std::set<std::string> first;
  {
    auto b = f.open_user();
    for (auto& o : got(b->refresh()).upserted) first.insert(o.uid);
    CHECK(first.size() == 3);
  }
  auto b = f.open_user();
  std::set<std::string> again;
  for (auto& o : got(b->refresh()).upserted) again.insert(o.uid);
  CHECK(again == first);
  // The first takes the id derived from its locator, which needs no record; the two others
  // theirs, recorded.
  CHECK(got(core::MetadataStore::open(f.g.token.dir))->data().objects.size() == 2);
}

TEST_CASE("forward: operations from several threads each get an HSM session of their own") {
  Fixture f;
  auto b = f.open_user();
  auto aes = got(b->generate_key(mech(CKM_AES_KEY_GEN), aes_template(false)));
  std::atomic<int> good{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        hsm::GcmParams gp(Bytes(12, static_cast<std::uint8_t>(t)), Bytes{});
        auto gm = gp.mechanism();
        auto enc = b->begin(core::OpKind::encrypt, mech(CKM_AES_GCM, Bytes(gm.param.begin(), gm.param.end())), aes);
        if (!enc) continue;
        auto c = (*enc)->one_shot(ByteView(Bytes(16, 1)));
        if (c && c->size() == 32) ++good;
        if (i % 10 == 0) (void)b->refresh();
      }
    });
  for (auto& t : ts) t.join();
  CHECK(good == 200);
}

TEST_CASE("forward: a login the HSM dropped behind our back prunes no metadata of the private objects it hides") {
  Fixture f;
  auto b = f.open_user();
  auto key = got(b->generate_key(mech(CKM_AES_KEY_GEN), aes_template(true)));  // private (the default)
  AttrMap upd = key.attrs;
  upd.set_string(CKA_CDC_AZURE_KEY_ID, "https://v.vault.azure.net/keys/k/2");
  got(b->update_object(key.uid, upd));
  (void)got(b->refresh());
  {
    auto s = f.hsm.session();
    hsm::test::ok(s.logout());  // the application's login, in the HSM: ours too
  }
  auto ch = got(b->refresh());
  CHECK(ch.removed == std::vector<std::string>{key.uid});  // hidden now
  auto meta = got(core::MetadataStore::open(f.g.token.dir));
  REQUIRE(meta->data().objects.count(key.uid) == 1);
  b->logout();
  got(b->login(CKU_USER, view(hsm::test::kUserPin)));
  ch = got(b->refresh());
  REQUIRE(ch.upserted.size() == 1);
  CHECK(ch.upserted[0].uid == key.uid);
  CHECK(ch.upserted[0].attrs.string_or(CKA_CDC_AZURE_KEY_ID, "") == "https://v.vault.azure.net/keys/k/2");
}

TEST_CASE("forward: C_SetPIN and C_InitPIN are forwarded to the HSM") {
  Fixture f;
  auto b = f.open_user();
  got(b->set_pin(CKU_USER, view(hsm::test::kUserPin), view("new-user-pin")));
  b->logout();
  CHECK(refused(b->login(CKU_USER, view(hsm::test::kUserPin))).code == core::Errc::pin_incorrect);
  got(b->login(CKU_USER, view("new-user-pin")));
  b->logout();
  got(b->login(CKU_SO, view(hsm::test::kSoPin)));
  got(b->init_pin(view("reset-user-pin")));
  b->logout();
  got(b->login(CKU_USER, view("reset-user-pin")));
}

// ---------------------------------------------------------------- what refresh and create cost the HSM

namespace {

// OpenSC's pkcs11-spy in front of SoftHSM2, logging every call the backend makes to the HSM.
// One trace file for the whole process, and tests count calls as differences: under ASan
// (tests/sanitize/keep_loaded.cpp) the spy is never unloaded, so it keeps writing to the file it
// opened first.
const std::string& spy_trace() {
  static const std::string path = [] {
    std::string dir = (std::filesystem::temp_directory_path() / "cdcp11-spy-XXXXXX").string();
    if (!mkdtemp(dir.data())) throw std::runtime_error("mkdtemp failed");
    return dir + "/spy.log";
  }();
  return path;
}

struct Spied : Fixture {
  std::string trace;
  Spied() : trace(spy_trace()) {
    setenv("PKCS11SPY", hsm::test::kSoftHsm, 1);
    setenv("PKCS11SPY_OUTPUT", trace.c_str(), 1);
    g.token.module = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so";
  }
  ~Spied() {
    unsetenv("PKCS11SPY");
    unsetenv("PKCS11SPY_OUTPUT");
  }
  // How many times fn was called so far.
  std::size_t calls(const std::string& fn) const {
    std::ifstream in(trace);
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) {
      const auto colon = line.find(": ");
      if (colon != std::string::npos && colon > 0 &&
          line.find_first_not_of("0123456789") == colon && line.compare(colon + 2, std::string::npos, fn) == 0)
        ++n;
    }
    return n;
  }
};

void make_data_objects(hsm::Session& s, int n, const char* prefix) {
  for (int i = 0; i < n; ++i) {
    AttrMap d;
    d.set_ulong(CKA_CLASS, CKO_DATA);
    d.set_bool(CKA_TOKEN, true);
    d.set_bool(CKA_PRIVATE, true);
    d.set_string(CKA_LABEL, prefix + std::to_string(i));
    d.set_string(CKA_VALUE, "v");
    (void)hsm::test::ok(s.create(d));
  }
}

// The HSM handle of the one object labelled label, as another application finds it.
CK_OBJECT_HANDLE labelled(hsm::Session& s, const std::string& label) {
  AttrMap t;
  t.set_string(CKA_LABEL, label);
  auto hs = hsm::test::ok(s.find(t));
  REQUIRE(hs.size() == 1);
  return hs[0];
}

void rename(hsm::Session& s, const std::string& from, const std::string& to) {
  AttrMap l;
  l.set_string(CKA_LABEL, to);
  hsm::test::ok(s.set_attributes(labelled(s, from), l));
}

}  // namespace

TEST_CASE("forward: a refresh due to re-read attributes reads a few known objects, not every one") {
  Spied f;
  {
    auto s = f.hsm.user_session();
    make_data_objects(s, 100, "obj-");
  }
  auto b = f.open_user();
  REQUIRE(got(b->refresh()).upserted.size() == 100);  // new: each read once
  // Past the re-read interval: the cause of a slow C_FindObjects was that every refresh then read
  // all objects' attributes again (two C_GetAttributeValue each), and that this took longer
  // than the interval with a thousand objects, so every refresh did it.
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  const auto before = f.calls("C_GetAttributeValue");
  REQUIRE(before >= 100);  // the trace counts what it should
  // Reading one object is four calls (its class, then the rest: lengths, values), not one more
  // for each of the ~40 attribute types it does not have.
  CHECK(before <= 4 * 100 + 10);
  const auto per_object = (before + 99) / 100;
  CHECK(got(b->refresh()).upserted.empty());
  const auto reads = f.calls("C_GetAttributeValue") - before;
  CHECK(reads <= 16 * per_object);  // a sweep's batch, not all 100
  // Still seen: a label another application changes, within a sweep, and objects it creates
  // or destroys, at the next refresh.
  {
    auto s = f.hsm.session();  // the backend's login is the application's: this session has it too
    rename(s, "obj-99", "renamed elsewhere");
    make_data_objects(s, 1, "new-");
  }
  auto ch = got(b->refresh());
  bool new_seen = false;
  for (auto& o : ch.upserted) new_seen |= o.attrs.string_or(CKA_LABEL, "") == "new-0";
  CHECK(new_seen);
  bool renamed = false;
  for (int i = 0; i < 10 && !renamed; ++i) {
    for (auto& o : ch.upserted) renamed |= o.attrs.string_or(CKA_LABEL, "") == "renamed elsewhere";
    if (!renamed) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      ch = got(b->refresh());
    }
  }
  CHECK(renamed);
}

TEST_CASE("forward: objects and keys made through the slot write no metadata record unless they need one") {
  Fixture f;
  std::set<std::string> made;
  {
    auto b = f.open_user();
    for (int i = 0; i < 5; ++i) {
      AttrMap d;
      d.set_ulong(CKA_CLASS, CKO_DATA);
      d.set_bool(CKA_TOKEN, true);
      d.set_string(CKA_LABEL, "data-" + std::to_string(i));
      d.set_string(CKA_VALUE, "v" + std::to_string(i));
      core::apply_defaults(CKO_DATA, CK_UNAVAILABLE_INFORMATION, d);
      made.insert(got(b->create_object(d)).uid);
      AttrMap k = aes_template(true);
      k.set_string(CKA_LABEL, "aes-" + std::to_string(i));
      made.insert(got(b->generate_key(mech(CKM_AES_KEY_GEN), k)).uid);  // vendor defaults only
    }
    REQUIRE(made.size() == 10);
    // Identity derived from what the HSM holds: nothing to write (each write rewrote the whole
    // store under its lock, which is what made creating slow).
    CHECK(got(core::MetadataStore::open(f.g.token.dir))->data().objects.empty());
    CHECK_FALSE(std::filesystem::exists(f.g.token.dir + "/metadata.json"));
    CHECK_FALSE(std::filesystem::exists(f.g.token.dir + "/metadata.changes"));
  }
  auto b2 = f.open_user();  // another process: the same identities
  std::set<std::string> again;
  for (auto& o : got(b2->refresh()).upserted) again.insert(o.uid);
  CHECK(again == made);
  // A value other than the default is recorded at once (never only in memory).
  AttrMap k = aes_template(true);
  k.set_string(CKA_LABEL, "mirrored");
  k.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_PENDING);
  auto key = got(b2->generate_key(mech(CKM_AES_KEY_GEN), k));
  auto meta = got(core::MetadataStore::open(f.g.token.dir));
  REQUIRE(meta->data().objects.count(key.uid) == 1);
  CHECK(meta->data().objects.at(key.uid).vendor.ulong(CKA_CDC_MIRROR_STATE) == CDC_MIRROR_STATE_PENDING);
}

TEST_CASE("forward: core's vendor state of an object whose id is derived keeps that id in another process, and goes with the object") {
  Fixture f;
  AttrMap k = aes_template(true);
  k.set_string(CKA_LABEL, "mirrored-derived");
  std::string uid;
  {
    auto b = f.open_user();
    auto key = got(b->generate_key(mech(CKM_AES_KEY_GEN), k));
    uid = key.uid;
    AttrMap upd = key.attrs;
    upd.set_ulong(CKA_CDC_MIRROR_STATE, CDC_MIRROR_STATE_MIRRORED);
    upd.set_string(CKA_CDC_AZURE_KEY_ID, "https://v.vault.azure.net/keys/derived/1");
    got(b->update_object(uid, upd));
    // Only core's vendor state: the backend records no locator for an id it derives.
    auto meta = got(core::MetadataStore::open(f.g.token.dir));
    REQUIRE(meta->data().objects.count(uid) == 1);
    CHECK(meta->data().objects.at(uid).locator.empty());
  }
  auto b2 = f.open_user();  // another process
  auto ch = got(b2->refresh());
  REQUIRE(ch.upserted.size() == 1);
  CHECK(ch.upserted[0].uid == uid);
  CHECK(ch.upserted[0].attrs.ulong(CKA_CDC_MIRROR_STATE) == CDC_MIRROR_STATE_MIRRORED);
  CHECK(ch.upserted[0].attrs.string_or(CKA_CDC_AZURE_KEY_ID, "") == "https://v.vault.azure.net/keys/derived/1");
  got(b2->destroy_object(uid));
  CHECK(got(core::MetadataStore::open(f.g.token.dir))->data().objects.count(uid) == 0);
}

// A child forked while an update holds the store's lock (here: from inside it) shares the lock's
// open file: the lock must end with the update all the same, or the next one waits for the child.
TEST_CASE("forward: a child forked during a metadata update does not keep the store locked") {
  hsm::test::TempDir d;
  auto meta = got(core::MetadataStore::open(d.path));
  pid_t child = -1;
  got(meta->update([&](core::MetaChange&) -> core::R<void> {
    child = fork();
    if (child == 0) {
      sleep(3);
      _exit(0);
    }
    return {};
  }));
  REQUIRE(child > 0);
  const auto t0 = std::chrono::steady_clock::now();
  got(meta->update([](core::MetaChange&) -> core::R<void> { return {}; }));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  int status = 0;
  waitpid(child, &status, 0);
}

TEST_CASE("forward: a single-part call with room for its result is one HSM call into the caller's buffer") {
  Spied f;
  auto b = f.open_user();
  auto aes = got(b->generate_key(mech(CKM_AES_KEY_GEN), aes_template(false)));
  hsm::GcmParams gp(Bytes(12, 7), Bytes{});
  auto gm = gp.mechanism();
  core::Mechanism gcm = mech(CKM_AES_GCM, Bytes(gm.param.begin(), gm.param.end()));
  const Bytes msg(16, 'm');

  const auto before = f.calls("C_Encrypt");
  auto enc = got(b->begin(core::OpKind::encrypt, gcm, aes));
  Bytes out(msg.size() + 16);
  auto n = got(enc->one_shot_into(msg, out));
  REQUIRE(n.has_value());
  CHECK(*n == msg.size() + 16);
  CHECK(f.calls("C_Encrypt") - before == 1);  // no length query first

  // Too small: nothing written, the operation goes on (the HSM keeps it on CKR_BUFFER_TOO_SMALL).
  auto again = got(b->begin(core::OpKind::encrypt, gcm, aes));
  Bytes small(4);
  CHECK_FALSE(got(again->one_shot_into(msg, small)).has_value());
  auto whole = got(again->one_shot(msg));
  CHECK(Bytes(whole.begin(), whole.end()) == out);  // the same key and IV

  auto dec = got(b->begin(core::OpKind::decrypt, gcm, aes));
  Bytes back(out.size());
  auto m = got(dec->one_shot_into(out, back));
  REQUIRE(m.has_value());
  back.resize(*m);
  CHECK(back == msg);
}

TEST_CASE("forward: a refresh of one object reads that object, not a listing of the HSM") {
  Spied f;
  {
    auto s = f.hsm.user_session();
    make_data_objects(s, 30, "obj-");
  }
  auto b = f.open_user();
  auto all = got(b->refresh()).upserted;
  REQUIRE(all.size() == 30);
  const auto listings = f.calls("C_FindObjectsInit");
  const auto reads = f.calls("C_GetAttributeValue");
  REQUIRE(listings >= 1);  // the trace counts what it should
  for (auto& o : all) CHECK(got(b->refresh_object(o.uid)).upserted.empty());
  CHECK(f.calls("C_FindObjectsInit") == listings);
  CHECK(f.calls("C_GetAttributeValue") - reads <= 4 * 30);  // one object's read each
  // Changed by another application: seen at once; destroyed: reported gone (that takes a listing).
  auto uid_of = [&](const std::string& label) {
    for (auto& o : all)
      if (o.attrs.string_or(CKA_LABEL, "") == label) return o.uid;
    FAIL("no object " << label);
    return std::string();
  };
  {
    auto s = f.hsm.session();
    rename(s, "obj-7", "renamed elsewhere");
    hsm::test::ok(s.destroy(labelled(s, "obj-8")));
  }
  auto ch = got(b->refresh_object(uid_of("obj-7")));
  REQUIRE(ch.upserted.size() == 1);
  CHECK(ch.upserted[0].attrs.string_or(CKA_LABEL, "") == "renamed elsewhere");
  ch = got(b->refresh_object(uid_of("obj-8")));
  CHECK(ch.removed == std::vector<std::string>{uid_of("obj-8")});
}
