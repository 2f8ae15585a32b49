// Makes the token backend a group's configuration names: the software token ("soft") or a token
// of another PKCS#11 module ("pkcs11", forward/). The one place that sees every backend.
#pragma once

#include <memory>

#include "core/config.h"
#include "core/backend.h"

namespace cdcp11::backends {

core::R<std::unique_ptr<core::Backend>> make_token_backend(const core::GroupConfig& group);

}  // namespace cdcp11::backends
