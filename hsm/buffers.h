// The PKCS#11 two-call length protocol for lists and output buffers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cdcp11/pkcs11_3_0.h"
#include "hsm/errors.h"

namespace cdcp11::hsm {

// f(T* buf, CK_ULONG* count) -> CK_RV: first asked for the count (buf NULL), then filled; asked
// again if the list grew in between (CKR_BUFFER_TOO_SMALL).
template <class T, class F>
R<std::vector<T>> fetch_list(std::string_view fn, F&& f) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    CK_ULONG n = 0;
    if (CK_RV rv = f(nullptr, &n); rv != CKR_OK) return call_failed(fn, rv);
    std::vector<T> out(n);
    if (n == 0) return out;
    CK_RV rv = f(out.data(), &n);
    if (rv == CKR_BUFFER_TOO_SMALL) continue;
    if (rv != CKR_OK) return call_failed(fn, rv);
    out.resize(n);
    return out;
  }
  return call_failed(fn, CKR_BUFFER_TOO_SMALL, "the list kept growing");
}

// f(CK_BYTE_PTR out, CK_ULONG_PTR len) -> CK_RV for an output the module sizes: a length query
// (out NULL), then the call itself; a CKR_BUFFER_TOO_SMALL answer gives the size to retry with.
// Buf is Bytes, or SecureBytes for an output holding secrets.
template <class Buf, class F>
R<Buf> fetch_output(std::string_view fn, F&& f) {
  // Beyond any real output; SoftHSM2 2.6.1 answers (CK_ULONG)-1 for a C_DecryptFinal with
  // nothing left to decrypt.
  constexpr CK_ULONG kImplausible = CK_ULONG{1} << 30;
  CK_ULONG n = 0;
  if (CK_RV rv = f(nullptr, &n); rv != CKR_OK) return call_failed(fn, rv);
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (n > kImplausible)
      return call_failed(fn, CKR_GENERAL_ERROR,
                         "the module asked for an output buffer of " + std::to_string(n) + " bytes");
    Buf out(n);
    CK_ULONG len = n;
    // Some modules dereference the buffer even for a zero length: never pass NULL here.
    std::uint8_t empty = 0;
    CK_RV rv = f(out.empty() ? &empty : out.data(), &len);
    if (rv == CKR_BUFFER_TOO_SMALL && len > n) {
      n = len;
      continue;
    }
    if (rv != CKR_OK) return call_failed(fn, rv);
    if (len > out.size()) return call_failed(fn, CKR_GENERAL_ERROR, "output length beyond the buffer");
    out.resize(len);
    return out;
  }
  return call_failed(fn, CKR_BUFFER_TOO_SMALL, "the output kept growing");
}

}  // namespace cdcp11::hsm
