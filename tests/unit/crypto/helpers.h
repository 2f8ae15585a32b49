// Shared helpers for the crypto seam tests.
#pragma once

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "softtoken/crypto/backend.h"

namespace cdcp11::crypto::test {

inline std::vector<Backend*> backends() {
  std::vector<Backend*> v;
  if (auto* b = openssl_backend()) v.push_back(b);
  if (auto* b = botan_backend()) v.push_back(b);
  return v;
}

inline Bytes H(std::string_view hex) {
  std::string clean;
  for (char c : hex)
    if (c != ' ' && c != '\n') clean.push_back(c);
  Bytes out;
  REQUIRE_MESSAGE(from_hex(clean, out), "bad hex in test vector");
  return out;
}

inline std::string hex(ByteView v) { return to_hex(v); }

inline std::string code_name(Error::Code c) {
  switch (c) {
    case Error::Code::bad_key: return "bad_key";
    case Error::Code::bad_param: return "bad_param";
    case Error::Code::bad_input_length: return "bad_input_length";
    case Error::Code::bad_encrypted_input: return "bad_encrypted_input";
    case Error::Code::bad_signature: return "bad_signature";
    case Error::Code::bad_signature_length: return "bad_signature_length";
    case Error::Code::bad_wrapped_key: return "bad_wrapped_key";
    case Error::Code::unsupported: return "unsupported";
    case Error::Code::internal: return "internal";
  }
  return "?";
}

// Unwraps a Result, failing the test case with the error message.
template <class T>
T ok(R<T>&& r) {
  if (!r) FAIL_CHECK("unexpected error " << code_name(r.error().code) << ": " << r.error().message);
  REQUIRE(r.ok());
  return std::move(r).value();
}
inline void ok(R<void>&& r) {
  if (!r) FAIL_CHECK("unexpected error " << code_name(r.error().code) << ": " << r.error().message);
  REQUIRE(r.ok());
}

template <class T>
Error::Code code_of(const R<T>& r) {
  REQUIRE_MESSAGE(!r.ok(), "expected an error");
  return r.error().code;
}
#define CHECK_CODE(expr, want)                                        \
  do {                                                                \
    auto&& cr_ = (expr);                                              \
    if (cr_.ok()) {                                                   \
      FAIL_CHECK("expected " << code_name(want) << ", got success");  \
    } else {                                                          \
      CHECK_MESSAGE(cr_.error().code == (want), "got " << code_name(cr_.error().code) << ": " \
                                                 << cr_.error().message << "; want " << code_name(want)); \
      CHECK_FALSE(cr_.error().message.empty());                       \
    }                                                                 \
  } while (0)

inline std::mt19937& prng() {
  static std::mt19937 g(12345);
  return g;
}

inline Bytes random_bytes(std::size_t n) {
  Bytes b(n);
  for (auto& x : b) x = static_cast<std::uint8_t>(prng()());
  return b;
}

// Splits data into random pieces, including zero-length ones.
inline std::vector<ByteView> random_split(ByteView data) {
  std::vector<ByteView> parts;
  std::size_t off = 0;
  while (off < data.size()) {
    std::size_t n = prng()() % 4 == 0 ? 0 : 1 + prng()() % std::max<std::size_t>(1, data.size() / 3);
    n = std::min(n, data.size() - off);
    parts.push_back(data.subspan(off, n));
    off += n;
  }
  parts.push_back(data.subspan(data.size()));  // trailing empty update
  return parts;
}

inline Bytes sign(Backend& b, const KeyPtr& k, const SignParams& p, ByteView data, bool split = true) {
  auto s = ok(b.signer(k, p));
  if (split) {
    for (auto part : random_split(data)) ok(s->update(part));
  } else {
    ok(s->update(data));
  }
  return ok(s->finish());
}

inline R<void> verify(Backend& b, const KeyPtr& k, const SignParams& p, ByteView data, ByteView sig,
                      bool split = true) {
  auto v = b.verifier(k, p);
  if (!v) return fail(v.error());
  if (split) {
    for (auto part : random_split(data)) CDC_TRY((*v)->update(part));
  } else {
    CDC_TRY((*v)->update(data));
  }
  return (*v)->finish(sig);
}

inline R<SecureBytes> run_cipher(Backend& b, const KeyPtr& k, const CipherParams& p, ByteView in, bool enc,
                                 bool split = true) {
  auto c = enc ? b.encryptor(k, p) : b.decryptor(k, p);
  if (!c) return fail(c.error());
  SecureBytes out;
  std::vector<ByteView> parts = split ? random_split(in) : std::vector<ByteView>{in};
  for (auto part : parts) {
    auto r = (*c)->update(part);
    if (!r) return fail(r.error());
    out.insert(out.end(), r->begin(), r->end());
  }
  auto r = (*c)->finish();
  if (!r) return fail(r.error());
  out.insert(out.end(), r->begin(), r->end());
  return out;
}

inline Bytes digest(Backend& b, Hash h, ByteView data) {
  auto d = b.digest(h);
  REQUIRE(d != nullptr);
  for (auto part : random_split(data)) d->update(part);
  return d->finish();
}

// Test keys are generated once per backend (RSA generation dominates the run time).
const RsaPrivate& rsa2048(Backend& b);
const EcPrivate& ec_key(Backend& b, Curve c);

inline const Curve kAllCurves[] = {Curve::p256, Curve::p384, Curve::p521, Curve::secp256k1, Curve::ed25519};
inline const Curve kEcdsaCurves[] = {Curve::p256, Curve::p384, Curve::p521, Curve::secp256k1};
inline const Hash kAllHashes[] = {Hash::sha1, Hash::sha224, Hash::sha256, Hash::sha384, Hash::sha512};

}  // namespace cdcp11::crypto::test
