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
 * itself (non-exportable) instead of in the local token. The private key object then has
 * CKA_CDC_ORIGIN CDC_ORIGIN_AZURE. RSA (2048/3072/4096, exponent 65537) and EC (P-256, P-384,
 * P-521) only; the key is a token object. */
#define CKA_CDC_CLOUD_NATIVE (CKA_CDC_BASE + 7)

/* Key versions (README.md, "Rotation"). A rotation makes a new key that takes over the key's
 * CKA_LABEL and CKA_ID and becomes the next version of the same Azure key; the key it replaces
 * becomes a former version: labelled "<label>@v<N>", CKA_ID "<id>@v<N>", still usable to decrypt,
 * unwrap and verify (no longer to sign, encrypt or wrap), linked to its own Azure key version by
 * CKA_CDC_AZURE_KEY_ID. Private, secret and public key objects carry these; a key without them is
 * version 1 and current. */
/* Read-only, CK_ULONG: the version number, 1, 2, ... */
#define CKA_CDC_KEY_VERSION (CKA_CDC_BASE + 8)
/* Read-only, CK_ULONG: one of CDC_VERSION_*. Find former versions with this in the template. */
#define CKA_CDC_VERSION_STATE (CKA_CDC_BASE + 9)
/* Read-only, CK_ULONG: Unix time (seconds) this version became current (first mirrored, or made
 * by a rotation). */
#define CKA_CDC_VERSION_SINCE (CKA_CDC_BASE + 10)
/* Read-only, CK_ULONG: Unix time this version was replaced (former versions). */
#define CKA_CDC_FORMER_SINCE (CKA_CDC_BASE + 11)
/* In a template, or set later: CK_ULONG, rotate this key every N days (0: never), overriding the
 * group's mirror.rotation.every_days. */
#define CKA_CDC_ROTATE_EVERY_DAYS (CKA_CDC_BASE + 12)
/* In a template, or set later: CK_ULONG, retire this key's former versions M days after they were
 * replaced (0: never), overriding the group's mirror.rotation.retire_former_after_days. */
#define CKA_CDC_RETIRE_FORMER_AFTER_DAYS (CKA_CDC_BASE + 13)
/* Read-only, UTF-8: why the last rotation of this key failed (empty otherwise). */
#define CKA_CDC_ROTATION_ERROR (CKA_CDC_BASE + 14)

#define CDC_VERSION_CURRENT 0UL
#define CDC_VERSION_FORMER 1UL
/* A former version retired by the group's policy: its Azure version disabled. */
#define CDC_VERSION_FORMER_DISABLED 2UL

#define CDC_MIRROR_STATE_NONE 0UL
#define CDC_MIRROR_STATE_PENDING 1UL
#define CDC_MIRROR_STATE_MIRRORED 2UL
#define CDC_MIRROR_STATE_FAILED 3UL

#define CDC_ORIGIN_LOCAL 0UL
#define CDC_ORIGIN_AZURE 1UL

/* What C_CDC_SyncKeys did. */
typedef struct CDC_SYNC_RESULT {
  CK_ULONG ulLinked;    /* local keys found in the vault and linked (mirror state now mirrored) */
  CK_ULONG ulAdded;     /* Azure-resident keys brought in (a public and a private key object each) */
  CK_ULONG ulUpdated;   /* Azure-resident keys whose current version changed */
  CK_ULONG ulRemoved;   /* Azure-resident keys gone from the vault, removed from the token */
  CK_ULONG ulUnchanged; /* keys already in step */
  CK_ULONG ulSkipped;   /* vault keys that cannot be represented (e.g. symmetric keys); see the log */
} CDC_SYNC_RESULT;
typedef CDC_SYNC_RESULT* CDC_SYNC_RESULT_PTR;

/* The vendor interface, from C_GetInterface("Vendor cdcp11", NULL, &iface, 0). */
#define CDC_VENDOR_INTERFACE_NAME "Vendor cdcp11"

typedef struct CDC_FUNCTION_LIST {
  CK_VERSION version; /* 1.1 (C_GetInterface also offers 1.0, without C_CDC_RotateKey) */
  /* Mirror this key (a private or secret key token object) now; returns when it is mirrored or
   * has failed (the reason is in CKA_CDC_MIRROR_ERROR and the log). */
  CK_RV (*C_CDC_MirrorKey)(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey);
  /* The key's CDC_MIRROR_STATE_*; pKeyId / pulKeyIdLen follow the usual length-query rules and
   * receive the Azure key id (may be NULL to skip). */
  CK_RV (*C_CDC_GetMirrorStatus)(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey, CK_ULONG_PTR pState,
                                 CK_UTF8CHAR_PTR pKeyId, CK_ULONG_PTR pulKeyIdLen);
  /* Sync the group's keys with its vault: link mirrored keys, bring in keys created in Azure
   * (operations with them go to Key Vault), drop Azure-resident keys the vault no longer has.
   * Needs a R/W session with the user logged in. pResult may be NULL. */
  CK_RV (*C_CDC_SyncKeys)(CK_SESSION_HANDLE hSession, CDC_SYNC_RESULT_PTR pResult);
  /* 1.1: Rotate hKey, the current version of a mirrored local private or secret token key: a new
   * key of the same type, size or curve and usages is made in the token, mirrored into the same
   * Azure key as its next version, and becomes current (README.md, "Rotation"). Returns when that
   * is done; *phNewKey (may be NULL) receives the new private or secret key. If it fails, hKey
   * stays current and the reason is in its CKA_CDC_ROTATION_ERROR and the log; calling again
   * resumes the same rotation (it never makes a second new version). Needs a R/W session with the
   * user logged in. CKR_KEY_FUNCTION_NOT_PERMITTED for a former version or a key not mirrored
   * yet. An Azure-resident key (CKA_CDC_ORIGIN azure) is rotated by Key Vault itself (its rotate
   * operation, per the key's rotation policy) and the token follows its new version; *phNewKey
   * is then hKey. */
  CK_RV (*C_CDC_RotateKey)(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey, CK_OBJECT_HANDLE_PTR phNewKey);
} CDC_FUNCTION_LIST;
typedef CDC_FUNCTION_LIST* CDC_FUNCTION_LIST_PTR;

#ifdef __cplusplus
}
#endif

#endif /* CDCP11_CDCP11_H */
