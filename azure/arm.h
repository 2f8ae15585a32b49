// ARM discovery (reference §7): the subscription's key vaults and managed HSMs, all pages,
// with the settings that matter for mirroring and our own access-policy permissions.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "azure/error.h"
#include "common/result.h"

namespace cdcp11::azure {

class Connection;

enum class VaultTier { standard, premium, managed_hsm, unknown };
const char* tier_name(VaultTier t);

struct VaultInfo {
  std::string id;        // ARM resource id
  std::string name;
  std::string location;
  std::string resource_group;
  std::string uri;       // vaultUri / hsmUri without the trailing slash
  std::string tenant_id;
  VaultTier tier = VaultTier::unknown;
  bool soft_delete = true;
  int retention_days = 90;
  bool purge_protection = false;
  bool rbac = false;     // access policies are ignored when set (managed HSMs: always local RBAC)
  // Key permissions of the access policy for our principal (token oid), lower case; empty
  // when RBAC is in use or there is no policy for us. "all" is expanded.
  std::vector<std::string> our_key_permissions;
  bool has_access_policy = false;

  bool can(std::string_view key_permission) const;
};

class ArmClient {
 public:
  explicit ArmClient(std::shared_ptr<Connection> conn);

  // Vaults and managed HSMs of the configured (or given) subscription, sorted by name.
  Result<std::vector<VaultInfo>, Error> list_vaults(const std::string& subscription_id = "");
  Result<std::vector<VaultInfo>, Error> list_managed_hsms(const std::string& subscription_id = "");
  Result<std::vector<VaultInfo>, Error> list_all(const std::string& subscription_id = "");
  // One vault by name (searches the listing); vault_not_found when absent.
  Result<VaultInfo, Error> find_vault(const std::string& name, const std::string& subscription_id = "");

 private:
  Result<std::vector<VaultInfo>, Error> list(const std::string& subscription_id, bool hsm);
  std::shared_ptr<Connection> conn_;
};

}  // namespace cdcp11::azure
