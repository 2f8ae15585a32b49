// The soft token the record and meta targets feed: opened once per process in a scratch
// directory, with a second store on it that plays another process writing records.
#pragma once

#include <memory>

#include "core/config.h"
#include "softtoken/crypto/backend.h"
#include "softtoken/soft_token.h"
#include "softtoken/store/object_store.h"
#include "tests/fuzz/fuzz_common.h"

namespace cdcp11::fuzz {

struct SoftTokenUnderTest {
  std::unique_ptr<store::ObjectStore> writer;
  std::unique_ptr<softtoken::SoftToken> token;
};

// tag names the scratch directory; max_pin_retries 0 keeps no PIN counter to write.
inline SoftTokenUnderTest& soft_token(const char* tag, unsigned max_pin_retries) {
  static SoftTokenUnderTest* t = [&] {
    quiet_logs();
    auto* t = new SoftTokenUnderTest;
    core::GroupConfig g;
    g.name = "fuzz";
    g.token.dir = scratch_dir(tag) + "/token";
    g.token.kdf_scrypt_log2_n = 10;
    g.token.max_pin_retries = max_pin_retries;
    auto st = softtoken::SoftToken::open(g, crypto::default_backend());
    if (!st) violated("cannot open the soft token: " + st.error().message);
    t->token = std::move(*st);
    auto w = store::ObjectStore::open(g.token.dir, false);
    if (!w) violated("cannot open the store: " + w.error().message);
    t->writer = std::move(*w);
    return t;
  }();
  return *t;
}

}  // namespace cdcp11::fuzz
