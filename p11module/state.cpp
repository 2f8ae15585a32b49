#include "p11module/state.h"

#include <pthread.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "common/log.h"
#include "p11module/rv.h"
#include "backends/factory.h"

namespace cdcp11::p11 {
namespace {

// Leaked on purpose: C_Finalize may run from an atexit handler or a static destructor of the
// application, after our own statics would have been destroyed.
struct State {
  std::unique_ptr<core::Provider> lib;
  pid_t pid = 0;
};
State& state() {
  static auto* s = new State;
  return *s;
}

// The state lock lives in static storage so that a forked child can make it anew in place.
alignas(ReadMostlyMutex) unsigned char g_mutex_storage[sizeof(ReadMostlyMutex)];

// In a child forked while other threads were inside C_ calls, the lock (and the Provider's own)
// may be held by threads the child does not have. A child must C_Initialize before any other
// call: it starts afresh, the parent's state abandoned. Nothing here allocates.
void child_after_fork() {
  new (g_mutex_storage) ReadMostlyMutex;
  (void)state().lib.release();
}

}  // namespace

ReadMostlyMutex& state_mutex() {
  static auto* m = [] {
    (void)state();  // made before the fork handler can use it
    auto* p = new (g_mutex_storage) ReadMostlyMutex;
    ::pthread_atfork(nullptr, nullptr, child_after_fork);
    return p;
  }();
  return *m;
}

// No getpid() here (a system call on every C_ call): a forked child has no Provider, which
// child_after_fork has dropped.
bool initialized() { return state().lib != nullptr; }

core::Provider& provider() { return *state().lib; }

CK_RV report(const char* fn, const core::Error& e) {
  CK_RV rv = to_rv(e.code);
  if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_NO_EVENT) log::debug("p11", std::string(fn) + ": " + rv_name(rv) + ": " + e.message);
  else log::info("p11", std::string(fn) + ": " + rv_name(rv) + ": " + e.message);
  return rv;
}

CK_RV report_exception(const char* fn, const char* what, CK_RV rv) noexcept {
  try {
    log::error("p11", std::string(fn) + ": " + rv_name(rv) + ": " + (what ? what : "out of memory"));
  } catch (...) {
  }
  return rv;
}

namespace {

CK_RV initialize_state(CK_VOID_PTR init_args) {
  std::unique_lock lk(state_mutex());
  State& s = state();
  if (s.lib && s.pid == ::getpid()) return CKR_CRYPTOKI_ALREADY_INITIALIZED;
  // A forked child inherits the parent's state: it is not initialised here. The parent's
  // Provider (its locks may be held by threads that do not exist in the child) is abandoned.
  (void)s.lib.release();
  log::configure_from_env();
  std::string path;
  if (init_args) {
    auto* a = static_cast<CK_C_INITIALIZE_ARGS*>(init_args);
    const int given = (a->CreateMutex != nullptr) + (a->DestroyMutex != nullptr) + (a->LockMutex != nullptr) +
                      (a->UnlockMutex != nullptr);
    if (given != 0 && given != 4) {
      log::info("p11", "C_Initialize: CKR_ARGUMENTS_BAD: some but not all mutex callbacks were given");
      return CKR_ARGUMENTS_BAD;
    }
    if (given == 4 && !(a->flags & CKF_OS_LOCKING_OK)) {
      log::info("p11", "C_Initialize: CKR_CANT_LOCK: only OS locking is supported (set CKF_OS_LOCKING_OK)");
      return CKR_CANT_LOCK;
    }
    if (a->pReserved) path = static_cast<const char*>(a->pReserved);
  }
  if (path.empty()) {
    const char* env = std::getenv("CDCP11_CONF");
    path = env && *env ? env : core::kDefaultConfigPath;
  }
  auto lib = std::make_unique<core::Provider>();
  auto r = lib->initialize(path, backends::make_token_backend);
  if (!r) {
    log::error("p11", "C_Initialize: " + r.error().message);
    return CKR_GENERAL_ERROR;
  }
  s.lib = std::move(lib);
  s.pid = ::getpid();
  return CKR_OK;
}

CK_RV finalize_state(CK_VOID_PTR reserved) {
  std::unique_lock lk(state_mutex());
  State& s = state();
  if (!s.lib || s.pid != ::getpid()) return CKR_CRYPTOKI_NOT_INITIALIZED;
  if (reserved) {
    log::info("p11", "C_Finalize: CKR_ARGUMENTS_BAD: pReserved must be NULL");
    return CKR_ARGUMENTS_BAD;
  }
  // Whatever happens below, the library is gone afterwards.
  std::unique_ptr<core::Provider> lib = std::move(s.lib);
  lib->finalize();
  return CKR_OK;
}

}  // namespace

CK_RV initialize(CK_VOID_PTR init_args) noexcept {
  return no_throw("C_Initialize", [&] { return initialize_state(init_args); });
}

CK_RV finalize(CK_VOID_PTR reserved) noexcept {
  return no_throw("C_Finalize", [&] { return finalize_state(reserved); });
}

}  // namespace cdcp11::p11
