// C_FindObjects over 10,000 objects: searches the index answers (CKA_LABEL, CKA_ID, CKA_CLASS)
// against the same searches by an attribute the index does not cover (a full scan), measured in
// the same run. Prints figures; asserts nothing about time.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/provider/provider.h"
#include "backends/factory.h"

using namespace cdcp11;
using namespace cdcp11::core;
namespace fs = std::filesystem;

static void die(const char* what, const Error& e) {
  std::fprintf(stderr, "%s: %s\n", what, e.message.c_str());
  std::exit(1);
}

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 10000;
  char tmpl[] = "/tmp/cdcp11-bench-XXXXXX";
  fs::path dir = ::mkdtemp(tmpl);
  std::ofstream(dir / "conf.json")
      << R"({"version":1,"groups":[{"name":"bench","token":{"dir":"tok","kdf_scrypt_log2_n":10}}]})";
  Provider lib;
  if (auto r = lib.initialize((dir / "conf.json").string(), backends::make_token_backend); !r) die("initialize", r.error());
  const CK_SLOT_ID slot = lib.slot_ids().at(0);
  if (auto r = lib.init_token(slot, view("bench-so"), "bench"); !r) die("init_token", r.error());
  auto h = lib.open_session(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION);
  if (!h) die("open_session", h.error());
  auto session = *lib.session(*h);
  Session& s = *session;

  for (int i = 0; i < n; ++i) {
    AttrMap a;
    a.set_ulong(CKA_CLASS, i % 10 ? CKO_DATA : CKO_CERTIFICATE);
    if (i % 10 == 0) {
      a.set_ulong(CKA_CERTIFICATE_TYPE, CKC_X_509);
      a.set_string(CKA_SUBJECT, "s");
      a.set_string(CKA_VALUE, "v");
      a.set(CKA_ID, Bytes{std::uint8_t(i >> 8), std::uint8_t(i)});
    } else {
      a.set_string(CKA_APPLICATION, "app-" + std::to_string(i));
    }
    a.set_string(CKA_LABEL, "obj-" + std::to_string(i));
    if (auto r = s.token().create_object(s, a); !r) die("create_object", r.error());
  }

  auto time_find = [&](const AttrMap& t, int reps) {
    std::size_t found = 0;
    auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) {
      if (!s.find_begin(t)) std::exit(1);
      CK_OBJECT_HANDLE h[64];
      CK_ULONG got;
      do {
        got = *s.find_next(h, 64);
        found += got;
      } while (got);
      (void)s.find_end();
    }
    auto us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / reps;
    return std::make_pair(us, found / reps);
  };

  AttrMap by_label, by_app, by_id, by_class, by_class_app;
  by_label.set_string(CKA_LABEL, "obj-7777");
  by_app.set_string(CKA_APPLICATION, "app-7777");
  by_id.set(CKA_ID, Bytes{std::uint8_t(7770 >> 8), std::uint8_t(7770 & 0xff)});
  by_class.set_ulong(CKA_CLASS, CKO_CERTIFICATE);
  std::printf("C_FindObjects over %d objects (mean per search, same run)\n", n);
  std::printf("%-40s %12s %8s\n", "search", "time (us)", "found");
  auto row = [&](const char* name, const AttrMap& t, int reps) {
    auto [us, found] = time_find(t, reps);
    std::printf("%-40s %12.1f %8zu\n", name, us, found);
  };
  row("CKA_LABEL (indexed)", by_label, 2000);
  row("CKA_ID (indexed)", by_id, 2000);
  row("CKA_CLASS=certificate (indexed, 10%)", by_class, 50);
  row("baseline: CKA_APPLICATION (full scan)", by_app, 50);
  lib.finalize();
  fs::remove_all(dir);
  return 0;
}
