// The attribute policy of PKCS#11 3.0 (section 4, "common footnotes" of table 10) as one table:
// which attributes each object class / key type has, which must or must not appear on create,
// generate and unwrap, which are sensitive, modifiable, or one-way, and their defaults.
#pragma once

#include "core/attributes.h"
#include "core/errors.h"

namespace cdcp11::core {

enum class CreateOp { create, generate, unwrap, derive, copy };

const char* attribute_name(CK_ATTRIBUTE_TYPE t);

// Checks a caller's template for an object of class cls / key type kt made by op: every
// attribute known for that kind, well-formed, allowed for op; and the required ones present.
// For copy, tmpl holds only the caller's changes.
R<void> check_template(CreateOp op, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, const AttrMap& tmpl);

// Footnote 10: only the SO may give CK_TRUE to CKA_TRUSTED. `given` is the caller's template of
// any operation that makes an object (its defaults are false); C_SetAttributeValue has check_modify.
R<void> check_so_only(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, const AttrMap& given, bool so_logged_in);

// The final attributes of a new object, defaults included, hold together: CKA_ALWAYS_AUTHENTICATE
// only on a private object (3.0 section 4.9).
R<void> check_consistent(const AttrMap& a);

// Fills defaults for attributes the template left out (CKA_TOKEN false, CKA_PRIVATE true for
// private and secret keys, usage flags, CKA_SENSITIVE true, CKA_EXTRACTABLE false, ...).
void apply_defaults(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, AttrMap& a);

// The vendor attributes every private and secret key has, as a key nobody mirrored answers them
// (CKA_CDC_MIRROR_STATE none, CKA_CDC_ORIGIN local, ...); empty for other classes. Core fills
// them in for objects a backend reports without them (an HSM's own keys), so every backend's
// keys answer alike, and a backend need not store them.
AttrMap vendor_defaults(CK_OBJECT_CLASS cls);
void apply_vendor_defaults(CK_OBJECT_CLASS cls, AttrMap& a);

// Attributes whose value the token backend keeps (sealed at rest) rather than core: private
// key components and secret key values.
bool is_secret_attribute(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE t);

// C_GetAttributeValue: attribute_sensitive if the attribute may not be revealed for this object;
// attribute_type_invalid if the object kind has no such attribute.
R<void> check_readable(const AttrMap& obj, CK_ATTRIBUTE_TYPE t);

// C_SetAttributeValue (and changes in C_CopyObject): allowed for this object and caller?
R<void> check_modify(const AttrMap& obj, CK_ATTRIBUTE_TYPE t, const Bytes& value, bool so_logged_in,
                     bool copying);

// Token objects written while nobody is logged in (a public R/W session) cannot be authenticated
// when they are written; the software token checks them at the next login against what such a
// session can do through the API. A new object (C_CreateObject, C_GenerateKey[Pair], C_CopyObject,
// C_UnwrapKey, C_DeriveKey): a public token object whose attributes, secret ones included, a
// C_CreateObject template could hold, no SO-only attribute true, and the attributes only the
// token sets with values it gives without a login: CKA_LOCAL true only with a key generation
// mechanism of the key's type, CKA_ALWAYS_SENSITIVE / CKA_NEVER_EXTRACTABLE only on a key that is
// sensitive / unextractable (and on a private key only when generated), the mirror and origin
// attributes at their defaults.
R<void> check_public_session_object(const AttrMap& a);
// A change of a public object (C_SetAttributeValue in a public session, possibly several): no
// attribute removed, every changed one a change check_modify allows without the SO.
R<void> check_public_session_change(const AttrMap& before, const AttrMap& after);

// Reads class and key type from a template (key type 0 / CK_UNAVAILABLE_INFORMATION if absent).
R<CK_OBJECT_CLASS> object_class(const AttrMap& a);
CK_KEY_TYPE key_type_or(const AttrMap& a, CK_KEY_TYPE def);

}  // namespace cdcp11::core
