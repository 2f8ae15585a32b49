// The module's JSON configuration: path from CDCP11_CONF, C_Initialize's pReserved, or the
// default /etc/cdcp11/cdcp11.json. Each group becomes a slot.
//
// { "version": 1,
//   "groups": [ { "name": "payments",            // token label; unique
//                 "description": "...",
//                 "slot_id": 7,                  // optional; default: stable hash of the name
//                 "token": { "backend": "soft",
//                            "dir": "tokens/payments",   // relative to the config file
//                            "max_pin_retries": 10,      // 0 = never lock
//                            "kdf_scrypt_log2_n": 15 } } ] }
#pragma once

#include <string>
#include <vector>

#include "core/errors.h"

namespace cdcp11::core {

struct TokenConfig {
  std::string backend = "soft";
  std::string dir;  // absolute after load
  unsigned max_pin_retries = 10;
  unsigned kdf_scrypt_log2_n = 15;
};

struct GroupConfig {
  std::string name;
  std::string description;
  unsigned long slot_id = 0;
  TokenConfig token;
};

struct Config {
  std::string path;
  std::vector<GroupConfig> groups;
};

constexpr const char* kDefaultConfigPath = "/etc/cdcp11/cdcp11.json";

// Loads and validates; errors name the file, the group and the field.
R<Config> load_config(const std::string& path);
R<Config> parse_config(const std::string& json, const std::string& path_for_messages);

// The slot id used when a group does not set one: stable across restarts and re-initialisation.
unsigned long default_slot_id(const std::string& group_name);

}  // namespace cdcp11::core
