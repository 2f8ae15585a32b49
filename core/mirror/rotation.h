// Rotation of mirrored keys (README.md, "Rotation"): the token, the key's source, makes a new key
// like the current one, mirrors it as the next version of the same Azure key, and makes it
// current; the key it replaces becomes a former version (renamed "<label>@v<N>", usable to
// decrypt, unwrap and verify only). Journaled on the rotated key's mirror job before each step:
//
//   planned (label, id, version recorded) -> made (new key under "<label>@rotating") ->
//   mirrored (the new key is the Azure key's next version: a mirror job with new_version_of) ->
//   switched (former renamed, new key takes the label and id; the rotation record is cleared)
//
// A rotation that fails leaves the rotated key current; running it again resumes it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/attributes.h"
#include "core/config.h"
#include "core/errors.h"

namespace cdcp11::core {
class Session;
class Token;
}  // namespace cdcp11::core

namespace cdcp11::core::mirror {

// Unix seconds; CDCP11_TEST_NOW (Unix seconds) overrides it, for tests.
std::int64_t now_seconds();

// CK_DATE "YYYYMMDD" <-> Unix seconds at 00:00 UTC; nullopt when unset or not a date.
std::optional<std::int64_t> date_value(const AttrMap& a, CK_ATTRIBUTE_TYPE t);
std::string ck_date(std::int64_t unix_seconds);

// The rotation policy of one key: the group's, overridden by the key's vendor attributes.
struct KeyRotationPolicy {
  unsigned long every_days = 0;
  RetireFormer retire = RetireFormer::keep;
  unsigned long retire_after_days = 0;
};
KeyRotationPolicy policy_for(const RotationConfig& group, const AttrMap& key);

// What a key's vendor attributes say of its version (absent: version 1, current).
struct VersionInfo {
  CK_ULONG version = 1;
  CK_ULONG state = 0;  // CDC_VERSION_*
  std::optional<std::int64_t> since, former_since;
};
VersionInfo version_of(const AttrMap& key);
const char* version_state_name(CK_ULONG state);  // "current", "former", "former-disabled"

// When the current version is due for rotation (nullopt: never, or its age is unknown).
std::optional<std::int64_t> next_rotation(const KeyRotationPolicy& p, const VersionInfo& v);
// When a former version is due to be retired (nullopt: never, or already retired).
std::optional<std::int64_t> retirement_due(const KeyRotationPolicy& p, const VersionInfo& v);

// The label and CKA_ID of former version n of a key labelled `label` with CKA_ID `id`.
std::string former_label(const std::string& label, unsigned long n);
Bytes former_id(const Bytes& id, unsigned long n);

struct Rotated {
  CK_OBJECT_HANDLE new_key = 0;
  std::string label;
  CK_ULONG version = 0;       // the new version's number (0: an Azure-resident key's)
  std::string azure_kid;      // its Azure version
  std::string former_kid;     // the former version's
};

// Rotates the key (the current version of a mirrored local private or secret token key) in the
// session's token, or resumes its unfinished rotation. The session must be R/W with the user
// logged in. On failure the key stays current and its CKA_CDC_ROTATION_ERROR says why. An
// Azure-resident key is rotated by Key Vault itself (its rotate operation), then synced; its
// Rotated::version is 0.
R<Rotated> rotate_key(Token& token, Session& s, CK_OBJECT_HANDLE key);

struct Abandoned {
  std::string label;
  std::string new_uid;       // the new key that was removed ("" when none had been made)
  std::string azure_version; // the new key's Azure version, disabled ("" when never imported)
};

// Abandons the key's unfinished rotation (planned or made: before the switch): the new key is
// destroyed in the token, private and public, and its Azure version, if the import happened,
// disabled (Azure deletes keys, not versions); the key stays current as it was, its rotation
// record and CKA_CDC_ROTATION_ERROR cleared. Journaled first, so an abandon cut short is finished
// by the next one, and a rotation being abandoned is never resumed. Refused once the new version
// is mirrored (the switch may have begun: resuming finishes it).
R<Abandoned> abandon_rotation(Token& token, Session& s, CK_OBJECT_HANDLE key);

// Whether the key has a rotation under way (journaled and not finished).
bool rotation_unfinished(Token& token, const std::string& uid);

// Retires a former version as the policy says: disable (its Azure version disabled; the local
// key kept, CDC_VERSION_FORMER_DISABLED) or destroy (the local former version destroyed, private
// and public; the group's on_destroy then applies to its Azure version only).
R<void> retire_former(Token& token, Session& s, CK_OBJECT_HANDLE former, RetireFormer how);

// What --all-due would do in this token now: keys to rotate (due, or with a rotation under way)
// and former versions to retire.
struct DueItem {
  CK_OBJECT_HANDLE handle = 0;
  std::string label;
  CK_ULONG version = 1;
  bool retire = false;  // else rotate
  RetireFormer how = RetireFormer::keep;
};
R<std::vector<DueItem>> due_items(Token& token, Session& s, std::int64_t now);

}  // namespace cdcp11::core::mirror
