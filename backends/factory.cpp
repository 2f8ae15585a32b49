#include "backends/factory.h"

#include "forward/forward_token.h"
#include "softtoken/crypto/backend.h"
#include "softtoken/soft_token.h"

namespace cdcp11::backends {

core::R<std::unique_ptr<core::Backend>> make_token_backend(const core::GroupConfig& g) {
  if (g.token.backend == "soft") {
    auto t = softtoken::SoftToken::open(g, crypto::default_backend());
    if (!t) return fail(std::move(t).error());
    return std::unique_ptr<core::Backend>(std::move(*t));
  }
  if (g.token.backend == "pkcs11") {
    auto t = forward::ForwardToken::open(g);
    if (!t) return fail(std::move(t).error());
    return std::unique_ptr<core::Backend>(std::move(*t));
  }
  return core::err(core::Errc::token_not_present, "token backend '" + g.token.backend + "' is not available");
}

}  // namespace cdcp11::backends
