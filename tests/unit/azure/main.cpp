// doctest main for the azure suite: cdcp11's log goes to a per-process file at debug level so
// that tests can check it (and check that no secret ever reaches it).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/log.h"

int main(int argc, char** argv) {
  const char* tmp = std::getenv("TMPDIR");
  std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/cdcp11-azure-test-log-" + std::to_string(::getpid());
  std::remove(path.c_str());
  setenv("CDCP11_LOG_FILE", path.c_str(), 1);
  setenv("CDCP11_LOG_LEVEL", "debug", 1);
  cdcp11::log::configure_from_env();
  doctest::Context ctx(argc, argv);
  int rc = ctx.run();
  if (!std::getenv("CDCP11_KEEP_TEST_LOG")) std::remove(path.c_str());
  return rc;
}
