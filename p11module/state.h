// Process-wide module state: whether C_Initialize has run (in this process: a forked child
// starts uninitialised), and the Library. Every C_ function runs under a shared lock of the
// state; C_Initialize and C_Finalize take it exclusively, so they never race a running call.
#pragma once

#include <shared_mutex>
#include <string>

#include "cdcp11/pkcs11_3_0.h"
#include "core/library.h"

namespace cdcp11::p11 {

std::shared_mutex& state_mutex();
bool initialized();          // in this process
core::Library& library();    // valid only while initialized()

CK_RV initialize(CK_VOID_PTR init_args);
CK_RV finalize(CK_VOID_PTR reserved);

// Maps an internal error to CK_RV and logs the failed call.
CK_RV report(const char* fn, const core::Error& e);

template <class F>
CK_RV call(const char* fn, F&& f) {
  try {
    std::shared_lock lk(state_mutex());
    if (!initialized()) return CKR_CRYPTOKI_NOT_INITIALIZED;
    core::R<void> r = f(library());
    if (r) return CKR_OK;
    return report(fn, r.error());
  } catch (const std::bad_alloc&) {
    return CKR_HOST_MEMORY;
  } catch (...) {
    return CKR_GENERAL_ERROR;
  }
}

}  // namespace cdcp11::p11
