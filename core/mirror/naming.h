// Azure key names for mirrored keys: Key Vault allows ^[0-9a-zA-Z-]{1,127}$ and compares names
// case-insensitively.
#pragma once

#include <string>

namespace cdcp11::core::mirror {

// The label made into a valid key name: other characters become '-', runs of '-' fold, ends
// are trimmed; fallback when nothing is left (e.g. "key-<id hex>").
std::string key_name_from_label(const std::string& label, const std::string& fallback);

// The n-th candidate when names collide: base, base-2, base-3, ... (kept within 127 chars).
std::string candidate_name(const std::string& base, unsigned n);

bool valid_key_name(const std::string& name);

}  // namespace cdcp11::core::mirror
