/* cdcp11 public vendor surface: vendor attributes and (later) the "Vendor cdcp11" interface.
 * Applications include this instead of <p11-kit/pkcs11.h>. */
#ifndef CDCP11_CDCP11_H
#define CDCP11_CDCP11_H

#include "cdcp11/pkcs11_3_0.h"

/* Vendor attribute space: CKA_VENDOR_DEFINED | 0x0CDC0000 | n. */
#define CKA_CDC_BASE (CKA_VENDOR_DEFINED | 0x0CDC0000UL)

#endif /* CDCP11_CDCP11_H */
