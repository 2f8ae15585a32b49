#include "p11module/rv.h"

#include <cstdio>

namespace cdcp11::p11 {

using core::Errc;

CK_RV to_rv(Errc e) {
  switch (e) {
    case Errc::general_error: return CKR_GENERAL_ERROR;
    case Errc::host_memory: return CKR_HOST_MEMORY;
    case Errc::arguments_bad: return CKR_ARGUMENTS_BAD;
    case Errc::function_failed: return CKR_FUNCTION_FAILED;
    case Errc::not_supported: return CKR_FUNCTION_NOT_SUPPORTED;
    case Errc::function_not_parallel: return CKR_FUNCTION_NOT_PARALLEL;
    case Errc::no_event: return CKR_NO_EVENT;
    case Errc::slot_id_invalid: return CKR_SLOT_ID_INVALID;
    case Errc::token_not_present: return CKR_TOKEN_NOT_PRESENT;
    case Errc::token_not_recognized: return CKR_TOKEN_NOT_RECOGNIZED;
    case Errc::token_write_protected: return CKR_TOKEN_WRITE_PROTECTED;
    case Errc::session_handle_invalid: return CKR_SESSION_HANDLE_INVALID;
    case Errc::session_count: return CKR_SESSION_COUNT;
    case Errc::session_read_only: return CKR_SESSION_READ_ONLY;
    case Errc::session_read_only_exists: return CKR_SESSION_READ_ONLY_EXISTS;
    case Errc::session_read_write_so_exists: return CKR_SESSION_READ_WRITE_SO_EXISTS;
    case Errc::session_exists: return CKR_SESSION_EXISTS;
    case Errc::session_parallel_not_supported: return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
    case Errc::device_error: return CKR_DEVICE_ERROR;
    case Errc::device_memory: return CKR_DEVICE_MEMORY;
    case Errc::pin_incorrect: return CKR_PIN_INCORRECT;
    case Errc::pin_invalid: return CKR_PIN_INVALID;
    case Errc::pin_len_range: return CKR_PIN_LEN_RANGE;
    case Errc::pin_locked: return CKR_PIN_LOCKED;
    case Errc::pin_expired: return CKR_PIN_EXPIRED;
    case Errc::user_already_logged_in: return CKR_USER_ALREADY_LOGGED_IN;
    case Errc::user_another_already_logged_in: return CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
    case Errc::user_not_logged_in: return CKR_USER_NOT_LOGGED_IN;
    case Errc::user_pin_not_initialized: return CKR_USER_PIN_NOT_INITIALIZED;
    case Errc::user_type_invalid: return CKR_USER_TYPE_INVALID;
    case Errc::user_too_many_types: return CKR_USER_TOO_MANY_TYPES;
    case Errc::operation_not_initialized: return CKR_OPERATION_NOT_INITIALIZED;
    case Errc::operation_active: return CKR_OPERATION_ACTIVE;
    case Errc::object_handle_invalid: return CKR_OBJECT_HANDLE_INVALID;
    case Errc::attribute_read_only: return CKR_ATTRIBUTE_READ_ONLY;
    case Errc::attribute_sensitive: return CKR_ATTRIBUTE_SENSITIVE;
    case Errc::attribute_type_invalid: return CKR_ATTRIBUTE_TYPE_INVALID;
    case Errc::attribute_value_invalid: return CKR_ATTRIBUTE_VALUE_INVALID;
    case Errc::template_incomplete: return CKR_TEMPLATE_INCOMPLETE;
    case Errc::template_inconsistent: return CKR_TEMPLATE_INCONSISTENT;
    case Errc::action_prohibited: return CKR_ACTION_PROHIBITED;
    case Errc::key_handle_invalid: return CKR_KEY_HANDLE_INVALID;
    case Errc::key_type_inconsistent: return CKR_KEY_TYPE_INCONSISTENT;
    case Errc::key_size_range: return CKR_KEY_SIZE_RANGE;
    case Errc::key_function_not_permitted: return CKR_KEY_FUNCTION_NOT_PERMITTED;
    case Errc::key_indigestible: return CKR_KEY_INDIGESTIBLE;
    case Errc::key_not_wrappable: return CKR_KEY_NOT_WRAPPABLE;
    case Errc::key_unextractable: return CKR_KEY_UNEXTRACTABLE;
    case Errc::wrapping_key_handle_invalid: return CKR_WRAPPING_KEY_HANDLE_INVALID;
    case Errc::wrapping_key_type_inconsistent: return CKR_WRAPPING_KEY_TYPE_INCONSISTENT;
    case Errc::wrapping_key_size_range: return CKR_WRAPPING_KEY_SIZE_RANGE;
    case Errc::unwrapping_key_handle_invalid: return CKR_UNWRAPPING_KEY_HANDLE_INVALID;
    case Errc::unwrapping_key_type_inconsistent: return CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT;
    case Errc::unwrapping_key_size_range: return CKR_UNWRAPPING_KEY_SIZE_RANGE;
    case Errc::wrapped_key_invalid: return CKR_WRAPPED_KEY_INVALID;
    case Errc::wrapped_key_len_range: return CKR_WRAPPED_KEY_LEN_RANGE;
    case Errc::mechanism_invalid: return CKR_MECHANISM_INVALID;
    case Errc::mechanism_param_invalid: return CKR_MECHANISM_PARAM_INVALID;
    case Errc::curve_not_supported: return CKR_CURVE_NOT_SUPPORTED;
    case Errc::domain_params_invalid: return CKR_DOMAIN_PARAMS_INVALID;
    case Errc::data_invalid: return CKR_DATA_INVALID;
    case Errc::data_len_range: return CKR_DATA_LEN_RANGE;
    case Errc::encrypted_data_invalid: return CKR_ENCRYPTED_DATA_INVALID;
    case Errc::encrypted_data_len_range: return CKR_ENCRYPTED_DATA_LEN_RANGE;
    case Errc::signature_invalid: return CKR_SIGNATURE_INVALID;
    case Errc::signature_len_range: return CKR_SIGNATURE_LEN_RANGE;
    case Errc::buffer_too_small: return CKR_BUFFER_TOO_SMALL;
    case Errc::random_no_rng: return CKR_RANDOM_NO_RNG;
  }
  return CKR_GENERAL_ERROR;
}

const char* rv_name(CK_RV rv) {
  switch (rv) {
#define N(x) case x: return #x;
    N(CKR_OK) N(CKR_CANCEL) N(CKR_HOST_MEMORY) N(CKR_SLOT_ID_INVALID) N(CKR_GENERAL_ERROR)
    N(CKR_FUNCTION_FAILED) N(CKR_ARGUMENTS_BAD) N(CKR_NO_EVENT) N(CKR_NEED_TO_CREATE_THREADS)
    N(CKR_CANT_LOCK) N(CKR_ATTRIBUTE_READ_ONLY) N(CKR_ATTRIBUTE_SENSITIVE) N(CKR_ATTRIBUTE_TYPE_INVALID)
    N(CKR_ATTRIBUTE_VALUE_INVALID) N(CKR_ACTION_PROHIBITED) N(CKR_DATA_INVALID) N(CKR_DATA_LEN_RANGE)
    N(CKR_DEVICE_ERROR) N(CKR_DEVICE_MEMORY) N(CKR_DEVICE_REMOVED) N(CKR_ENCRYPTED_DATA_INVALID)
    N(CKR_ENCRYPTED_DATA_LEN_RANGE) N(CKR_FUNCTION_CANCELED) N(CKR_FUNCTION_NOT_PARALLEL)
    N(CKR_FUNCTION_NOT_SUPPORTED) N(CKR_KEY_HANDLE_INVALID) N(CKR_KEY_SIZE_RANGE)
    N(CKR_KEY_TYPE_INCONSISTENT) N(CKR_KEY_NOT_NEEDED) N(CKR_KEY_CHANGED) N(CKR_KEY_NEEDED)
    N(CKR_KEY_INDIGESTIBLE) N(CKR_KEY_FUNCTION_NOT_PERMITTED) N(CKR_KEY_NOT_WRAPPABLE)
    N(CKR_KEY_UNEXTRACTABLE) N(CKR_MECHANISM_INVALID) N(CKR_MECHANISM_PARAM_INVALID)
    N(CKR_OBJECT_HANDLE_INVALID) N(CKR_OPERATION_ACTIVE) N(CKR_OPERATION_NOT_INITIALIZED)
    N(CKR_PIN_INCORRECT) N(CKR_PIN_INVALID) N(CKR_PIN_LEN_RANGE) N(CKR_PIN_EXPIRED) N(CKR_PIN_LOCKED)
    N(CKR_SESSION_CLOSED) N(CKR_SESSION_COUNT) N(CKR_SESSION_HANDLE_INVALID)
    N(CKR_SESSION_PARALLEL_NOT_SUPPORTED) N(CKR_SESSION_READ_ONLY) N(CKR_SESSION_EXISTS)
    N(CKR_SESSION_READ_ONLY_EXISTS) N(CKR_SESSION_READ_WRITE_SO_EXISTS) N(CKR_SIGNATURE_INVALID)
    N(CKR_SIGNATURE_LEN_RANGE) N(CKR_TEMPLATE_INCOMPLETE) N(CKR_TEMPLATE_INCONSISTENT)
    N(CKR_TOKEN_NOT_PRESENT) N(CKR_TOKEN_NOT_RECOGNIZED) N(CKR_TOKEN_WRITE_PROTECTED)
    N(CKR_UNWRAPPING_KEY_HANDLE_INVALID) N(CKR_UNWRAPPING_KEY_SIZE_RANGE)
    N(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT) N(CKR_USER_ALREADY_LOGGED_IN) N(CKR_USER_NOT_LOGGED_IN)
    N(CKR_USER_PIN_NOT_INITIALIZED) N(CKR_USER_TYPE_INVALID) N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
    N(CKR_USER_TOO_MANY_TYPES) N(CKR_WRAPPED_KEY_INVALID) N(CKR_WRAPPED_KEY_LEN_RANGE)
    N(CKR_WRAPPING_KEY_HANDLE_INVALID) N(CKR_WRAPPING_KEY_SIZE_RANGE)
    N(CKR_WRAPPING_KEY_TYPE_INCONSISTENT) N(CKR_RANDOM_SEED_NOT_SUPPORTED) N(CKR_RANDOM_NO_RNG)
    N(CKR_DOMAIN_PARAMS_INVALID) N(CKR_CURVE_NOT_SUPPORTED) N(CKR_BUFFER_TOO_SMALL)
    N(CKR_SAVED_STATE_INVALID) N(CKR_INFORMATION_SENSITIVE) N(CKR_STATE_UNSAVEABLE)
    N(CKR_CRYPTOKI_NOT_INITIALIZED) N(CKR_CRYPTOKI_ALREADY_INITIALIZED) N(CKR_MUTEX_BAD)
    N(CKR_MUTEX_NOT_LOCKED) N(CKR_FUNCTION_REJECTED)
#undef N
  }
  thread_local char buf[24];
  std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(rv));
  return buf;
}

}  // namespace cdcp11::p11
