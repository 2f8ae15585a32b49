// The Cryptoki ABI: every C_ function checks its pointer arguments, calls core, and maps the
// result through p11::call (one CK_RV mapping, one log line per failed call).
#include <cstring>
#include <string>
#include <type_traits>

#include "cdcp11/cdcp11.h"
#include "core/attributes.h"
#include "core/cloud/sync.h"
#include "core/mechanisms.h"
#include "core/mirror/rotation.h"
#include "core/mirror/service.h"
#include "p11module/state.h"

#define CDC_EXPORT extern "C" __attribute__((visibility("default")))

using cdcp11::ByteView;
using cdcp11::core::AttrMap;
using cdcp11::core::Errc;
using cdcp11::core::Provider;
using cdcp11::core::Session;
using cdcp11::core::OpKind;
using cdcp11::core::R;
using cdcp11::core::err;
using cdcp11::p11::call;

namespace {

constexpr CK_VERSION kLibraryVersion = {0, 1};

void pad(CK_UTF8CHAR* dst, std::size_t n, const std::string& s) {
  std::memset(dst, ' ', n);
  std::memcpy(dst, s.data(), std::min(n, s.size()));
}

ByteView bytes(const CK_BYTE* p, CK_ULONG n) { return p ? ByteView(p, n) : ByteView(); }

R<void> need(bool ok, const char* what) {
  if (!ok) return err(Errc::arguments_bad, std::string(what) + " is NULL");
  return {};
}

R<AttrMap> tmpl(CK_ATTRIBUTE_PTR t, CK_ULONG n) { return AttrMap::from_template(t, n); }

// The caller's data for an active operation: core ends the operation if it is a NULL pointer
// with a length.
cdcp11::core::Input input(const CK_BYTE* p, CK_ULONG n, const char* what) {
  if (!p && n) return err(Errc::arguments_bad, std::string(what) + " is NULL");
  return bytes(p, n);
}

// A function on a session: an invalid handle is reported before any argument error (PKCS#11 3.0
// 5.1.7: the codes of 5.1.2 take precedence over those of 5.1.6).
template <class F>
CK_RV session_call(const char* fn, CK_SESSION_HANDLE h, F&& f) noexcept {
  return call(fn, [&](Provider& P) -> R<void> {
    CDC_ASSIGN(auto s, P.session(h));
    if constexpr (std::is_invocable_v<F, Provider&, Session&>) return f(P, *s);
    else return f(*s);
  });
}

// A function this module does not implement: still CKR_CRYPTOKI_NOT_INITIALIZED outside
// C_Initialize/C_Finalize, like every other.
CK_RV unsupported(const char* fn) noexcept {
  return call(fn, [&](Provider&) -> R<void> { return err(Errc::not_supported, std::string(fn) + " is not supported"); });
}

}  // namespace

extern CK_FUNCTION_LIST g_function_list;
extern CK_FUNCTION_LIST_3_0 g_function_list_3_0;
extern CDC_FUNCTION_LIST g_vendor_function_list;
extern CDC_FUNCTION_LIST g_vendor_function_list_1_0;

// ---------------------------------------------------------------- general

CDC_EXPORT CK_RV C_Initialize(CK_VOID_PTR pInitArgs) { return cdcp11::p11::initialize(pInitArgs); }

CDC_EXPORT CK_RV C_Finalize(CK_VOID_PTR pReserved) { return cdcp11::p11::finalize(pReserved); }

CDC_EXPORT CK_RV C_GetInfo(CK_INFO_PTR pInfo) {
  return call("C_GetInfo", [&](Provider&) -> R<void> {
    CDC_TRY(need(pInfo, "pInfo"));
    std::memset(pInfo, 0, sizeof *pInfo);
    pInfo->cryptokiVersion = {3, 0};
    pad(pInfo->manufacturerID, 32, "cdcp11");
    pad(pInfo->libraryDescription, 32, "cdcp11 CDC group PKCS#11");
    pInfo->libraryVersion = kLibraryVersion;
    return {};
  });
}

CDC_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR pp) {
  if (!pp) return CKR_ARGUMENTS_BAD;
  *pp = &g_function_list;
  return CKR_OK;
}

namespace {
CK_INTERFACE g_interfaces[] = {
    {reinterpret_cast<CK_CHAR*>(const_cast<char*>("PKCS 11")), &g_function_list_3_0, 0},
    {reinterpret_cast<CK_CHAR*>(const_cast<char*>("PKCS 11")), &g_function_list, 0},
    {reinterpret_cast<CK_CHAR*>(const_cast<char*>(CDC_VENDOR_INTERFACE_NAME)), &g_vendor_function_list, 0},
    {reinterpret_cast<CK_CHAR*>(const_cast<char*>(CDC_VENDOR_INTERFACE_NAME)), &g_vendor_function_list_1_0, 0},
};
constexpr CK_ULONG kInterfaceCount = sizeof g_interfaces / sizeof g_interfaces[0];
}  // namespace

CDC_EXPORT CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pList, CK_ULONG_PTR pulCount) {
  if (!pulCount) return CKR_ARGUMENTS_BAD;
  if (!pList) {
    *pulCount = kInterfaceCount;
    return CKR_OK;
  }
  if (*pulCount < kInterfaceCount) {
    *pulCount = kInterfaceCount;
    return CKR_BUFFER_TOO_SMALL;
  }
  std::memcpy(pList, g_interfaces, sizeof g_interfaces);
  *pulCount = kInterfaceCount;
  return CKR_OK;
}

CDC_EXPORT CK_RV C_GetInterface(CK_UTF8CHAR_PTR pName, CK_VERSION_PTR pVersion, CK_INTERFACE_PTR_PTR pp,
                                CK_FLAGS flags) {
  if (!pp) return CKR_ARGUMENTS_BAD;
  for (auto& i : g_interfaces) {
    if (pName && std::strcmp(reinterpret_cast<const char*>(pName), reinterpret_cast<const char*>(i.pInterfaceName)))
      continue;
    auto* v = static_cast<CK_VERSION*>(i.pFunctionList);
    if (pVersion && (pVersion->major != v->major || pVersion->minor != v->minor)) continue;
    if ((i.flags & flags) != flags) continue;
    *pp = &i;
    return CKR_OK;
  }
  return CKR_ARGUMENTS_BAD;
}

// ---------------------------------------------------------------- slots and tokens

CDC_EXPORT CK_RV C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount) {
  return call("C_GetSlotList", [&](Provider& P) -> R<void> {
    CDC_TRY(need(pulCount, "pulCount"));
    std::vector<CK_SLOT_ID> ids;
    for (auto id : P.slot_ids())
      if (!tokenPresent || P.present_token(id)) ids.push_back(id);
    if (!pSlotList) {
      *pulCount = ids.size();
      return {};
    }
    if (*pulCount < ids.size()) {
      *pulCount = ids.size();
      return err(Errc::buffer_too_small, "slot list buffer too small");
    }
    std::copy(ids.begin(), ids.end(), pSlotList);
    *pulCount = ids.size();
    return {};
  });
}

CDC_EXPORT CK_RV C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo) {
  return call("C_GetSlotInfo", [&](Provider& P) -> R<void> {
    CDC_TRY(need(pInfo, "pInfo"));
    CDC_ASSIGN(auto* token, P.token(slotID));
    std::memset(pInfo, 0, sizeof *pInfo);
    const auto& g = token->config();
    std::string desc = g.description.empty() ? "CDC group " + g.name : g.description;
    pad(pInfo->slotDescription, 64, desc);
    pad(pInfo->manufacturerID, 32, "cdcp11");
    pInfo->flags = token->present() ? CKF_TOKEN_PRESENT : 0;
    pInfo->hardwareVersion = kLibraryVersion;
    pInfo->firmwareVersion = kLibraryVersion;
    return {};
  });
}

CDC_EXPORT CK_RV C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo) {
  return call("C_GetTokenInfo", [&](Provider& P) -> R<void> {
    CDC_ASSIGN(auto* token, P.present_token(slotID));  // 5.1.3's CKR_TOKEN_NOT_PRESENT first
    CDC_TRY(need(pInfo, "pInfo"));
    CDC_ASSIGN(auto st, token->status());
    auto counts = P.session_counts(*token);
    std::memset(pInfo, 0, sizeof *pInfo);
    pad(pInfo->label, 32, token->name());
    pad(pInfo->manufacturerID, 32, st.manufacturer);
    pad(pInfo->model, 16, st.model);
    pad(pInfo->serialNumber, 16, st.serial);
    CK_FLAGS f = CKF_RNG | CKF_LOGIN_REQUIRED;
    if (st.initialized) f |= CKF_TOKEN_INITIALIZED;
    if (st.user_pin_initialized) f |= CKF_USER_PIN_INITIALIZED;
    if (st.user_pin_count_low) f |= CKF_USER_PIN_COUNT_LOW;
    if (st.user_pin_final_try) f |= CKF_USER_PIN_FINAL_TRY;
    if (st.user_pin_locked) f |= CKF_USER_PIN_LOCKED;
    if (st.so_pin_count_low) f |= CKF_SO_PIN_COUNT_LOW;
    if (st.so_pin_final_try) f |= CKF_SO_PIN_FINAL_TRY;
    if (st.so_pin_locked) f |= CKF_SO_PIN_LOCKED;
    pInfo->flags = f;
    pInfo->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
    pInfo->ulSessionCount = counts.first;
    pInfo->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
    pInfo->ulRwSessionCount = counts.second;
    pInfo->ulMaxPinLen = st.max_pin_len;
    pInfo->ulMinPinLen = st.min_pin_len;
    pInfo->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
    pInfo->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    pInfo->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
    pInfo->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    pInfo->hardwareVersion = kLibraryVersion;
    pInfo->firmwareVersion = kLibraryVersion;
    pad(pInfo->utcTime, 16, "");
    return {};
  });
}

CDC_EXPORT CK_RV C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pList, CK_ULONG_PTR pulCount) {
  return call("C_GetMechanismList", [&](Provider& P) -> R<void> {
    CDC_ASSIGN(auto* token, P.present_token(slotID));
    CDC_TRY(need(pulCount, "pulCount"));
    const auto mechs = token->mechanisms();
    if (!pList) {
      *pulCount = mechs.size();
      return {};
    }
    if (*pulCount < mechs.size()) {
      *pulCount = mechs.size();
      return err(Errc::buffer_too_small, "mechanism list buffer too small");
    }
    for (std::size_t i = 0; i < mechs.size(); ++i) pList[i] = mechs[i].type;
    *pulCount = mechs.size();
    return {};
  });
}

CDC_EXPORT CK_RV C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo) {
  return call("C_GetMechanismInfo", [&](Provider& P) -> R<void> {
    CDC_ASSIGN(auto* token, P.present_token(slotID));
    CDC_TRY(need(pInfo, "pInfo"));
    for (const auto& e : token->mechanisms()) {
      if (e.type != type) continue;
      pInfo->ulMinKeySize = e.min_key;
      pInfo->ulMaxKeySize = e.max_key;
      pInfo->flags = e.flags;
      return {};
    }
    return err(Errc::mechanism_invalid, std::string(cdcp11::core::mechanism_name(type)) + " is not supported");
  });
}

CDC_EXPORT CK_RV C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pLabel) {
  return call("C_InitToken", [&](Provider& P) -> R<void> {
    CDC_TRY(P.present_token(slotID));
    CDC_TRY(need(pPin || !ulPinLen, "pPin"));
    CDC_TRY(need(pLabel, "pLabel"));
    std::string label(reinterpret_cast<const char*>(pLabel), 32);
    label.erase(label.find_last_not_of(' ') + 1);
    return P.init_token(slotID, bytes(pPin, ulPinLen), label);
  });
}

CDC_EXPORT CK_RV C_InitPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen) {
  return session_call("C_InitPIN", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(pPin || !ulPinLen, "pPin"));
    return s.token().init_pin(s, bytes(pPin, ulPinLen));
  });
}

CDC_EXPORT CK_RV C_SetPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pOld, CK_ULONG ulOld, CK_UTF8CHAR_PTR pNew,
                          CK_ULONG ulNew) {
  return session_call("C_SetPIN", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(pOld || !ulOld, "pOldPin"));
    CDC_TRY(need(pNew || !ulNew, "pNewPin"));
    return s.token().set_pin(s, bytes(pOld, ulOld), bytes(pNew, ulNew));
  });
}

// ---------------------------------------------------------------- sessions

CDC_EXPORT CK_RV C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR, CK_NOTIFY, CK_SESSION_HANDLE_PTR ph) {
  return call("C_OpenSession", [&](Provider& P) -> R<void> {
    CDC_TRY(need(ph, "phSession"));
    CDC_ASSIGN(*ph, P.open_session(slotID, flags));
    return {};
  });
}

CDC_EXPORT CK_RV C_CloseSession(CK_SESSION_HANDLE h) {
  return session_call("C_CloseSession", h, [&](Provider& P, Session&) { return P.close_session(h); });
}

CDC_EXPORT CK_RV C_CloseAllSessions(CK_SLOT_ID slotID) {
  return call("C_CloseAllSessions", [&](Provider& P) { return P.close_all_sessions(slotID); });
}

CDC_EXPORT CK_RV C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR pInfo) {
  return session_call("C_GetSessionInfo", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(pInfo, "pInfo"));
    CK_SESSION_INFO info{};
    info.slotID = s.token().id();
    info.state = s.token().state_of(s);
    info.flags = s.flags();
    *pInfo = info;
    return {};
  });
}

CDC_EXPORT CK_RV C_GetOperationState(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR) {
  return unsupported("C_GetOperationState");
}
CDC_EXPORT CK_RV C_SetOperationState(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
  return unsupported("C_SetOperationState");
}

CDC_EXPORT CK_RV C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen) {
  return session_call("C_Login", h, [&](Provider& P, Session& s) -> R<void> {
    CDC_TRY(need(pPin || !ulPinLen, "pPin"));
    return P.login(s, userType, bytes(pPin, ulPinLen));
  });
}

CDC_EXPORT CK_RV C_LoginUser(CK_SESSION_HANDLE h, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen,
                             CK_UTF8CHAR_PTR, CK_ULONG) {
  // Tokens without user names treat C_LoginUser as C_Login (PKCS#11 3.0, 5.6).
  return C_Login(h, userType, pPin, ulPinLen);
}

CDC_EXPORT CK_RV C_Logout(CK_SESSION_HANDLE h) {
  return session_call("C_Logout", h, [&](Provider& P, Session& s) { return P.logout(s); });
}

// ---------------------------------------------------------------- objects

CDC_EXPORT CK_RV C_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR ph) {
  return session_call("C_CreateObject", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(t, "pTemplate"));
    CDC_TRY(need(ph, "phObject"));
    CDC_ASSIGN(auto a, tmpl(t, n));
    CDC_ASSIGN(*ph, s.token().create_object(s, a));
    return {};
  });
}

CDC_EXPORT CK_RV C_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                              CK_OBJECT_HANDLE_PTR ph) {
  return session_call("C_CopyObject", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(ph, "phNewObject"));
    CDC_ASSIGN(auto a, tmpl(t, n));
    CDC_ASSIGN(*ph, s.token().copy_object(s, o, a));
    return {};
  });
}

CDC_EXPORT CK_RV C_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o) {
  return session_call("C_DestroyObject", h, [&](Session& s) { return s.token().destroy_object(s, o); });
}

CDC_EXPORT CK_RV C_GetObjectSize(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ULONG_PTR pul) {
  return session_call("C_GetObjectSize", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(pul, "pulSize"));
    CDC_ASSIGN(*pul, s.token().object_size(s, o));
    return {};
  });
}

CDC_EXPORT CK_RV C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
  return session_call("C_GetAttributeValue", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(t || !n, "pTemplate"));
    return s.token().get_attributes(s, o, t, n);
  });
}

CDC_EXPORT CK_RV C_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
  return session_call("C_SetAttributeValue", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(t || !n, "pTemplate"));
    CDC_ASSIGN(auto a, tmpl(t, n));
    return s.token().set_attributes(s, o, a);
  });
}

CDC_EXPORT CK_RV C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n) {
  return session_call("C_FindObjectsInit", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(t || !n, "pTemplate"));
    CDC_ASSIGN(auto a, tmpl(t, n));
    return s.find_begin(a);
  });
}

CDC_EXPORT CK_RV C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR ph, CK_ULONG max, CK_ULONG_PTR pulCount) {
  return session_call("C_FindObjects", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(ph || !max, "phObject"));
    CDC_TRY(need(pulCount, "pulObjectCount"));
    CDC_ASSIGN(*pulCount, s.find_next(ph, max));
    return {};
  });
}

CDC_EXPORT CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE h) {
  return session_call("C_FindObjectsFinal", h, [&](Session& s) { return s.find_end(); });
}

// ---------------------------------------------------------------- encrypt / decrypt / sign / verify

#define CDC_OP_FUNCTIONS(Name, Kind)                                                                   \
  CDC_EXPORT CK_RV C_##Name##Init(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {        \
    return session_call("C_" #Name "Init", h, [&](Session& s) -> R<void> {                              \
      CDC_TRY(need(m, "pMechanism"));                                                                   \
      return s.begin(Kind, m, k);                                                                       \
    });                                                                                                 \
  }

CDC_OP_FUNCTIONS(Encrypt, OpKind::encrypt)
CDC_OP_FUNCTIONS(Decrypt, OpKind::decrypt)
CDC_OP_FUNCTIONS(Sign, OpKind::sign)
CDC_OP_FUNCTIONS(Verify, OpKind::verify)

CDC_EXPORT CK_RV C_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR out, CK_ULONG_PTR outLen) {
  return session_call("C_Encrypt", h, [&](Session& s) -> R<void> {
    return s.single(OpKind::encrypt, input(in, n, "pData"), out, outLen);
  });
}
CDC_EXPORT CK_RV C_EncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR out, CK_ULONG_PTR outLen) {
  return session_call("C_EncryptUpdate", h, [&](Session& s) -> R<void> {
    return s.update(OpKind::encrypt, input(in, n, "pPart"), out, outLen);
  });
}
CDC_EXPORT CK_RV C_EncryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR outLen) {
  return session_call("C_EncryptFinal", h, [&](Session& s) { return s.final(OpKind::encrypt, out, outLen); });
}
CDC_EXPORT CK_RV C_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR out, CK_ULONG_PTR outLen) {
  return session_call("C_Decrypt", h, [&](Session& s) -> R<void> {
    return s.single(OpKind::decrypt, input(in, n, "pEncryptedData"), out, outLen);
  });
}
CDC_EXPORT CK_RV C_DecryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR out, CK_ULONG_PTR outLen) {
  return session_call("C_DecryptUpdate", h, [&](Session& s) -> R<void> {
    return s.update(OpKind::decrypt, input(in, n, "pEncryptedPart"), out, outLen);
  });
}
CDC_EXPORT CK_RV C_DecryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR outLen) {
  return session_call("C_DecryptFinal", h, [&](Session& s) { return s.final(OpKind::decrypt, out, outLen); });
}
CDC_EXPORT CK_RV C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR out, CK_ULONG_PTR outLen) {
  return session_call("C_Sign", h, [&](Session& s) -> R<void> {
    return s.single(OpKind::sign, input(in, n, "pData"), out, outLen);
  });
}
CDC_EXPORT CK_RV C_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n) {
  return session_call("C_SignUpdate", h, [&](Session& s) -> R<void> {
    return s.update(OpKind::sign, input(in, n, "pPart"), nullptr, nullptr);
  });
}
CDC_EXPORT CK_RV C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR outLen) {
  return session_call("C_SignFinal", h, [&](Session& s) { return s.final(OpKind::sign, out, outLen); });
}
CDC_EXPORT CK_RV C_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR sig, CK_ULONG sigLen) {
  return session_call("C_Verify", h, [&](Session& s) -> R<void> {
    return s.verify_single(input(in, n, "pData"), input(sig, sigLen, "pSignature"));
  });
}
CDC_EXPORT CK_RV C_VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n) {
  return session_call("C_VerifyUpdate", h, [&](Session& s) -> R<void> {
    return s.update(OpKind::verify, input(in, n, "pPart"), nullptr, nullptr);
  });
}
CDC_EXPORT CK_RV C_VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sigLen) {
  return session_call("C_VerifyFinal", h, [&](Session& s) -> R<void> {
    return s.verify_final(input(sig, sigLen, "pSignature"));
  });
}

// ---------------------------------------------------------------- digest

CDC_EXPORT CK_RV C_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m) {
  return session_call("C_DigestInit", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(m, "pMechanism"));
    return s.digest_begin(m);
  });
}
CDC_EXPORT CK_RV C_Digest(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n, CK_BYTE_PTR out, CK_ULONG_PTR outLen) {
  return session_call("C_Digest", h, [&](Session& s) -> R<void> {
    return s.digest_single(input(in, n, "pData"), out, outLen);
  });
}
CDC_EXPORT CK_RV C_DigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG n) {
  return session_call("C_DigestUpdate", h, [&](Session& s) -> R<void> {
    return s.digest_update(input(in, n, "pPart"));
  });
}
CDC_EXPORT CK_RV C_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k) {
  return session_call("C_DigestKey", h, [&](Session& s) { return s.digest_key(k); });
}
CDC_EXPORT CK_RV C_DigestFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR outLen) {
  return session_call("C_DigestFinal", h, [&](Session& s) { return s.digest_final(out, outLen); });
}

// ---------------------------------------------------------------- not supported

CDC_EXPORT CK_RV C_SignRecoverInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE) { return unsupported("C_SignRecoverInit"); }
CDC_EXPORT CK_RV C_SignRecover(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR) { return unsupported("C_SignRecover"); }
CDC_EXPORT CK_RV C_VerifyRecoverInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE) { return unsupported("C_VerifyRecoverInit"); }
CDC_EXPORT CK_RV C_VerifyRecover(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR) { return unsupported("C_VerifyRecover"); }
CDC_EXPORT CK_RV C_DigestEncryptUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR) { return unsupported("C_DigestEncryptUpdate"); }
CDC_EXPORT CK_RV C_DecryptDigestUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR) { return unsupported("C_DecryptDigestUpdate"); }
CDC_EXPORT CK_RV C_SignEncryptUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR) { return unsupported("C_SignEncryptUpdate"); }
CDC_EXPORT CK_RV C_DecryptVerifyUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR) { return unsupported("C_DecryptVerifyUpdate"); }
CDC_EXPORT CK_RV C_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR pSeed, CK_ULONG n) {
  CK_RV rv = session_call("C_SeedRandom", h, [&](Session&) { return need(pSeed || !n, "pSeed"); });
  return rv == CKR_OK ? CKR_RANDOM_SEED_NOT_SUPPORTED : rv;
}
// Legacy functions (PKCS#11 3.0 5.20): they only ever say CKR_FUNCTION_NOT_PARALLEL.
CDC_EXPORT CK_RV C_GetFunctionStatus(CK_SESSION_HANDLE h) {
  return session_call("C_GetFunctionStatus", h, [&](Session&) -> R<void> {
    return err(Errc::function_not_parallel, "C_GetFunctionStatus is a legacy function");
  });
}
CDC_EXPORT CK_RV C_CancelFunction(CK_SESSION_HANDLE h) {
  return session_call("C_CancelFunction", h, [&](Session&) -> R<void> {
    return err(Errc::function_not_parallel, "C_CancelFunction is a legacy function");
  });
}
// The slots are the configured groups and their tokens: nothing changes while initialised.
CDC_EXPORT CK_RV C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved) {
  return call("C_WaitForSlotEvent", [&](Provider&) -> R<void> {
    CDC_TRY(need(pSlot, "pSlot"));
    if (pReserved) return err(Errc::arguments_bad, "pReserved must be NULL");
    if (flags & CKF_DONT_BLOCK) return err(Errc::no_event, "no slot event: the slots never change");
    return err(Errc::not_supported, "waiting for a slot event would never return: the slots never change");
  });
}

// ---------------------------------------------------------------- keys and random

CDC_EXPORT CK_RV C_GenerateKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                               CK_OBJECT_HANDLE_PTR ph) {
  return session_call("C_GenerateKey", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(m, "pMechanism"));
    CDC_TRY(need(ph, "phKey"));
    CDC_ASSIGN(auto a, tmpl(t, n));
    CDC_ASSIGN(*ph, s.token().generate_key(s, m, a));
    return {};
  });
}

CDC_EXPORT CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn,
                                   CK_ATTRIBUTE_PTR vt, CK_ULONG vn, CK_OBJECT_HANDLE_PTR ppub,
                                   CK_OBJECT_HANDLE_PTR ppriv) {
  return session_call("C_GenerateKeyPair", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(m, "pMechanism"));
    CDC_TRY(need(ppub && ppriv, "phPublicKey/phPrivateKey"));
    CDC_ASSIGN(auto pub, tmpl(pt, pn));
    CDC_ASSIGN(auto priv, tmpl(vt, vn));
    CDC_ASSIGN(auto pair, s.token().generate_key_pair(s, m, pub, priv));
    *ppub = pair.first;
    *ppriv = pair.second;
    return {};
  });
}

CDC_EXPORT CK_RV C_WrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wk, CK_OBJECT_HANDLE k,
                           CK_BYTE_PTR out, CK_ULONG_PTR outLen) {
  return session_call("C_WrapKey", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(m, "pMechanism"));
    return s.token().wrap_key(s, m, wk, k, out, outLen);
  });
}

CDC_EXPORT CK_RV C_UnwrapKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE uk, CK_BYTE_PTR w,
                             CK_ULONG wn, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR ph) {
  return session_call("C_UnwrapKey", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(m, "pMechanism"));
    CDC_TRY(need(w, "pWrappedKey"));
    CDC_TRY(need(ph, "phKey"));
    CDC_ASSIGN(auto a, tmpl(t, n));
    CDC_ASSIGN(*ph, s.token().unwrap_key(s, m, uk, bytes(w, wn), a));
    return {};
  });
}

CDC_EXPORT CK_RV C_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR t,
                             CK_ULONG n, CK_OBJECT_HANDLE_PTR ph) {
  return session_call("C_DeriveKey", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(m, "pMechanism"));
    CDC_TRY(need(ph, "phKey"));
    CDC_ASSIGN(auto a, tmpl(t, n));
    CDC_ASSIGN(*ph, s.token().derive_key(s, m, base, a));
    return {};
  });
}

CDC_EXPORT CK_RV C_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG n) {
  return session_call("C_GenerateRandom", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(out || !n, "pRandomData"));
    return s.token().random(out, n);
  });
}

// ---------------------------------------------------------------- PKCS#11 3.0 additions

CDC_EXPORT CK_RV C_SessionCancel(CK_SESSION_HANDLE h, CK_FLAGS flags) {
  return session_call("C_SessionCancel", h, [&](Session& s) -> R<void> {
    s.cancel(flags);
    return {};
  });
}

#define CDC_UNSUPPORTED(name, ...) \
  CDC_EXPORT CK_RV name(__VA_ARGS__) { return unsupported(#name); }
CDC_UNSUPPORTED(C_MessageEncryptInit, CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE)
CDC_UNSUPPORTED(C_EncryptMessage, CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR)
CDC_UNSUPPORTED(C_EncryptMessageBegin, CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG)
CDC_UNSUPPORTED(C_EncryptMessageNext, CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR, CK_FLAGS)
CDC_UNSUPPORTED(C_MessageEncryptFinal, CK_SESSION_HANDLE)
CDC_UNSUPPORTED(C_MessageDecryptInit, CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE)
CDC_UNSUPPORTED(C_DecryptMessage, CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR)
CDC_UNSUPPORTED(C_DecryptMessageBegin, CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG)
CDC_UNSUPPORTED(C_DecryptMessageNext, CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR, CK_FLAGS)
CDC_UNSUPPORTED(C_MessageDecryptFinal, CK_SESSION_HANDLE)
CDC_UNSUPPORTED(C_MessageSignInit, CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE)
CDC_UNSUPPORTED(C_SignMessage, CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR)
CDC_UNSUPPORTED(C_SignMessageBegin, CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG)
CDC_UNSUPPORTED(C_SignMessageNext, CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR)
CDC_UNSUPPORTED(C_MessageSignFinal, CK_SESSION_HANDLE)
CDC_UNSUPPORTED(C_MessageVerifyInit, CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE)
CDC_UNSUPPORTED(C_VerifyMessage, CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG)
CDC_UNSUPPORTED(C_VerifyMessageBegin, CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG)
CDC_UNSUPPORTED(C_VerifyMessageNext, CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG)
CDC_UNSUPPORTED(C_MessageVerifyFinal, CK_SESSION_HANDLE)

// ---------------------------------------------------------------- vendor interface

namespace {

R<cdcp11::core::mirror::Service*> mirror_of(Session& s) {
  if (auto* m = s.token().mirror()) return m;
  return err(Errc::function_failed, "group '" + s.token().name() + "' has no mirror");
}

CK_RV C_CDC_MirrorKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k) {
  return session_call("C_CDC_MirrorKey", h, [&](Session& s) -> R<void> {
    CDC_ASSIGN(auto* m, mirror_of(s));
    return m->mirror_now(s, k);
  });
}

CK_RV C_CDC_GetMirrorStatus(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k, CK_ULONG_PTR pState, CK_UTF8CHAR_PTR pKeyId,
                            CK_ULONG_PTR pulKeyIdLen) {
  return session_call("C_CDC_GetMirrorStatus", h, [&](Session& s) -> R<void> {
    CDC_TRY(need(pState, "pState"));
    CDC_ASSIGN(auto* m, mirror_of(s));
    CDC_ASSIGN(auto st, m->status(s, k));
    *pState = st.first;
    if (!pulKeyIdLen) return {};
    return cdcp11::core::write_output(cdcp11::view(st.second), pKeyId, pulKeyIdLen);
  });
}

CK_RV C_CDC_SyncKeys(CK_SESSION_HANDLE h, CDC_SYNC_RESULT_PTR pResult) {
  return session_call("C_CDC_SyncKeys", h, [&](Session& s) -> R<void> {
    CDC_ASSIGN(auto rep, cdcp11::core::cloud::sync_keys(s.token(), s));
    if (pResult) {
      pResult->ulLinked = rep.linked;
      pResult->ulAdded = rep.added;
      pResult->ulUpdated = rep.updated;
      pResult->ulRemoved = rep.removed;
      pResult->ulUnchanged = rep.unchanged;
      pResult->ulSkipped = rep.skipped;
    }
    return {};
  });
}

CK_RV C_CDC_RotateKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k, CK_OBJECT_HANDLE_PTR phNewKey) {
  return session_call("C_CDC_RotateKey", h, [&](Session& s) -> R<void> {
    CDC_TRY(mirror_of(s));
    CDC_ASSIGN(auto out, cdcp11::core::mirror::rotate_key(s.token(), s, k));
    if (phNewKey) *phNewKey = out.new_key;
    return {};
  });
}

}  // namespace

CDC_FUNCTION_LIST g_vendor_function_list = {{1, 1}, C_CDC_MirrorKey, C_CDC_GetMirrorStatus, C_CDC_SyncKeys,
                                            C_CDC_RotateKey};
// For applications asking for version 1.0 by number: the same functions, without the 1.1 one.
CDC_FUNCTION_LIST g_vendor_function_list_1_0 = {{1, 0}, C_CDC_MirrorKey, C_CDC_GetMirrorStatus, C_CDC_SyncKeys,
                                                nullptr};

// ---------------------------------------------------------------- function lists

#define CDC_240_FUNCTIONS                                                                             \
  C_Initialize, C_Finalize, C_GetInfo, C_GetFunctionList, C_GetSlotList, C_GetSlotInfo, C_GetTokenInfo, \
      C_GetMechanismList, C_GetMechanismInfo, C_InitToken, C_InitPIN, C_SetPIN, C_OpenSession,          \
      C_CloseSession, C_CloseAllSessions, C_GetSessionInfo, C_GetOperationState, C_SetOperationState,   \
      C_Login, C_Logout, C_CreateObject, C_CopyObject, C_DestroyObject, C_GetObjectSize,                \
      C_GetAttributeValue, C_SetAttributeValue, C_FindObjectsInit, C_FindObjects, C_FindObjectsFinal,   \
      C_EncryptInit, C_Encrypt, C_EncryptUpdate, C_EncryptFinal, C_DecryptInit, C_Decrypt,              \
      C_DecryptUpdate, C_DecryptFinal, C_DigestInit, C_Digest, C_DigestUpdate, C_DigestKey,             \
      C_DigestFinal, C_SignInit, C_Sign, C_SignUpdate, C_SignFinal, C_SignRecoverInit, C_SignRecover,   \
      C_VerifyInit, C_Verify, C_VerifyUpdate, C_VerifyFinal, C_VerifyRecoverInit, C_VerifyRecover,      \
      C_DigestEncryptUpdate, C_DecryptDigestUpdate, C_SignEncryptUpdate, C_DecryptVerifyUpdate,         \
      C_GenerateKey, C_GenerateKeyPair, C_WrapKey, C_UnwrapKey, C_DeriveKey, C_SeedRandom,              \
      C_GenerateRandom, C_GetFunctionStatus, C_CancelFunction, C_WaitForSlotEvent

CK_FUNCTION_LIST g_function_list = {{2, 40}, CDC_240_FUNCTIONS};

CK_FUNCTION_LIST_3_0 g_function_list_3_0 = {
    {3, 0}, CDC_240_FUNCTIONS, C_GetInterfaceList, C_GetInterface, C_LoginUser, C_SessionCancel,
    C_MessageEncryptInit, C_EncryptMessage, C_EncryptMessageBegin, C_EncryptMessageNext,
    C_MessageEncryptFinal, C_MessageDecryptInit, C_DecryptMessage, C_DecryptMessageBegin,
    C_DecryptMessageNext, C_MessageDecryptFinal, C_MessageSignInit, C_SignMessage, C_SignMessageBegin,
    C_SignMessageNext, C_MessageSignFinal, C_MessageVerifyInit, C_VerifyMessage, C_VerifyMessageBegin,
    C_VerifyMessageNext, C_MessageVerifyFinal};
