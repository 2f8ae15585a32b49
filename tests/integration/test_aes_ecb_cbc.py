"""CKM_AES_ECB and CKM_AES_CBC (no padding) through the built module: C_GetMechanismInfo, NIST SP
800-38A known answers and the `cryptography` package, single- and multi-part with partial blocks,
the spec's length and IV errors, wrapping of secret keys (zero-padded to whole blocks, truncated by
CKA_VALUE_LEN on unwrap), and pkcs11-tool checked against `openssl enc -nopad`."""
import ctypes
import os
import unittest

import p11helpers as h

P = h.pykcs11()
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402

TOK = LIB = None
ECB, CBC = 0x1081, 0x1082  # CKM_AES_ECB, CKM_AES_CBC

# NIST SP 800-38A appendix F (F.1.1, F.1.3, F.1.5 ECB; F.2.1, F.2.3, F.2.5 CBC)
NIST_PT = bytes.fromhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
                        "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
NIST_IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
NIST = [
    (ECB, "2b7e151628aed2a6abf7158809cf4f3c",
     "3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf"
     "43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4"),
    (ECB, "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
     "bd334f1d6e45f25ff712a214571fa5cc974104846d0ad3ad7734ecb3ecee4eef"
     "ef7afd2270e2e60adce0ba2face6444e9a4b41ba738d6c72fb16691603c18e0e"),
    (ECB, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
     "f3eed1bdb5d2a03c064b5a7e3db181f8591ccb10d410ed26dc5ba74a31362870"
     "b6ed21b99ca6f4f9f153e7b1beafed1d23304b7a39f9f3ff067d8d8f9e24ecc7"),
    (CBC, "2b7e151628aed2a6abf7158809cf4f3c",
     "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
     "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7"),
    (CBC, "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
     "4f021db243bc633d7178183a9fa071e8b4d9ada9ad7dedf4e5e738763f69145a"
     "571b242012fb7ae07fa9baac3df102e008b0e27988598881d920a9e64f5615cd"),
    (CBC, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
     "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
     "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b"),
]


setUpModule, tearDownModule = h.shared_token(globals())


def reference(mech, key, iv, data, encrypt=True):
    c = Cipher(algorithms.AES(key), modes.ECB() if mech == ECB else modes.CBC(iv))
    op = c.encryptor() if encrypt else c.decryptor()
    return op.update(data) + op.finalize()


def mechanism(mech, iv):
    return P.Mechanism(mech, iv) if mech == CBC else P.Mechanism(mech)


class AesEcbCbcTest(h.P11Case):
    @classmethod
    def setUpClass(cls):
        cls.s = LIB.openSession(h.slot_of(LIB), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        cls.s.login(h.USER_PIN)
        cls.raw = h.Raw()
        cls.hs = h.sh(cls.s)

    @classmethod
    def tearDownClass(cls):
        cls.s.closeSession()

    def aes(self, value, extractable=False, key_type=P.CKK_AES):
        return self.s.createObject([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, key_type),
                                    (P.CKA_TOKEN, False), (P.CKA_VALUE, value), (P.CKA_ENCRYPT, True),
                                    (P.CKA_DECRYPT, True), (P.CKA_WRAP, True), (P.CKA_UNWRAP, True),
                                    (P.CKA_EXTRACTABLE, extractable), (P.CKA_SENSITIVE, not extractable)])

    def init(self, fn, mech, key, iv=None):
        return self.raw.init(fn, self.hs, h.mech(mech, iv), h.oh(key))

    def update(self, fn, data):
        d = ctypes.create_string_buffer(data, max(len(data), 1))
        n = ctypes.c_ulong(len(data) + 16)
        out = ctypes.create_string_buffer(len(data) + 16)
        rv = getattr(self.raw, fn)(ctypes.c_ulong(self.hs), d, ctypes.c_ulong(len(data)), out, ctypes.byref(n))
        return rv, out.raw[:n.value]

    def final(self, fn):
        n = ctypes.c_ulong(64)
        out = ctypes.create_string_buffer(64)
        rv = getattr(self.raw, fn)(ctypes.c_ulong(self.hs), out, ctypes.byref(n))
        return rv, out.raw[:n.value]

    def test_mechanism_info_and_list(self):
        slot = h.slot_of(LIB)
        mechs = LIB.getMechanismList(slot)
        for mech, name in ((ECB, "CKM_AES_ECB"), (CBC, "CKM_AES_CBC")):
            with self.subTest(mech=name):
                self.assertIn(name, mechs)
                info = LIB.getMechanismInfo(slot, name)
                # SoftHSM2 2.6.1 wraps with neither (CKM_AES_CBC: wrap only), and the slot shows its flags.
                want = P.CKF_ENCRYPT | P.CKF_DECRYPT | (0 if h.HSM else P.CKF_WRAP | P.CKF_UNWRAP)
                self.assertEqual(info.flags & want, want)
                self.assertEqual(info.flags & (P.CKF_SIGN | P.CKF_DIGEST | P.CKF_DERIVE), 0)
                self.assertEqual((info.ulMinKeySize, info.ulMaxKeySize), (16, 32))

    def test_nist_known_answers(self):
        for mech, key, ct in NIST:
            with self.subTest(mech=hex(mech), bits=len(key) * 4):
                k = self.aes(bytes.fromhex(key))
                self.assertEqual(bytes(self.s.encrypt(k, NIST_PT, mechanism(mech, NIST_IV))).hex(), ct)
                self.assertEqual(bytes(self.s.decrypt(k, bytes.fromhex(ct), mechanism(mech, NIST_IV))), NIST_PT)

    def test_length_errors_multipart(self):
        self.cancel_on_the_hsm()
        k = self.aes(os.urandom(16))
        iv = os.urandom(16)
        for mech in (ECB, CBC):
            p = iv if mech == CBC else None
            for init, upd, fin, want in (("C_EncryptInit", "C_EncryptUpdate", "C_EncryptFinal", "CKR_DATA_LEN_RANGE"),
                                         ("C_DecryptInit", "C_DecryptUpdate", "C_DecryptFinal",
                                          "CKR_ENCRYPTED_DATA_LEN_RANGE")):
                self.assertRV("CKR_OK", self.init(init, mech, k, p))
                rv, part = self.update(upd, os.urandom(20))
                self.assertRV("CKR_OK", rv)
                self.assertEqual(len(part), 16)
                self.assertRV(want, self.final(fin)[0])

    def test_matches_cryptography(self):
        for n in (16, 24, 32):
            key = os.urandom(n)
            k = self.aes(key)
            for mech in (ECB, CBC):
                for length in (16, 160, 4096):
                    with self.subTest(bits=n * 8, mech=hex(mech), length=length):
                        iv, data = os.urandom(16), os.urandom(length)
                        ct = bytes(self.s.encrypt(k, data, mechanism(mech, iv)))
                        self.assertEqual(ct, reference(mech, key, iv, data))
                        self.assertEqual(bytes(self.s.decrypt(k, ct, mechanism(mech, iv))), data)

    def cancel_on_the_hsm(self):
        # A failed expectation must not leave the session's operation to the next test.
        if h.HSM:
            self.addCleanup(lambda: self.raw.C_SessionCancel(ctypes.c_ulong(self.hs),
                                                             ctypes.c_ulong(P.CKF_ENCRYPT | P.CKF_DECRYPT)))

    def test_multipart_buffers_partial_blocks(self):
        key, iv = os.urandom(32), os.urandom(16)
        k = self.aes(key)
        data = os.urandom(64)
        for mech in (ECB, CBC):
            for enc in (True, False):
                with self.subTest(mech=hex(mech), encrypt=enc):
                    init, upd, fin = (("C_EncryptInit", "C_EncryptUpdate", "C_EncryptFinal") if enc else
                                      ("C_DecryptInit", "C_DecryptUpdate", "C_DecryptFinal"))
                    self.assertRV("CKR_OK", self.init(init, mech, k, iv if mech == CBC else None))
                    out, off = b"", 0
                    for n, released in ((5, 0), (11, 16), (20, 16), (0, 0), (28, 32)):
                        rv, part = self.update(upd, data[off:off + n])
                        self.assertRV("CKR_OK", rv)
                        self.assertEqual(len(part), released)
                        out, off = out + part, off + n
                    rv, last = self.final(fin)
                    self.assertRV("CKR_OK", rv)
                    self.assertEqual(last, b"")
                    self.assertEqual(out, reference(mech, key, iv, data, encrypt=enc))

    def test_length_errors(self):
        k = self.aes(os.urandom(16))
        iv = os.urandom(16)
        for mech in (ECB, CBC):
            p = iv if mech == CBC else None
            for n in (1, 15, 17, 33):
                with self.subTest(mech=hex(mech), n=n):
                    self.assertRV("CKR_OK", self.init("C_EncryptInit", mech, k, p))
                    rv, _, _ = self.raw.single("C_Encrypt", self.hs, os.urandom(n), size=64)
                    self.assertRV("CKR_DATA_LEN_RANGE", rv)
                    rv, _, _ = self.raw.single("C_Encrypt", self.hs, os.urandom(16), size=64)
                    self.assertRV("CKR_OPERATION_NOT_INITIALIZED", rv)  # the error ended it
                    self.assertRV("CKR_OK", self.init("C_DecryptInit", mech, k, p))
                    rv, _, _ = self.raw.single("C_Decrypt", self.hs, os.urandom(n), size=64)
                    self.assertRV("CKR_ENCRYPTED_DATA_LEN_RANGE", rv)
            # A length query of an acceptable length answers the exact length.
            self.assertRV("CKR_OK", self.init("C_EncryptInit", mech, k, p))
            rv, _, n = self.raw.single("C_Encrypt", self.hs, os.urandom(48), size=None)
            self.assertRV("CKR_OK", rv)
            self.assertEqual(n, 48)
            self.assertRV("CKR_OK", self.raw.single("C_Encrypt", self.hs, os.urandom(48), size=48)[0])

    def test_iv_errors(self):
        k = self.aes(os.urandom(16))
        # SoftHSM2 2.6.1's own answers: CKR_ARGUMENTS_BAD without an IV (forwarded as
        # CKR_MECHANISM_PARAM_INVALID: the parameter is the one argument it can mean),
        # CKR_MECHANISM_INVALID for an IV of the wrong size, and an ECB parameter ignored (the operation
        # then starts).
        for fn in ("C_EncryptInit", "C_DecryptInit"):
            for iv in (None, os.urandom(8), os.urandom(15), os.urandom(17), os.urandom(32)):
                with self.subTest(fn=fn, iv=None if iv is None else len(iv)):
                    want = h.by_backend("CKR_MECHANISM_PARAM_INVALID",
                                        "CKR_MECHANISM_PARAM_INVALID" if iv is None else "CKR_MECHANISM_INVALID")
                    self.assertRV(want, self.init(fn, CBC, k, iv))
            with self.subTest(fn=fn, ecb_with_parameter=True):
                self.assertRV(h.by_backend("CKR_MECHANISM_PARAM_INVALID", "CKR_OK"),
                              self.init(fn, ECB, k, os.urandom(16)))
                if h.HSM:
                    self.raw.C_SessionCancel(ctypes.c_ulong(self.hs), ctypes.c_ulong(P.CKF_ENCRYPT | P.CKF_DECRYPT))

    @h.soft_only("SoftHSM2 2.6.1 neither wraps with CKM_AES_ECB nor unwraps with CKM_AES_CBC")
    def test_wrap_and_unwrap_secret_keys(self):
        kek_value, iv = os.urandom(32), os.urandom(16)
        kek = self.aes(kek_value)
        for kt, n in ((P.CKK_AES, 16), (P.CKK_AES, 24), (P.CKK_AES, 32), (P.CKK_GENERIC_SECRET, 20)):
            value = os.urandom(n)
            target = self.aes(value, extractable=True, key_type=kt)
            for mech in (ECB, CBC):
                with self.subTest(mech=hex(mech), key_type=kt, n=n):
                    wrapped = bytes(self.s.wrapKey(kek, target, mechanism(mech, iv)))
                    padded = value + bytes(-n % 16)  # the spec: zero-padded to whole blocks
                    self.assertEqual(wrapped, reference(mech, kek_value, iv, padded))
                    tmpl = [(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, kt), (P.CKA_TOKEN, False),
                            (P.CKA_VALUE_LEN, n), (P.CKA_EXTRACTABLE, True), (P.CKA_SENSITIVE, False)]
                    u = self.s.unwrapKey(kek, wrapped, tmpl, mechanism(mech, iv))
                    self.assertEqual(bytes(self.s.getAttributeValue(u, [P.CKA_VALUE])[0]), value)

    @h.soft_only("SoftHSM2 2.6.1 neither wraps with CKM_AES_ECB nor unwraps with CKM_AES_CBC")
    def test_wrap_and_unwrap_refusals(self):
        kek = self.aes(os.urandom(16))
        _, priv = self.s.generateKeyPair(
            [(P.CKA_TOKEN, False), (P.CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107"))],
            [(P.CKA_TOKEN, False), (P.CKA_SIGN, True), (P.CKA_EXTRACTABLE, True)], P.MechanismECGENERATEKEYPAIR)
        aes = [(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_TOKEN, False)]
        for mech in (ECB, CBC):
            m = mechanism(mech, bytes(16))
            with self.subTest(mech=hex(mech)):
                self.assertCKR("CKR_KEY_NOT_WRAPPABLE", self.s.wrapKey, kek, priv, m)
                self.assertCKR("CKR_WRAPPED_KEY_LEN_RANGE", self.s.unwrapKey, kek, os.urandom(17), aes, m)
                ec = [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_TOKEN, False)]
                self.assertCKR("CKR_TEMPLATE_INCONSISTENT", self.s.unwrapKey, kek, os.urandom(32), ec, m)


class PkcsToolAesTest(unittest.TestCase):
    """pkcs11-tool's -m AES-ECB / AES-CBC --iv, checked against openssl enc -nopad. Inputs under
    1024 bytes go through C_Encrypt, longer ones through C_EncryptUpdate in 1024-byte pieces."""

    @classmethod
    def setUpClass(cls):
        h.require_module(cls)
        cls.tok = h.TempToken()
        cls.tok.init()

    @classmethod
    def tearDownClass(cls):
        cls.tok.cleanup()

    def file(self, name, data=None):
        path = self.tok.path(name)
        if data is not None:
            with open(path, "wb") as f:
                f.write(data)
        return path

    def read(self, name):
        with open(self.tok.path(name), "rb") as f:
            return f.read()

    def test_round_trip_matches_openssl(self):
        key = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
        iv = "0f0e0d0c0b0a09080706050403020100"
        for n, kid in ((16, "e1"), (24, "e2"), (32, "e3")):
            kf = self.file("aes%d.key" % n, key[:n])
            self.tok.tool("--write-object", kf, "--type", "secrkey", "--key-type", "AES:%d" % n, "--label",
                          "aes%d" % n, "--id", kid, "--usage-decrypt", login=True)
            for size in (64, 4096):
                data = self.file("data%d" % size, os.urandom(size))
                for mech, ossl, ivargs in (("AES-ECB", "ecb", []), ("AES-CBC", "cbc", ["--iv", iv])):
                    with self.subTest(bits=n * 8, mech=mech, size=size):
                        enc, dec = "enc-%s-%d-%d" % (ossl, n, size), "dec-%s-%d-%d" % (ossl, n, size)
                        self.tok.tool("--encrypt", "-m", mech, *ivargs, "--id", kid, "-i", data,
                                      "-o", self.file(enc), login=True)
                        ref = h.run(["openssl", "enc", "-aes-%d-%s" % (n * 8, ossl), "-nopad", "-K", key[:n].hex(),
                                     *(["-iv", iv] if ivargs else []), "-in", data]).stdout
                        self.assertEqual(len(ref), size)
                        self.assertEqual(self.read(enc), ref)
                        self.tok.tool("--decrypt", "-m", mech, *ivargs, "--id", kid, "-i", self.file(enc),
                                      "-o", self.file(dec), login=True)
                        self.assertEqual(self.read(dec), self.read("data%d" % size))
        # Not a whole number of blocks: refused, not padded.
        r = self.tok.tool("--encrypt", "-m", "AES-ECB", "--id", "e1", "-i", self.file("odd", os.urandom(100)),
                          "-o", self.file("odd.enc"), login=True, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"CKR_DATA_LEN_RANGE", r.stdout + r.stderr)


if __name__ == "__main__":
    h.main()
