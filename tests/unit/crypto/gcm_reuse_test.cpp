// OpenSSL backend: an AES-GCM context with the key's schedule set is kept with the key and
// re-initialised with only the next operation's IV (issue #13, AES-GCM 16 KiB). What it keeps
// lives and dies with the key object; outputs equal a fresh context's whatever came before.
#include <atomic>
#include <thread>
#include <vector>

#include "helpers.h"
#include "softtoken/crypto/openssl/ossl.h"

namespace cdcp11::crypto::test {

namespace {

using CS = CipherParams::Scheme;

CipherParams gcm(Bytes iv, Bytes aad = {}, std::size_t tag_bits = 128) {
  CipherParams p;
  p.scheme = CS::aes_gcm;
  p.iv = std::move(iv);
  p.aad = std::move(aad);
  p.tag_bits = tag_bits;
  return p;
}

// One 16-byte block under the GCM test key, for the tests with threads.
struct OneBlock {
  Backend* b = openssl_backend();
  KeyPtr k = ok(b->load_secret(H("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")));
  const Bytes pt = H("d9313225f88406e5a55909c5aff5269a");
  const CipherParams p = gcm(H("cafebabefacedbaddecaf888"));
  R<SecureBytes> encrypt() const { return run_cipher(*b, k, p, pt, true); }
};

std::size_t pooled(const KeyPtr& k) {
  auto o = ossl::as_ossl(k);
  REQUIRE(o);
  REQUIRE((*o)->gcm_pool);
  return (*o)->gcm_pool->size();
}

}  // namespace

TEST_CASE("OpenSSL AES-GCM: the key keeps its context for the next operation; outputs equal a fresh key's") {
  Backend* b = openssl_backend();
  REQUIRE(b);
  const Bytes key = H("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
  const Bytes pt = random_bytes(1000);
  auto k = ok(b->load_secret(key));
  CHECK(pooled(k) == 0);

  // Each step against a fresh key object (a fresh context): encryptions and decryptions in turn,
  // other AAD and tag lengths, a 16-byte IV (not pooled), a failed decryption, an abandoned one.
  struct Step {
    CipherParams p;
    bool enc;
  };
  const Step steps[] = {
      {gcm(H("cafebabefacedbaddecaf888")), true},
      {gcm(H("000102030405060708090a0b"), H("feedface"), 96), true},
      {gcm(H("0f0e0d0c0b0a090807060504"), {}, 32), true},
      {gcm(H("000102030405060708090a0b0c0d0e0f")), true},
      {gcm(H("cafebabefacedbaddecaf888"), H("abad")), true},
  };
  for (const auto& s : steps) {
    auto fresh = ok(b->load_secret(key));
    const SecureBytes want = ok(run_cipher(*b, fresh, s.p, pt, true));
    CHECK(hex(ok(run_cipher(*b, k, s.p, pt, true))) == hex(want));
    CHECK(hex(ok(run_cipher(*b, k, s.p, want, false))) == hex(pt));
    Bytes bad(want.begin(), want.end());
    bad.back() ^= 1;
    CHECK_FALSE(run_cipher(*b, k, s.p, bad, false));
    {
      auto abandoned = ok(b->encryptor(k, s.p));
      (void)ok(abandoned->update(ByteView(pt).first(100)));
    }
  }
  // A failed or abandoned operation frees its context; one that finished well gives it back.
  CHECK(pooled(k) == 0);
  (void)ok(run_cipher(*b, k, steps[0].p, pt, true));
  (void)ok(run_cipher(*b, k, steps[0].p, pt, true));
  CHECK(pooled(k) == 1);  // one operation at a time: one context, taken and given back

  // Two operations at once take two; both come back.
  {
    auto a = ok(b->encryptor(k, gcm(H("cafebabefacedbaddecaf888"))));
    auto c = ok(b->encryptor(k, gcm(H("cafebabefacedbaddecaf889"))));
    CHECK(pooled(k) == 0);
    (void)ok(a->finish());
    (void)ok(c->finish());
  }
  CHECK(pooled(k) == 2);

  // An operation that outlives its key object: the pool, and every context with the key's
  // schedule, go when that operation ends.
  auto late = ok(b->encryptor(k, gcm(H("cafebabefacedbaddecaf888"))));
  std::weak_ptr<ossl::GcmCtxPool> pool = (*ossl::as_ossl(k))->gcm_pool;
  std::weak_ptr<ossl::GcmCtxShelf> shelf = (*ossl::as_ossl(k))->gcm_pool->shelf();
  k.reset();
  CHECK(pool.expired());
  CHECK_FALSE(shelf.expired());  // the operation's, to give its context back to
  (void)ok(late->finish());
  late.reset();
  CHECK(shelf.expired());
}

TEST_CASE("OpenSSL AES-GCM: threads on one key each keep using a context of their own") {
  OneBlock one;
  const SecureBytes want = ok(one.encrypt());
  std::vector<std::thread> ts;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 200; ++i)
        if (auto r = one.encrypt(); !r || *r != want) ++wrong;
    });
  for (auto& t : ts) t.join();
  CHECK(wrong.load() == 0);
  CHECK(pooled(one.k) >= 1);
  CHECK(pooled(one.k) <= 8);
}

TEST_CASE("OpenSSL AES-GCM: a thread makes contexts of its own rather than take one another thread's shelf holds") {
  OneBlock one;
  const auto pool = (*ossl::as_ossl(one.k))->gcm_pool;
  REQUIRE(pool);
  auto one_call_on_a_new_thread = [&] {
    const ossl::GcmCtxShelf* shelf = nullptr;
    bool done = false;
    std::thread([&] {
      done = static_cast<bool>(one.encrypt());
      shelf = pool->shelf().get();
    }).join();
    REQUIRE(done);
    return shelf;
  };
  const ossl::GcmCtxShelf* first = one_call_on_a_new_thread();
  const ossl::GcmCtxShelf* second = one_call_on_a_new_thread();
  REQUIRE(first != second);  // consecutive threads have consecutive slots
  CHECK(first->size() == 1);
  CHECK(second->size() == 1);
}

}  // namespace cdcp11::crypto::test
