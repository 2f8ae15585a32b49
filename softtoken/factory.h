// Makes the authoritative store a group's configuration asks for. Today only the software token
// ("soft"); a backend forwarding to another PKCS#11 module (an HSM) is added here, behind the
// same core::TokenBackend interface, without touching p11module/.
#pragma once

#include <memory>

#include "core/config.h"
#include "core/token_backend.h"

namespace cdcp11::softtoken {

core::R<std::unique_ptr<core::TokenBackend>> make_token_backend(const core::GroupConfig& group);

}  // namespace cdcp11::softtoken
