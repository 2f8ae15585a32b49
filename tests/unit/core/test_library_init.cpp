// Provider::initialize: a group whose token cannot be opened, even by an exception out of the
// backend factory, still becomes a slot without a token; the others are served.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include "core/provider/provider.h"

using namespace cdcp11;
using namespace cdcp11::core;
namespace fs = std::filesystem;

namespace {

struct TempConfig {
  fs::path dir;
  fs::path conf;
  TempConfig() {
    char tmpl[] = "/tmp/cdcp11-libinit-XXXXXX";
    dir = ::mkdtemp(tmpl);
    conf = dir / "conf.json";
    std::ofstream(conf) << R"({"version": 1, "groups": [
      {"name": "throws", "slot_id": 1, "token": {"dir": "a"}},
      {"name": "fails", "slot_id": 2, "token": {"dir": "b"}}]})";
  }
  ~TempConfig() { fs::remove_all(dir); }
};

}  // namespace

TEST_CASE("a backend factory that throws leaves its group without a token, and the rest served") {
  TempConfig t;
  Provider lib;
  auto factory = [](const GroupConfig& g) -> R<std::unique_ptr<Backend>> {
    if (g.name == "throws")
      throw fs::filesystem_error("status", fs::path("/x/loop"), std::make_error_code(std::errc::too_many_symbolic_link_levels));
    return err(Errc::token_not_present, "no token here");
  };
  auto r = lib.initialize(t.conf.string(), factory);
  REQUIRE(r);
  CHECK(lib.slot_ids() == std::vector<CK_SLOT_ID>{1, 2});
  auto s1 = lib.present_token(1);
  REQUIRE_FALSE(s1);
  CHECK(s1.error().code == Errc::token_not_present);
  CHECK(s1.error().message.find("/x/loop") != std::string::npos);
  auto s2 = lib.present_token(2);
  REQUIRE_FALSE(s2);
  CHECK(s2.error().message.find("no token here") != std::string::npos);
  lib.finalize();
}
