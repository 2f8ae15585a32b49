// Templates between core::AttrMap and CK_ATTRIBUTE arrays.
#pragma once

#include <map>
#include <optional>
#include <vector>

#include "cdcp11/pkcs11_3_0.h"
#include "core/attributes.h"

namespace cdcp11::hsm {

// A CK_ATTRIBUTE array pointing into an AttrMap's values (nothing copied, so nothing to wipe);
// valid while the map lives unchanged.
class CkTemplate {
 public:
  explicit CkTemplate(const core::AttrMap& m);
  CK_ATTRIBUTE* data() { return a_.empty() ? nullptr : a_.data(); }
  CK_ULONG size() const { return static_cast<CK_ULONG>(a_.size()); }

 private:
  std::vector<CK_ATTRIBUTE> a_;
};

// A CK_ULONG / CK_BBOOL attribute value in native layout, for templates.
Bytes ulong_value(CK_ULONG v);
Bytes bool_value(bool b);

// True for the attributes that hold key material (CKA_VALUE, the private RSA and EC components).
bool is_key_material(CK_ATTRIBUTE_TYPE t);
// Zeroes and erases the key material in m.
void wipe_key_material(core::AttrMap& m);

// What C_GetAttributeValue gave: the values it returned, and for each attribute it would not
// return, why (CKR_ATTRIBUTE_SENSITIVE or CKR_ATTRIBUTE_TYPE_INVALID). Key material among the
// values is wiped when this is destroyed.
struct Attributes {
  core::AttrMap values;
  std::map<CK_ATTRIBUTE_TYPE, CK_RV> unavailable;

  Attributes() = default;
  Attributes(Attributes&&) = default;
  Attributes& operator=(Attributes&&) = default;
  Attributes(const Attributes&) = delete;
  Attributes& operator=(const Attributes&) = delete;
  ~Attributes() { wipe_key_material(values); }

  const Bytes* find(CK_ATTRIBUTE_TYPE t) const;
  // A CK_ULONG or CK_BBOOL value, when present with that size.
  std::optional<CK_ULONG> ulong(CK_ATTRIBUTE_TYPE t) const;
  std::optional<bool> boolean(CK_ATTRIBUTE_TYPE t) const;
};

}  // namespace cdcp11::hsm
