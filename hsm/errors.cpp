#include "hsm/errors.h"

#include <cstdio>

#include "common/log.h"

namespace cdcp11::hsm {

using core::Errc;

const char* rv_name(CK_RV rv) {
  switch (rv) {
#define N(x) case x: return #x;
    N(CKR_OK) N(CKR_CANCEL) N(CKR_HOST_MEMORY) N(CKR_SLOT_ID_INVALID) N(CKR_GENERAL_ERROR)
    N(CKR_FUNCTION_FAILED) N(CKR_ARGUMENTS_BAD) N(CKR_NO_EVENT) N(CKR_NEED_TO_CREATE_THREADS)
    N(CKR_CANT_LOCK) N(CKR_ATTRIBUTE_READ_ONLY) N(CKR_ATTRIBUTE_SENSITIVE)
    N(CKR_ATTRIBUTE_TYPE_INVALID) N(CKR_ATTRIBUTE_VALUE_INVALID) N(CKR_ACTION_PROHIBITED)
    N(CKR_DATA_INVALID) N(CKR_DATA_LEN_RANGE) N(CKR_DEVICE_ERROR) N(CKR_DEVICE_MEMORY)
    N(CKR_DEVICE_REMOVED) N(CKR_ENCRYPTED_DATA_INVALID) N(CKR_ENCRYPTED_DATA_LEN_RANGE)
    N(CKR_FUNCTION_CANCELED) N(CKR_FUNCTION_NOT_PARALLEL) N(CKR_FUNCTION_NOT_SUPPORTED)
    N(CKR_KEY_HANDLE_INVALID) N(CKR_KEY_SIZE_RANGE) N(CKR_KEY_TYPE_INCONSISTENT)
    N(CKR_KEY_NOT_NEEDED) N(CKR_KEY_CHANGED) N(CKR_KEY_NEEDED) N(CKR_KEY_INDIGESTIBLE)
    N(CKR_KEY_FUNCTION_NOT_PERMITTED) N(CKR_KEY_NOT_WRAPPABLE) N(CKR_KEY_UNEXTRACTABLE)
    N(CKR_MECHANISM_INVALID) N(CKR_MECHANISM_PARAM_INVALID) N(CKR_OBJECT_HANDLE_INVALID)
    N(CKR_OPERATION_ACTIVE) N(CKR_OPERATION_NOT_INITIALIZED) N(CKR_PIN_INCORRECT)
    N(CKR_PIN_INVALID) N(CKR_PIN_LEN_RANGE) N(CKR_PIN_EXPIRED) N(CKR_PIN_LOCKED)
    N(CKR_SESSION_CLOSED) N(CKR_SESSION_COUNT) N(CKR_SESSION_HANDLE_INVALID)
    N(CKR_SESSION_PARALLEL_NOT_SUPPORTED) N(CKR_SESSION_READ_ONLY) N(CKR_SESSION_EXISTS)
    N(CKR_SESSION_READ_ONLY_EXISTS) N(CKR_SESSION_READ_WRITE_SO_EXISTS) N(CKR_SIGNATURE_INVALID)
    N(CKR_SIGNATURE_LEN_RANGE) N(CKR_TEMPLATE_INCOMPLETE) N(CKR_TEMPLATE_INCONSISTENT)
    N(CKR_TOKEN_NOT_PRESENT) N(CKR_TOKEN_NOT_RECOGNIZED) N(CKR_TOKEN_WRITE_PROTECTED)
    N(CKR_UNWRAPPING_KEY_HANDLE_INVALID) N(CKR_UNWRAPPING_KEY_SIZE_RANGE)
    N(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT) N(CKR_USER_ALREADY_LOGGED_IN)
    N(CKR_USER_NOT_LOGGED_IN) N(CKR_USER_PIN_NOT_INITIALIZED) N(CKR_USER_TYPE_INVALID)
    N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN) N(CKR_USER_TOO_MANY_TYPES) N(CKR_WRAPPED_KEY_INVALID)
    N(CKR_WRAPPED_KEY_LEN_RANGE) N(CKR_WRAPPING_KEY_HANDLE_INVALID)
    N(CKR_WRAPPING_KEY_SIZE_RANGE) N(CKR_WRAPPING_KEY_TYPE_INCONSISTENT)
    N(CKR_RANDOM_SEED_NOT_SUPPORTED) N(CKR_RANDOM_NO_RNG) N(CKR_DOMAIN_PARAMS_INVALID)
    N(CKR_CURVE_NOT_SUPPORTED) N(CKR_BUFFER_TOO_SMALL) N(CKR_SAVED_STATE_INVALID)
    N(CKR_INFORMATION_SENSITIVE) N(CKR_STATE_UNSAVEABLE) N(CKR_CRYPTOKI_NOT_INITIALIZED)
    N(CKR_CRYPTOKI_ALREADY_INITIALIZED) N(CKR_MUTEX_BAD) N(CKR_MUTEX_NOT_LOCKED)
    N(CKR_NEW_PIN_MODE) N(CKR_NEXT_OTP) N(CKR_EXCEEDED_MAX_ITERATIONS)
    N(CKR_FIPS_SELF_TEST_FAILED) N(CKR_LIBRARY_LOAD_FAILED) N(CKR_PIN_TOO_WEAK)
    N(CKR_PUBLIC_KEY_INVALID) N(CKR_FUNCTION_REJECTED) N(CKR_OPERATION_CANCEL_FAILED)
#undef N
    case 0x201: return "CKR_TOKEN_RESOURCE_EXCEEDED";
    case 0x203: return "CKR_KEY_EXHAUSTED";
  }
  thread_local char buf[40];
  if (rv >= CKR_VENDOR_DEFINED)
    std::snprintf(buf, sizeof buf, "CKR_VENDOR_DEFINED+0x%lx",
                  static_cast<unsigned long>(rv - CKR_VENDOR_DEFINED));
  else
    std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(rv));
  return buf;
}

Errc errc_from_rv(CK_RV rv) {
  switch (rv) {
    case CKR_HOST_MEMORY: return Errc::host_memory;
    case CKR_ARGUMENTS_BAD: return Errc::arguments_bad;
    case CKR_FUNCTION_FAILED: return Errc::function_failed;
    case CKR_FUNCTION_NOT_SUPPORTED: return Errc::not_supported;
    case CKR_SLOT_ID_INVALID: return Errc::slot_id_invalid;
    case CKR_TOKEN_NOT_PRESENT: return Errc::token_not_present;
    case CKR_TOKEN_NOT_RECOGNIZED: return Errc::token_not_recognized;
    case CKR_TOKEN_WRITE_PROTECTED: return Errc::token_write_protected;
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED: return Errc::session_handle_invalid;
    case CKR_SESSION_COUNT: return Errc::session_count;
    case CKR_SESSION_READ_ONLY: return Errc::session_read_only;
    case CKR_SESSION_READ_ONLY_EXISTS: return Errc::session_read_only_exists;
    case CKR_SESSION_READ_WRITE_SO_EXISTS: return Errc::session_read_write_so_exists;
    case CKR_SESSION_EXISTS: return Errc::session_exists;
    case CKR_SESSION_PARALLEL_NOT_SUPPORTED: return Errc::session_parallel_not_supported;
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_REMOVED: return Errc::device_error;
    case CKR_DEVICE_MEMORY: return Errc::device_memory;
    case CKR_PIN_INCORRECT: return Errc::pin_incorrect;
    case CKR_PIN_INVALID: return Errc::pin_invalid;
    case CKR_PIN_LEN_RANGE: return Errc::pin_len_range;
    case CKR_PIN_LOCKED: return Errc::pin_locked;
    case CKR_PIN_EXPIRED: return Errc::pin_expired;
    case CKR_USER_ALREADY_LOGGED_IN: return Errc::user_already_logged_in;
    case CKR_USER_ANOTHER_ALREADY_LOGGED_IN: return Errc::user_another_already_logged_in;
    case CKR_USER_NOT_LOGGED_IN: return Errc::user_not_logged_in;
    case CKR_USER_PIN_NOT_INITIALIZED: return Errc::user_pin_not_initialized;
    case CKR_USER_TYPE_INVALID: return Errc::user_type_invalid;
    case CKR_USER_TOO_MANY_TYPES: return Errc::user_too_many_types;
    case CKR_OPERATION_NOT_INITIALIZED: return Errc::operation_not_initialized;
    case CKR_OPERATION_ACTIVE: return Errc::operation_active;
    case CKR_OBJECT_HANDLE_INVALID: return Errc::object_handle_invalid;
    case CKR_ATTRIBUTE_READ_ONLY: return Errc::attribute_read_only;
    case CKR_ATTRIBUTE_SENSITIVE: return Errc::attribute_sensitive;
    case CKR_ATTRIBUTE_TYPE_INVALID: return Errc::attribute_type_invalid;
    case CKR_ATTRIBUTE_VALUE_INVALID: return Errc::attribute_value_invalid;
    case CKR_TEMPLATE_INCOMPLETE: return Errc::template_incomplete;
    case CKR_TEMPLATE_INCONSISTENT: return Errc::template_inconsistent;
    case CKR_ACTION_PROHIBITED: return Errc::action_prohibited;
    case CKR_KEY_HANDLE_INVALID: return Errc::key_handle_invalid;
    case CKR_KEY_TYPE_INCONSISTENT: return Errc::key_type_inconsistent;
    case CKR_KEY_SIZE_RANGE: return Errc::key_size_range;
    case CKR_KEY_FUNCTION_NOT_PERMITTED: return Errc::key_function_not_permitted;
    case CKR_KEY_NOT_WRAPPABLE: return Errc::key_not_wrappable;
    case CKR_KEY_UNEXTRACTABLE: return Errc::key_unextractable;
    case CKR_WRAPPING_KEY_HANDLE_INVALID: return Errc::wrapping_key_handle_invalid;
    case CKR_WRAPPING_KEY_TYPE_INCONSISTENT: return Errc::wrapping_key_type_inconsistent;
    case CKR_WRAPPING_KEY_SIZE_RANGE: return Errc::wrapping_key_size_range;
    case CKR_UNWRAPPING_KEY_HANDLE_INVALID: return Errc::unwrapping_key_handle_invalid;
    case CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT: return Errc::unwrapping_key_type_inconsistent;
    case CKR_UNWRAPPING_KEY_SIZE_RANGE: return Errc::unwrapping_key_size_range;
    case CKR_WRAPPED_KEY_INVALID: return Errc::wrapped_key_invalid;
    case CKR_WRAPPED_KEY_LEN_RANGE: return Errc::wrapped_key_len_range;
    case CKR_MECHANISM_INVALID: return Errc::mechanism_invalid;
    case CKR_MECHANISM_PARAM_INVALID: return Errc::mechanism_param_invalid;
    case CKR_CURVE_NOT_SUPPORTED: return Errc::curve_not_supported;
    case CKR_DOMAIN_PARAMS_INVALID: return Errc::domain_params_invalid;
    case CKR_DATA_INVALID: return Errc::data_invalid;
    case CKR_DATA_LEN_RANGE: return Errc::data_len_range;
    case CKR_ENCRYPTED_DATA_INVALID: return Errc::encrypted_data_invalid;
    case CKR_ENCRYPTED_DATA_LEN_RANGE: return Errc::encrypted_data_len_range;
    case CKR_SIGNATURE_INVALID: return Errc::signature_invalid;
    case CKR_SIGNATURE_LEN_RANGE: return Errc::signature_len_range;
    case CKR_BUFFER_TOO_SMALL: return Errc::buffer_too_small;
    case CKR_RANDOM_NO_RNG: return Errc::random_no_rng;
    default: return Errc::general_error;
  }
}

Unexpected<Error> call_failed(std::string_view fn, CK_RV rv, std::string_view context) {
  std::string msg(fn);
  msg += ": ";
  msg += rv_name(rv);
  if (!context.empty()) {
    msg += " (";
    msg += context;
    msg += ')';
  }
  log::debug("hsm", msg);
  return fail(Error{rv, errc_from_rv(rv), std::move(msg)});
}

Unexpected<Error> local_failure(CK_RV rv, std::string message) {
  log::debug("hsm", message);
  return fail(Error{rv, errc_from_rv(rv), std::move(message)});
}

}  // namespace cdcp11::hsm
