"""Error paths through PyKCS11 (and ctypes on the same loaded module for exact buffer semantics):
each test asserts the exact CKR code the PKCS#11 3.0 spec asks for."""
import ctypes
import unittest

import p11helpers as h
from p11helpers import P11Case

PyKCS11 = h.pykcs11()
P = PyKCS11
CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED = 0x10000, 0x20000, 0x40000

TOK = LIB = None


setUpModule, tearDownModule = h.shared_token(globals(), groups=(("demo", {}), ("lockme", {}), ("fresh", {})),
                                             retries=3)


def rw(label="demo", login=True):
    s = LIB.openSession(h.slot_of(LIB, label), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
    if login:
        try:
            s.login(h.USER_PIN)
        except P.PyKCS11Error as e:
            if e.value != P.CKR_USER_ALREADY_LOGGED_IN:
                raise
    return s


def rsa_pair(s, label, token=False):
    pub = [(P.CKA_TOKEN, token), (P.CKA_MODULUS_BITS, 2048), (P.CKA_PUBLIC_EXPONENT, (1, 0, 1)),
           (P.CKA_VERIFY, True), (P.CKA_ENCRYPT, True), (P.CKA_LABEL, label)]
    priv = [(P.CKA_TOKEN, token), (P.CKA_SIGN, True), (P.CKA_DECRYPT, True), (P.CKA_LABEL, label)]
    return s.generateKeyPair(pub, priv, P.MechanismRSAGENERATEKEYPAIR)


def aes_key(s, label, token=False, extra=()):
    t = [(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_VALUE_LEN, 16), (P.CKA_TOKEN, token),
         (P.CKA_ENCRYPT, True), (P.CKA_DECRYPT, True), (P.CKA_LABEL, label)] + list(extra)
    return s.generateKey(t, P.MechanismAESGENERATEKEY)


class PinTest(P11Case):
    def test_wrong_pin_then_right_pin(self):
        s = LIB.openSession(h.slot_of(LIB, "demo"))
        self.assertCKR("CKR_PIN_INCORRECT", s.login, "99999999")
        s.login(h.USER_PIN)
        s.logout()
        s.closeSession()

    @h.soft_only("the PIN retry counter is the soft token's (max_pin_retries); SoftHSM2 2.6.1 never locks a PIN")
    def test_pin_lock_flags_and_unlock_by_so(self):
        slot = h.slot_of(LIB, "lockme")
        s = LIB.openSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        flags = LIB.getTokenInfo(slot).flags
        self.assertFalse(flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED))
        self.assertCKR("CKR_PIN_INCORRECT", s.login, "00000001")
        flags = LIB.getTokenInfo(slot).flags
        self.assertTrue(flags & CKF_USER_PIN_COUNT_LOW)
        self.assertFalse(flags & (CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED))
        self.assertCKR("CKR_PIN_INCORRECT", s.login, "00000002")
        flags = LIB.getTokenInfo(slot).flags
        self.assertTrue(flags & CKF_USER_PIN_FINAL_TRY)
        self.assertFalse(flags & CKF_USER_PIN_LOCKED)
        # the last allowed try fails and locks the PIN
        e = self.raises_any(s.login, "00000003")
        self.assertIn(h.ckr_name(e.value), ("CKR_PIN_INCORRECT", "CKR_PIN_LOCKED"))
        flags = LIB.getTokenInfo(slot).flags
        self.assertTrue(flags & CKF_USER_PIN_LOCKED)
        # even the right PIN is refused now
        self.assertCKR("CKR_PIN_LOCKED", s.login, h.USER_PIN)
        # the SO resets the PIN, which unlocks it
        s.login(h.SO_PIN, P.CKU_SO)
        s.initPin(h.USER_PIN)
        s.logout()
        flags = LIB.getTokenInfo(slot).flags
        self.assertFalse(flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED))
        s.login(h.USER_PIN)
        s.logout()
        s.closeSession()

    def raises_any(self, fn, *a):
        try:
            fn(*a)
        except P.PyKCS11Error as e:
            return e
        self.fail("no exception")


class HandleAndSessionTest(P11Case):
    def setUp(self):
        self.s = rw()
        self.raw = h.Raw()

    def tearDown(self):
        try:
            self.s.closeSession()
        except P.PyKCS11Error:
            pass

    def test_sensitive_attribute_read(self):
        pub, priv = rsa_pair(self.s, "sens")
        rv, n, _ = self.raw.get_attr(h.sh(self.s), h.oh(priv), P.CKA_PRIVATE_EXPONENT)
        self.assertRV("CKR_ATTRIBUTE_SENSITIVE", rv)
        self.assertEqual(n, h.CK_UNAVAILABLE_INFORMATION)
        k = aes_key(self.s, "sens-aes")
        rv, n, _ = self.raw.get_attr(h.sh(self.s), h.oh(k), P.CKA_VALUE)
        self.assertRV("CKR_ATTRIBUTE_SENSITIVE", rv)
        # non-sensitive attributes of the same key are readable
        rv, n, _ = self.raw.get_attr(h.sh(self.s), h.oh(priv), P.CKA_MODULUS)
        self.assertRV("CKR_OK", rv)
        self.assertEqual(n, 256)

    def test_attribute_buffer_too_small(self):
        pub, priv = rsa_pair(self.s, "attrbuf")
        rv, n, _ = self.raw.get_attr(h.sh(self.s), h.oh(pub), P.CKA_MODULUS, size=10)
        self.assertRV("CKR_BUFFER_TOO_SMALL", rv)
        self.assertEqual(n, h.CK_UNAVAILABLE_INFORMATION)
        rv, n, v = self.raw.get_attr(h.sh(self.s), h.oh(pub), P.CKA_MODULUS, size=256)
        self.assertRV("CKR_OK", rv)
        self.assertEqual(len(v), 256)

    def test_read_only_session_cannot_write_token_objects(self):
        ro = LIB.openSession(h.slot_of(LIB, "demo"))
        data = [(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, True), (P.CKA_LABEL, "ro"), (P.CKA_VALUE, b"x")]
        self.assertCKR("CKR_SESSION_READ_ONLY", ro.createObject, data)
        self.assertCKR("CKR_SESSION_READ_ONLY", aes_key, ro, "ro-aes", True)
        # a session object is fine in an RO session
        o = ro.createObject([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, False), (P.CKA_LABEL, "ro-s")])
        # and a token object made elsewhere cannot be destroyed or changed from it
        t = self.s.createObject(data)
        self.assertCKR("CKR_SESSION_READ_ONLY", ro.destroyObject, t)
        self.assertRV("CKR_SESSION_READ_ONLY", self.raw.set_attrs(h.sh(ro), h.oh(t), [(P.CKA_LABEL, b"new")]))
        ro.destroyObject(o)
        self.s.destroyObject(t)
        ro.closeSession()

    def test_invalid_handles(self):
        bogus = 0x7FFFFFF0
        rv, _, _ = self.raw.get_attr(h.sh(self.s), bogus, P.CKA_LABEL)
        self.assertRV("CKR_OBJECT_HANDLE_INVALID", rv)
        self.assertCKR("CKR_OBJECT_HANDLE_INVALID", self.s.destroyObject, _handle(self.s, bogus))
        m = h.mech(P.CKM_SHA256_RSA_PKCS)
        self.assertRV("CKR_KEY_HANDLE_INVALID", self.raw.init("C_SignInit", h.sh(self.s), m, bogus))
        m2 = h.mech(P.CKM_AES_CBC_PAD, bytes(16))
        self.assertRV("CKR_KEY_HANDLE_INVALID", self.raw.init("C_EncryptInit", h.sh(self.s), m2, bogus))
        # a data object is not a key either
        d = self.s.createObject([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, False)])
        self.assertRV("CKR_KEY_HANDLE_INVALID", self.raw.init("C_SignInit", h.sh(self.s), m, h.oh(d)))
        # closed sessions
        other = LIB.openSession(h.slot_of(LIB, "demo"))
        hs = h.sh(other)
        other.closeSession()
        rv, _, _ = self.raw.get_attr(hs, h.oh(d), P.CKA_LABEL)
        self.assertRV("CKR_SESSION_HANDLE_INVALID", rv)
        self.assertRV("CKR_SESSION_HANDLE_INVALID", self.raw.C_CloseSession(ctypes.c_ulong(hs)))
        self.assertRV("CKR_SESSION_HANDLE_INVALID", self.raw.C_CloseSession(ctypes.c_ulong(0x7FFFFF)))

    def test_invalid_session_is_reported_before_bad_arguments(self):
        # PKCS#11 3.0 5.1.7: the codes of 5.1.2 (session handle) take precedence over 5.1.6's.
        r, bad, z = self.raw, ctypes.c_ulong(0x7FFFFF), ctypes.c_ulong(5)
        calls = {
            "C_GetSessionInfo": lambda: r.C_GetSessionInfo(bad, None),
            "C_Login": lambda: r.C_Login(bad, ctypes.c_ulong(1), None, z),
            "C_InitPIN": lambda: r.C_InitPIN(bad, None, z),
            "C_SetPIN": lambda: r.C_SetPIN(bad, None, z, None, z),
            "C_CreateObject": lambda: r.C_CreateObject(bad, None, z, None),
            "C_CopyObject": lambda: r.C_CopyObject(bad, z, None, z, None),
            "C_GetObjectSize": lambda: r.C_GetObjectSize(bad, z, None),
            "C_GetAttributeValue": lambda: r.C_GetAttributeValue(bad, z, None, z),
            "C_SetAttributeValue": lambda: r.C_SetAttributeValue(bad, z, None, z),
            "C_FindObjectsInit": lambda: r.C_FindObjectsInit(bad, None, z),
            "C_FindObjects": lambda: r.C_FindObjects(bad, None, z, None),
            "C_EncryptInit": lambda: r.C_EncryptInit(bad, None, z),
            "C_Encrypt": lambda: r.C_Encrypt(bad, None, z, None, None),
            "C_DecryptUpdate": lambda: r.C_DecryptUpdate(bad, None, z, None, None),
            "C_SignFinal": lambda: r.C_SignFinal(bad, None, None),
            "C_Verify": lambda: r.C_Verify(bad, None, z, None, z),
            "C_DigestInit": lambda: r.C_DigestInit(bad, None),
            "C_Digest": lambda: r.C_Digest(bad, None, z, None, None),
            "C_GenerateKey": lambda: r.C_GenerateKey(bad, None, None, z, None),
            "C_GenerateKeyPair": lambda: r.C_GenerateKeyPair(bad, None, None, z, None, z, None, None),
            "C_WrapKey": lambda: r.C_WrapKey(bad, None, z, z, None, None),
            "C_UnwrapKey": lambda: r.C_UnwrapKey(bad, None, z, None, z, None, z, None),
            "C_DeriveKey": lambda: r.C_DeriveKey(bad, None, z, None, z, None),
            "C_SeedRandom": lambda: r.C_SeedRandom(bad, None, z),
            "C_GenerateRandom": lambda: r.C_GenerateRandom(bad, None, z),
        }
        got = {name: h.ckr_name(fn()) for name, fn in calls.items()}
        self.assertEqual({n: c for n, c in got.items() if c != "CKR_SESSION_HANDLE_INVALID"}, {})

    def test_session_object_handle_invalid_after_its_session_closes(self):
        other = rw()
        d = other.createObject([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, False), (P.CKA_LABEL, "sessobj")])
        rv, _, _ = self.raw.get_attr(h.sh(self.s), h.oh(d), P.CKA_LABEL)
        self.assertRV("CKR_OK", rv)  # session objects are visible to other sessions of the application
        other.closeSession()
        rv, _, _ = self.raw.get_attr(h.sh(self.s), h.oh(d), P.CKA_LABEL)
        self.assertRV("CKR_OBJECT_HANDLE_INVALID", rv)


def _handle(session, value):
    o = P.CK_OBJECT_HANDLE(session)
    o.assign(value)
    return o


class OperationTest(P11Case):
    @classmethod
    def setUpClass(cls):
        cls.s = rw()
        cls.raw = h.Raw()
        cls.pub, cls.priv = rsa_pair(cls.s, "ops")
        cls.aes = aes_key(cls.s, "ops-aes")
        cls.hs = h.sh(cls.s)

    @classmethod
    def tearDownClass(cls):
        cls.s.closeSession()

    def sign_init(self, m=P.CKM_SHA256_RSA_PKCS, key=None):
        self.assertRV("CKR_OK", self.raw.init("C_SignInit", self.hs, h.mech(m), h.oh(key or self.priv)))

    def test_sign_buffer_too_small_then_usable(self):
        self.sign_init()
        rv, _, n = self.raw.single("C_Sign", self.hs, b"data", size=10)
        self.assertRV("CKR_BUFFER_TOO_SMALL", rv)
        self.assertEqual(n, 256)
        rv, sig, n = self.raw.single("C_Sign", self.hs, b"data", size=n)
        self.assertRV("CKR_OK", rv)
        self.assertEqual(len(sig), 256)
        self.s.verify(self.pub, b"data", sig, P.Mechanism(P.CKM_SHA256_RSA_PKCS))
        # and the operation is over now
        rv, _, _ = self.raw.single("C_Sign", self.hs, b"data", size=256)
        self.assertRV("CKR_OPERATION_NOT_INITIALIZED", rv)

    def test_length_query_does_not_end_operation(self):
        self.sign_init()
        rv, _, n = self.raw.single("C_Sign", self.hs, b"data")
        self.assertRV("CKR_OK", rv)
        self.assertEqual(n, 256)
        rv, _, n2 = self.raw.single("C_Sign", self.hs, b"data")
        self.assertRV("CKR_OK", rv)
        self.assertEqual(n2, 256)
        rv, sig, _ = self.raw.single("C_Sign", self.hs, b"data", size=n)
        self.assertRV("CKR_OK", rv)
        self.s.verify(self.pub, b"data", sig, P.Mechanism(P.CKM_SHA256_RSA_PKCS))

    def test_encrypt_length_query_and_too_small(self):
        iv = bytes(range(16))
        m = h.mech(P.CKM_AES_CBC_PAD, iv)
        self.assertRV("CKR_OK", self.raw.init("C_EncryptInit", self.hs, m, h.oh(self.aes)))
        rv, _, n = self.raw.single("C_Encrypt", self.hs, b"x" * 20)
        self.assertRV("CKR_OK", rv)
        self.assertGreaterEqual(n, 32)
        rv, _, n2 = self.raw.single("C_Encrypt", self.hs, b"x" * 20, size=4)
        self.assertRV("CKR_BUFFER_TOO_SMALL", rv)
        self.assertGreaterEqual(n2, 32)
        rv, ct, _ = self.raw.single("C_Encrypt", self.hs, b"x" * 20, size=n2)
        self.assertRV("CKR_OK", rv)
        self.assertEqual(len(ct), 32)
        pt = bytes(self.s.decrypt(self.aes, ct, P.Mechanism(P.CKM_AES_CBC_PAD, iv)))
        self.assertEqual(pt, b"x" * 20)

    def test_operation_not_initialized(self):
        rv, _, _ = self.raw.single("C_Sign", self.hs, b"data", size=256)
        self.assertRV("CKR_OPERATION_NOT_INITIALIZED", rv)
        rv, _, _ = self.raw.single("C_Decrypt", self.hs, b"d" * 16, size=64)
        self.assertRV("CKR_OPERATION_NOT_INITIALIZED", rv)
        n = ctypes.c_ulong(256)
        buf = ctypes.create_string_buffer(256)
        self.assertRV("CKR_OPERATION_NOT_INITIALIZED",
                      self.raw.C_SignFinal(ctypes.c_ulong(self.hs), buf, ctypes.byref(n)))
        self.assertRV("CKR_OPERATION_NOT_INITIALIZED",
                      self.raw.C_VerifyUpdate(ctypes.c_ulong(self.hs), buf, ctypes.c_ulong(3)))
        self.assertRV("CKR_OPERATION_NOT_INITIALIZED",
                      self.raw.C_DigestUpdate(ctypes.c_ulong(self.hs), buf, ctypes.c_ulong(3)))

    def test_operation_active(self):
        self.sign_init()
        self.assertRV("CKR_OPERATION_ACTIVE",
                      self.raw.init("C_SignInit", self.hs, h.mech(P.CKM_SHA256_RSA_PKCS), h.oh(self.priv)))
        rv, _, _ = self.raw.single("C_Sign", self.hs, b"data", size=256)
        self.assertRV("CKR_OK", rv)

    def test_failed_operation_ends_operation(self):
        # decrypt of a ciphertext that is not a multiple of the block size
        iv = bytes(16)
        m = h.mech(P.CKM_AES_CBC_PAD, iv)
        self.assertRV("CKR_OK", self.raw.init("C_DecryptInit", self.hs, m, h.oh(self.aes)))
        rv, _, _ = self.raw.single("C_Decrypt", self.hs, b"z" * 17, size=64)
        self.assertRV("CKR_ENCRYPTED_DATA_LEN_RANGE", rv)
        rv, _, _ = self.raw.single("C_Decrypt", self.hs, b"z" * 16, size=64)
        self.assertRV("CKR_OPERATION_NOT_INITIALIZED", rv)
        # a bad signature ends the verify operation
        m = h.mech(P.CKM_SHA256_RSA_PKCS)
        self.assertRV("CKR_OK", self.raw.init("C_VerifyInit", self.hs, m, h.oh(self.pub)))
        d = ctypes.create_string_buffer(b"data", 4)
        bad = ctypes.create_string_buffer(256)
        self.assertRV("CKR_SIGNATURE_INVALID",
                      self.raw.C_Verify(ctypes.c_ulong(self.hs), d, ctypes.c_ulong(4), bad, ctypes.c_ulong(256)))
        self.assertRV("CKR_OPERATION_NOT_INITIALIZED",
                      self.raw.C_Verify(ctypes.c_ulong(self.hs), d, ctypes.c_ulong(4), bad, ctypes.c_ulong(256)))
        # a wrong-length signature too
        self.assertRV("CKR_OK", self.raw.init("C_VerifyInit", self.hs, m, h.oh(self.pub)))
        self.assertRV("CKR_SIGNATURE_LEN_RANGE",
                      self.raw.C_Verify(ctypes.c_ulong(self.hs), d, ctypes.c_ulong(4), bad, ctypes.c_ulong(10)))
        self.assertRV("CKR_OPERATION_NOT_INITIALIZED",
                      self.raw.C_Verify(ctypes.c_ulong(self.hs), d, ctypes.c_ulong(4), bad, ctypes.c_ulong(256)))

    def test_wrong_key_kind(self):
        # public key for signing, private key for encrypting
        self.assertRV("CKR_KEY_TYPE_INCONSISTENT",
                      self.raw.init("C_SignInit", self.hs, h.mech(P.CKM_SHA256_RSA_PKCS), h.oh(self.pub)))
        self.assertRV("CKR_KEY_TYPE_INCONSISTENT",
                      self.raw.init("C_EncryptInit", self.hs, h.mech(P.CKM_RSA_PKCS), h.oh(self.priv)))
        # an AES key for an RSA mechanism and the other way round
        self.assertRV("CKR_KEY_TYPE_INCONSISTENT",
                      self.raw.init("C_EncryptInit", self.hs, h.mech(P.CKM_RSA_PKCS), h.oh(self.aes)))
        self.assertRV("CKR_KEY_TYPE_INCONSISTENT",
                      self.raw.init("C_EncryptInit", self.hs, h.mech(P.CKM_AES_CBC_PAD, bytes(16)), h.oh(self.pub)))
        # a key whose usage attribute forbids the function
        k = aes_key(self.s, "no-encrypt")
        self.s.setAttributeValue(k, [(P.CKA_ENCRYPT, False)])
        self.assertRV("CKR_KEY_FUNCTION_NOT_PERMITTED",
                      self.raw.init("C_EncryptInit", self.hs, h.mech(P.CKM_AES_CBC_PAD, bytes(16)), h.oh(k)))
        pub, priv = self.s.generateKeyPair(
            [(P.CKA_TOKEN, False), (P.CKA_MODULUS_BITS, 2048), (P.CKA_VERIFY, False)],
            [(P.CKA_TOKEN, False), (P.CKA_SIGN, False), (P.CKA_DECRYPT, True)], P.MechanismRSAGENERATEKEYPAIR)
        self.assertRV("CKR_KEY_FUNCTION_NOT_PERMITTED",
                      self.raw.init("C_SignInit", self.hs, h.mech(P.CKM_SHA256_RSA_PKCS), h.oh(priv)))
        self.assertRV("CKR_KEY_FUNCTION_NOT_PERMITTED",
                      self.raw.init("C_VerifyInit", self.hs, h.mech(P.CKM_SHA256_RSA_PKCS), h.oh(pub)))
        # nothing was left active by the refused inits
        self.sign_init()
        rv, _, _ = self.raw.single("C_Sign", self.hs, b"data", size=256)
        self.assertRV("CKR_OK", rv)

    def test_mechanism_invalid(self):
        self.assertRV("CKR_MECHANISM_INVALID",
                      self.raw.init("C_SignInit", self.hs, h.mech(0x80001234), h.oh(self.priv)))
        # a mechanism that cannot sign
        self.assertRV("CKR_MECHANISM_INVALID",
                      self.raw.init("C_SignInit", self.hs, h.mech(P.CKM_RSA_PKCS_OAEP), h.oh(self.priv)))

    def test_update_on_a_single_part_mechanism_is_refused_and_ends_the_operation(self):
        self.sign_init(P.CKM_RSA_PKCS)
        b = ctypes.create_string_buffer(b"abc", 3)
        self.assertRV("CKR_FUNCTION_NOT_SUPPORTED",
                      self.raw.C_SignUpdate(ctypes.c_ulong(self.hs), b, ctypes.c_ulong(3)))
        rv, _, _ = self.raw.single("C_Sign", self.hs, b"data", size=256)
        self.assertRV("CKR_OPERATION_NOT_INITIALIZED", rv)
        self.sign_init(P.CKM_RSA_PKCS)  # a new operation can start, and completes
        rv, _, _ = self.raw.single("C_Sign", self.hs, b"data", size=256)
        self.assertRV("CKR_OK", rv)

    def test_multipart_equals_single_part(self):
        self.sign_init(P.CKM_SHA256_RSA_PKCS)
        for part in (b"abc", b"def", b"ghi"):
            b = ctypes.create_string_buffer(part, len(part))
            self.assertRV("CKR_OK", self.raw.C_SignUpdate(ctypes.c_ulong(self.hs), b, ctypes.c_ulong(len(part))))
        rv, _, n = self.raw.out_call(self.raw.C_SignFinal, ctypes.c_ulong(self.hs))
        self.assertRV("CKR_OK", rv)
        rv, _, _ = self.raw.out_call(self.raw.C_SignFinal, ctypes.c_ulong(self.hs), size=5)
        self.assertRV("CKR_BUFFER_TOO_SMALL", rv)
        rv, sig, _ = self.raw.out_call(self.raw.C_SignFinal, ctypes.c_ulong(self.hs), size=n)
        self.assertRV("CKR_OK", rv)
        # PKCS#1 v1.5 is deterministic: same as the single-part signature
        self.assertEqual(sig, bytes(self.s.sign(self.priv, b"abcdefghi", P.Mechanism(P.CKM_SHA256_RSA_PKCS))))


class OperationEndsTest(P11Case):
    """Which results end an active operation (PKCS#11 3.0 5.2 and 5.8-5.13): every error but
    CKR_BUFFER_TOO_SMALL, a NULL length pointer and a single-part call after an Update included;
    a length query and CKR_BUFFER_TOO_SMALL leave it running."""

    @classmethod
    def setUpClass(cls):
        cls.s = rw()
        cls.raw = h.Raw()
        cls.hs = h.sh(cls.s)
        cls.pub, cls.priv = rsa_pair(cls.s, "ends")
        cls.aes = aes_key(cls.s, "ends-aes")

    @classmethod
    def tearDownClass(cls):
        cls.s.closeSession()

    S = ctypes.c_ulong

    def start(self, kind):
        """Starts an operation of `kind` (after ending any left by a failed check); returns the names
        of its single-part, update and final functions."""
        self.raw.C_SessionCancel(self.S(self.hs), self.S(P.CKF_ENCRYPT | P.CKF_DECRYPT | P.CKF_DIGEST | P.CKF_SIGN |
                                                         P.CKF_VERIFY))
        if kind == "digest":
            m = h.mech(P.CKM_SHA256)
            self.assertRV("CKR_OK", self.raw.C_DigestInit(self.S(self.hs), ctypes.byref(m)))
            return "C_Digest", "C_DigestUpdate", "C_DigestFinal"
        if kind in ("encrypt", "decrypt"):
            name = "C_EncryptInit" if kind == "encrypt" else "C_DecryptInit"
            self.assertRV("CKR_OK", self.raw.init(name, self.hs, h.mech(P.CKM_AES_CBC_PAD, bytes(16)), h.oh(self.aes)))
            fn = "C_Encrypt" if kind == "encrypt" else "C_Decrypt"
            return fn, fn + "Update", fn + "Final"
        if kind == "sign":
            self.assertRV("CKR_OK", self.raw.init("C_SignInit", self.hs, h.mech(P.CKM_SHA256_RSA_PKCS), h.oh(self.priv)))
            return "C_Sign", "C_SignUpdate", "C_SignFinal"
        self.assertRV("CKR_OK", self.raw.init("C_VerifyInit", self.hs, h.mech(P.CKM_SHA256_RSA_PKCS), h.oh(self.pub)))
        return "C_Verify", "C_VerifyUpdate", "C_VerifyFinal"

    def assert_ended(self, kind):
        data = ctypes.create_string_buffer(16)
        n = ctypes.c_ulong(512)
        out = ctypes.create_string_buffer(512)
        if kind == "verify":
            rv = self.raw.C_VerifyUpdate(self.S(self.hs), data, self.S(16))
        elif kind in ("digest", "sign"):
            rv = getattr(self.raw, "C_%sUpdate" % kind.capitalize())(self.S(self.hs), data, self.S(16))
        else:
            rv = getattr(self.raw, "C_%sUpdate" % kind.capitalize())(self.S(self.hs), data, self.S(16), out,
                                                                    ctypes.byref(n))
        self.assertRV("CKR_OPERATION_NOT_INITIALIZED", rv)

    def test_null_length_pointer_ends_the_operation(self):
        data = ctypes.create_string_buffer(b"0123456789abcdef", 16)
        out = ctypes.create_string_buffer(512)
        for kind in ("digest", "encrypt", "decrypt", "sign"):
            for step in ("single", "update", "final"):
                if kind in ("digest", "sign") and step == "update":
                    continue  # no output
                with self.subTest(kind=kind, step=step):
                    single, update, final = self.start(kind)
                    if step == "single":
                        rv = getattr(self.raw, single)(self.S(self.hs), data, self.S(16), out, None)
                    elif step == "update":
                        rv = getattr(self.raw, update)(self.S(self.hs), data, self.S(16), out, None)
                    else:
                        if kind in ("digest", "sign"):
                            self.assertRV("CKR_OK", getattr(self.raw, update)(self.S(self.hs), data, self.S(16)))
                        rv = getattr(self.raw, final)(self.S(self.hs), out, None)
                    self.assertRV("CKR_ARGUMENTS_BAD", rv)
                    self.assert_ended(kind)

    def test_null_data_pointer_ends_the_operation(self):
        for kind in ("digest", "encrypt", "decrypt", "sign", "verify"):
            with self.subTest(kind=kind):
                single, update, final = self.start(kind)
                n = ctypes.c_ulong(512)
                out = ctypes.create_string_buffer(512)
                if kind in ("digest", "sign", "verify"):
                    rv = getattr(self.raw, update)(self.S(self.hs), None, self.S(16))
                else:
                    rv = getattr(self.raw, update)(self.S(self.hs), None, self.S(16), out, ctypes.byref(n))
                self.assertRV("CKR_ARGUMENTS_BAD", rv)
                self.assert_ended(kind)
        # a NULL signature with a length ends a verify
        self.start("verify")
        d = ctypes.create_string_buffer(b"data", 4)
        self.assertRV("CKR_ARGUMENTS_BAD", self.raw.C_Verify(self.S(self.hs), d, self.S(4), None, self.S(256)))
        self.assert_ended("verify")

    def test_single_part_call_after_update_is_operation_active_and_ends(self):
        data = ctypes.create_string_buffer(b"0123456789abcdef", 16)
        for kind in ("digest", "encrypt", "decrypt", "sign", "verify"):
            with self.subTest(kind=kind):
                single, update, final = self.start(kind)
                n = ctypes.c_ulong(512)
                out = ctypes.create_string_buffer(512)
                if kind in ("digest", "sign", "verify"):
                    self.assertRV("CKR_OK", getattr(self.raw, update)(self.S(self.hs), data, self.S(16)))
                else:
                    self.assertRV("CKR_OK", getattr(self.raw, update)(self.S(self.hs), data, self.S(16), out,
                                                                      ctypes.byref(n)))
                n.value = 512
                if kind == "verify":
                    rv = self.raw.C_Verify(self.S(self.hs), data, self.S(16), out, self.S(256))
                else:
                    rv = getattr(self.raw, single)(self.S(self.hs), data, self.S(16), out, ctypes.byref(n))
                self.assertRV("CKR_OPERATION_ACTIVE", rv)
                self.assert_ended(kind)

    def input_for(self, kind):
        """16 bytes, or for decrypt a valid AES-CBC-PAD ciphertext of them under the start() IV."""
        if kind != "decrypt":
            return b"0123456789abcdef"
        return bytes(self.s.encrypt(self.aes, b"0123456789abcdef", P.Mechanism(P.CKM_AES_CBC_PAD, bytes(16))))

    def test_update_or_final_after_a_single_part_length_query_is_operation_active_and_ends(self):
        data = ctypes.create_string_buffer(b"0123456789abcdef", 16)
        for kind in ("digest", "encrypt", "decrypt", "sign"):
            for step in ("update", "final"):
                with self.subTest(kind=kind, step=step):
                    single, update, final = self.start(kind)
                    rv, _, n = self.raw.single(single, self.hs, self.input_for(kind))  # a length query
                    self.assertRV("CKR_OK", rv)
                    out = ctypes.create_string_buffer(512)
                    ln = ctypes.c_ulong(512)
                    if step == "final":
                        rv = getattr(self.raw, final)(self.S(self.hs), out, ctypes.byref(ln))
                    elif kind in ("digest", "sign"):
                        rv = getattr(self.raw, update)(self.S(self.hs), data, self.S(16))
                    else:
                        rv = getattr(self.raw, update)(self.S(self.hs), data, self.S(16), out, ctypes.byref(ln))
                    self.assertRV("CKR_OPERATION_ACTIVE", rv)
                    self.assert_ended(kind)
        k = aes_key(self.s, "digest-after-single", extra=[(P.CKA_SENSITIVE, False), (P.CKA_EXTRACTABLE, True)])
        self.start("digest")
        self.assertRV("CKR_OK", self.raw.single("C_Digest", self.hs, b"abc")[0])
        self.assertRV("CKR_OPERATION_ACTIVE", self.raw.C_DigestKey(self.S(self.hs), self.S(h.oh(k))))
        self.assert_ended("digest")

    def test_length_query_and_buffer_too_small_keep_it_running(self):
        for kind in ("digest", "encrypt", "sign"):
            with self.subTest(kind=kind):
                single, _, _ = self.start(kind)
                rv, _, n = self.raw.single(single, self.hs, b"0123456789abcdef")
                self.assertRV("CKR_OK", rv)
                rv, _, _ = self.raw.single(single, self.hs, b"0123456789abcdef", size=1)
                self.assertRV("CKR_BUFFER_TOO_SMALL", rv)
                rv, out, _ = self.raw.single(single, self.hs, b"0123456789abcdef", size=n)
                self.assertRV("CKR_OK", rv)

    def test_digest_init_checks(self):
        self.raw.C_SessionCancel(self.S(self.hs), self.S(P.CKF_DIGEST))
        m = h.mech(P.CKM_SHA256, b"\x00")
        # SoftHSM2 2.6.1 ignores a digest mechanism's parameter, and C_DigestInit is forwarded as it is.
        self.assertRV(h.by_backend("CKR_MECHANISM_PARAM_INVALID", "CKR_OK"),
                      self.raw.C_DigestInit(self.S(self.hs), ctypes.byref(m)))
        # an active operation is reported before the mechanism is judged
        self.start("digest")
        bogus = h.mech(0x80001234)
        self.assertRV("CKR_OPERATION_ACTIVE", self.raw.C_DigestInit(self.S(self.hs), ctypes.byref(bogus)))
        # with no operation, a call is CKR_OPERATION_NOT_INITIALIZED before its arguments are judged
        self.raw.C_SessionCancel(self.S(self.hs), self.S(P.CKF_DIGEST))
        buf = ctypes.create_string_buffer(64)
        self.assertRV("CKR_OPERATION_NOT_INITIALIZED", self.raw.C_Digest(self.S(self.hs), buf, self.S(3), buf, None))
        self.assertRV("CKR_OPERATION_NOT_INITIALIZED", self.raw.C_DigestUpdate(self.S(self.hs), None, self.S(5)))

    def test_digest_key(self):
        import hashlib
        value = bytes(range(32))
        k = self.s.createObject([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_TOKEN, False),
                                 (P.CKA_VALUE, value)])  # sensitive and unextractable by default
        gen = aes_key(self.s, "digest-gen")
        for key, expect in ((k, hashlib.sha256(value).digest()), (gen, None)):
            self.start("digest")
            self.assertRV("CKR_OK", self.raw.C_DigestKey(self.S(self.hs), self.S(h.oh(key))))
            rv, out, _ = self.raw.out_call(self.raw.C_DigestFinal, self.S(self.hs), size=32)
            self.assertRV("CKR_OK", rv)
            if expect:
                self.assertEqual(out, expect)
        # with data around it: H(data || key || data)
        self.start("digest")
        d = ctypes.create_string_buffer(b"ab", 2)
        self.assertRV("CKR_OK", self.raw.C_DigestUpdate(self.S(self.hs), d, self.S(2)))
        self.assertRV("CKR_OK", self.raw.C_DigestKey(self.S(self.hs), self.S(h.oh(k))))
        self.assertRV("CKR_OK", self.raw.C_DigestUpdate(self.S(self.hs), d, self.S(2)))
        rv, out, _ = self.raw.out_call(self.raw.C_DigestFinal, self.S(self.hs), size=32)
        self.assertEqual(out, hashlib.sha256(b"ab" + value + b"ab").digest())
        # only secret keys can be digested; a refused key ends the operation
        self.start("digest")
        self.assertRV("CKR_KEY_INDIGESTIBLE", self.raw.C_DigestKey(self.S(self.hs), self.S(h.oh(self.pub))))
        self.assert_ended("digest")
        self.start("digest")
        self.assertRV("CKR_KEY_HANDLE_INVALID", self.raw.C_DigestKey(self.S(self.hs), self.S(0x7FFFFFF0)))
        self.assert_ended("digest")


class SeedRandomTest(P11Case):
    def test_seed_random(self):
        s = rw(login=False)
        raw = h.Raw()
        self.assertRV("CKR_ARGUMENTS_BAD", raw.C_SeedRandom(ctypes.c_ulong(h.sh(s)), None, ctypes.c_ulong(8)))
        seed = ctypes.create_string_buffer(8)
        self.assertRV("CKR_RANDOM_SEED_NOT_SUPPORTED", raw.C_SeedRandom(ctypes.c_ulong(h.sh(s)), seed, ctypes.c_ulong(8)))
        self.assertRV("CKR_SESSION_HANDLE_INVALID", raw.C_SeedRandom(ctypes.c_ulong(0x7FFFFF), seed, ctypes.c_ulong(8)))
        s.closeSession()


class PublicSessionTest(P11Case):
    """The session-state table (PKCS#11 3.0 5.6): an R/W public session reads and writes every public
    object, token or session, and may generate and create them; private ones need the user."""

    def setUp(self):
        self.slot = h.slot_of(LIB, "fresh")
        LIB.closeAllSessions(self.slot)  # nobody logged in
        self.s = LIB.openSession(self.slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        self.assertEqual(self.s.getSessionInfo().state, P.CKS_RW_PUBLIC_SESSION)

    def tearDown(self):
        LIB.closeAllSessions(self.slot)

    def test_public_objects_in_a_public_rw_session(self):
        for token in (False, True):
            with self.subTest(token=token):
                k = aes_key(self.s, "pub-aes-%d" % token, token=token, extra=[(P.CKA_PRIVATE, False)])
                iv = bytes(16)
                ct = bytes(self.s.encrypt(k, b"x" * 16, P.Mechanism(P.CKM_AES_CBC_PAD, iv)))
                self.assertEqual(bytes(self.s.decrypt(k, ct, P.Mechanism(P.CKM_AES_CBC_PAD, iv))), b"x" * 16)
                pub, priv = self.s.generateKeyPair(
                    [(P.CKA_TOKEN, token), (P.CKA_PRIVATE, False), (P.CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107")),
                     (P.CKA_VERIFY, True)],
                    [(P.CKA_TOKEN, token), (P.CKA_PRIVATE, False), (P.CKA_SIGN, True)], P.MechanismECGENERATEKEYPAIR)
                # SoftHSM2 2.6.1 has CKM_ECDSA only (the data is then the digest).
                ecdsa = P.Mechanism(h.by_backend(P.CKM_ECDSA_SHA256, P.CKM_ECDSA))
                sig = bytes(self.s.sign(priv, b"data", ecdsa))
                self.assertTrue(self.s.verify(pub, b"data", sig, ecdsa))
                created = self.s.createObject([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES),
                                               (P.CKA_TOKEN, token), (P.CKA_PRIVATE, False), (P.CKA_VALUE, bytes(16)),
                                               (P.CKA_ENCRYPT, True)])
                d = self.s.createObject([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, token), (P.CKA_PRIVATE, False),
                                         (P.CKA_VALUE, b"public")])
                for o in (k, pub, priv, created, d):
                    self.s.destroyObject(o)
        # a token key made in a public session is usable in another process's public session
        k = aes_key(self.s, "pub-persist", token=True, extra=[(P.CKA_PRIVATE, False)])
        out = TOK.tool("--token-label", "fresh", "-O", "--type", "secrkey").stdout.decode()
        self.assertIn("pub-persist", out)
        self.s.destroyObject(k)

    def test_private_objects_still_need_the_user(self):
        self.assertCKR("CKR_USER_NOT_LOGGED_IN", aes_key, self.s, "priv-aes")  # CKA_PRIVATE defaults to true
        self.assertCKR("CKR_USER_NOT_LOGGED_IN", aes_key, self.s, "priv-aes", True, [(P.CKA_PRIVATE, True)])
        self.assertCKR("CKR_USER_NOT_LOGGED_IN", self.s.createObject,
                       [(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, True)])
        self.assertCKR("CKR_USER_NOT_LOGGED_IN", self.s.generateKeyPair,
                       [(P.CKA_TOKEN, False), (P.CKA_MODULUS_BITS, 2048)], [(P.CKA_TOKEN, False)],
                       P.MechanismRSAGENERATEKEYPAIR)


class LoginStateTest(P11Case):
    def test_private_objects_need_login_and_handles_die_on_logout(self):
        s = rw()
        d = s.createObject([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, True),
                            (P.CKA_LABEL, "priv-data"), (P.CKA_VALUE, b"secret")])
        pub_d = s.createObject([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, False),
                                (P.CKA_LABEL, "pub-data")])
        hd = h.oh(d)
        s.logout()
        self.assertEqual(s.findObjects([(P.CKA_LABEL, "priv-data")]), [])
        self.assertEqual(len(s.findObjects([(P.CKA_LABEL, "pub-data")])), 1)
        raw = h.Raw()
        rv, _, _ = raw.get_attr(h.sh(s), hd, P.CKA_LABEL)
        self.assertRV("CKR_OBJECT_HANDLE_INVALID", rv)
        # a second session (opened before login) sees them only while logged in
        s2 = LIB.openSession(h.slot_of(LIB, "demo"))
        self.assertEqual(s2.findObjects([(P.CKA_LABEL, "priv-data")]), [])
        s.login(h.USER_PIN)
        self.assertEqual(len(s2.findObjects([(P.CKA_LABEL, "priv-data")])), 1)
        # creating a private object needs login
        s.logout()
        self.assertCKR("CKR_USER_NOT_LOGGED_IN", s.createObject,
                       [(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, True)])
        s.login(h.USER_PIN)
        s.destroyObject(s.findObjects([(P.CKA_LABEL, "priv-data")])[0])
        s.destroyObject(pub_d)
        s2.closeSession()
        s.closeSession()

    @h.soft_only("C_InitToken of a forwarded token is refused with CKR_FUNCTION_NOT_SUPPORTED by design "
                 "(test_init_token_is_refused_on_the_hsm)")
    def test_init_token_with_open_session(self):
        slot = h.slot_of(LIB, "fresh")
        s = LIB.openSession(slot)
        # C_InitToken's label is 32 blank-padded bytes; PyKCS11 passes the string as given.
        label = "fresh".ljust(32)
        self.assertCKR("CKR_SESSION_EXISTS", LIB.initToken, slot, h.SO_PIN, label)
        s.closeSession()
        LIB.initToken(slot, h.SO_PIN, label)
        s = LIB.openSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        # re-initialisation removed the user PIN
        self.assertFalse(LIB.getTokenInfo(slot).flags & P.CKF_USER_PIN_INITIALIZED)
        self.assertCKR("CKR_USER_PIN_NOT_INITIALIZED", s.login, h.USER_PIN)
        s.login(h.SO_PIN, P.CKU_SO)
        s.initPin(h.USER_PIN)
        s.logout()
        s.closeSession()
        self.assertTrue(LIB.getTokenInfo(slot).flags & P.CKF_USER_PIN_INITIALIZED)

    @unittest.skipUnless(h.HSM, "the HSM backend's answer")
    def test_init_token_is_refused_on_the_hsm(self):
        # It would erase a token other applications share (README, "The HSM token").
        slot = h.slot_of(LIB, "fresh")
        self.assertCKR("CKR_FUNCTION_NOT_SUPPORTED", LIB.initToken, slot, h.SO_PIN, "fresh".ljust(32))
        self.assertIn("C_InitToken refused", TOK.read_log())

    def test_so_login_with_read_only_session(self):
        slot = h.slot_of(LIB, "demo")
        LIB.closeAllSessions(slot)  # no user logged in from another test
        ro = LIB.openSession(slot)
        rws = LIB.openSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        self.assertCKR("CKR_SESSION_READ_ONLY_EXISTS", rws.login, h.SO_PIN, P.CKU_SO)
        ro.closeSession()
        rws.login(h.SO_PIN, P.CKU_SO)
        # and no RO session can be opened while the SO is logged in
        self.assertCKR("CKR_SESSION_READ_WRITE_SO_EXISTS", LIB.openSession, slot)
        self.assertCKR("CKR_USER_ANOTHER_ALREADY_LOGGED_IN", rws.login, h.USER_PIN)
        rws.logout()
        rws.closeSession()

    def test_context_specific_login(self):
        s = rw()
        raw = h.Raw()
        hs = h.sh(s)
        pub, priv = s.generateKeyPair(
            [(P.CKA_TOKEN, False), (P.CKA_MODULUS_BITS, 2048), (P.CKA_VERIFY, True)],
            [(P.CKA_TOKEN, False), (P.CKA_SIGN, True), (P.CKA_ALWAYS_AUTHENTICATE, True)],
            P.MechanismRSAGENERATEKEYPAIR)
        m = h.mech(P.CKM_SHA256_RSA_PKCS)
        # without the context-specific login the signature is refused
        self.assertRV("CKR_OK", raw.init("C_SignInit", hs, m, h.oh(priv)))
        rv, _, _ = raw.single("C_Sign", hs, b"data", size=256)
        self.assertRV("CKR_USER_NOT_LOGGED_IN", rv)
        # with it, it works; a wrong PIN is refused
        self.assertRV("CKR_OK", raw.init("C_SignInit", hs, m, h.oh(priv)))
        self.assertCKR("CKR_PIN_INCORRECT", s.login, "77777777", h.CKU_CONTEXT_SPECIFIC)
        s.login(h.USER_PIN, h.CKU_CONTEXT_SPECIFIC)
        rv, sig, _ = raw.single("C_Sign", hs, b"data", size=256)
        self.assertRV("CKR_OK", rv)
        s.verify(pub, b"data", sig, P.Mechanism(P.CKM_SHA256_RSA_PKCS))
        # each operation needs its own
        self.assertRV("CKR_OK", raw.init("C_SignInit", hs, m, h.oh(priv)))
        rv, _, _ = raw.single("C_Sign", hs, b"data", size=256)
        self.assertRV("CKR_USER_NOT_LOGGED_IN", rv)
        # a context-specific login with no operation
        self.assertCKR("CKR_OPERATION_NOT_INITIALIZED", s.login, h.USER_PIN, h.CKU_CONTEXT_SPECIFIC)
        s.closeSession()


if __name__ == "__main__":
    h.main()
