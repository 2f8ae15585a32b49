// A client of another PKCS#11 module (an "HSM"), loaded with dlopen.
//
// Module::load dlopens the file (RTLD_NOW | RTLD_LOCAL), takes its function list through
// C_GetInterface("PKCS 11") when the module exports it, else C_GetFunctionList, and calls
// C_Initialize with CKF_OS_LOCKING_OK (the module does its own locking, so one Module may be used
// from several threads; a Session is used by one thread at a time). The destructor calls
// C_Finalize and dlclose. Loading a file that is already loaded returns the same Module (a
// module is initialised once per process); a module some other part of the process has
// initialised is used as it is and not finalised by us.
//
// Fork: a module initialised in a parent is not usable in a child (PKCS#11 2.40 §6.7.7: the child
// must call C_Initialize itself). In a child, every call on an inherited Module or Session fails
// with CKR_CRYPTOKI_NOT_INITIALIZED and nothing is finalised or closed on the parent's behalf;
// the child loads the module again (Module::load in the child gives a fresh Module). A module
// whose C_Initialize in the child keeps the parent's state (CKR_CRYPTOKI_ALREADY_INITIALIZED,
// SoftHSM2) is finalised and initialised again there when the parent's Module initialised it.
// A fork waits until no thread is inside a call into a module (or in load or ~Module), so the
// child inherits none of the module's locks held.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cdcp11/pkcs11_3_0.h"
#include "common/bytes.h"
#include "hsm/errors.h"

namespace cdcp11::hsm {

class Session;

// Which token of the module a group uses: exactly one of label, serial or slot id.
struct TokenSelector {
  enum class By { label, serial, slot_id };
  By by = By::label;
  std::string text;      // label or serial
  CK_SLOT_ID slot = 0;   // slot id

  static TokenSelector label(std::string l) { return {By::label, std::move(l), 0}; }
  static TokenSelector serial(std::string s) { return {By::serial, std::move(s), 0}; }
  static TokenSelector slot_id(CK_SLOT_ID id) { return {By::slot_id, {}, id}; }
  std::string describe() const;
};

// CK_TOKEN_INFO with the blank-padded strings trimmed.
struct TokenInfo {
  CK_SLOT_ID slot = 0;
  std::string label, manufacturer, model, serial;
  CK_FLAGS flags = 0;
  CK_ULONG min_pin_len = 0, max_pin_len = 0;
  CK_ULONG max_session_count = 0, session_count = 0;
  CK_VERSION hardware_version{}, firmware_version{};
};

struct MechanismInfo {
  CK_MECHANISM_TYPE type = 0;
  CK_ULONG min_key_size = 0, max_key_size = 0;  // bits or bytes, as the mechanism defines
  CK_FLAGS flags = 0;
};

struct ModuleInfo {
  CK_VERSION cryptoki_version{};
  std::string manufacturer, description;
  CK_VERSION library_version{};
};

class Module : public std::enable_shared_from_this<Module> {
 public:
  // module_args, when set, is passed as C_Initialize's pReserved (a C string, as NSS modules take).
  static R<std::shared_ptr<Module>> load(const std::string& path,
                                         std::optional<std::string> module_args = std::nullopt);
  ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& path() const { return path_; }
  // The interface version the function list was obtained for (3.x via C_GetInterface).
  CK_VERSION interface_version() const { return iface_version_; }
  bool via_get_interface() const { return via_get_interface_; }
  // The 3.0 function list, when the module gave one; nullptr for a 2.x module.
  const CK_FUNCTION_LIST_3_0* functions_3_0() const { return fl3_; }
  const CK_FUNCTION_LIST* functions() const { return fl_; }
  // False in a forked child (see the header comment).
  bool usable() const;

  R<ModuleInfo> info() const;
  R<std::vector<CK_SLOT_ID>> slots(bool token_present = true) const;
  R<TokenInfo> token_info(CK_SLOT_ID slot) const;
  // The slot holding the one token the selector names; token_not_present when none does,
  // arguments_bad when a label or serial matches more than one token.
  R<CK_SLOT_ID> find_token(const TokenSelector& sel) const;
  R<std::vector<CK_MECHANISM_TYPE>> mechanisms(CK_SLOT_ID slot) const;
  R<MechanismInfo> mechanism_info(CK_SLOT_ID slot, CK_MECHANISM_TYPE type) const;
  R<std::vector<MechanismInfo>> mechanism_infos(CK_SLOT_ID slot) const;

  // C_InitToken (label up to 32 bytes, blank-padded here).
  R<void> init_token(CK_SLOT_ID slot, ByteView so_pin, std::string_view label) const;
  R<Session> open_session(CK_SLOT_ID slot, bool read_write = true);

  // Checks that the module may be called from this process (not a forked child).
  R<void> check_usable(std::string_view fn) const;

 private:
  Module() = default;

  std::string path_;
  std::optional<std::string> args_;
  void* dl_ = nullptr;
  CK_FUNCTION_LIST* fl_ = nullptr;
  CK_FUNCTION_LIST_3_0* fl3_ = nullptr;
  CK_VERSION iface_version_{};
  bool via_get_interface_ = false;
  bool we_initialized_ = false;
  pid_t pid_ = 0;
};

// Marks a thread as inside a call into a module, for as long as it lives: a fork waits until no
// thread is (module.cpp says why).
class ModuleCall {
 public:
  ModuleCall() noexcept;
  ~ModuleCall();
  ModuleCall(const ModuleCall&) = delete;
  ModuleCall& operator=(const ModuleCall&) = delete;
};

// Calls a function-list entry; a NULL entry (a module that leaves a function out) is
// CKR_FUNCTION_NOT_SUPPORTED.
template <class Fn, class... A>
CK_RV invoke(Fn fn, A... a) noexcept {
  if (!fn) return CKR_FUNCTION_NOT_SUPPORTED;
  ModuleCall in_call;
  return fn(a...);
}

// Trims the blank padding of a fixed-size CK_UTF8CHAR field.
std::string trim_padded(const CK_UTF8CHAR* p, std::size_t n);

}  // namespace cdcp11::hsm
