// The one place internal errors become CK_RV.
#pragma once

#include "cdcp11/pkcs11_3_0.h"
#include "core/errors.h"

namespace cdcp11::p11 {

CK_RV to_rv(core::Errc e);
const char* rv_name(CK_RV rv);

}  // namespace cdcp11::p11
