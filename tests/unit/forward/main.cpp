#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "common/log.h"

int main(int argc, char** argv) {
  cdcp11::log::configure_from_env();  // CDCP11_LOG_LEVEL=debug shows every failed HSM call
  return doctest::Context(argc, argv).run();
}
