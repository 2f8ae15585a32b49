// The 401 challenge (WWW-Authenticate) of Key Vault and Managed HSM, and the check that decides
// whether a token for the challenge's resource may go to a host.
#include "azure/challenge.h"
#include "azure/util.h"
#include "tests/fuzz/fuzz_common.h"

using namespace cdcp11;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = azure::parse_challenge(text);
  if (!c) return 0;
  if (c->authorization.empty() || (c->resource.empty() && c->scope.empty()))
    fuzz::violated("a challenge without authorization or resource was accepted");
  (void)c->token_scope();
  const std::string rh = c->resource_host();
  for (std::string_view host : {"demo.vault.azure.net", "demo.managedhsm.azure.net", "evil.example.com",
                                "vault.azure.net.evil.example.com"}) {
    if (azure::challenge_matches_host(*c, host) && !azure::ends_with_icase(host, "." + rh))
      fuzz::violated("a token would go to " + std::string(host) + ", outside the resource " + rh);
  }
  return 0;
}
