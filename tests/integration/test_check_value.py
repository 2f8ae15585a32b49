"""CKA_CHECK_VALUE of secret keys (PKCS#11 3.0, secret key objects): the first 3 bytes of AES-ECB of
a zero block for AES keys, of SHA-1 of the value for generic secret keys; made on every path that
makes a key (create, generate, unwrap, derive, copy); a template's value that differs from the
key's is CKR_ATTRIBUTE_VALUE_INVALID, a zero-length one means "no check value"."""
import ctypes
import hashlib

import p11helpers as h
from p11helpers import P11Case

P = h.pykcs11()
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from cryptography.hazmat.primitives import keywrap  # noqa: E402

TOK = LIB = None
T, F = b"\x01", b"\x00"
ECB = 0x1081  # CKM_AES_ECB

setUpModule, tearDownModule = h.shared_token(globals(), log_level="info")


def aes_kcv(key):
    e = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (e.update(bytes(16)) + e.finalize())[:3]


def secret(value, key_type=P.CKK_AES, **kw):
    t = [(h.CKA_CLASS, h.ulong_bytes(P.CKO_SECRET_KEY)), (P.CKA_KEY_TYPE, h.ulong_bytes(key_type)), (h.CKA_TOKEN, F),
         (P.CKA_SENSITIVE, F), (P.CKA_EXTRACTABLE, T), (P.CKA_ENCRYPT, T), (P.CKA_UNWRAP, T), (h.CKA_VALUE, value)]
    return t + [(getattr(P, k), v) for k, v in kw.items()]


class CheckValueTest(P11Case):
    def setUp(self):
        self.s = LIB.openSession(h.slot_of(LIB), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        self.s.login(h.USER_PIN)
        self.raw = h.Raw()
        self.hs = h.sh(self.s)

    def tearDown(self):
        LIB.closeAllSessions(h.slot_of(LIB))

    def kcv(self, obj):
        rv, n, v = self.raw.get_attr(self.hs, obj, P.CKA_CHECK_VALUE, size=16)
        self.assertRV("CKR_OK", rv)
        return v

    def ecb_zero(self, obj):
        """The token's own AES-ECB of a zero block under obj, first 3 bytes."""
        m = h.mech(ECB)
        self.assertRV("CKR_OK", self.raw.init("C_EncryptInit", self.hs, m, obj))
        rv, out, _ = self.raw.single("C_Encrypt", self.hs, bytes(16), size=16)
        self.assertRV("CKR_OK", rv)
        return out[:3]

    def create(self, template):
        rv, o = self.raw.create(self.hs, template)
        self.assertRV("CKR_OK", rv)
        return o

    def test_created_aes_keys_report_the_ecb_of_a_zero_block(self):
        for n in (16, 24, 32):
            key = bytes(range(7, 7 + n))
            with self.subTest(bytes=n):
                self.assertEqual(self.kcv(self.create(secret(key))), aes_kcv(key))

    def test_a_created_generic_secret_reports_the_sha1_of_its_value(self):
        key = b"generic secret value, 32 bytes!!"
        o = self.create(secret(key, P.CKK_GENERIC_SECRET)[:-3] + [(P.CKA_SIGN, T), (h.CKA_VALUE, key)])
        self.assertEqual(self.kcv(o), hashlib.sha1(key).digest()[:3])

    def test_a_template_check_value_is_compared_with_the_key(self):
        key = bytes(range(16))
        good = aes_kcv(key)
        self.assertEqual(self.kcv(self.create(secret(key, CKA_CHECK_VALUE=good))), good)
        bad = bytes(b ^ 0xFF for b in good)
        self.assertRV("CKR_ATTRIBUTE_VALUE_INVALID", self.raw.create(self.hs, secret(key, CKA_CHECK_VALUE=bad))[0])
        if not h.HSM:
            log = TOK.read_log()
            self.assertEqual(log.count("CKA_CHECK_VALUE in the template is not the key's check value"), 1, log)
            self.assertNotIn(key.hex(), log)
        # zero length: the key has no check value
        o = self.create(secret(key, CKA_CHECK_VALUE=b""))
        rv, n, _ = self.raw.get_attr(self.hs, o, P.CKA_CHECK_VALUE)
        self.assertRV("CKR_OK", rv)
        self.assertEqual(n, 0)

    def test_a_generated_key_reports_the_check_value_of_its_material(self):
        k = self.s.generateKey([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_VALUE_LEN, 32),
                                (P.CKA_TOKEN, False), (P.CKA_ENCRYPT, True)], P.MechanismAESGENERATEKEY)
        kcv = self.kcv(h.oh(k))
        self.assertEqual(len(kcv), 3)
        self.assertEqual(kcv, self.ecb_zero(h.oh(k)))

    def generate(self, extra):
        arr, keep = h.c_attrs([(h.CKA_CLASS, h.ulong_bytes(P.CKO_SECRET_KEY)), (P.CKA_KEY_TYPE, h.ulong_bytes(P.CKK_AES)),
                               (P.CKA_VALUE_LEN, h.ulong_bytes(16)), (h.CKA_TOKEN, F), (P.CKA_ENCRYPT, T)] + extra)
        m = h.mech(P.CKM_AES_KEY_GEN)
        o = ctypes.c_ulong(0)
        rv = self.raw.C_GenerateKey(ctypes.c_ulong(self.hs), ctypes.byref(m), arr, ctypes.c_ulong(len(arr)),
                                    ctypes.byref(o))
        return rv, o.value

    def test_generation_takes_a_check_value_in_the_template_as_creation_does(self):
        # zero length: no check value is made; a value given must be the key's (3 bytes a random
        # key matches with probability 2^-24)
        rv, o = self.generate([(P.CKA_CHECK_VALUE, b"")])
        self.assertRV("CKR_OK", rv)
        self.assertEqual(self.raw.get_attr(self.hs, o, P.CKA_CHECK_VALUE)[1], 0)
        self.assertRV("CKR_ATTRIBUTE_VALUE_INVALID", self.generate([(P.CKA_CHECK_VALUE, b"\x00\x00\x00")])[0])

    def test_set_attribute_value_may_only_clear_the_check_value(self):
        o = self.create(secret(bytes(range(16))))
        self.assertRV("CKR_ATTRIBUTE_READ_ONLY", self.raw.set_attrs(self.hs, o, [(P.CKA_CHECK_VALUE, b"abc")]))
        self.assertRV("CKR_OK", self.raw.set_attrs(self.hs, o, [(P.CKA_CHECK_VALUE, b"")]))
        self.assertEqual(self.raw.get_attr(self.hs, o, P.CKA_CHECK_VALUE)[1], 0)

    def unwrap(self, kek, blob, extra):
        arr, keep = h.c_attrs([(h.CKA_CLASS, h.ulong_bytes(P.CKO_SECRET_KEY)),
                               (P.CKA_KEY_TYPE, h.ulong_bytes(P.CKK_AES)), (h.CKA_TOKEN, F)] + extra)
        m = h.mech(P.CKM_AES_KEY_WRAP)
        b = ctypes.create_string_buffer(blob, len(blob))
        o = ctypes.c_ulong(0)
        rv = self.raw.C_UnwrapKey(ctypes.c_ulong(self.hs), ctypes.byref(m), ctypes.c_ulong(kek), b,
                                  ctypes.c_ulong(len(blob)), arr, ctypes.c_ulong(len(arr)), ctypes.byref(o))
        return rv, o.value

    def test_an_unwrapped_key_gets_its_check_value_and_a_wrong_one_is_refused(self):
        kek_value, inner = bytes(range(32)), bytes(range(100, 116))
        kek = self.create(secret(kek_value))
        blob = keywrap.aes_key_wrap(kek_value, inner)
        rv, o = self.unwrap(kek, blob, [])
        self.assertRV("CKR_OK", rv)
        # SoftHSM2 2.6.1 gives an unwrapped key an empty CKA_CHECK_VALUE and so refuses the right one too
        if not h.HSM:
            self.assertEqual(self.kcv(o), aes_kcv(inner))
            rv, o = self.unwrap(kek, blob, [(P.CKA_CHECK_VALUE, aes_kcv(inner))])
            self.assertRV("CKR_OK", rv)
            self.assertEqual(self.kcv(o), aes_kcv(inner))
        wrong = bytes(b ^ 1 for b in aes_kcv(inner))
        self.assertRV("CKR_ATTRIBUTE_VALUE_INVALID", self.unwrap(kek, blob, [(P.CKA_CHECK_VALUE, wrong)])[0])

    def test_a_copy_keeps_the_check_value(self):
        key = bytes(range(50, 66))
        rv, c = self.raw.copy(self.hs, self.create(secret(key)), [(P.CKA_LABEL, b"copy")])
        self.assertRV("CKR_OK", rv)
        self.assertEqual(self.kcv(c), aes_kcv(key))


if __name__ == "__main__":
    h.main()
