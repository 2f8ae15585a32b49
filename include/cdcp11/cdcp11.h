/* cdcp11 public vendor surface: vendor attributes and the "Vendor cdcp11" interface.
 * Applications include this instead of <p11-kit/pkcs11.h>. */
#ifndef CDCP11_CDCP11_H
#define CDCP11_CDCP11_H

#include "cdcp11/pkcs11_3_0.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Vendor attribute space: CKA_VENDOR_DEFINED | 0x0CDC0000 | n. */
#define CKA_CDC_BASE (CKA_VENDOR_DEFINED | 0x0CDC0000UL)

/* In a template (C_GenerateKey, C_GenerateKeyPair private template, C_CreateObject,
 * C_CopyObject, C_UnwrapKey): CK_BBOOL, mirror this key into the group's Key Vault (CK_TRUE) or
 * not (CK_FALSE), whatever the group's policy says. */
#define CKA_CDC_MIRROR (CKA_CDC_BASE + 1)
/* In a template: UTF-8, the name the key gets in Key Vault (default: from CKA_LABEL). */
#define CKA_CDC_AZURE_KEY_NAME (CKA_CDC_BASE + 2)
/* Read-only, CK_ULONG: one of CDC_MIRROR_STATE_*. */
#define CKA_CDC_MIRROR_STATE (CKA_CDC_BASE + 3)
/* Read-only, UTF-8: the Azure key id with its version (kid), once mirrored. */
#define CKA_CDC_AZURE_KEY_ID (CKA_CDC_BASE + 4)
/* Read-only, UTF-8: why the last mirror attempt failed (empty otherwise). */
#define CKA_CDC_MIRROR_ERROR (CKA_CDC_BASE + 5)
/* Read-only, CK_ULONG: CDC_ORIGIN_LOCAL (the token holds the key) or CDC_ORIGIN_AZURE (the key
 * lives only in Key Vault; operations with it go to Key Vault). */
#define CKA_CDC_ORIGIN (CKA_CDC_BASE + 6)
/* In the private key template of C_GenerateKeyPair: CK_BBOOL, create the key in Key Vault
 * itself (non-exportable) instead of in the local token. */
#define CKA_CDC_CLOUD_NATIVE (CKA_CDC_BASE + 7)

#define CDC_MIRROR_STATE_NONE 0UL
#define CDC_MIRROR_STATE_PENDING 1UL
#define CDC_MIRROR_STATE_MIRRORED 2UL
#define CDC_MIRROR_STATE_FAILED 3UL

#define CDC_ORIGIN_LOCAL 0UL
#define CDC_ORIGIN_AZURE 1UL

/* The vendor interface, from C_GetInterface("Vendor cdcp11", NULL, &iface, 0). */
#define CDC_VENDOR_INTERFACE_NAME "Vendor cdcp11"

typedef struct CDC_FUNCTION_LIST {
  CK_VERSION version; /* 1.0 */
  /* Mirror this key (a private or secret key token object) now; returns when it is mirrored or
   * has failed (the reason is in CKA_CDC_MIRROR_ERROR and the log). */
  CK_RV (*C_CDC_MirrorKey)(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey);
  /* The key's CDC_MIRROR_STATE_*; pKeyId / pulKeyIdLen follow the usual length-query rules and
   * receive the Azure key id (may be NULL to skip). */
  CK_RV (*C_CDC_GetMirrorStatus)(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey, CK_ULONG_PTR pState,
                                 CK_UTF8CHAR_PTR pKeyId, CK_ULONG_PTR pulKeyIdLen);
  /* Sync the group's keys with its vault: link mirrored keys, bring in keys created in Azure. */
  CK_RV (*C_CDC_SyncKeys)(CK_SESSION_HANDLE hSession);
} CDC_FUNCTION_LIST;
typedef CDC_FUNCTION_LIST* CDC_FUNCTION_LIST_PTR;

#ifdef __cplusplus
}
#endif

#endif /* CDCP11_CDCP11_H */
