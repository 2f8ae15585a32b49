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

// Attributes whose value the token backend keeps (sealed at rest) rather than core: private
// key components and secret key values.
bool is_secret_attribute(CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE t);

// C_GetAttributeValue: attribute_sensitive if the attribute may not be revealed for this object;
// attribute_type_invalid if the object kind has no such attribute.
R<void> check_readable(const AttrMap& obj, CK_ATTRIBUTE_TYPE t);

// C_SetAttributeValue (and changes in C_CopyObject): allowed for this object and caller?
R<void> check_modify(const AttrMap& obj, CK_ATTRIBUTE_TYPE t, const Bytes& value, bool so_logged_in,
                     bool copying);

// Reads class and key type from a template (key type 0 / CK_UNAVAILABLE_INFORMATION if absent).
R<CK_OBJECT_CLASS> object_class(const AttrMap& a);
CK_KEY_TYPE key_type_or(const AttrMap& a, CK_KEY_TYPE def);

}  // namespace cdcp11::core
