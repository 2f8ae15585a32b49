// cdcbench: the benchmark driver of issue #13. scripts/bench.sh runs it; see README.md
// ("Benchmarks"). Any PKCS#11 module can be measured: --module name=..,path=..,token=..
//
//   cdcbench init    --module SPEC          initialise the spec's token (SO PIN, user PIN)
//   cdcbench crypto  --module SPEC ... [--openssl] [--ops a,b] [--threads-ops a,b]
//                    [--keys token|session] [--seconds S] [--warmup S] [--reps N] [--iterations N]
//   cdcbench objects --module SPEC [--counts 1000,10000,100000] [--rounds N]
//                    [--populate-budget S] [--seconds S] [--warmup S] [--reps N] [--iterations N]
//
// Results go to stdout as tab-separated lines (measure.h), progress to stderr.
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>

#include "bench/evp.h"
#include "bench/objects.h"
#include "bench/p11.h"

namespace cdcp11::bench {
namespace {

struct Args {
  std::string command;
  std::vector<std::string> modules;
  std::map<std::string, std::string> opts;  // --key value
  bool openssl = false;
};

const char* kUsage =
    "usage: cdcbench init|crypto|objects --module name=N,path=P,token=L[,args=A] [options]\n"
    "  crypto:  [--openssl] [--ops a,b] [--threads-ops a,b] [--keys token|session] [--seconds S]"
    " [--warmup S] [--reps N] [--iterations N]\n"
    "  objects: [--counts 1000,10000,100000] [--rounds N] [--populate-budget S] [--seconds S]"
    " [--warmup S] [--reps N] [--iterations N]\n";

BR<Args> parse(int argc, char** argv) {
  if (argc < 2) return fail(std::string(kUsage));
  Args a;
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--openssl") {
      a.openssl = true;
      continue;
    }
    if (k.rfind("--", 0) != 0 || i + 1 >= argc)
      return fail("'" + k + "': expected an option with a value\n" + kUsage);
    if (k == "--module")
      a.modules.push_back(argv[++i]);
    else
      a.opts[k.substr(2)] = argv[++i];
  }
  return a;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

BR<double> number(const Args& a, const std::string& key, double def) {
  auto it = a.opts.find(key);
  if (it == a.opts.end()) return def;
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end || v < 0)
    return fail("--" + key + ": '" + it->second + "' is not a non-negative number");
  return v;
}

BR<Timing> timing(const Args& a) {
  Timing t;
  CDC_ASSIGN(t.seconds, number(a, "seconds", t.seconds));
  CDC_ASSIGN(t.warmup, number(a, "warmup", t.warmup));
  CDC_ASSIGN(double reps, number(a, "reps", t.reps));
  CDC_ASSIGN(double it, number(a, "iterations", 0));
  t.reps = static_cast<int>(reps) > 0 ? static_cast<int>(reps) : 1;
  t.iterations = static_cast<long>(it);
  return t;
}

BR<std::vector<const OpInfo*>> ops_from(const Args& a, const std::string& key,
                                        const std::string& def) {
  auto it = a.opts.find(key);
  std::vector<const OpInfo*> out;
  for (const auto& id : split(it == a.opts.end() ? def : it->second)) {
    if (id == "all") {
      for (const auto& o : all_ops()) out.push_back(&o);
      continue;
    }
    const OpInfo* o = find_op(id);
    if (!o) return fail("--" + key + ": unknown operation '" + id + "'");
    out.push_back(o);
  }
  return out;
}

// One operation at `threads` threads per column; the repetitions of the columns interleave.
// A column that cannot do the operation gets a note instead of a figure.
void measure_op(std::vector<std::unique_ptr<Column>>& cols, const OpInfo& op, int threads,
                const Timing& t) {
  std::string row(op.id);
  if (threads > 1) row.append("_").append(std::to_string(threads)).append("t");
  std::vector<Workers> ws(cols.size());
  std::vector<std::vector<double>> reps(cols.size()), cpu(cols.size());
  std::vector<bool> ok(cols.size(), true);
  auto drop = [&](std::size_t c, const std::string& why) {
    ok[c] = false;
    ws[c].clear();
    print_note(cols[c]->name(), row + ": " + why);
  };
  for (std::size_t c = 0; c < cols.size(); ++c)
    for (int i = 0; i < threads && ok[c]; ++i) {
      auto w = cols[c]->worker(op.op);
      if (!w) drop(c, w.error());
      else ws[c].push_back(std::move(w).value());
    }
  std::vector<std::unique_ptr<Team>> teams;
  for (std::size_t c = 0; c < cols.size(); ++c) teams.push_back(std::make_unique<Team>(ws[c].size()));
  if (t.iterations == 0)
    for (std::size_t c = 0; c < cols.size(); ++c)
      if (ok[c])
        if (auto r = run_rep(ws[c], *teams[c], t.warmup); !r) drop(c, r.error());
  const int n = t.iterations > 0 ? 1 : t.reps;
  for (int r = 0; r < n; ++r)
    for (std::size_t c = 0; c < cols.size(); ++c) {
      if (!ok[c]) continue;
      auto rate = run_rep(ws[c], *teams[c], t.seconds * op.time_factor, t.iterations, op.min_calls);
      if (!rate) {
        drop(c, rate.error());
        continue;
      }
      reps[c].push_back(op_value(op, rate->wall));
      cpu[c].push_back(op_value(op, rate->cpu));
    }
  for (std::size_t c = 0; c < cols.size(); ++c)
    if (ok[c]) print_row(cols[c]->name(), row, median(reps[c]), op_unit(op), reps[c], median(cpu[c]));
}

BR<void> crypto(const Args& a) {
  CDC_ASSIGN(Timing t, timing(a));
  CDC_ASSIGN(auto ops, ops_from(a, "ops", "all"));
  CDC_ASSIGN(auto threaded, ops_from(a, "threads-ops", "ecdsa_p256_sign,rsa2048_verify,aes_gcm_16"));
  const auto keys = a.opts.find("keys");
  const std::string key_store = keys == a.opts.end() ? "session" : keys->second;
  if (key_store != "token" && key_store != "session")
    return fail("--keys: '" + key_store + "' is neither token nor session");
  std::vector<std::unique_ptr<Column>> cols;
  for (const auto& m : a.modules) {
    CDC_ASSIGN(ModuleSpec spec, parse_module_spec(m));
    CDC_ASSIGN(auto col, make_p11_column(spec, key_store == "token"));
    print_meta(spec.name, "keys", key_store);
    cols.push_back(std::move(col));
  }
  if (a.openssl) {
    CDC_ASSIGN(auto col, make_evp_column());
    print_meta(col->name(), "module", openssl_version());
    cols.push_back(std::move(col));
  }
  if (cols.empty()) return fail("crypto: no --module and no --openssl: nothing to measure");
  for (const OpInfo* op : ops) {
    measure_op(cols, *op, 1, t);
    for (const OpInfo* th : threaded)
      if (th == op) measure_op(cols, *op, 2, t);
  }
  return {};
}

BR<ModuleSpec> one_module(const Args& a) {
  if (a.modules.size() != 1) return fail(a.command + ": exactly one --module");
  return parse_module_spec(a.modules[0]);
}

BR<void> objects(const Args& a) {
  CDC_ASSIGN(ModuleSpec spec, one_module(a));
  ObjectsOptions o;
  CDC_ASSIGN(o.timing, timing(a));
  if (auto it = a.opts.find("counts"); it != a.opts.end()) {
    o.counts.clear();
    for (const auto& c : split(it->second)) {
      char* end = nullptr;
      const long v = std::strtol(c.c_str(), &end, 10);
      if (*end || v <= 0) return fail("--counts: '" + c + "' is not a positive count");
      if (!o.counts.empty() && v <= o.counts.back()) return fail(std::string("--counts: give them ascending"));
      o.counts.push_back(v);
    }
  }
  CDC_ASSIGN(double rounds, number(a, "rounds", o.rounds));
  o.rounds = rounds >= 1 ? static_cast<int>(rounds) : 1;
  CDC_ASSIGN(o.populate_budget, number(a, "populate-budget", o.populate_budget));
  return run_objects(spec, o);
}

int run(int argc, char** argv) {
  if (argc == 2 && (std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h")) {
    std::cout << kUsage;
    return 0;
  }
  auto a = parse(argc, argv);
  if (!a) {
    std::cerr << a.error();
    return 2;
  }
  BR<void> r;
  if (a->command == "init") {
    auto spec = one_module(*a);
    if (spec) r = init_token(*spec);
    else r = fail(spec.error());
  } else if (a->command == "crypto") {
    r = crypto(*a);
  } else if (a->command == "objects") {
    r = objects(*a);
  } else if (a->command == "login-child" || a->command == "watch-child") {
    auto spec = one_module(*a);
    if (!spec) {
      std::cout << "error " << spec.error() << std::endl;
      return 2;
    }
    auto label = a->opts.find("label");
    return a->command == "watch-child"
               ? watch_child_main(*spec)
               : login_child_main(*spec, label == a->opts.end() ? "" : label->second);
  } else {
    std::cerr << "unknown command '" << a->command << "'\n" << kUsage;
    return 2;
  }
  if (!r) {
    std::cerr << "cdcbench " << a->command << ": " << r.error() << '\n';
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace cdcp11::bench

int main(int argc, char** argv) {
  try {
    return cdcp11::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "cdcbench: " << e.what() << '\n';
    return 1;
  }
}
