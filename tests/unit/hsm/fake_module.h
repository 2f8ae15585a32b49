// State of the fake PKCS#11 module the tests load (fake_module.cpp), read and steered through
// fake_p11_state() after dlopen'ing it.
#pragma once

#include "cdcp11/pkcs11_3_0.h"

struct FakeP11State {
  int initialized;
  int init_calls, finalize_calls;
  char reserved[256];  // the pReserved string of the last C_Initialize ("" when NULL)
  int reserved_was_null;
  CK_RV init_rv;       // C_Initialize returns this when not CKR_OK
  CK_RV find_rv;       // C_FindObjects returns this
  int find_final_calls;
  int open_sessions, close_calls;
  int sign_cancel_calls;  // C_SignInit with a NULL mechanism (the 3.0 cancel)
  int token_info_failures;  // C_GetTokenInfo of the token fails with CKR_GENERAL_ERROR this many times
};

extern "C" typedef FakeP11State* (*FakeP11StateFn)();
