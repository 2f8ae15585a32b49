// A set of PKCS#11 attributes held by value: the in-memory form of an object and of templates.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "cdcp11/pkcs11_3_0.h"
#include "common/bytes.h"
#include "core/errors.h"

namespace cdcp11::core {

// Every value is zeroed before its storage is released (destruction, overwrite, erase,
// assignment): templates carry key material (CKA_VALUE, RSA private components) through here.
class AttrMap {
 public:
  using Map = std::map<CK_ATTRIBUTE_TYPE, Bytes>;

  AttrMap() = default;
  AttrMap(const AttrMap&) = default;
  AttrMap(AttrMap&&) noexcept = default;
  AttrMap& operator=(const AttrMap& o);
  AttrMap& operator=(AttrMap&& o) noexcept;
  ~AttrMap() { wipe_all(); }

  // Copies a caller's template; rejects NULL values with non-zero length (arguments_bad).
  static R<AttrMap> from_template(const CK_ATTRIBUTE* t, CK_ULONG n);

  bool has(CK_ATTRIBUTE_TYPE t) const { return m_.count(t) != 0; }
  const Bytes* find(CK_ATTRIBUTE_TYPE t) const;
  void set(CK_ATTRIBUTE_TYPE t, Bytes v) { slot(t) = std::move(v); }
  void set(CK_ATTRIBUTE_TYPE t, ByteView v) { slot(t) = Bytes(v.begin(), v.end()); }
  void set_bool(CK_ATTRIBUTE_TYPE t, bool b) { slot(t) = Bytes{static_cast<std::uint8_t>(b ? 1 : 0)}; }
  void set_ulong(CK_ATTRIBUTE_TYPE t, CK_ULONG v);
  void set_string(CK_ATTRIBUTE_TYPE t, const std::string& s) { slot(t) = Bytes(s.begin(), s.end()); }
  void erase(CK_ATTRIBUTE_TYPE t) { wipe(t); }
  // Erases a value, zeroing it first (as every erase does).
  void wipe(CK_ATTRIBUTE_TYPE t) {
    if (auto it = m_.find(t); it != m_.end()) {
      secure_zero(it->second.data(), it->second.size());
      m_.erase(it);
    }
  }

  // Typed reads. bool_or: a present attribute of the wrong size counts as absent (validation
  // reports it separately). ulong: absent or wrong size -> nullopt.
  bool bool_or(CK_ATTRIBUTE_TYPE t, bool def) const;
  std::optional<CK_ULONG> ulong(CK_ATTRIBUTE_TYPE t) const;
  std::string string_or(CK_ATTRIBUTE_TYPE t, const std::string& def) const;

  // Overlays other on this (other wins).
  void merge(const AttrMap& other);

  const Map& map() const { return m_; }
  auto begin() const { return m_.begin(); }
  auto end() const { return m_.end(); }
  std::size_t size() const { return m_.size(); }
  bool empty() const { return m_.empty(); }

  // Stable binary encoding for storage: count, then (type u64, len u32, value) each, little endian.
  Bytes serialize() const;
  // The same encoding into a buffer that is zeroed when freed (maps holding secret values).
  SecureBytes serialize_secure() const;
  static R<AttrMap> deserialize(ByteView b);

  // True if every attribute of tmpl is present here with an identical value (C_FindObjects).
  bool matches(const AttrMap& tmpl) const;

 private:
  // The value of t, its previous content (if any) zeroed, ready to be assigned.
  Bytes& slot(CK_ATTRIBUTE_TYPE t) {
    Bytes& v = m_[t];
    secure_zero(v.data(), v.size());
    return v;
  }
  void wipe_all() noexcept {
    for (auto& [t, v] : m_) secure_zero(v.data(), v.size());
  }

  Map m_;
};

}  // namespace cdcp11::core
