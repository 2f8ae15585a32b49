// cdcctl: the operator's tool for cdcp11 CDC groups.
#include <CLI/CLI.hpp>

#include <cstdlib>

#include "core/config.h"
#include "tools/cdcctl/byok_commands.h"
#include "tools/cdcctl/group_commands.h"
#include "tools/cdcctl/key_commands.h"

int main(int argc, char** argv) {
  using namespace cdcp11::cdcctl;
  CLI::App app{"cdcctl - manage cdcp11 CDC groups (PKCS#11 slots mirrored into Azure Key Vault)"};
  app.require_subcommand(1);
  GlobalOptions global;
  const char* env = std::getenv("CDCP11_CONF");
  global.config = env && *env ? env : cdcp11::core::kDefaultConfigPath;
  app.add_option("-c,--config", global.config, "Configuration file (default: $CDCP11_CONF or /etc/cdcp11/cdcp11.json)");
  app.add_flag("--json", global.json, "Machine-readable JSON output");
  int exit_code = 0;
  add_group_commands(app, global, exit_code);
  add_key_commands(app, global, exit_code);
  add_byok_commands(app, global, exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
