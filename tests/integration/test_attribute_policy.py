"""Attribute policy through PyKCS11/ctypes: one-way CKA_SENSITIVE/CKA_EXTRACTABLE, CKA_MODIFIABLE,
CKA_DESTROYABLE, CKA_COPYABLE, ALWAYS_SENSITIVE/NEVER_EXTRACTABLE, read-only and missing attributes."""
import ctypes

import p11helpers as h

P = h.pykcs11()
TOK = LIB = None
T, F = b"\x01", b"\x00"
P256 = bytes.fromhex("06082a8648ce3d030107")


class CK_ECDH1_DERIVE_PARAMS(ctypes.Structure):
    _fields_ = [("kdf", ctypes.c_ulong), ("ulSharedDataLen", ctypes.c_ulong), ("pSharedData", ctypes.c_void_p),
                ("ulPublicDataLen", ctypes.c_ulong), ("pPublicData", ctypes.c_void_p)]


setUpModule, tearDownModule = h.shared_token(globals())


def secret_template(value=bytes(range(16)), **kw):
    t = [(h.CKA_CLASS, h.ulong_bytes(P.CKO_SECRET_KEY)), (P.CKA_KEY_TYPE, h.ulong_bytes(P.CKK_AES)),
         (h.CKA_TOKEN, F), (P.CKA_ENCRYPT, T), (P.CKA_DECRYPT, T)]
    if value is not None:
        t.append((h.CKA_VALUE, value))
    for k, v in kw.items():
        t.append((getattr(P, k, None) or getattr(h, k), v))
    return t


class PolicyTest(h.UserSessionCase):
    def gen_aes(self, **extra):
        t = [(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_VALUE_LEN, 32),
             (P.CKA_TOKEN, False), (P.CKA_ENCRYPT, True)] + [(getattr(P, k), v) for k, v in extra.items()]
        return h.oh(self.s.generateKey(t, P.MechanismAESGENERATEKEY))

    def get_bool(self, obj, attr):
        rv, n, v = self.raw.get_attr(self.hs, obj, attr, size=1)
        self.assertRV("CKR_OK", rv)
        return v == T

    def test_sensitive_is_one_way(self):
        k = self.gen_aes(CKA_SENSITIVE=False, CKA_EXTRACTABLE=True)
        self.assertFalse(self.get_bool(k, P.CKA_SENSITIVE))
        self.assertRV("CKR_OK", self.raw.set_attrs(self.hs, k, [(P.CKA_SENSITIVE, T)]))
        self.assertTrue(self.get_bool(k, P.CKA_SENSITIVE))
        self.assertRV("CKR_ATTRIBUTE_READ_ONLY", self.raw.set_attrs(self.hs, k, [(P.CKA_SENSITIVE, F)]))
        self.assertTrue(self.get_bool(k, P.CKA_SENSITIVE))
        rv, _, _ = self.raw.get_attr(self.hs, k, P.CKA_VALUE)
        self.assertRV("CKR_ATTRIBUTE_SENSITIVE", rv)
        # ALWAYS_SENSITIVE stays false: the key was once readable
        self.assertFalse(self.get_bool(k, P.CKA_ALWAYS_SENSITIVE))

    def test_extractable_is_one_way(self):
        k = self.gen_aes(CKA_EXTRACTABLE=True)
        self.assertRV("CKR_OK", self.raw.set_attrs(self.hs, k, [(P.CKA_EXTRACTABLE, F)]))
        self.assertRV("CKR_ATTRIBUTE_READ_ONLY", self.raw.set_attrs(self.hs, k, [(P.CKA_EXTRACTABLE, T)]))
        self.assertFalse(self.get_bool(k, P.CKA_EXTRACTABLE))
        self.assertFalse(self.get_bool(k, P.CKA_NEVER_EXTRACTABLE))

    def test_defaults_for_generated_secret_key(self):
        k = self.gen_aes()
        self.assertTrue(self.get_bool(k, P.CKA_SENSITIVE))
        self.assertFalse(self.get_bool(k, P.CKA_EXTRACTABLE))
        self.assertTrue(self.get_bool(k, P.CKA_PRIVATE))
        self.assertTrue(self.get_bool(k, P.CKA_ALWAYS_SENSITIVE))
        self.assertTrue(self.get_bool(k, P.CKA_NEVER_EXTRACTABLE))
        self.assertTrue(self.get_bool(k, P.CKA_LOCAL))

    def test_always_sensitive_and_never_extractable_after_create(self):
        rv, k = self.raw.create(self.hs, secret_template(CKA_SENSITIVE=T, CKA_EXTRACTABLE=F))
        self.assertRV("CKR_OK", rv)
        self.assertTrue(self.get_bool(k, P.CKA_SENSITIVE))
        self.assertFalse(self.get_bool(k, P.CKA_ALWAYS_SENSITIVE))
        self.assertFalse(self.get_bool(k, P.CKA_NEVER_EXTRACTABLE))
        self.assertFalse(self.get_bool(k, P.CKA_LOCAL))
        # and for a generated RSA private key: true
        pub, priv = self.s.generateKeyPair([(P.CKA_TOKEN, False), (P.CKA_MODULUS_BITS, 2048)],
                                           [(P.CKA_TOKEN, False), (P.CKA_SIGN, True)], P.MechanismRSAGENERATEKEYPAIR)
        self.assertTrue(self.get_bool(h.oh(priv), P.CKA_ALWAYS_SENSITIVE))
        self.assertTrue(self.get_bool(h.oh(priv), P.CKA_NEVER_EXTRACTABLE))
        self.assertTrue(self.get_bool(h.oh(priv), P.CKA_LOCAL))

    def test_not_modifiable(self):
        rv, k = self.raw.create(self.hs, secret_template(CKA_MODIFIABLE=F, CKA_LABEL=b"frozen"))
        self.assertRV("CKR_OK", rv)
        self.assertRV("CKR_ACTION_PROHIBITED", self.raw.set_attrs(self.hs, k, [(P.CKA_LABEL, b"thawed")]))
        rv, n, v = self.raw.get_attr(self.hs, k, P.CKA_LABEL, size=6)
        self.assertEqual(v, b"frozen")
        # CKA_MODIFIABLE itself cannot be turned back on
        self.assertIn(h.ckr_name(self.raw.set_attrs(self.hs, k, [(h.CKA_MODIFIABLE, T)])),
                      ("CKR_ACTION_PROHIBITED", "CKR_ATTRIBUTE_READ_ONLY"))
        # a modifiable object accepts the change
        rv, k2 = self.raw.create(self.hs, secret_template(CKA_LABEL=b"a"))
        self.assertRV("CKR_OK", self.raw.set_attrs(self.hs, k2, [(P.CKA_LABEL, b"b")]))

    def test_not_destroyable(self):
        rv, k = self.raw.create(self.hs, secret_template(CKA_DESTROYABLE=F))
        self.assertRV("CKR_OK", rv)
        import ctypes
        self.assertRV("CKR_ACTION_PROHIBITED", self.raw.C_DestroyObject(ctypes.c_ulong(self.hs), ctypes.c_ulong(k)))
        rv, _, _ = self.raw.get_attr(self.hs, k, P.CKA_CLASS)
        self.assertRV("CKR_OK", rv)

    def test_not_copyable_and_copy_rules(self):
        rv, k = self.raw.create(self.hs, secret_template(CKA_COPYABLE=F))
        self.assertRV("CKR_OK", rv)
        rv, _ = self.raw.copy(self.hs, k)
        self.assertRV("CKR_ACTION_PROHIBITED", rv)
        # a copyable one copies, and the copy cannot lower CKA_SENSITIVE
        rv, k2 = self.raw.create(self.hs, secret_template(CKA_SENSITIVE=T, CKA_LABEL=b"orig"))
        rv, c = self.raw.copy(self.hs, k2, [(P.CKA_LABEL, b"copy")])
        self.assertRV("CKR_OK", rv)
        self.assertNotEqual(c, k2)
        rv, _, v = self.raw.get_attr(self.hs, c, P.CKA_LABEL, size=4)
        self.assertEqual(v, b"copy")
        rv, _ = self.raw.copy(self.hs, k2, [(P.CKA_SENSITIVE, F)])
        self.assertRV("CKR_ATTRIBUTE_READ_ONLY", rv)

    def test_read_only_attributes_in_templates(self):
        for attr in (P.CKA_LOCAL, P.CKA_ALWAYS_SENSITIVE, P.CKA_NEVER_EXTRACTABLE):
            with self.subTest(attr=P.CKA[attr]):
                rv, _ = self.raw.create(self.hs, secret_template() + [(attr, T)])
                self.assertRV("CKR_ATTRIBUTE_READ_ONLY", rv)
        # and on an existing object
        k = self.gen_aes()
        self.assertRV("CKR_ATTRIBUTE_READ_ONLY", self.raw.set_attrs(self.hs, k, [(P.CKA_LOCAL, F)]))
        self.assertRV("CKR_ATTRIBUTE_READ_ONLY", self.raw.set_attrs(self.hs, k, [(h.CKA_CLASS,
                                                                                  h.ulong_bytes(P.CKO_DATA))]))
        self.assertRV("CKR_ATTRIBUTE_READ_ONLY", self.raw.set_attrs(self.hs, k, [(P.CKA_VALUE_LEN,
                                                                                  h.ulong_bytes(16))]))

    def test_missing_required_attributes(self):
        rv, _ = self.raw.create(self.hs, secret_template(value=None))
        self.assertRV("CKR_TEMPLATE_INCOMPLETE", rv)
        rv, _ = self.raw.create(self.hs, [(h.CKA_TOKEN, F), (h.CKA_LABEL, b"no class")])
        self.assertRV("CKR_TEMPLATE_INCOMPLETE", rv)
        # key generation without the size
        with self.assertRaises(P.PyKCS11Error) as cm:
            self.s.generateKey([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_TOKEN, False)], P.MechanismAESGENERATEKEY)
        self.assertEqual(h.ckr_name(cm.exception.value), "CKR_TEMPLATE_INCOMPLETE")
        with self.assertRaises(P.PyKCS11Error) as cm:
            self.s.generateKeyPair([(P.CKA_TOKEN, False)], [(P.CKA_TOKEN, False)], P.MechanismRSAGENERATEKEYPAIR)
        self.assertEqual(h.ckr_name(cm.exception.value), "CKR_TEMPLATE_INCOMPLETE")

    def test_inconsistent_and_invalid_values(self):
        # a boolean of the wrong size
        rv, _ = self.raw.create(self.hs, secret_template() + [(P.CKA_SENSITIVE, b"\x01\x00")])
        self.assertRV("CKR_ATTRIBUTE_VALUE_INVALID", rv)

    def test_an_aes_key_of_17_bytes_is_invalid(self):
        rv, _ = self.raw.create(self.hs, secret_template(value=bytes(17)))
        self.assertRV("CKR_ATTRIBUTE_VALUE_INVALID", rv)

    def test_token_object_seen_by_another_process(self):
        t = [a for a in secret_template(CKA_LABEL=b"persist") if a[0] != h.CKA_TOKEN] + [(h.CKA_TOKEN, T)]
        rv, k = self.raw.create(self.hs, t)
        self.assertRV("CKR_OK", rv)
        out = TOK.tool("-O", "--type", "secrkey", login=True).stdout.decode()
        self.assertIn("label:      persist", out)
        self.assertIn("AES length 16", out)

class AlwaysAuthenticateTest(h.UserSessionCase):
    """CKA_ALWAYS_AUTHENTICATE is fixed when the key is made (3.0 table 26: no footnote 8), and only
    a private object may have it."""

    def pair(self, always_auth, private=True):
        return self.s.generateKeyPair(
            [(P.CKA_TOKEN, False), (P.CKA_MODULUS_BITS, 2048)],
            [(P.CKA_TOKEN, False), (P.CKA_SIGN, True), (P.CKA_PRIVATE, private),
             (P.CKA_ALWAYS_AUTHENTICATE, always_auth)], P.MechanismRSAGENERATEKEYPAIR)

    def test_not_modifiable(self):
        _, priv = self.pair(True)
        k = h.oh(priv)
        self.assertRV("CKR_ATTRIBUTE_READ_ONLY", self.raw.set_attrs(self.hs, k, [(P.CKA_ALWAYS_AUTHENTICATE, F)]))
        self.assertEqual(self.raw.get_attr(self.hs, k, P.CKA_ALWAYS_AUTHENTICATE, size=1)[2], T)
        rv, _ = self.raw.copy(self.hs, k, [(P.CKA_ALWAYS_AUTHENTICATE, F)])
        self.assertRV("CKR_ATTRIBUTE_READ_ONLY", rv)
        # the signature still needs the context-specific login
        self.assertRV("CKR_OK", self.raw.init("C_SignInit", self.hs, h.mech(P.CKM_SHA256_RSA_PKCS), k))
        rv, _, _ = self.raw.single("C_Sign", self.hs, b"data", size=256)
        self.assertRV("CKR_USER_NOT_LOGGED_IN", rv)
        _, plain = self.pair(False)
        self.assertRV("CKR_ATTRIBUTE_READ_ONLY",
                      self.raw.set_attrs(self.hs, h.oh(plain), [(P.CKA_ALWAYS_AUTHENTICATE, T)]))

    def test_only_on_a_private_object(self):
        with self.assertRaises(P.PyKCS11Error) as cm:
            self.pair(True, private=False)
        self.assertEqual(h.ckr_name(cm.exception.value), "CKR_TEMPLATE_INCONSISTENT")
        _, priv = self.pair(True)
        rv, _ = self.raw.copy(self.hs, h.oh(priv), [(h.CKA_PRIVATE, F)])
        self.assertRV("CKR_TEMPLATE_INCONSISTENT", rv)


class EveryPathTest(h.UserSessionCase):
    """The table's read-only rules hold on every path that makes an object (create, generate,
    generate pair, unwrap, derive, copy), and the sticky ones on copy."""

    READ_ONLY = ("CKA_LOCAL", "CKA_ALWAYS_SENSITIVE", "CKA_NEVER_EXTRACTABLE", "CKA_KEY_GEN_MECHANISM",
                 "CKA_UNIQUE_ID")

    def value_of(self, name):
        if name in ("CKA_KEY_GEN_MECHANISM",):
            return h.ulong_bytes(P.CKM_AES_KEY_GEN)
        if name == "CKA_UNIQUE_ID":
            return b"chosen-by-caller"
        return T

    def attr(self, name):
        return getattr(P, name, None) or {"CKA_UNIQUE_ID": 0x4}[name]

    def paths(self):
        """name -> fn(extra attribute list of (type, bytes)) -> CK_RV."""
        raw, hs = self.raw, self.hs
        aes = [(h.CKA_CLASS, h.ulong_bytes(P.CKO_SECRET_KEY)), (P.CKA_KEY_TYPE, h.ulong_bytes(P.CKK_AES)),
               (h.CKA_TOKEN, F)]
        kek = self.s.generateKey([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_VALUE_LEN, 32),
                                  (P.CKA_TOKEN, False), (P.CKA_WRAP, True), (P.CKA_UNWRAP, True)],
                                 P.MechanismAESGENERATEKEY)
        inner = self.s.generateKey([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES),
                                    (P.CKA_VALUE_LEN, 16), (P.CKA_TOKEN, False), (P.CKA_EXTRACTABLE, True)],
                                   P.MechanismAESGENERATEKEY)
        blob = bytes(self.s.wrapKey(kek, inner, P.Mechanism(P.CKM_AES_KEY_WRAP)))
        _, ec_priv = self.s.generateKeyPair([(P.CKA_TOKEN, False), (P.CKA_EC_PARAMS, P256)],
                                            [(P.CKA_TOKEN, False), (P.CKA_DERIVE, True)], P.MechanismECGENERATEKEYPAIR)
        _, copy_src = raw.create(hs, secret_template())

        def out_call(fn, *args):
            o = ctypes.c_ulong(0)
            return fn(*args, ctypes.byref(o))

        def create(extra):
            arr, keep = h.c_attrs(secret_template() + extra)
            return out_call(raw.C_CreateObject, ctypes.c_ulong(hs), arr, ctypes.c_ulong(len(arr)))

        def generate(extra):
            arr, keep = h.c_attrs(aes + [(P.CKA_VALUE_LEN, h.ulong_bytes(16))] + extra)
            m = h.mech(P.CKM_AES_KEY_GEN)
            return out_call(raw.C_GenerateKey, ctypes.c_ulong(hs), ctypes.byref(m), arr, ctypes.c_ulong(len(arr)))

        def pair(extra, public):
            pub = [(h.CKA_TOKEN, F), (P.CKA_MODULUS_BITS, h.ulong_bytes(2048))] + (extra if public else [])
            priv = [(h.CKA_TOKEN, F)] + ([] if public else extra)
            a1, k1 = h.c_attrs(pub)
            a2, k2 = h.c_attrs(priv)
            m = h.mech(P.CKM_RSA_PKCS_KEY_PAIR_GEN)
            o1, o2 = ctypes.c_ulong(0), ctypes.c_ulong(0)
            return raw.C_GenerateKeyPair(ctypes.c_ulong(hs), ctypes.byref(m), a1, ctypes.c_ulong(len(pub)), a2,
                                         ctypes.c_ulong(len(priv)), ctypes.byref(o1), ctypes.byref(o2))

        def unwrap(extra):
            arr, keep = h.c_attrs(aes + extra)
            m = h.mech(P.CKM_AES_KEY_WRAP)
            b = ctypes.create_string_buffer(blob, len(blob))
            return out_call(raw.C_UnwrapKey, ctypes.c_ulong(hs), ctypes.byref(m), ctypes.c_ulong(h.oh(kek)), b,
                            ctypes.c_ulong(len(blob)), arr, ctypes.c_ulong(len(arr)))

        def derive(extra):
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            peer = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
            arr, keep = h.c_attrs(aes + [(P.CKA_VALUE_LEN, h.ulong_bytes(16))] + extra)
            pbuf = ctypes.create_string_buffer(peer, len(peer))
            prm = CK_ECDH1_DERIVE_PARAMS(1, 0, None, len(peer), ctypes.cast(pbuf, ctypes.c_void_p))  # CKD_NULL
            m = h.mech(P.CKM_ECDH1_DERIVE, bytes(prm))
            return out_call(raw.C_DeriveKey, ctypes.c_ulong(hs), ctypes.byref(m), ctypes.c_ulong(h.oh(ec_priv)), arr,
                            ctypes.c_ulong(len(arr)))

        def copy(extra):
            return raw.copy(hs, copy_src, extra)[0]

        return {"create": create, "generate": generate, "generate pair (public)": lambda e: pair(e, True),
                "generate pair (private)": lambda e: pair(e, False), "unwrap": unwrap, "derive": derive,
                "copy": copy}

    def test_read_only_attributes_on_every_path(self):
        paths = self.paths()
        for name in self.READ_ONLY:
            for path, fn in paths.items():
                if path == "generate pair (public)" and name in ("CKA_ALWAYS_SENSITIVE", "CKA_NEVER_EXTRACTABLE"):
                    continue  # not attributes of a public key
                with self.subTest(attribute=name, path=path):
                    self.assertRV("CKR_ATTRIBUTE_READ_ONLY", fn([(self.attr(name), self.value_of(name))]))
        # key material is the operation's on generate, unwrap and derive
        for path in ("generate", "unwrap", "derive"):
            with self.subTest(attribute="CKA_VALUE", path=path):
                self.assertRV("CKR_ATTRIBUTE_READ_ONLY", paths[path]([(h.CKA_VALUE, bytes(16))]))

    def test_sticky_attributes_on_copy(self):
        rv, k = self.raw.create(self.hs, secret_template(CKA_SENSITIVE=T, CKA_EXTRACTABLE=F, CKA_WRAP_WITH_TRUSTED=T))
        self.assertRV("CKR_OK", rv)
        for attr, value in ((P.CKA_SENSITIVE, F), (P.CKA_EXTRACTABLE, T), (P.CKA_WRAP_WITH_TRUSTED, F)):
            with self.subTest(attribute=P.CKA[attr]):
                self.assertRV("CKR_ATTRIBUTE_READ_ONLY", self.raw.copy(self.hs, k, [(attr, value)])[0])
        # the other way is allowed (SoftHSM2 2.6.1 takes no CKA_WRAP_WITH_TRUSTED in a copy's template)
        rv, k2 = self.raw.create(self.hs, secret_template(CKA_SENSITIVE=F, CKA_EXTRACTABLE=T))
        tighter = [(P.CKA_SENSITIVE, T), (P.CKA_EXTRACTABLE, F)] + ([] if h.HSM else [(P.CKA_WRAP_WITH_TRUSTED, T)])
        rv, c = self.raw.copy(self.hs, k2, tighter)
        self.assertRV("CKR_OK", rv)


if __name__ == "__main__":
    h.main()
