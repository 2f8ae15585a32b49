#include "core/errors.h"

namespace cdcp11::core {

const char* errc_name(Errc e) {
  switch (e) {
#define N(x) case Errc::x: return #x;
    N(general_error) N(host_memory) N(arguments_bad) N(function_failed) N(not_supported)
    N(function_not_parallel) N(no_event)
    N(slot_id_invalid) N(token_not_present) N(token_not_recognized) N(token_write_protected)
    N(session_handle_invalid) N(session_count) N(session_read_only) N(session_read_only_exists)
    N(session_read_write_so_exists) N(session_exists) N(session_parallel_not_supported)
    N(device_error) N(device_memory) N(pin_incorrect) N(pin_invalid) N(pin_len_range) N(pin_locked)
    N(pin_expired) N(user_already_logged_in) N(user_another_already_logged_in) N(user_not_logged_in)
    N(user_pin_not_initialized) N(user_type_invalid) N(user_too_many_types) N(operation_not_initialized)
    N(operation_active) N(object_handle_invalid) N(attribute_read_only) N(attribute_sensitive)
    N(attribute_type_invalid) N(attribute_value_invalid) N(template_incomplete) N(template_inconsistent)
    N(action_prohibited) N(key_handle_invalid) N(key_type_inconsistent) N(key_size_range)
    N(key_function_not_permitted) N(key_indigestible) N(key_not_wrappable) N(key_unextractable)
    N(wrapping_key_handle_invalid) N(wrapping_key_type_inconsistent) N(wrapping_key_size_range)
    N(unwrapping_key_handle_invalid) N(unwrapping_key_type_inconsistent) N(unwrapping_key_size_range)
    N(wrapped_key_invalid) N(wrapped_key_len_range) N(mechanism_invalid) N(mechanism_param_invalid)
    N(curve_not_supported) N(domain_params_invalid) N(data_invalid) N(data_len_range)
    N(encrypted_data_invalid) N(encrypted_data_len_range) N(signature_invalid) N(signature_len_range)
    N(buffer_too_small) N(random_no_rng)
#undef N
  }
  return "unknown";
}

}  // namespace cdcp11::core
