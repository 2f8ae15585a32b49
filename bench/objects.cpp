#include "bench/objects.h"

#include <cstdio>
#include <iomanip>
#include <iostream>
#include <thread>

#include "bench/child.h"

namespace cdcp11::bench {
namespace {

std::string object_label(long i) {
  char b[32];
  std::snprintf(b, sizeof b, "obj-%07ld", i);
  return b;
}

// Finds the objects labelled `label`: C_FindObjectsInit + C_FindObjects + C_FindObjectsFinal.
// Returns how many there were (at most 2), or -1 with why set.
long find_label(const CK_FUNCTION_LIST* f, CK_SESSION_HANDLE h, std::string_view label,
                std::string& why) {
  CK_ATTRIBUTE t{CKA_LABEL, const_cast<char*>(label.data()), static_cast<CK_ULONG>(label.size())};
  CK_OBJECT_HANDLE found[2];
  CK_ULONG n = 0;
  CK_RV rv = f->C_FindObjectsInit(h, &t, 1);
  if (rv != CKR_OK) {
    why = std::string("C_FindObjectsInit: ") + hsm::rv_name(rv);
    return -1;
  }
  rv = f->C_FindObjects(h, found, 2, &n);
  const CK_RV rv_final = f->C_FindObjectsFinal(h);
  if (rv != CKR_OK || rv_final != CKR_OK) {
    why = std::string(rv != CKR_OK ? "C_FindObjects: " : "C_FindObjectsFinal: ") +
          hsm::rv_name(rv != CKR_OK ? rv : rv_final);
    return -1;
  }
  return static_cast<long>(n);
}

// A random one of the first n objects, by label; exactly one must match.
class FindWorker final : public Worker {
 public:
  FindWorker(hsm::Session s, long n)
      : s_(std::move(s)), f_(s_.module().functions()), n_(n) {}
  bool call() noexcept override {
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    char label[32];
    const int len = std::snprintf(label, sizeof label, "obj-%07ld",
                                  static_cast<long>(rng_ % static_cast<std::uint64_t>(n_)));
    std::string why;
    const long hits = find_label(f_, s_.handle(), std::string_view(label, len), why);
    if (hits < 0) return failed(why);
    return hits == 1 || failed(std::string(label) + ": " + std::to_string(hits) + " objects found");
  }

 private:
  hsm::Session s_;
  const CK_FUNCTION_LIST* f_;
  long n_;
  std::uint64_t rng_ = 0x9e3779b97f4a7c15ULL;
};

// The populated objects are CKO_DATA "obj-NNNNNNN" of application kPopulated, numbered from 0;
// the ones the propagation measurement makes are of another application.
constexpr std::string_view kPopulated = "cdcbench";
constexpr std::string_view kSeen = "cdcbench-seen";

Tmpl data_object(const std::string& label, std::string_view application) {
  static const Bytes value = payload(32);
  Tmpl t;
  t.ul(CKA_CLASS, CKO_DATA).b(CKA_TOKEN, true).b(CKA_PRIVATE, false).str(CKA_LABEL, label)
      .str(CKA_APPLICATION, application).bytes(CKA_VALUE, value);
  return t;
}

BR<void> create(hsm::Session& s, const std::string& label, std::string_view application) {
  auto r = s.create(data_object(label, application).map());
  if (!r) return fail("C_CreateObject: " + describe(r.error()));
  return {};
}

// How many objects an earlier run populated (a token is filled once, measured many times).
BR<long> populated(hsm::Session& s) {
  Tmpl t;
  t.ul(CKA_CLASS, CKO_DATA).str(CKA_APPLICATION, kPopulated);
  auto r = s.find(t.map());
  if (!r) return fail("C_FindObjects: " + describe(r.error()));
  return static_cast<long>(r->size());
}

std::string spec_arg(const ModuleSpec& s) {
  std::string a = "name=" + s.name + ",path=" + s.path + ",token=" + s.token;
  if (s.args) a += ",args=" + *s.args;
  return a;
}

// C_Initialize .. C_Login, and the first C_FindObjects, in fresh processes: medians.
BR<void> measure_login(const ModuleSpec& spec, long count, const Timing& t) {
  std::vector<double> login, first;
  const int reps = t.iterations > 0 ? 1 : t.reps;
  for (int r = 0; r < reps; ++r) {
    CDC_ASSIGN(Child c, Child::spawn({"login-child", "--module", spec_arg(spec), "--label", object_label(0)}));
    CDC_ASSIGN(std::string line, c.read_line(600));
    double a = 0, b = 0;
    if (std::sscanf(line.c_str(), "%lf %lf", &a, &b) != 2) return fail("login-child: " + line);
    login.push_back(a * 1e3);
    first.push_back(b * 1e3);
  }
  print_row(spec.name, "init_login@" + std::to_string(count), median(login), "ms", login);
  print_row(spec.name, "first_find@" + std::to_string(count), median(first), "ms", first);
  return {};
}

// Process B (a watch-child) loops C_FindObjects for a label; this process creates the object:
// the time from the start of C_CreateObject to B's first hit. (From its return would not do: B
// may see the object before A's call returns, while A still syncs the directory.)
BR<void> measure_propagation(const ModuleSpec& spec, hsm::Session& s, long count, int rounds) {
  CDC_ASSIGN(Child c, Child::spawn({"watch-child", "--module", spec_arg(spec)}));
  CDC_ASSIGN(std::string ready, c.read_line(600));
  if (ready != "ready") return fail("watch-child: " + ready);
  std::vector<double> lat;
  for (int r = 0; r < rounds; ++r) {
    const std::string label = "seen-" + std::to_string(count) + "-" + std::to_string(r);
    CDC_TRY(c.write_line(label));
    CDC_ASSIGN(std::string go, c.read_line(60));
    if (go != "go") return fail("watch-child: " + go);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // B is in its loop
    const double created = now_s();
    CDC_TRY(create(s, label, kSeen));
    CDC_ASSIGN(std::string seen, c.read_line(120));
    double t = 0;
    if (std::sscanf(seen.c_str(), "%lf", &t) != 1) return fail("watch-child: " + seen);
    lat.push_back((t - created) * 1e3);
  }
  print_row(spec.name, "propagation@" + std::to_string(count), median(lat), "ms", lat);
  return {};
}

}  // namespace

BR<void> run_objects(const ModuleSpec& spec, const ObjectsOptions& o) {
  CDC_ASSIGN(P11Token tok, P11Token::open(spec));
  print_meta(spec.name, "module", tok.module_info());
  hsm::Session& s = *tok.session;
  CDC_ASSIGN(long have, populated(s));
  double spent = 0;
  for (long count : o.counts) {
    if (have > count) {
      print_note(spec.name, "the token holds " + std::to_string(have) + " objects already: " +
                                std::to_string(count) + " not measured");
      continue;
    }
    const double t0 = now_s();
    const long from = have;
    bool capped = false;
    while (have < count) {
      CDC_TRY(create(s, object_label(have), kPopulated));
      ++have;
      if (have % 1000 == 0) {
        const double el = now_s() - t0;
        std::cerr << spec.name << ": " << have << " objects (" << static_cast<long>((have - from) / el)
                  << "/s)\n";
        if (spent + el > o.populate_budget) {
          capped = true;
          break;
        }
      }
    }
    const double el = now_s() - t0;
    spent += el;
    if (have > from) {
      const double rate = static_cast<double>(have - from) / el;
      print_row(spec.name, "populate@" + std::to_string(have), rate, "objects/s", {rate});
    }
    if (capped)
      print_note(spec.name, "populating stopped at " + std::to_string(have) + " objects after " +
                                std::to_string(static_cast<long>(spent)) + " s (budget " +
                                std::to_string(static_cast<long>(o.populate_budget)) + " s); " +
                                std::to_string(count) + " not measured");

    Workers ws;
    CDC_ASSIGN(hsm::Session fs, tok.new_session());
    ws.push_back(std::make_unique<FindWorker>(std::move(fs), have));
    Team team(ws.size());
    if (o.timing.iterations == 0) CDC_TRY(run_rep(ws, team, o.timing.warmup));
    std::vector<double> us, cpu_us;
    for (int r = 0; r < (o.timing.iterations > 0 ? 1 : o.timing.reps); ++r) {
      CDC_ASSIGN(Rate rate, run_rep(ws, team, o.timing.seconds, o.timing.iterations));
      us.push_back(1e6 / rate.wall);
      cpu_us.push_back(rate.cpu > 0 ? 1e6 / rate.cpu : 0);
    }
    print_row(spec.name, "find@" + std::to_string(have), median(us), "us", us, median(cpu_us));
    CDC_TRY(measure_login(spec, have, o.timing));
    CDC_TRY(measure_propagation(spec, s, have, o.timing.iterations > 0 ? 1 : o.rounds));
    if (capped) break;
  }
  return {};
}

int login_child_main(const ModuleSpec& spec, const std::string& label) {
  const double t0 = now_s();
  auto tok = P11Token::open(spec);
  if (!tok) {
    std::cout << "error " << tok.error() << std::endl;
    return 1;
  }
  const double t1 = now_s();
  std::string why;
  const long hits = find_label(tok->module->functions(), tok->session->handle(), label, why);
  const double t2 = now_s();
  if (hits < 0) {
    std::cout << "error " << why << std::endl;
    return 1;
  }
  std::cout << std::fixed << std::setprecision(9) << (t1 - t0) << ' ' << (t2 - t1) << std::endl;
  return 0;
}

int watch_child_main(const ModuleSpec& spec) {
  auto tok = P11Token::open(spec);
  if (!tok) {
    std::cout << "error " << tok.error() << std::endl;
    return 1;
  }
  std::cout << "ready" << std::endl;
  const CK_FUNCTION_LIST* f = tok->module->functions();
  const CK_SESSION_HANDLE h = tok->session->handle();
  std::string label;
  while (std::getline(std::cin, label)) {
    std::cout << "go" << std::endl;
    std::string why;
    const double give_up = now_s() + 100;
    for (;;) {
      const long hits = find_label(f, h, label, why);
      if (hits < 0) {
        std::cout << "error " << why << std::endl;
        return 1;
      }
      if (hits > 0) break;
      if (now_s() > give_up) {
        std::cout << "error '" << label << "' not seen in 100 s" << std::endl;
        return 1;
      }
    }
    std::cout << std::fixed << std::setprecision(9) << now_s() << std::endl;
  }
  return 0;
}

}  // namespace cdcp11::bench
