// Internal errors of core and the token backends. p11module maps each Errc to one CK_RV
// (p11module/rv.cpp); nothing below the ABI edge returns CK_RV.
#pragma once

#include <string>

#include "common/result.h"

namespace cdcp11::core {

enum class Errc {
  general_error,
  host_memory,
  arguments_bad,
  function_failed,
  not_supported,             // function not supported
  function_not_parallel,     // C_GetFunctionStatus, C_CancelFunction (legacy)
  no_event,                  // C_WaitForSlotEvent with CKF_DONT_BLOCK
  // slots, tokens, sessions
  slot_id_invalid,
  token_not_present,
  token_not_recognized,
  token_write_protected,
  session_handle_invalid,
  session_count,
  session_read_only,
  session_read_only_exists,
  session_read_write_so_exists,
  session_exists,
  session_parallel_not_supported,
  device_error,
  device_memory,             // disk full
  // login
  pin_incorrect,
  pin_invalid,
  pin_len_range,
  pin_locked,
  pin_expired,
  user_already_logged_in,
  user_another_already_logged_in,
  user_not_logged_in,
  user_pin_not_initialized,
  user_type_invalid,
  user_too_many_types,
  operation_not_initialized,
  operation_active,
  // objects and attributes
  object_handle_invalid,
  attribute_read_only,
  attribute_sensitive,
  attribute_type_invalid,
  attribute_value_invalid,
  template_incomplete,
  template_inconsistent,
  action_prohibited,
  // keys and mechanisms
  key_handle_invalid,
  key_type_inconsistent,
  key_size_range,
  key_function_not_permitted,
  key_indigestible,
  key_not_wrappable,
  key_unextractable,
  wrapping_key_handle_invalid,
  wrapping_key_type_inconsistent,
  wrapping_key_size_range,
  unwrapping_key_handle_invalid,
  unwrapping_key_type_inconsistent,
  unwrapping_key_size_range,
  wrapped_key_invalid,
  wrapped_key_len_range,
  mechanism_invalid,
  mechanism_param_invalid,
  curve_not_supported,
  domain_params_invalid,
  data_invalid,
  data_len_range,
  encrypted_data_invalid,
  encrypted_data_len_range,
  signature_invalid,
  signature_len_range,
  buffer_too_small,
  random_no_rng,
};

const char* errc_name(Errc e);

struct Error {
  Errc code = Errc::general_error;
  std::string message;
};

template <class T>
using R = Result<T, Error>;

inline Unexpected<Error> err(Errc c, std::string msg) { return {Error{c, std::move(msg)}}; }

}  // namespace cdcp11::core
