#include "hsm/attributes.h"

#include <algorithm>
#include <cstring>
#include <iterator>

namespace cdcp11::hsm {

// Only AttrMap's inline members are used here, so hsm links without core's library.

CkTemplate::CkTemplate(const core::AttrMap& m) {
  a_.reserve(m.size());
  for (const auto& [type, value] : m.map())
    a_.push_back(CK_ATTRIBUTE{type, const_cast<std::uint8_t*>(value.data()),
                              static_cast<CK_ULONG>(value.size())});
}

Bytes ulong_value(CK_ULONG v) {
  Bytes b(sizeof v);
  std::memcpy(b.data(), &v, sizeof v);
  return b;
}

Bytes bool_value(bool b) { return Bytes{static_cast<std::uint8_t>(b ? CK_TRUE : CK_FALSE)}; }

namespace {
constexpr CK_ATTRIBUTE_TYPE kKeyMaterial[] = {CKA_VALUE,      CKA_PRIVATE_EXPONENT, CKA_PRIME_1,
                                              CKA_PRIME_2,    CKA_EXPONENT_1,       CKA_EXPONENT_2,
                                              CKA_COEFFICIENT};
}  // namespace

bool is_key_material(CK_ATTRIBUTE_TYPE t) {
  return std::find(std::begin(kKeyMaterial), std::end(kKeyMaterial), t) != std::end(kKeyMaterial);
}

void wipe_key_material(core::AttrMap& m) {
  for (CK_ATTRIBUTE_TYPE t : kKeyMaterial) m.wipe(t);
}

const Bytes* Attributes::find(CK_ATTRIBUTE_TYPE t) const {
  auto it = values.map().find(t);
  return it == values.map().end() ? nullptr : &it->second;
}

std::optional<CK_ULONG> Attributes::ulong(CK_ATTRIBUTE_TYPE t) const {
  const Bytes* b = find(t);
  if (!b || b->size() != sizeof(CK_ULONG)) return std::nullopt;
  CK_ULONG v;
  std::memcpy(&v, b->data(), sizeof v);
  return v;
}

std::optional<bool> Attributes::boolean(CK_ATTRIBUTE_TYPE t) const {
  const Bytes* b = find(t);
  if (!b || b->size() != sizeof(CK_BBOOL)) return std::nullopt;
  return (*b)[0] != 0;
}

}  // namespace cdcp11::hsm
