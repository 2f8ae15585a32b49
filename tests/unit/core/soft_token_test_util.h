// Shared helpers for the SoftToken tests: a scratch directory, a group config, a token opened on
// it, and a few templates.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "softtoken/crypto/backend.h"
#include "softtoken/soft_token.h"
#include "softtoken/store/object_store.h"
#include "tests/unit/store/store_test_util.h"

namespace cdcp11::softtoken::test {

namespace fs = std::filesystem;
using core::AttrMap;
using core::GroupConfig;

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/cdcp11-softtoken-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

inline GroupConfig group(const fs::path& dir, unsigned retries = 3) {
  GroupConfig g;
  g.name = std::string(1, 't');
  g.token.dir = (dir / "tok").string();
  g.token.max_pin_retries = retries;
  g.token.kdf_scrypt_log2_n = 10;
  return g;
}

inline std::unique_ptr<SoftToken> open(const GroupConfig& g) {
  auto t = SoftToken::open(g, crypto::default_backend());
  REQUIRE(t);
  return std::move(*t);
}

inline ByteView pin(const char* s) { return view(s); }

// The error code of a result, nullopt when it succeeded (so a CHECK of it never aborts).
template <class R>
std::optional<core::Errc> err_of(const R& r) {
  if (r) return std::nullopt;
  return r.error().code;
}

inline void init(SoftToken& t) {
  REQUIRE(t.init_token(pin("so-pin-1"), "t"));
  REQUIRE(t.login(CKU_SO, pin("so-pin-1")));
  REQUIRE(t.init_pin(pin("user-1")));
  t.logout();
}

// group(dir), its token initialised by init() and closed again.
inline GroupConfig initialised_group(const fs::path& dir) {
  const GroupConfig g = group(dir);
  init(*open(g));
  return g;
}

inline AttrMap aes_key(bool token) {
  AttrMap a;
  a.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
  a.set_ulong(CKA_KEY_TYPE, CKK_AES);
  a.set_bool(CKA_TOKEN, token);
  a.set_bool(CKA_PRIVATE, true);
  a.set_bool(CKA_SENSITIVE, false);
  a.set_bool(CKA_EXTRACTABLE, true);
  a.set(CKA_VALUE, Bytes(32, 0x5a));
  return a;
}

inline AttrMap data_object(const std::string& label, bool is_private, const std::string& value) {
  AttrMap a;
  a.set_ulong(CKA_CLASS, CKO_DATA);
  a.set_bool(CKA_TOKEN, true);
  a.set_bool(CKA_PRIVATE, is_private);
  a.set_string(CKA_LABEL, label);
  a.set_string(CKA_VALUE, value);
  return a;
}

// The token's store opened directly, as anyone with the directory can.
inline std::unique_ptr<store::ObjectStore> raw_store(const GroupConfig& g) {
  auto st = store::ObjectStore::open(g.token.dir, false);
  REQUIRE(st);
  return std::move(*st);
}

// A file's content ("" when it cannot be read); a file written whole.
inline std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
inline void write_file(const std::string& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

inline bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}
inline bool upserts(const core::ObjectChanges& ch, const std::string& uid) {
  return std::any_of(ch.upserted.begin(), ch.upserted.end(), [&](auto& o) { return o.uid == uid; });
}
inline bool has_bytes(const Bytes& hay, std::string_view needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

// Edits attribute t in a record as an attacker with the token directory would: finds its
// serialized header (type u64, length u32, little endian) and changes the value in place.
inline void edit_attr(Bytes& rec, CK_ATTRIBUTE_TYPE t, std::size_t len, const std::function<void(std::uint8_t*)>& f) {
  std::uint8_t hdr[12];
  for (int i = 0; i < 8; ++i) hdr[i] = static_cast<std::uint8_t>(std::uint64_t(t) >> (8 * i));
  for (int i = 0; i < 4; ++i) hdr[8 + i] = static_cast<std::uint8_t>(len >> (8 * i));
  auto it = std::search(rec.begin(), rec.end(), hdr, hdr + 12);
  REQUIRE(it != rec.end());
  f(&*(it + 12));
}

using store::test::run_in_child;

}  // namespace cdcp11::softtoken::test
