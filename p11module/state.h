// Process-wide module state: whether C_Initialize has run (in this process: a forked child
// starts uninitialised), and the Provider. Every C_ function runs under a shared lock of the
// state; C_Initialize and C_Finalize take it exclusively, so they never race a running call. A
// ReadMostlyMutex: the shared lock writes no line another thread's call writes.
#pragma once

#include <mutex>
#include <shared_mutex>
#include <string>

#include "cdcp11/pkcs11_3_0.h"
#include "common/read_mostly_mutex.h"
#include "core/provider/provider.h"

namespace cdcp11::p11 {

ReadMostlyMutex& state_mutex();
bool initialized();          // in this process
core::Provider& provider();  // valid only while initialized()

CK_RV initialize(CK_VOID_PTR init_args) noexcept;
CK_RV finalize(CK_VOID_PTR reserved) noexcept;

// Maps an internal error to CK_RV and logs the failed call.
CK_RV report(const char* fn, const core::Error& e);
// The CKR of an exception that reached the ABI edge (what: its what(), or null), logged.
CK_RV report_exception(const char* fn, const char* what, CK_RV rv) noexcept;

// Runs f; an exception becomes a CKR and one log line: nothing thrown crosses the C ABI.
template <class F>
CK_RV no_throw(const char* fn, F&& f) noexcept {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return report_exception(fn, nullptr, CKR_HOST_MEMORY);
  } catch (const std::exception& e) {
    return report_exception(fn, e.what(), CKR_GENERAL_ERROR);
  } catch (...) {
    return report_exception(fn, "an unknown exception", CKR_GENERAL_ERROR);
  }
}

// A C_ function of an initialised module: f(provider) under the shared state lock.
template <class F>
CK_RV call(const char* fn, F&& f) noexcept {
  return no_throw(fn, [&]() -> CK_RV {
    std::shared_lock lk(state_mutex());
    if (!initialized()) return CKR_CRYPTOKI_NOT_INITIALIZED;
    core::R<void> r = f(provider());
    if (r) return CKR_OK;
    return report(fn, r.error());
  });
}

}  // namespace cdcp11::p11
