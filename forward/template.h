// What of a core template goes to the HSM: the attributes an application may give. Those the
// token sets (CKA_LOCAL, CKA_KEY_GEN_MECHANISM, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE,
// CKA_UNIQUE_ID) are left to the HSM; the vendor attributes (CKA_CDC_*) go to the metadata store.
#pragma once

#include "core/attributes.h"

namespace cdcp11::forward {

core::AttrMap hsm_template(const core::AttrMap& attrs, core::AttrMap& vendor);

// The locator of an object (see ForwardToken::identify).
std::string locator_of(const core::AttrMap& a);

}  // namespace cdcp11::forward
