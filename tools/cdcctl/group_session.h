// One logged-in session on a group's slot, for the cdcctl commands that work with a group's keys
// (key list|mirror, byok export). Runs the same core Provider the PKCS#11 module runs, in this
// process.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cdcp11/cdcp11.h"
#include "common/result.h"
#include "core/mirror/service.h"
#include "core/provider/provider.h"

namespace cdcp11::cdcctl {

// A private or secret token key as the key commands show it.
struct LocalKey {
  CK_OBJECT_HANDLE handle = 0;
  std::string uid, label, id_hex, type, azure_kid, error;
  CK_ULONG state = CDC_MIRROR_STATE_NONE;
  bool azure_resident = false;  // the key material is in Key Vault only (sync, cloud-native)
  // Versions (rotation): CKA_CDC_KEY_VERSION, CKA_CDC_VERSION_STATE, since when, when it is due.
  CK_ULONG version = 1, version_state = 0;
  std::optional<std::int64_t> since, former_since, next_rotation, expires;
  std::string rotation_error;
};

// "RSA-2048", "EC", "Ed25519", "AES", "secret" or "?".
std::string key_type_name(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, std::size_t modulus_len);

// The session is closed (and the library finalised) on scope exit.
class GroupSession {
 public:
  // Initialises the library from config, opens a R/W session on the slot of the group named
  // group and logs in as the user, with the PIN from the environment variable pin_env (or, when
  // pin_env is empty, asked on the terminal / read from standard input).
  static Result<std::unique_ptr<GroupSession>, std::string> open(const std::string& config, const std::string& group,
                                                                 const std::string& pin_env);
  ~GroupSession();
  GroupSession(const GroupSession&) = delete;
  GroupSession& operator=(const GroupSession&) = delete;

  core::Provider& provider() { return provider_; }
  core::Token& token() { return *token_; }
  core::Session& session() { return *session_; }
  // The group's mirror engine (null when the group cannot reach its vault, unavailable() says why).
  core::mirror::Engine* engine() { return token_->mirror() ? token_->mirror()->engine() : nullptr; }
  std::string unavailable() const;
  // The stored form of a key the session sees.
  Result<core::StoredObject, std::string> object(CK_OBJECT_HANDLE h);

  // The private and secret token keys visible to the session.
  std::vector<LocalKey> keys();
  // The one key with CKA_LABEL label (when label is set) or else CKA_ID id_hex (any case); the
  // error is a sentence when none or several match.
  Result<LocalKey, std::string> find_key(const std::string& label, const std::string& id_hex);

 private:
  GroupSession() = default;

  Bytes attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type);
  CK_ULONG ulong_attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type);
  LocalKey read(CK_OBJECT_HANDLE h, CK_OBJECT_CLASS cls);

  core::Provider provider_;
  std::string group_;
  core::Token* token_ = nullptr;
  std::shared_ptr<core::Session> session_;
};

}  // namespace cdcp11::cdcctl
