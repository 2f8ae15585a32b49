// Token record parsers: what the soft token reads back from disk. The first byte picks the layer:
//   'E' a whole record file (header, length, CRC-32C: store::decode_record)
//   'T' an object record payload, stored with a valid header and read back by the soft token
//       (SoftToken's record format, then core::AttrMap::deserialize)
//   'S' the plaintext of sealed secrets (deserialize_secrets)
//   'L' the store's lock file (generation counter and change journal), then a refresh
//   anything else: an attribute list (core::AttrMap::deserialize)
#include <memory>

#include "core/attributes.h"
#include "softtoken/crypto/backend.h"
#include "softtoken/key_material.h"
#include "softtoken/soft_token.h"
#include "softtoken/store/object_store.h"
#include "softtoken/store/record_format.h"
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_soft_token.h"

using namespace cdcp11;

namespace {

constexpr const char* kUid = "0123456789abcdef0123456789abcdef";

fuzz::SoftTokenUnderTest& token() { return fuzz::soft_token("record", 10); }

struct LockStore {
  std::string dir;
  std::unique_ptr<store::ObjectStore> st;
};

LockStore& lock_store() {
  static LockStore* s = [] {
    auto* s = new LockStore;
    s->dir = fuzz::scratch_dir("lock") + "/token";
    auto st = store::ObjectStore::open(s->dir, true);
    if (!st) fuzz::violated("cannot open the store: " + st.error().message);
    s->st = std::move(*st);
    if (!s->st->put(kUid, view("record"))) fuzz::violated("cannot write a record");
    return s;
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Reader in(data, size);
  const std::uint8_t layer = in.u8();
  const ByteView rest = in.rest();
  switch (layer) {
    case 'E': {
      auto r = store::decode_record(kUid, rest);
      if (r && store::encode_record(kUid, *r) != to_bytes(rest))
        fuzz::violated("a record that decodes does not re-encode to the same bytes");
      break;
    }
    case 'T': {
      fuzz::SoftTokenUnderTest& t = token();
      if (!t.writer->put(kUid, rest)) fuzz::violated("cannot store the record");
      (void)t.token->refresh();
      (void)t.token->object_size(kUid);
      if (!t.writer->remove(kUid)) fuzz::violated("cannot remove the record");
      (void)t.token->refresh();
      break;
    }
    case 'S': {
      auto s = softtoken::deserialize_secrets(rest);
      if (s) {
        auto again = softtoken::deserialize_secrets(softtoken::serialize_secrets(*s));
        if (!again || *again != *s) fuzz::violated("secrets do not survive serialize/deserialize");
      }
      break;
    }
    case 'L': {
      LockStore& s = lock_store();
      fuzz::write_file(s.dir + "/lock", rest);
      (void)s.st->refresh();
      (void)s.st->get(kUid);
      break;
    }
    default: {
      auto a = core::AttrMap::deserialize(rest);
      if (a) {
        auto again = core::AttrMap::deserialize(a->serialize());
        if (!again || again->map() != a->map()) fuzz::violated("attributes do not survive serialize/deserialize");
      }
    }
  }
  return 0;
}
