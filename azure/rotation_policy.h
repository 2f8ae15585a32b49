// Key rotation policy (Key Vault API 7.3+): the typed form of GET/PUT /keys/{name}/rotationpolicy
// and its JSON (keys.json KeyRotationPolicy):
//   {"id": ".../keys/{name}/rotationpolicy",
//    "lifetimeActions": [{"trigger": {"timeAfterCreate": "P90D"}, "action": {"type": "Rotate"}},
//                        {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}}],
//    "attributes": {"expiryTime": "P2Y", "created": 1482188947, "updated": 1482188948}}
// The service enforces its own rules (rotation at least 7 days after creation and before
// expiry, expiryTime at least 28 days, ...) and answers 400 when they are broken; here only
// the form is checked, so that a malformed policy is never sent.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "azure/error.h"
#include "common/bytes.h"
#include "common/result.h"

namespace cdcp11::azure {

enum class RotationAction { rotate, notify };

struct LifetimeAction {
  RotationAction action = RotationAction::rotate;
  // Exactly one trigger, an ISO 8601 duration: after the version's creation (Rotate only) or
  // before its expiry.
  std::string time_after_create;
  std::string time_before_expiry;
};

struct RotationPolicy {
  std::string id;  // set in the service's answers
  std::vector<LifetimeAction> lifetime_actions;
  std::string expiry_time;  // ISO 8601 duration: `exp` of versions made by rotation; empty = none
  // Absent in the default policy of a key that never had one set.
  std::optional<int64_t> created, updated;
};

// PnYnMnWnDTnHnMnS with at least one component (and one after T, if T is there).
bool iso8601_duration_valid(std::string_view s);

// The PUT body, or a config error naming what is malformed.
Result<SecureBytes, Error> rotation_policy_body(const RotationPolicy& p);
// false when the JSON is not a rotation policy (including an unknown action type).
bool parse_rotation_policy(std::string_view json, RotationPolicy& out);

}  // namespace cdcp11::azure
