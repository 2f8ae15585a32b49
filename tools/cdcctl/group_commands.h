// cdcctl group list|show|add|edit|remove (and, with the Azure client, test).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace cdcp11::cdcctl {

struct GlobalOptions {
  std::string config;  // resolved path of the configuration file
  bool json = false;
};

// Adds the "group" command tree to app; the callbacks set exit_code.
void add_group_commands(CLI::App& app, GlobalOptions& global, int& exit_code);

}  // namespace cdcp11::cdcctl
