// The configuration loader: parse_config on arbitrary text, from a file in a scratch directory
// so that relative paths resolve there, and load_config of the same bytes from disk.
#include "core/config.h"
#include "tests/fuzz/fuzz_common.h"

using namespace cdcp11;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string dir = [] {
    fuzz::quiet_logs();
    return fuzz::scratch_dir("config");
  }();
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto c = core::parse_config(text, dir + "/cdcp11.json");
  if (c) {
    for (auto& g : c->groups) {
      if (g.name.empty() || g.name.size() > 32) fuzz::violated("a group name outside 1..32 characters was accepted");
      if (g.token.kdf_scrypt_log2_n < 10 || g.token.kdf_scrypt_log2_n > 22)
        fuzz::violated("kdf_scrypt_log2_n outside 10..22 was accepted");
      if (g.azure && !g.azure_error.empty()) fuzz::violated("a group has both an azure section and an azure error");
    }
  }
  fuzz::write_file(dir + "/cdcp11.json", ByteView(data, size));
  (void)core::load_config(dir + "/cdcp11.json");
  return 0;
}
