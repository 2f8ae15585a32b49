// SoftToken hardening: the PIN retry counter is durable or the login fails; meta records that
// cannot be read now, are corrupt, or belong to an older format; records sealed and
// authenticated; secrets wiped; damaged or unreadable records never served.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/mechanisms.h"
#include "soft_token_test_util.h"
#include "softtoken/store/object_store.h"

using namespace cdcp11;
using namespace cdcp11::core;
using namespace cdcp11::softtoken::test;
using cdcp11::softtoken::SoftToken;
using cdcp11::store::ObjectStore;

namespace {

// A tmpfs mounted on dir (as root), lazily unmounted at the end.
struct Tmpfs {
  fs::path dir;
  bool ok = false;
  explicit Tmpfs(fs::path d) : dir(std::move(d)) {
    fs::create_directories(dir);
    ok = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=1m,mode=0700") == 0;
  }
  ~Tmpfs() {
    if (ok) ::umount2(dir.c_str(), MNT_DETACH);
  }
};

// Writes into path until the filesystem is full.
void fill(const fs::path& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  std::vector<char> chunk(4096, 'x');
  while (::write(fd, chunk.data(), chunk.size()) > 0) {
  }
  CHECK(errno == ENOSPC);
  ::close(fd);
}

// Lowers RLIMIT_NOFILE so that the next open() fails with EMFILE, until restored.
struct FdStarvation {
  rlimit old{};
  FdStarvation() {
    ::getrlimit(RLIMIT_NOFILE, &old);
    int lowest = ::open("/dev/null", O_RDONLY);
    ::close(lowest);
    rlimit low = old;
    low.rlim_cur = static_cast<rlim_t>(lowest);
    ::setrlimit(RLIMIT_NOFILE, &low);
  }
  ~FdStarvation() { ::setrlimit(RLIMIT_NOFILE, &old); }
};

// Address ranges of this process's mappings flagged MADV_DONTDUMP ("dd" in /proc/self/smaps).
std::set<std::pair<std::uintptr_t, std::uintptr_t>> dontdump_regions() {
  std::set<std::pair<std::uintptr_t, std::uintptr_t>> out;
  std::ifstream f("/proc/self/smaps");
  std::string line;
  std::pair<std::uintptr_t, std::uintptr_t> cur{};
  while (std::getline(f, line)) {
    if (line.rfind("VmFlags:", 0) == 0) {
      std::istringstream ss(line.substr(8));
      std::string flag;
      while (ss >> flag)
        if (flag == "dd") out.insert(cur);
    } else if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') != std::string::npos &&
               line.find(':') > line.find('-')) {
      cur.first = std::stoull(line.substr(0, line.find('-')), nullptr, 16);
      cur.second = std::stoull(line.substr(line.find('-') + 1, line.find(' ') - line.find('-') - 1), nullptr, 16);
    }
  }
  return out;
}

// Records every secure_zero while alive: where, how much, and whether it was zero afterwards.
struct Wipe {
  std::uintptr_t p;
  std::size_t n;
  bool zero;
};
std::vector<Wipe>* g_wipes = nullptr;
void observe(const void* p, std::size_t n) noexcept {
  if (!g_wipes || g_wipes->size() == g_wipes->capacity()) return;
  auto* b = static_cast<const std::uint8_t*>(p);
  g_wipes->push_back({reinterpret_cast<std::uintptr_t>(p), n, std::all_of(b, b + n, [](auto c) { return c == 0; })});
}
struct WipeLog {
  std::vector<Wipe> wipes;
  WipeLog() {
    wipes.reserve(1 << 16);
    g_wipes = &wipes;
    set_wipe_observer(observe);
  }
  ~WipeLog() {
    set_wipe_observer(nullptr);
    g_wipes = nullptr;
  }
  bool saw(std::uintptr_t p, std::size_t n) const {
    return std::any_of(wipes.begin(), wipes.end(), [&](auto& w) { return w.p == p && w.n >= n && w.zero; });
  }
  // A zeroed wipe of at least n bytes inside one of the regions.
  bool saw_in(const std::set<std::pair<std::uintptr_t, std::uintptr_t>>& regions, std::size_t n) const {
    return std::any_of(wipes.begin(), wipes.end(), [&](auto& w) {
      return w.zero && w.n >= n &&
             std::any_of(regions.begin(), regions.end(), [&](auto& r) { return w.p >= r.first && w.p < r.second; });
    });
  }
};

template <class T>
std::set<T> minus(const std::set<T>& a, const std::set<T>& b) {
  std::set<T> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.end()));
  return out;
}

// Damages one byte for certain: writing a fixed value changes nothing when the byte already holds it.
void flip_byte(const std::string& path, std::streamoff at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(at);
  const int c = f.get();
  REQUIRE(c != EOF);
  f.seekp(at);
  f.put(static_cast<char>(c ^ 0xff));
}

}  // namespace

// ---------------------------------------------------------------- item 3: the PIN retry counter

TEST_CASE("PIN retry counter on a full disk: wrong and right PINs fail with device_error, nothing counted, no login") {
  TempDir d;
  Tmpfs m(d.path / "mnt");
  if (!m.ok) {
    MESSAGE("skipped: cannot mount a tmpfs here (needs root)");
    return;
  }
  auto g = group(m.dir, 3);
  auto t = open(g);
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  auto obj = t->create_object(aes_key(true));
  REQUIRE(obj);
  t->logout();
  fill(m.dir / "filler");

  auto wrong = t->login(CKU_USER, pin("wrong-1"));
  REQUIRE_FALSE(wrong);
  CHECK(err_of(wrong) == Errc::device_error);
  CHECK(wrong.error().message.find("retry counter") != std::string::npos);
  CHECK(wrong.error().message.find("No space left on device") != std::string::npos);
  auto right = t->login(CKU_USER, pin("user-1"));
  REQUIRE_FALSE(right);
  CHECK(err_of(right) == Errc::device_error);
  CHECK(err_of(t->secret_attribute(obj->uid, CKA_VALUE)) == Errc::user_not_logged_in);
  CHECK(err_of(t->check_pin(pin("user-1"))) == Errc::device_error);
  CHECK(err_of(t->login(CKU_SO, pin("so-pin-1"))) == Errc::device_error);
  CHECK(err_of(t->set_pin(CKU_USER, pin("user-1"), pin("user-2"))) == Errc::device_error);

  fs::remove(m.dir / "filler");
  // Nothing was counted, in this instance or on disk.
  auto other = open(g);
  CHECK_FALSE(other->status().user_pin_count_low);
  CHECK_FALSE(t->status().user_pin_count_low);
  CHECK(err_of(t->login(CKU_USER, pin("wrong-1"))) == Errc::pin_incorrect);
  CHECK(other->status().user_pin_count_low);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  CHECK_FALSE(other->status().user_pin_count_low);
  CHECK(t->secret_attribute(obj->uid, CKA_VALUE));
}

TEST_CASE("without a retry limit there is no counter to write: a login on a full disk works") {
  TempDir d;
  Tmpfs m(d.path / "mnt");
  if (!m.ok) {
    MESSAGE("skipped: cannot mount a tmpfs here (needs root)");
    return;
  }
  auto g = group(m.dir, 0);
  auto t = open(g);
  init(*t);
  fill(m.dir / "filler");
  CHECK(err_of(t->login(CKU_USER, pin("wrong-1"))) == Errc::pin_incorrect);
  CHECK(t->login(CKU_USER, pin("user-1")));
}

// ---------------------------------------------------------------- item 4: reading the meta record

TEST_CASE("out of file descriptors: status and refresh fail for that call only; objects and login are kept") {
  TempDir d;
  auto g = group(d.path);
  {
    auto t = open(g);
    init(*t);
  }
  const int rc = run_in_child([&] {
    auto a = SoftToken::open(g, crypto::default_backend());
    auto b = SoftToken::open(g, crypto::default_backend());
    if (!a || !b) return 10;
    if (!(*a)->login(CKU_USER, pin("user-1")) || !(*b)->login(CKU_USER, pin("user-1"))) return 11;
    auto kept = (*a)->create_object(data_object("kept", true, "v"));
    if (!kept) return 12;
    if (!(*a)->refresh()) return 13;
    {
      // Nothing changed on disk.
      FdStarvation starve;
      if (!(*a)->status().initialized) return 20;
      auto r = (*a)->refresh();
      if (r && (r->full_reload || !r->removed.empty())) return 21;
      if (!r && r.error().code != Errc::device_error) return 22;
    }
    if (!(*b)->create_object(data_object("new", false, "w"))) return 30;
    {
      // Another instance changed something: this refresh cannot read it now.
      FdStarvation starve;
      auto r = (*a)->refresh();
      if (r) return 31;
      if (r.error().code != Errc::device_error) return 32;
      if (!(*a)->status().initialized) return 33;
    }
    auto r = (*a)->refresh();
    if (!r) return 40;
    if (r->full_reload || !r->removed.empty() || r->upserted.size() != 1) return 41;
    if (!(*a)->object_size(kept->uid)) return 42;
    if (!(*a)->create_object(data_object("still logged in", true, "x"))) return 43;
    return 0;
  });
  CHECK(rc == 0);
}

TEST_CASE("a corrupt meta record is reported, and C_InitToken repairs the token") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  REQUIRE(t->create_object(data_object("x", false, "v")));
  REQUIRE(t->refresh());
  auto b = open(g);
  REQUIRE(b->login(CKU_USER, pin("user-1")));
  flip_byte(g.token.dir + "/meta", 40);
  REQUIRE(b->create_object(data_object("y", false, "w")));  // bumps the store generation

  auto r = t->refresh();
  REQUIRE_FALSE(r);
  CHECK(err_of(r) == Errc::device_error);
  CHECK(r.error().message.find("corrupt") != std::string::npos);
  CHECK_FALSE(t->status().initialized);

  // A process started now opens it too; C_InitToken repairs it without the unreadable SO PIN.
  auto f = open(g);
  CHECK_FALSE(f->status().initialized);
  REQUIRE(f->init_token(pin("new-so-pin"), "repaired"));
  CHECK(f->status().initialized);
  CHECK(f->status().label == "repaired");
  auto after = t->refresh();
  REQUIRE(after);
  CHECK(after->full_reload);
  CHECK(after->upserted.empty());
}

TEST_CASE("another process re-initialises the token: objects go, the login goes") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  auto obj = t->create_object(data_object("x", true, "v"));
  REQUIRE(obj);
  REQUIRE(t->refresh());
  auto other = open(g);
  REQUIRE(other->init_token(pin("so-pin-1"), "t"));
  auto ch = t->refresh();
  REQUIRE(ch);
  CHECK(ch->full_reload);
  CHECK(ch->upserted.empty());
  CHECK(err_of(t->secret_attribute(obj->uid, CKA_VALUE)) == Errc::object_handle_invalid);
  CHECK(err_of(t->create_object(data_object("y", true, "v"))) == Errc::user_not_logged_in);
}

// ---------------------------------------------------------------- item 14: meta record ranges

TEST_CASE("meta record fields out of range make it corrupt, never an oversized KDF") {
  TempDir d;
  auto g = group(d.path);
  {
    auto t = open(g);
    init(*t);
  }
  auto st = raw_store(g);
  auto orig = st->read_meta();
  REQUIRE(orig);
  std::string json(orig->begin(), orig->end());
  std::string bad = json;
  SUBCASE("scrypt_log2_n 64") { bad.replace(bad.find("\"scrypt_log2_n\":10"), 18, "\"scrypt_log2_n\":64"); }
  SUBCASE("scrypt_log2_n 40") { bad.replace(bad.find("\"scrypt_log2_n\":10"), 18, "\"scrypt_log2_n\":40"); }
  SUBCASE("scrypt_log2_n 1") { bad.replace(bad.find("\"scrypt_log2_n\":10"), 18, "\"scrypt_log2_n\":1"); }
  SUBCASE("short salt") { bad.replace(bad.find("\"salt\":\"") + 8, 2, ""); }
  SUBCASE("long wrapped key") { bad.insert(bad.find("\"wrapped_token_key\":\"") + 21, "00"); }
  SUBCASE("token id not hex") { bad.replace(bad.find("\"token_id\":\"") + 12, 1, "Z"); }
  REQUIRE(bad != json);
  REQUIRE(st->write_meta(view(bad)));
  auto t = open(g);
  CHECK_FALSE(t->status().initialized);
  auto l = t->login(CKU_SO, pin("so-pin-1"));
  REQUIRE_FALSE(l);
  CHECK(err_of(l) == Errc::device_error);
  CHECK(l.error().message.find("corrupt") != std::string::npos);
}

// ---------------------------------------------------------------- item 7: sealed, authenticated records

TEST_CASE("a private data object's value and attributes are not on disk in clear") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  auto obj = t->create_object(data_object("my-secret-label", true, "the private value 4711"));
  REQUIRE(obj);
  auto raw = raw_store(g)->get(obj->uid);
  REQUIRE(raw);
  CHECK_FALSE(has_bytes(*raw, "the private value 4711"));
  CHECK_FALSE(has_bytes(*raw, "my-secret-label"));
  // A public one is in clear, as it is readable without a login.
  auto pub = t->create_object(data_object("public-label", false, "public value"));
  REQUIRE(pub);
  CHECK(has_bytes(*raw_store(g)->get(pub->uid), "public value"));
}

TEST_CASE("an attribute edited on disk (checksum recomputed) is refused once the token key is known") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  Mechanism gen{find_mechanism(CKM_RSA_PKCS_KEY_PAIR_GEN), {}};
  AttrMap pub, priv;
  pub.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
  pub.set_ulong(CKA_KEY_TYPE, CKK_RSA);
  pub.set_ulong(CKA_MODULUS_BITS, 2048);
  pub.set_bool(CKA_TOKEN, true);
  pub.set_bool(CKA_PRIVATE, false);
  pub.set_bool(CKA_WRAP, false);
  pub.set_bool(CKA_TRUSTED, false);
  priv.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
  priv.set_ulong(CKA_KEY_TYPE, CKK_RSA);
  priv.set_bool(CKA_TOKEN, true);
  priv.set_bool(CKA_PRIVATE, false);  // its modulus in clear too
  priv.set_bool(CKA_SIGN, true);
  auto pair = t->generate_key_pair(gen, pub, priv);
  REQUIRE(pair);
  const std::string pub_uid = pair->first.uid, priv_uid = pair->second.uid;
  REQUIRE(t->refresh());
  auto watcher = open(g);  // another process, logged in
  REQUIRE(watcher->login(CKU_USER, pin("user-1")));
  REQUIRE(watcher->refresh());

  auto st = raw_store(g);
  std::string target = pub_uid;
  SUBCASE("CKA_TRUSTED") {
    auto rec = st->get(pub_uid);
    REQUIRE(rec);
    edit_attr(*rec, CKA_TRUSTED, 1, [](std::uint8_t* v) { *v = 1; });
    REQUIRE(st->put(pub_uid, *rec));
  }
  SUBCASE("CKA_WRAP") {
    auto rec = st->get(pub_uid);
    REQUIRE(rec);
    edit_attr(*rec, CKA_WRAP, 1, [](std::uint8_t* v) { *v = 1; });
    REQUIRE(st->put(pub_uid, *rec));
  }
  SUBCASE("a modulus byte of a private key") {
    target = priv_uid;
    auto rec = st->get(priv_uid);
    REQUIRE(rec);
    edit_attr(*rec, CKA_MODULUS, 256, [](std::uint8_t* v) { v[100] ^= 0x01; });
    REQUIRE(st->put(priv_uid, *rec));
  }

  for (auto* tok : {t.get(), watcher.get()}) {
    auto ch = tok->refresh();
    REQUIRE(ch);
    CHECK(contains(ch->removed, target));
    CHECK_FALSE(upserts(*ch, target));
    CHECK(err_of(tok->secret_attribute(target, CKA_PRIVATE_EXPONENT)) == Errc::object_handle_invalid);
  }
  // A process started now serves it before a login (public objects are unauthenticated until
  // then), and refuses it from the login on, also after a logout.
  auto fresh = open(g);
  auto before = fresh->refresh();
  REQUIRE(before);
  CHECK(upserts(*before, target));
  REQUIRE(fresh->login(CKU_USER, pin("user-1")));
  auto after = fresh->refresh();
  REQUIRE(after);
  CHECK(contains(after->removed, target));
  fresh->logout();
  auto later = fresh->refresh();
  REQUIRE(later);
  CHECK_FALSE(upserts(*later, target));
  // The untouched half of the pair is fine.
  const std::string other = target == pub_uid ? priv_uid : pub_uid;
  CHECK_FALSE(contains(after->removed, other));
}

TEST_CASE("without a login a private object is not written; a public one is written pending (no MAC)") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  CHECK(err_of(t->create_object(data_object("p", true, "v"))) == Errc::user_not_logged_in);
  auto pub = t->create_object(data_object("p", false, "v"));
  REQUIRE(pub);
  CHECK(raw_store(g)->get(pub->uid)->at(5) == 2);  // kind pending (object_record.h)
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  auto obj = t->create_object(data_object("q", true, "v"));
  REQUIRE(obj);
  t->logout();
  AttrMap changed = obj->attrs;
  changed.set_string(CKA_LABEL, "r");
  CHECK(err_of(t->update_object(obj->uid, changed)) == Errc::user_not_logged_in);
  // Session objects and destroying need no key.
  AttrMap session = data_object("s", false, "v");
  session.set_bool(CKA_TOKEN, false);
  CHECK(t->create_object(session));
  CHECK(t->destroy_object(obj->uid));
}

TEST_CASE("a token of the earlier record format is refused with a clear message until C_InitToken") {
  TempDir d;
  auto g = group(d.path);
  {
    auto t = open(g);
    init(*t);
  }
  auto st = raw_store(g);
  auto m = st->read_meta();
  REQUIRE(m);
  std::string json(m->begin(), m->end());
  const auto at = json.find("\"format\":");
  REQUIRE(at != std::string::npos);
  json.replace(at, json.find(',', at) - at, "\"format\":1");
  REQUIRE(st->write_meta(view(json)));

  auto t = open(g);
  CHECK(t->status().initialized);  // so that C_InitToken asks for its SO PIN
  auto l = t->login(CKU_USER, pin("user-1"));
  REQUIRE_FALSE(l);
  CHECK(err_of(l) == Errc::token_not_recognized);
  CHECK(l.error().message.find("format 1") != std::string::npos);
  CHECK(l.error().message.find("C_InitToken") != std::string::npos);
  CHECK(err_of(t->refresh()) == Errc::token_not_recognized);
  CHECK(err_of(t->init_token(pin("wrong-so"), "t")) == Errc::pin_incorrect);
  REQUIRE(t->init_token(pin("so-pin-1"), "t"));
  REQUIRE(t->login(CKU_SO, pin("so-pin-1")));
  REQUIRE(t->init_pin(pin("user-1")));
  t->logout();
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  CHECK(t->refresh());
}

// ---------------------------------------------------------------- item 15: damaged records

TEST_CASE("a damaged record is never served stale: dropped and reported removed") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  auto a = t->create_object(data_object("a", false, "1"));
  auto b = t->create_object(data_object("b", false, "2"));
  REQUIRE(a);
  REQUIRE(b);
  auto reader = open(g);
  auto first = reader->refresh();
  REQUIRE(first);
  REQUIRE(first->upserted.size() == 2);

  SUBCASE("a record the soft token cannot parse") {
    REQUIRE(raw_store(g)->put(a->uid, view("garbage, not an object record")));
  }
  SUBCASE("a file failing its checksum, found by a full listing") {
    flip_byte(g.token.dir + "/objects/" + a->uid, 30);
    for (int i = 0; i < 150; ++i) {  // more changes than the store's journal holds
      auto tmp = t->create_object(data_object("tmp", false, "x"));
      REQUIRE(tmp);
      REQUIRE(t->destroy_object(tmp->uid));
    }
  }
  auto ch = reader->refresh();
  REQUIRE(ch);
  CHECK(contains(ch->removed, a->uid));
  CHECK_FALSE(upserts(*ch, a->uid));
  CHECK_FALSE(contains(ch->removed, b->uid));
  CHECK(err_of(reader->object_size(a->uid)) == Errc::object_handle_invalid);
}

TEST_CASE("one unreadable record file is skipped, the others are served") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  REQUIRE(t->login(CKU_USER, pin("user-1")));
  auto a = t->create_object(data_object("a", false, "1"));
  auto b = t->create_object(data_object("b", false, "2"));
  REQUIRE(a);
  REQUIRE(b);
  const std::string path = g.token.dir + "/objects/" + a->uid;
  REQUIRE(::unlink(path.c_str()) == 0);
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);  // open() fails on it (ENXIO), for root as well
  REQUIRE(fd >= 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof sa.sun_path);
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  ::close(fd);

  auto reader = open(g);
  auto ch = reader->refresh();
  REQUIRE(ch);
  CHECK(upserts(*ch, b->uid));
  CHECK_FALSE(upserts(*ch, a->uid));
}

// ---------------------------------------------------------------- item 11: wiping secrets

TEST_CASE("attribute values are zeroed before their memory is released") {
  WipeLog log;
  std::uintptr_t p = 0;
  {
    AttrMap a;
    a.set(CKA_VALUE, Bytes(32, 0x5a));
    p = reinterpret_cast<std::uintptr_t>(a.find(CKA_VALUE)->data());
  }
  CHECK(log.saw(p, 32));

  AttrMap b;
  b.set(CKA_PRIVATE_EXPONENT, Bytes(256, 0x11));
  p = reinterpret_cast<std::uintptr_t>(b.find(CKA_PRIVATE_EXPONENT)->data());
  b.set(CKA_PRIVATE_EXPONENT, Bytes(8, 0x22));  // overwritten
  CHECK(log.saw(p, 256));

  AttrMap c;
  c.set(CKA_PRIME_1, Bytes(128, 0x33));
  p = reinterpret_cast<std::uintptr_t>(c.find(CKA_PRIME_1)->data());
  c = AttrMap{};  // assigned over
  CHECK(log.saw(p, 128));

  const Bytes v1(16, 0x44), v2(24, 0x55);
  CK_ATTRIBUTE tmpl[] = {{CKA_VALUE, const_cast<std::uint8_t*>(v1.data()), 16},
                         {CKA_VALUE, const_cast<std::uint8_t*>(v2.data()), 24}};
  std::uintptr_t q = 0;
  {
    auto m = AttrMap::from_template(tmpl, 2);  // the duplicate replaces the first copy
    REQUIRE(m);
    q = reinterpret_cast<std::uintptr_t>(m->find(CKA_VALUE)->data());
  }
  CHECK(log.saw(q, 24));
  CHECK(std::any_of(log.wipes.begin(), log.wipes.end(), [](auto& w) { return w.n == 16 && w.zero; }));
}

TEST_CASE("the token key lives in memory kept out of core dumps, wiped at logout, re-initialisation and close") {
  TempDir d;
  auto g = group(d.path);
  auto t = open(g);
  init(*t);
  const auto base = dontdump_regions();

  REQUIRE(t->login(CKU_USER, pin("user-1")));
  auto mine = minus(dontdump_regions(), base);
  REQUIRE_FALSE(mine.empty());
  {
    WipeLog log;
    t->logout();
    CHECK(log.saw_in(mine, 32));
  }
  CHECK(dontdump_regions() == base);

  REQUIRE(t->login(CKU_USER, pin("user-1")));
  REQUIRE(t->refresh());
  mine = minus(dontdump_regions(), base);
  REQUIRE_FALSE(mine.empty());
  {
    WipeLog log;
    auto other = open(g);
    REQUIRE(other->init_token(pin("so-pin-1"), "t"));
    REQUIRE(t->refresh());  // re-initialised by another process: logged out
    CHECK(log.saw_in(mine, 32));
  }
  CHECK(dontdump_regions() == base);

  REQUIRE(t->login(CKU_SO, pin("so-pin-1")));
  mine = minus(dontdump_regions(), base);
  REQUIRE_FALSE(mine.empty());
  {
    WipeLog log;
    t.reset();  // C_Finalize
    CHECK(log.saw_in(mine, 32));
  }
  CHECK(dontdump_regions() == base);
}
