// The module's JSON configuration: path from C_Initialize's pReserved, CDCP11_CONF, or the
// default /etc/cdcp11/cdcp11.json. Each group becomes a slot. See README.md for the format.
//
// A group whose "azure" section is invalid still becomes a slot serving its local token:
// GroupConfig::azure_error says why (the module logs it at start, cdcctl shows it).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/errors.h"

namespace cdcp11::core {

struct TokenConfig {
  std::string backend = "soft";  // "soft" or "pkcs11" (forwarding to another PKCS#11 module)
  // soft: the token's directory. pkcs11: the directory of the group's metadata store (default
  // <config dir>/<group>.hsm). Absolute after load.
  std::string dir;
  unsigned max_pin_retries = 10;    // soft only
  unsigned kdf_scrypt_log2_n = 15;  // soft only

  // pkcs11 only: the module (absolute after load), exactly one way to pick its token, and an
  // optional C_Initialize pReserved string.
  enum class Select { label, serial, slot_id };
  std::string module;
  Select selector = Select::label;
  std::string token_label, token_serial;
  unsigned long hsm_slot_id = 0;
  std::optional<std::string> module_args;
};

enum class VaultType { standard, premium, managed_hsm };
const char* vault_type_name(VaultType t);  // "standard", "premium", "managed_hsm"

struct CloudEndpoints {
  std::string name;              // global, usgov, china, custom
  std::string authority_host;    // login.microsoftonline.com
  std::string arm_endpoint;      // https://management.azure.com
  std::string vault_suffix;      // .vault.azure.net
  std::string mhsm_suffix;       // .managedhsm.azure.net
};
// Known clouds (reference §6); nullopt for an unknown name.
std::optional<CloudEndpoints> known_cloud(const std::string& name);

struct CredentialConfig {
  enum class Kind { none, secret, certificate } kind = Kind::none;
  std::string secret_file;       // kind secret: one of these
  std::string secret_env;
  std::string certificate_file;  // kind certificate: PEM certificate and PEM private key
  std::string key_file;
};

struct TlsConfig {
  bool validate_host = true;
  std::string ca_file;           // empty: system CAs
  std::string client_cert_file;  // mutual TLS
  std::string client_key_file;
  std::string proxy;             // e.g. https://proxy:3128; never with credentials in it
  std::string proxy_user;        // proxy authentication: the user name ...
  std::string proxy_password_file;  // ... and its password from a 0600 file, or
  std::string proxy_password_env;   // ... from an environment variable
  std::vector<std::string> connect_to;  // libcurl CONNECT_TO entries "host:port:addr:port"
  unsigned connect_timeout_s = 10;
  unsigned total_timeout_s = 60;
};

struct AzureConfig {
  CloudEndpoints cloud;
  std::string tenant_id, client_id, subscription_id;
  CredentialConfig credential;
  TlsConfig tls;
  std::string vault_name;        // empty until chosen
  VaultType vault_type = VaultType::premium;
};

enum class MirrorTrigger { on_generate, on_request };
enum class MirrorMode { sync, async };
enum class OnDestroy { keep, disable, remove };

// What a rotation's schedule does with former versions (README.md, "Rotation").
enum class RetireFormer { keep, disable, destroy };

struct RotationConfig {
  unsigned every_days = 0;  // 0: never rotated by --all-due
  RetireFormer retire_former = RetireFormer::keep;
  unsigned retire_former_after_days = 0;  // 0: never
};

struct MirrorConfig {
  MirrorTrigger trigger = MirrorTrigger::on_request;
  MirrorMode mode = MirrorMode::sync;
  OnDestroy on_destroy = OnDestroy::keep;
  bool recover_soft_deleted = false;
  // A Standard vault takes a plain JWK: a key with CKA_EXTRACTABLE false is only sent that way
  // when this is on, and then loses CKA_NEVER_EXTRACTABLE. BYOK (Premium, Managed HSM) keeps the
  // key non-exportable and needs no permission.
  bool allow_plain_export_of_non_extractable = false;
  // An HSM group: a Standard vault's plain JWK import of a key the HSM itself lets out in clear
  // (CKA_EXTRACTABLE true, CKA_SENSITIVE false), logged each time. Off: refused, as BYOK into
  // Premium or a Managed HSM keeps the key inside the HSM.
  bool allow_plain_export_from_hsm = false;
  RotationConfig rotation;
};

struct GroupConfig {
  std::string name;
  std::string description;
  unsigned long slot_id = 0;
  TokenConfig token;
  std::optional<AzureConfig> azure;  // absent: a local-only group
  std::string azure_error;           // non-empty: the azure section is invalid (azure unset)
  MirrorConfig mirror;
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

// True if the file exists and is readable by its owner only (no group/other permission bits).
bool file_is_private(const std::string& path);

}  // namespace cdcp11::core
