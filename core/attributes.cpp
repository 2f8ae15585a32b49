#include "core/attributes.h"

#include <cstring>

namespace cdcp11::core {

AttrMap& AttrMap::operator=(const AttrMap& o) {
  if (this != &o) {
    wipe_all();
    m_ = o.m_;
  }
  return *this;
}

AttrMap& AttrMap::operator=(AttrMap&& o) noexcept {
  if (this != &o) {
    wipe_all();
    m_ = std::move(o.m_);
  }
  return *this;
}

R<AttrMap> AttrMap::from_template(const CK_ATTRIBUTE* t, CK_ULONG n) {
  AttrMap a;
  if (n && t == nullptr) return err(Errc::arguments_bad, "template pointer is NULL with a non-zero count");
  for (CK_ULONG i = 0; i < n; ++i) {
    if (t[i].ulValueLen && t[i].pValue == nullptr)
      return err(Errc::arguments_bad,
                 "attribute " + std::to_string(t[i].type) + " has a NULL value with a non-zero length");
    if (t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION)
      return err(Errc::attribute_value_invalid, "attribute " + std::to_string(t[i].type) + " has an invalid length");
    const auto* p = static_cast<const std::uint8_t*>(t[i].pValue);
    a.slot(t[i].type) = Bytes(p, p + t[i].ulValueLen);
  }
  return a;
}

const Bytes* AttrMap::find(CK_ATTRIBUTE_TYPE t) const {
  auto it = m_.find(t);
  return it == m_.end() ? nullptr : &it->second;
}

void AttrMap::set_ulong(CK_ATTRIBUTE_TYPE t, CK_ULONG v) {
  Bytes b(sizeof(CK_ULONG));
  std::memcpy(b.data(), &v, sizeof v);
  slot(t) = std::move(b);
}

bool AttrMap::bool_or(CK_ATTRIBUTE_TYPE t, bool def) const {
  auto* v = find(t);
  if (!v || v->size() != sizeof(CK_BBOOL)) return def;
  return (*v)[0] != CK_FALSE;
}

std::optional<CK_ULONG> AttrMap::ulong(CK_ATTRIBUTE_TYPE t) const {
  auto* v = find(t);
  if (!v || v->size() != sizeof(CK_ULONG)) return std::nullopt;
  CK_ULONG r;
  std::memcpy(&r, v->data(), sizeof r);
  return r;
}

std::string AttrMap::string_or(CK_ATTRIBUTE_TYPE t, const std::string& def) const {
  auto* v = find(t);
  return v ? std::string(v->begin(), v->end()) : def;
}

void AttrMap::merge(const AttrMap& other) {
  for (auto& [k, v] : other.m_) slot(k) = v;
}

namespace {
template <class Buf>
void put_le(Buf& out, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
bool get_le(ByteView b, std::size_t& off, int n, std::uint64_t& v) {
  if (b.size() - off < static_cast<std::size_t>(n) || off > b.size()) return false;
  v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(b[off + i]) << (8 * i);
  off += n;
  return true;
}
}  // namespace

namespace {
template <class Buf>
Buf serialize_map(const AttrMap::Map& m) {
  std::size_t total = 4;
  for (auto& [k, v] : m) total += 12 + v.size();
  Buf out;
  out.reserve(total);  // one allocation: no unwiped intermediate buffers
  put_le(out, m.size(), 4);
  for (auto& [k, v] : m) {
    put_le(out, k, 8);
    put_le(out, v.size(), 4);
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}
}  // namespace

Bytes AttrMap::serialize() const { return serialize_map<Bytes>(m_); }
SecureBytes AttrMap::serialize_secure() const { return serialize_map<SecureBytes>(m_); }

R<AttrMap> AttrMap::deserialize(ByteView b) {
  AttrMap a;
  std::size_t off = 0;
  std::uint64_t n;
  if (!get_le(b, off, 4, n)) return err(Errc::device_error, "attribute record truncated");
  for (std::uint64_t i = 0; i < n; ++i) {
    std::uint64_t type, len;
    if (!get_le(b, off, 8, type) || !get_le(b, off, 4, len) || b.size() - off < len)
      return err(Errc::device_error, "attribute record truncated");
    a.slot(static_cast<CK_ATTRIBUTE_TYPE>(type)) = Bytes(b.begin() + off, b.begin() + off + len);
    off += len;
  }
  if (off != b.size()) return err(Errc::device_error, "attribute record has trailing bytes");
  return a;
}

bool AttrMap::matches(const AttrMap& tmpl) const {
  for (auto& [k, v] : tmpl.m_) {
    auto* mine = find(k);
    if (!mine || *mine != v) return false;
  }
  return true;
}

}  // namespace cdcp11::core
