// The token's meta record (JSON): decode_meta, the re-encoding round trip, and the soft token
// reading it back (status, and a login, which derives a key with the record's scrypt cost).
#include <memory>

#include "softtoken/crypto/backend.h"
#include "softtoken/soft_token.h"
#include "softtoken/store/object_store.h"
#include "softtoken/token_meta.h"
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_soft_token.h"

using namespace cdcp11;

namespace {

fuzz::SoftTokenUnderTest& token() { return fuzz::soft_token("meta", 0); }

// A login costs one scrypt at the record's cost. Costs the configuration accepts above its
// minimum (11..22, up to 512 MiB and seconds each) are legitimate and too slow to fuzz; below and
// above that range the token must refuse or finish quickly.
bool cheap_cost(unsigned log2_n) { return log2_n <= 10 || log2_n > 22; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteView json(data, size);
  auto m = softtoken::decode_meta(json);
  if (m) {
    const std::string enc = softtoken::encode_meta(*m);
    auto again = softtoken::decode_meta(view(enc));
    if (!again) fuzz::violated("an encoded meta record does not decode: " + again.error().message);
    if (again->token_id != m->token_id || again->label != m->label || again->so.salt != m->so.salt ||
        again->so.log2_n != m->so.log2_n || again->user.has_value() != m->user.has_value())
      fuzz::violated("a meta record does not survive encode/decode");
  }
  fuzz::SoftTokenUnderTest& t = token();
  if (!t.writer->write_meta(json)) fuzz::violated("cannot write the meta record");
  (void)t.token->refresh();
  (void)t.token->status();
  if (m && cheap_cost(m->so.log2_n)) (void)t.token->login(CKU_SO, view("12345678"));
  if (m && m->user && cheap_cost(m->user->log2_n)) {
    (void)t.token->login(CKU_USER, view("1234"));
    t.token->logout();
  }
  return 0;
}
