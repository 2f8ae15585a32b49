// A PKCS#11 module for the mirror tests that stands for an HSM lacking some mechanisms: it is
// SoftHSM2 (or the module named by CDCP11_TEST_FILTER_INNER) with the mechanisms listed in
// C_Initialize's pReserved ("hide=0x210a,0x1054") left out of C_GetMechanismList and refused by
// C_GetMechanismInfo. Every other call is SoftHSM2's own. Load a copy of the file per setting: a
// process loads one file once.
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cdcp11/pkcs11_3_0.h"

#define EXPORT extern "C" __attribute__((visibility("default")))

namespace {

CK_FUNCTION_LIST_PTR inner = nullptr;
CK_FUNCTION_LIST list{};
std::vector<CK_MECHANISM_TYPE> hidden;
bool finalize_inner = false;  // false: another user initialised it and finalises it

bool is_hidden(CK_MECHANISM_TYPE t) {
  for (auto h : hidden)
    if (h == t) return true;
  return false;
}

// "hide=0x210a,0x1054": the mechanisms to hide.
void parse(const char* args) {
  hidden.clear();
  if (!args) return;
  const std::string s(args);
  const auto at = s.find("hide=");
  if (at == std::string::npos) return;
  for (const char* p = s.c_str() + at + 5; *p;) {
    char* end = nullptr;
    const auto v = std::strtoul(p, &end, 0);
    if (end == p) break;
    hidden.push_back(v);
    p = *end == ',' ? end + 1 : end;
    if (*end != ',') break;
  }
}

CK_RV Initialize(CK_VOID_PTR p) {
  auto* a = static_cast<CK_C_INITIALIZE_ARGS*>(p);
  parse(a ? static_cast<const char*>(a->pReserved) : nullptr);
  CK_C_INITIALIZE_ARGS own{};
  if (a) own = *a;
  own.pReserved = nullptr;  // SoftHSM2 refuses one
  const CK_RV rv = inner->C_Initialize(a ? &own : nullptr);
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) return CKR_OK;
  finalize_inner = rv == CKR_OK;
  return rv;
}

CK_RV Finalize(CK_VOID_PTR p) {
  if (!finalize_inner) return CKR_OK;
  finalize_inner = false;
  return inner->C_Finalize(p);
}

CK_RV GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR out, CK_ULONG_PTR n) {
  if (!n) return CKR_ARGUMENTS_BAD;
  CK_ULONG all = 0;
  if (CK_RV rv = inner->C_GetMechanismList(slot, nullptr, &all); rv != CKR_OK) return rv;
  std::vector<CK_MECHANISM_TYPE> mechs(all);
  if (CK_RV rv = inner->C_GetMechanismList(slot, mechs.data(), &all); rv != CKR_OK) return rv;
  mechs.resize(all);
  std::erase_if(mechs, is_hidden);
  const CK_ULONG have = *n;
  *n = mechs.size();
  if (!out) return CKR_OK;
  if (have < mechs.size()) return CKR_BUFFER_TOO_SMALL;
  std::memcpy(out, mechs.data(), mechs.size() * sizeof(CK_MECHANISM_TYPE));
  return CKR_OK;
}

CK_RV GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO_PTR info) {
  if (is_hidden(t)) return CKR_MECHANISM_INVALID;
  return inner->C_GetMechanismInfo(slot, t, info);
}

}  // namespace

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out) {
  if (!out) return CKR_ARGUMENTS_BAD;
  if (!inner) {
    const char* path = std::getenv("CDCP11_TEST_FILTER_INNER");
    void* lib = dlopen(path ? path : "/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return CKR_GENERAL_ERROR;
    auto get = reinterpret_cast<CK_C_GetFunctionList>(dlsym(lib, "C_GetFunctionList"));
    if (!get || get(&inner) != CKR_OK || !inner) return CKR_GENERAL_ERROR;
    list = *inner;
    list.C_Initialize = Initialize;
    list.C_Finalize = Finalize;
    list.C_GetMechanismList = GetMechanismList;
    list.C_GetMechanismInfo = GetMechanismInfo;
  }
  *out = &list;
  return CKR_OK;
}
