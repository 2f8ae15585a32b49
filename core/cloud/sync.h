// Vault sync (C_CDC_SyncKeys, cdcctl group sync): brings the group's vault into the token. Local
// keys mirrored there are linked, keys made in Azure come in as Azure-resident key pairs, those
// whose current version changed are updated and those the vault no longer has are removed.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "core/token/token.h"

namespace cdcp11::core::cloud {

// What a vault sync did.
struct SyncReport {
  std::size_t linked = 0, added = 0, updated = 0, removed = 0, unchanged = 0, skipped = 0;
  std::vector<std::string> notes;  // one sentence per key skipped or not linked, for people
};
using SyncProgress = std::function<void(std::size_t done, std::size_t total)>;

// Needs a R/W session with the user logged in.
R<SyncReport> sync_keys(Token& token, const Session& s, const SyncProgress& progress = {});

}  // namespace cdcp11::core::cloud
