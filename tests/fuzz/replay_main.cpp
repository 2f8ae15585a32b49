// Runs a fuzz target over files and directories of inputs, once each, without libFuzzer: the
// regression inputs and seeds are replayed this way by every build (g++ included). Same
// command line as a libFuzzer binary given -runs=0: a failing input aborts the process.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_common.h"

extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (!a.empty() && a[0] == '-') continue;  // libFuzzer flags (-runs=0, ...)
    fs::path p(a);
    if (fs::is_directory(p)) {
      std::vector<fs::path> files;
      for (auto& e : fs::directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      inputs.insert(inputs.end(), files.begin(), files.end());
    } else if (fs::is_regular_file(p)) {
      inputs.push_back(p);
    } else {
      std::fprintf(stderr, "replay: %s: no such file or directory\n", a.c_str());
      return 2;
    }
  }
  for (auto& p : inputs) {
    std::ifstream in(p, std::ios::binary);
    std::vector<std::uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", p.c_str(), data.size());
    // A copy in its own allocation, so that ASan sees a read past the end of the input.
    auto* buf = new std::uint8_t[data.size()];
    std::copy(data.begin(), data.end(), buf);
    LLVMFuzzerTestOneInput(buf, data.size());
    delete[] buf;
  }
  std::fprintf(stderr, "replay: %zu inputs, no failure\n", inputs.size());
  return 0;
}
