// Token-object figures for one module: populating N data objects, C_FindObjects by label at
// each N, C_Initialize + C_Login in a fresh process with N objects on the token, and how long a
// second process takes to see an object another one created.
#pragma once

#include <vector>

#include "bench/measure.h"
#include "bench/p11.h"

namespace cdcp11::bench {

struct ObjectsOptions {
  std::vector<long> counts{1000, 10000, 100000};
  Timing timing;
  int rounds = 5;                  // propagation measurements per count
  double populate_budget = 300;    // seconds of C_CreateObject at most; stops at what it reached
};

BR<void> run_objects(const ModuleSpec& spec, const ObjectsOptions& o);

// The helper processes (run through Child):
// login-child: loads the module, logs in, finds `label`, and prints
//   "<C_Initialize .. C_Login seconds> <first C_FindObjects seconds>".
int login_child_main(const ModuleSpec& spec, const std::string& label);
// watch-child: loads the module and logs in, prints "ready"; then for each label read from
// stdin prints "go", loops C_FindObjects until the label is found and prints the monotonic time
// it was found at.
int watch_child_main(const ModuleSpec& spec);

}  // namespace cdcp11::bench
