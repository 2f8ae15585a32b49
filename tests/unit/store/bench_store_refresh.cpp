// Benchmark (meson benchmark, not a test): cost of ObjectStore::refresh() on a token holding
// N records (default 10,000; override with argv[1]), against a full reload measured in the
// same run. Set TMPDIR to benchmark another filesystem.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "store_test_util.h"

using namespace cdcp11;
using namespace cdcp11::store;
using namespace cdcp11::store::test;
using clock_type = std::chrono::steady_clock;

namespace {

double median_us(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double time_us(F&& f) {
  auto t0 = clock_type::now();
  f();
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

void die(const char* what, const Error& e) {
  std::fprintf(stderr, "%s: %s\n", what, e.message.c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 10000;
  TempDir t;
  auto writer = must_open(t.path());
  std::vector<std::string> uids;
  auto t0 = clock_type::now();
  for (int i = 0; i < n; ++i) {
    uids.push_back(ObjectStore::new_uid());
    if (auto r = writer->put(uids.back(), payload_for(uids.back(), 1)); !r) die("put", r.error());
  }
  const double put_s = std::chrono::duration<double>(clock_type::now() - t0).count();

  // Baseline: a fresh instance's first refresh reads every file.
  std::vector<double> full;
  std::size_t loaded = 0;
  for (int i = 0; i < 5; ++i) {
    auto s = must_open(t.path(), false);
    full.push_back(time_us([&] {
      auto ch = s->refresh();
      if (!ch) die("refresh", ch.error());
      loaded = ch->upserted.size();
    }));
  }

  auto reader = must_open(t.path(), false);
  if (auto r = reader->refresh(); !r) die("refresh", r.error());

  std::vector<double> idle;
  for (int i = 0; i < 2000; ++i)
    idle.push_back(time_us([&] {
      if (auto r = reader->refresh(); !r || !r->upserted.empty()) std::exit(2);
    }));

  auto after_changes = [&](int k, int rounds) {
    std::vector<double> v;
    for (int round = 0; round < rounds; ++round) {
      for (int j = 0; j < k; ++j) {
        const std::string& u = uids[static_cast<std::size_t>(round * k + j) % uids.size()];
        if (auto r = writer->put(u, payload_for(u, 2 + round)); !r) die("put", r.error());
      }
      v.push_back(time_us([&] {
        auto r = reader->refresh();
        if (!r || r->upserted.size() != static_cast<std::size_t>(k)) std::exit(3);
      }));
    }
    return median_us(v);
  };
  const double one = after_changes(1, 30);
  const double hundred = after_changes(100, 10);

  const double base = median_us(full);
  std::printf("object store refresh, %d records (%zu loaded), populated in %.1f s\n", n, loaded,
              put_s);
  std::printf("  %-36s %12s %10s\n", "case (median)", "time", "vs full");
  auto row = [&](const char* name, double us) {
    std::printf("  %-36s %9.1f us %9.4fx\n", name, us, us / base);
  };
  row("full reload (fresh instance)", base);
  row("refresh, nothing changed", median_us(idle));
  row("refresh after 1 changed record", one);
  row("refresh after 100 changed records", hundred);
  return 0;
}
