// A fake PKCS#11 3.0 module for the HSM client's tests: exports C_GetInterface, records what
// C_Initialize got, answers C_Login with CKR_PIN_LOCKED for the PIN "locked", and leaves most of
// the function list NULL.
#include <cstring>
#include <string_view>

#include "tests/unit/hsm/fake_module.h"

#define EXPORT extern "C" __attribute__((visibility("default")))

namespace {

FakeP11State g{};
constexpr CK_SLOT_ID kTokenSlot = 7, kEmptySlot = 8;

void pad(CK_UTF8CHAR* dst, std::size_t n, const char* s) {
  std::memset(dst, ' ', n);
  std::memcpy(dst, s, std::strlen(s));
}

CK_RV Initialize(CK_VOID_PTR p) {
  if (g.initialized) return CKR_CRYPTOKI_ALREADY_INITIALIZED;
  ++g.init_calls;
  auto* a = static_cast<CK_C_INITIALIZE_ARGS*>(p);
  g.reserved_was_null = !a || !a->pReserved;
  g.reserved[0] = 0;
  if (a && a->pReserved)
    std::strncpy(g.reserved, static_cast<const char*>(a->pReserved), sizeof g.reserved - 1);
  if (g.init_rv != CKR_OK) return g.init_rv;
  g.initialized = 1;
  return CKR_OK;
}

CK_RV Finalize(CK_VOID_PTR) {
  if (!g.initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
  ++g.finalize_calls;
  g.initialized = 0;
  return CKR_OK;
}

CK_RV GetInfo(CK_INFO_PTR i) {
  std::memset(i, 0, sizeof *i);
  i->cryptokiVersion = {3, 0};
  pad(i->manufacturerID, sizeof i->manufacturerID, "cdcp11 tests");
  pad(i->libraryDescription, sizeof i->libraryDescription, "fake module");
  return CKR_OK;
}

CK_RV GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR n) {
  CK_ULONG need = present ? 1 : 2;
  if (!list) {
    *n = need;
    return CKR_OK;
  }
  if (*n < need) {
    *n = need;
    return CKR_BUFFER_TOO_SMALL;
  }
  list[0] = kTokenSlot;
  if (!present) list[1] = kEmptySlot;
  *n = need;
  return CKR_OK;
}

CK_RV GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR t) {
  if (slot == kEmptySlot) return CKR_TOKEN_NOT_PRESENT;
  if (slot != kTokenSlot) return CKR_SLOT_ID_INVALID;
  if (g.token_info_failures > 0) {
    --g.token_info_failures;
    return CKR_GENERAL_ERROR;
  }
  std::memset(t, 0, sizeof *t);
  pad(t->label, sizeof t->label, "fake");
  pad(t->manufacturerID, sizeof t->manufacturerID, "cdcp11 tests");
  pad(t->model, sizeof t->model, "Fake HSM");
  pad(t->serialNumber, sizeof t->serialNumber, "FAKE0001");
  t->flags = CKF_LOGIN_REQUIRED | CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED;
  t->ulMinPinLen = 4;
  t->ulMaxPinLen = 64;
  return CKR_OK;
}

CK_RV GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n) {
  if (slot != kTokenSlot) return CKR_SLOT_ID_INVALID;
  static const CK_MECHANISM_TYPE mechs[] = {CKM_RSA_AES_KEY_WRAP, CKM_AES_KEY_WRAP_KWP};
  if (list && *n < 2) {
    *n = 2;
    return CKR_BUFFER_TOO_SMALL;
  }
  if (list) std::memcpy(list, mechs, sizeof mechs);
  *n = 2;
  return CKR_OK;
}

CK_RV GetMechanismInfo(CK_SLOT_ID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR i) {
  if (type != CKM_RSA_AES_KEY_WRAP && type != CKM_AES_KEY_WRAP_KWP) return CKR_MECHANISM_INVALID;
  *i = CK_MECHANISM_INFO{type == CKM_RSA_AES_KEY_WRAP ? 2048ul : 16ul,
                         type == CKM_RSA_AES_KEY_WRAP ? 4096ul : 32ul, CKF_WRAP | CKF_UNWRAP};
  return CKR_OK;
}

CK_RV OpenSession(CK_SLOT_ID slot, CK_FLAGS, CK_VOID_PTR, CK_NOTIFY, CK_SESSION_HANDLE_PTR h) {
  if (slot != kTokenSlot) return CKR_SLOT_ID_INVALID;
  *h = static_cast<CK_SESSION_HANDLE>(++g.open_sessions);
  return CKR_OK;
}

CK_RV CloseSession(CK_SESSION_HANDLE) {
  ++g.close_calls;
  return CKR_OK;
}

CK_RV Login(CK_SESSION_HANDLE, CK_USER_TYPE, CK_UTF8CHAR_PTR pin, CK_ULONG len) {
  std::string_view p(reinterpret_cast<const char*>(pin), len);
  if (p == "locked") return CKR_PIN_LOCKED;
  return p == "1234" ? CKR_OK : CKR_PIN_INCORRECT;
}

CK_RV FindObjectsInit(CK_SESSION_HANDLE, CK_ATTRIBUTE_PTR, CK_ULONG) { return CKR_OK; }
CK_RV FindObjects(CK_SESSION_HANDLE, CK_OBJECT_HANDLE_PTR, CK_ULONG, CK_ULONG_PTR n) {
  *n = 0;
  return g.find_rv;
}
CK_RV FindObjectsFinal(CK_SESSION_HANDLE) {
  ++g.find_final_calls;
  return CKR_OK;
}

CK_RV SignInit(CK_SESSION_HANDLE, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE) {
  if (!m) ++g.sign_cancel_calls;
  return CKR_OK;
}
CK_RV SignUpdate(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG) { return CKR_OK; }

CK_FUNCTION_LIST_3_0 make_list() {
  CK_FUNCTION_LIST_3_0 f{};
  f.version = {3, 0};
  f.C_Initialize = Initialize;
  f.C_Finalize = Finalize;
  f.C_GetInfo = GetInfo;
  f.C_GetSlotList = GetSlotList;
  f.C_GetTokenInfo = GetTokenInfo;
  f.C_GetMechanismList = GetMechanismList;
  f.C_GetMechanismInfo = GetMechanismInfo;
  f.C_OpenSession = OpenSession;
  f.C_CloseSession = CloseSession;
  f.C_Login = Login;
  f.C_FindObjectsInit = FindObjectsInit;
  f.C_FindObjects = FindObjects;
  f.C_FindObjectsFinal = FindObjectsFinal;
  f.C_SignInit = SignInit;
  f.C_SignUpdate = SignUpdate;
  return f;
}

CK_FUNCTION_LIST_3_0 g_list = make_list();
char g_name[] = "PKCS 11";
CK_INTERFACE g_iface{reinterpret_cast<CK_CHAR*>(g_name), &g_list, 0};

}  // namespace

EXPORT FakeP11State* fake_p11_state() { return &g; }

EXPORT CK_RV C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version,
                            CK_INTERFACE_PTR_PTR out, CK_FLAGS) {
  if (!out) return CKR_ARGUMENTS_BAD;
  if (name && std::strcmp(reinterpret_cast<const char*>(name), "PKCS 11") != 0)
    return CKR_ARGUMENTS_BAD;
  if (version && version->major != 3) return CKR_ARGUMENTS_BAD;
  *out = &g_iface;
  return CKR_OK;
}

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out) {
  if (!out) return CKR_ARGUMENTS_BAD;
  *out = reinterpret_cast<CK_FUNCTION_LIST_PTR>(&g_list);
  return CKR_OK;
}
