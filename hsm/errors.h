// Errors of the HSM client. The HSM's own CK_RV is kept beside the internal Errc so the layer
// above can pass an HSM's answer (CKR_PIN_LOCKED, CKR_KEY_UNEXTRACTABLE, ...) through unchanged,
// even one that has no Errc of its own. Converts to core::Error where core code wants one.
#pragma once

#include <new>
#include <string>
#include <string_view>

#include "cdcp11/pkcs11_3_0.h"
#include "core/errors.h"

namespace cdcp11::hsm {

struct Error {
  CK_RV rv = CKR_GENERAL_ERROR;  // the HSM's return value, or the CKR our own failure stands for
  core::Errc code = core::Errc::general_error;
  std::string message;

  operator core::Error() const& { return {code, message}; }
  operator core::Error() && { return {code, std::move(message)}; }
};

template <class T>
using R = Result<T, Error>;

const char* rv_name(CK_RV rv);
// The Errc a CK_RV stands for; CKRs with no Errc of their own map to general_error.
core::Errc errc_from_rv(CK_RV rv);

// An HSM function failed: "<fn>: <CKR_NAME>[ (<context>)]". Logged at debug only: the layer
// that reports the error logs it (a wrong PIN is an answer, not a fault).
Unexpected<Error> call_failed(std::string_view fn, CK_RV rv, std::string_view context = {});
// A failure of ours (bad argument, module not loadable): rv is the CKR it stands for.
Unexpected<Error> local_failure(CK_RV rv, std::string message);

// Runs f, turning an escaping exception (allocation failure) into an error value: nothing
// leaves this library as an exception.
template <class F>
auto guarded(F&& f) noexcept -> decltype(f()) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return fail(Error{CKR_HOST_MEMORY, core::Errc::host_memory, "out of memory"});
  } catch (...) {
    return fail(Error{CKR_GENERAL_ERROR, core::Errc::general_error, "unexpected exception"});
  }
}

}  // namespace cdcp11::hsm
