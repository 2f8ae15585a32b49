#include "hsm/session.h"

#include <algorithm>

#include "common/log.h"
#include "hsm/buffers.h"
#include "hsm/module.h"

namespace cdcp11::hsm {
namespace {

const char* user_name(UserType u) {
  switch (u) {
    case UserType::so: return "SO";
    case UserType::user: return "user";
    case UserType::context_specific: return "context-specific";
  }
  return "?";
}

std::string obj_ctx(CK_OBJECT_HANDLE h) { return "object " + std::to_string(h); }

}  // namespace

Session::Session(std::shared_ptr<Module> m, CK_SLOT_ID slot, CK_SESSION_HANDLE h)
    : s_(std::make_shared<detail::SessionState>()) {
  s_->f = m->functions();
  s_->v3 = m->interface_version().major >= 3;
  s_->module = std::move(m);
  s_->slot = slot;
  s_->handle = h;
}

Session& Session::operator=(Session&& o) noexcept {
  if (this != &o) {
    close();
    s_ = std::move(o.s_);
  }
  return *this;
}

Session::~Session() { close(); }

void Session::close() noexcept {
  if (!s_ || s_->handle == CK_INVALID_HANDLE) return;
  // In a forked child the handle belongs to the parent's module instance: leave it alone.
  if (s_->module->usable()) invoke(s_->f->C_CloseSession, s_->handle);
  s_->handle = CK_INVALID_HANDLE;
}

R<void> Session::check(std::string_view fn) const { return s_->module->check_usable(fn); }

R<CK_SESSION_INFO> Session::info() const {
  return guarded([&]() -> R<CK_SESSION_INFO> {
    CDC_TRY(check("C_GetSessionInfo"));
    CK_SESSION_INFO si{};
    if (CK_RV rv = invoke(s_->f->C_GetSessionInfo, s_->handle, &si); rv != CKR_OK)
      return call_failed("C_GetSessionInfo", rv);
    return si;
  });
}

R<void> Session::login(UserType who, ByteView pin) {
  return guarded([&]() -> R<void> {
    CDC_TRY(check("C_Login"));
    CK_RV rv = invoke(s_->f->C_Login, s_->handle, static_cast<CK_USER_TYPE>(who),
                      const_cast<CK_UTF8CHAR*>(pin.data()), static_cast<CK_ULONG>(pin.size()));
    if (rv != CKR_OK) return call_failed("C_Login", rv, user_name(who));
    return {};
  });
}

R<void> Session::logout() {
  return guarded([&]() -> R<void> {
    CDC_TRY(check("C_Logout"));
    if (CK_RV rv = invoke(s_->f->C_Logout, s_->handle); rv != CKR_OK)
      return call_failed("C_Logout", rv);
    return {};
  });
}

R<void> Session::init_pin(ByteView pin) {
  return guarded([&]() -> R<void> {
    CDC_TRY(check("C_InitPIN"));
    CK_RV rv = invoke(s_->f->C_InitPIN, s_->handle, const_cast<CK_UTF8CHAR*>(pin.data()),
                      static_cast<CK_ULONG>(pin.size()));
    if (rv != CKR_OK) return call_failed("C_InitPIN", rv);
    return {};
  });
}

R<void> Session::set_pin(ByteView old_pin, ByteView new_pin) {
  return guarded([&]() -> R<void> {
    CDC_TRY(check("C_SetPIN"));
    CK_RV rv = invoke(s_->f->C_SetPIN, s_->handle, const_cast<CK_UTF8CHAR*>(old_pin.data()),
                      static_cast<CK_ULONG>(old_pin.size()),
                      const_cast<CK_UTF8CHAR*>(new_pin.data()),
                      static_cast<CK_ULONG>(new_pin.size()));
    if (rv != CKR_OK) return call_failed("C_SetPIN", rv);
    return {};
  });
}

R<std::vector<CK_OBJECT_HANDLE>> Session::find(const core::AttrMap& tmpl, std::size_t max_results) {
  return guarded([&]() -> R<std::vector<CK_OBJECT_HANDLE>> {
    CDC_TRY(check("C_FindObjectsInit"));
    CkTemplate t(tmpl);
    if (CK_RV rv = invoke(s_->f->C_FindObjectsInit, s_->handle, t.data(), t.size()); rv != CKR_OK)
      return call_failed("C_FindObjectsInit", rv);
    std::vector<CK_OBJECT_HANDLE> out;
    CK_RV rv = CKR_OK;
    for (;;) {
      CK_OBJECT_HANDLE batch[64];
      CK_ULONG want = 64, got = 0;
      if (max_results) want = std::min<CK_ULONG>(want, max_results - out.size());
      rv = invoke(s_->f->C_FindObjects, s_->handle, batch, want, &got);
      if (rv != CKR_OK || got == 0) break;
      out.insert(out.end(), batch, batch + std::min(got, want));
      if (max_results && out.size() >= max_results) break;
    }
    // Always ended, also after a failed C_FindObjects: otherwise the session stays in a search.
    CK_RV frv = invoke(s_->f->C_FindObjectsFinal, s_->handle);
    if (rv != CKR_OK) return call_failed("C_FindObjects", rv);
    if (frv != CKR_OK) return call_failed("C_FindObjectsFinal", frv);
    return out;
  });
}

R<Attributes> Session::get_attributes(CK_OBJECT_HANDLE obj, std::span<const CK_ATTRIBUTE_TYPE> types,
                                      bool each_reason) {
  return guarded([&]() -> R<Attributes> {
    CDC_TRY(check("C_GetAttributeValue"));
    for (CK_ATTRIBUTE_TYPE t : types)
      if (t & CKF_ARRAY_ATTRIBUTE)
        return local_failure(CKR_ARGUMENTS_BAD,
                             "C_GetAttributeValue: attribute " + std::to_string(t) +
                                 " holds a template, which this client does not read");
    auto query = [&](CK_ATTRIBUTE* a, CK_ULONG n) {
      return invoke(s_->f->C_GetAttributeValue, s_->handle, obj, a, n);
    };
    for (int attempt = 0; attempt < 4; ++attempt) {
      Attributes out;
      // 1: lengths. Unavailable attributes come back as CK_UNAVAILABLE_INFORMATION.
      std::vector<CK_ATTRIBUTE> lens;
      for (CK_ATTRIBUTE_TYPE t : types) lens.push_back(CK_ATTRIBUTE{t, nullptr, 0});
      CK_RV rv = query(lens.data(), static_cast<CK_ULONG>(lens.size()));
      if (rv != CKR_OK && rv != CKR_ATTRIBUTE_SENSITIVE && rv != CKR_ATTRIBUTE_TYPE_INVALID)
        return call_failed("C_GetAttributeValue", rv, obj_ctx(obj));
      std::vector<CK_ATTRIBUTE*> unavailable;
      for (auto& a : lens)
        if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) unavailable.push_back(&a);
      // One CK_RV covers the whole call: with several unavailable attributes, ask each alone
      // to learn its own reason.
      if ((unavailable.size() == 1 || !each_reason) && rv != CKR_OK) {
        for (CK_ATTRIBUTE* a : unavailable) out.unavailable[a->type] = rv;
      } else {
        for (CK_ATTRIBUTE* a : unavailable) {
          CK_ATTRIBUTE one{a->type, nullptr, 0};
          CK_RV orv = query(&one, 1);
          if (orv == CKR_OK && one.ulValueLen != CK_UNAVAILABLE_INFORMATION) {
            a->ulValueLen = one.ulValueLen;
          } else if (orv == CKR_ATTRIBUTE_SENSITIVE || orv == CKR_ATTRIBUTE_TYPE_INVALID) {
            out.unavailable[a->type] = orv;
          } else {
            return call_failed("C_GetAttributeValue", orv == CKR_OK ? CKR_GENERAL_ERROR : orv,
                               obj_ctx(obj));
          }
        }
      }
      // 2: values, into buffers that are wiped when freed.
      std::vector<SecureBytes> bufs;
      std::vector<CK_ATTRIBUTE> vals;
      bufs.reserve(lens.size());
      for (const auto& a : lens) {
        if (out.unavailable.count(a.type)) continue;
        bufs.emplace_back(a.ulValueLen);
        vals.push_back(CK_ATTRIBUTE{a.type, bufs.back().empty() ? nullptr : bufs.back().data(),
                                    a.ulValueLen});
      }
      if (!vals.empty()) {
        rv = query(vals.data(), static_cast<CK_ULONG>(vals.size()));
        if (rv == CKR_BUFFER_TOO_SMALL) continue;  // a value grew in between: start again
        if (rv != CKR_OK) return call_failed("C_GetAttributeValue", rv, obj_ctx(obj));
      }
      for (std::size_t i = 0; i < vals.size(); ++i) {
        CK_ULONG len = std::min<CK_ULONG>(vals[i].ulValueLen, bufs[i].size());
        out.values.set(vals[i].type, ByteView(bufs[i].data(), len));
      }
      return out;
    }
    return call_failed("C_GetAttributeValue", CKR_BUFFER_TOO_SMALL, "values kept growing");
  });
}

R<void> Session::set_attributes(CK_OBJECT_HANDLE obj, const core::AttrMap& values) {
  return guarded([&]() -> R<void> {
    CDC_TRY(check("C_SetAttributeValue"));
    CkTemplate t(values);
    CK_RV rv = invoke(s_->f->C_SetAttributeValue, s_->handle, obj, t.data(), t.size());
    if (rv != CKR_OK) return call_failed("C_SetAttributeValue", rv, obj_ctx(obj));
    return {};
  });
}

R<CK_OBJECT_HANDLE> Session::create(const core::AttrMap& tmpl) {
  return guarded([&]() -> R<CK_OBJECT_HANDLE> {
    CDC_TRY(check("C_CreateObject"));
    CkTemplate t(tmpl);
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = invoke(s_->f->C_CreateObject, s_->handle, t.data(), t.size(), &h);
    if (rv != CKR_OK) return call_failed("C_CreateObject", rv);
    return h;
  });
}

R<CK_OBJECT_HANDLE> Session::copy(CK_OBJECT_HANDLE obj, const core::AttrMap& changes) {
  return guarded([&]() -> R<CK_OBJECT_HANDLE> {
    CDC_TRY(check("C_CopyObject"));
    CkTemplate t(changes);
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = invoke(s_->f->C_CopyObject, s_->handle, obj, t.data(), t.size(), &h);
    if (rv != CKR_OK) return call_failed("C_CopyObject", rv, obj_ctx(obj));
    return h;
  });
}

R<void> Session::destroy(CK_OBJECT_HANDLE obj) {
  return guarded([&]() -> R<void> {
    CDC_TRY(check("C_DestroyObject"));
    if (CK_RV rv = invoke(s_->f->C_DestroyObject, s_->handle, obj); rv != CKR_OK)
      return call_failed("C_DestroyObject", rv, obj_ctx(obj));
    return {};
  });
}

R<CK_OBJECT_HANDLE> Session::generate_key(const Mechanism& m, const core::AttrMap& tmpl) {
  return guarded([&]() -> R<CK_OBJECT_HANDLE> {
    CDC_TRY(check("C_GenerateKey"));
    CK_MECHANISM ck = m.ck();
    CkTemplate t(tmpl);
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = invoke(s_->f->C_GenerateKey, s_->handle, &ck, t.data(), t.size(), &h);
    if (rv != CKR_OK) return call_failed("C_GenerateKey", rv);
    return h;
  });
}

R<KeyPair> Session::generate_key_pair(const Mechanism& m, const core::AttrMap& public_tmpl,
                                      const core::AttrMap& private_tmpl) {
  return guarded([&]() -> R<KeyPair> {
    CDC_TRY(check("C_GenerateKeyPair"));
    CK_MECHANISM ck = m.ck();
    CkTemplate pub(public_tmpl), priv(private_tmpl);
    KeyPair kp;
    CK_RV rv = invoke(s_->f->C_GenerateKeyPair, s_->handle, &ck, pub.data(), pub.size(),
                      priv.data(), priv.size(), &kp.public_key, &kp.private_key);
    if (rv != CKR_OK) return call_failed("C_GenerateKeyPair", rv);
    return kp;
  });
}

R<Bytes> Session::wrap_key(const Mechanism& m, CK_OBJECT_HANDLE wrapping_key,
                           CK_OBJECT_HANDLE key) {
  return guarded([&]() -> R<Bytes> {
    CDC_TRY(check("C_WrapKey"));
    CK_MECHANISM ck = m.ck();
    return fetch_output<Bytes>("C_WrapKey", [&](CK_BYTE_PTR p, CK_ULONG_PTR n) {
      return invoke(s_->f->C_WrapKey, s_->handle, &ck, wrapping_key, key, p, n);
    });
  });
}

R<CK_OBJECT_HANDLE> Session::unwrap_key(const Mechanism& m, CK_OBJECT_HANDLE unwrapping_key,
                                        ByteView wrapped, const core::AttrMap& tmpl) {
  return guarded([&]() -> R<CK_OBJECT_HANDLE> {
    CDC_TRY(check("C_UnwrapKey"));
    CK_MECHANISM ck = m.ck();
    CkTemplate t(tmpl);
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = invoke(s_->f->C_UnwrapKey, s_->handle, &ck, unwrapping_key,
                      const_cast<CK_BYTE*>(wrapped.data()), static_cast<CK_ULONG>(wrapped.size()),
                      t.data(), t.size(), &h);
    if (rv != CKR_OK) return call_failed("C_UnwrapKey", rv);
    return h;
  });
}

R<CK_OBJECT_HANDLE> Session::derive_key(const Mechanism& m, CK_OBJECT_HANDLE base_key,
                                        const core::AttrMap& tmpl) {
  return guarded([&]() -> R<CK_OBJECT_HANDLE> {
    CDC_TRY(check("C_DeriveKey"));
    CK_MECHANISM ck = m.ck();
    CkTemplate t(tmpl);
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = invoke(s_->f->C_DeriveKey, s_->handle, &ck, base_key, t.data(), t.size(), &h);
    if (rv != CKR_OK) return call_failed("C_DeriveKey", rv);
    return h;
  });
}

R<SecureBytes> Session::generate_random(std::size_t n) {
  return guarded([&]() -> R<SecureBytes> {
    CDC_TRY(check("C_GenerateRandom"));
    SecureBytes out(n);
    if (n == 0) return out;
    CK_RV rv = invoke(s_->f->C_GenerateRandom, s_->handle, out.data(), static_cast<CK_ULONG>(n));
    if (rv != CKR_OK) return call_failed("C_GenerateRandom", rv);
    return out;
  });
}

R<void> Session::seed_random(ByteView seed) {
  return guarded([&]() -> R<void> {
    CDC_TRY(check("C_SeedRandom"));
    CK_RV rv = invoke(s_->f->C_SeedRandom, s_->handle, const_cast<CK_BYTE*>(seed.data()),
                      static_cast<CK_ULONG>(seed.size()));
    if (rv != CKR_OK) return call_failed("C_SeedRandom", rv);
    return {};
  });
}

ScopedObject::~ScopedObject() {
  if (h_ == CK_INVALID_HANDLE) return;
  if (auto r = s_->destroy(h_); !r) log::warn("hsm", "could not destroy a session object: " + r.error().message);
}

}  // namespace cdcp11::hsm
