// Error answers of Key Vault, ARM and Entra ID: service_error and entra_error on a status, a few
// headers and a body; Retry-After and its millisecond variants.
#include <chrono>

#include "azure/auth.h"
#include "azure/retry.h"
#include "azure/service_error.h"
#include "tests/fuzz/fuzz_common.h"

using namespace cdcp11;

namespace {

constexpr long kStatuses[] = {400, 401, 403, 404, 405, 409, 413, 429, 500, 502, 503, 504};
constexpr const char* kHeaders[] = {"retry-after", "retry-after-ms", "x-ms-retry-after-ms", "x-ms-request-id",
                                    "www-authenticate", "content-type"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Reader in(data, size);
  azure::HttpResponse r;
  const std::uint8_t s = in.u8();
  r.status = s < 240 ? kStatuses[s % std::size(kStatuses)] : static_cast<long>(in.u32() % 1000);
  for (int n = in.u8() % 4; n > 0; --n) {
    std::string name = kHeaders[in.u8() % std::size(kHeaders)];
    std::string value(in.text(in.u8()));
    r.headers.emplace_back(std::move(name), std::move(value));
  }
  r.request_id = r.header("x-ms-request-id");
  const ByteView body = in.rest();
  r.body.assign(body.begin(), body.end());

  azure::Error e = azure::service_error(r, "get key k1", "demo.vault.azure.net", "get", 1);
  if (e.describe().empty() || e.to_log_string().empty()) fuzz::violated("a service error without a sentence");
  azure::ClientCredential cred;
  cred.tenant_id = "7e57a000-0000-4000-8000-000000000001";
  cred.client_id = "c1e47000-0000-4000-8000-000000000001";
  azure::Error t = azure::entra_error(r, cred, "login.microsoftonline.com");
  if (t.describe().empty() || t.to_log_string().empty()) fuzz::violated("a token error without a sentence");
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));
  if (auto d = azure::parse_retry_after(r, now); d && d->count() < 0) fuzz::violated("a negative Retry-After delay");
  return 0;
}
