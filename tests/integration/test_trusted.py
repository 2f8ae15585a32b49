"""CKA_TRUSTED is the SO's (PKCS#11 3.0 table 11, footnote 10): a user who could make a trusted
wrapping key of their own would wrap any CKA_WRAP_WITH_TRUSTED key under it and unwrap it offline.
Every path that makes an object refuses it with CKR_ATTRIBUTE_READ_ONLY (as SoftHSM2 does); the SO
may make a trusted public key, and then, and only then, a CKA_WRAP_WITH_TRUSTED key wraps."""
import os

import p11helpers as h
from p11helpers import P11Case

P = h.pykcs11()
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402

TOK = LIB = None
P256 = bytes.fromhex("06082a8648ce3d030107")
T, F = b"\x01", b"\x00"


setUpModule, tearDownModule = h.shared_token(globals())


def oaep_sha1():
    return P.RSAOAEPMechanism(P.CKM_SHA_1, P.CKG_MGF1_SHA1)


def rsa_public_template(key, trusted, token=False, label="attacker"):
    n = key.public_key().public_numbers().n
    return [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_KEY_TYPE, P.CKK_RSA), (P.CKA_TOKEN, token),
            (P.CKA_PRIVATE, False), (P.CKA_WRAP, True), (P.CKA_ENCRYPT, True), (P.CKA_TRUSTED, trusted),
            (P.CKA_LABEL, label), (P.CKA_MODULUS, n.to_bytes(256, "big")), (P.CKA_PUBLIC_EXPONENT, (1, 0, 1))]


def offline_unwrap(key, wrapped):
    return key.decrypt(wrapped, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))


class TrustedTest(P11Case):
    @classmethod
    def setUpClass(cls):
        cls.rsa = rsa.generate_private_key(65537, 2048)

    def setUp(self):
        self.s = LIB.openSession(h.slot_of(LIB), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        self.s.login(h.USER_PIN)
        self.raw = h.Raw()

    def copy(self, session, obj, items):
        """C_CopyObject (PyKCS11 1.5 has no copyObject): (rv, new handle)."""
        return self.raw.copy(h.sh(session), h.oh(obj), items)

    def tearDown(self):
        LIB.closeAllSessions(h.slot_of(LIB))

    def guarded_aes(self, value):
        """An AES key only a trusted key may wrap: sensitive, extractable, CKA_WRAP_WITH_TRUSTED."""
        return self.s.createObject([
            (P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_TOKEN, False),
            (P.CKA_VALUE, value), (P.CKA_SENSITIVE, True), (P.CKA_EXTRACTABLE, True),
            (P.CKA_WRAP_WITH_TRUSTED, True), (P.CKA_ENCRYPT, True)])

    def test_user_cannot_make_a_trusted_key_to_extract_a_wrap_with_trusted_key(self):
        secret = os.urandom(32)
        target = self.guarded_aes(secret)
        try:
            attacker = self.s.createObject(rsa_public_template(self.rsa, True))
        except P.PyKCS11Error as e:
            self.assertEqual(h.ckr_name(e.value), "CKR_ATTRIBUTE_READ_ONLY")
        else:
            # The reported attack, carried through: the key leaves the token.
            wrapped = bytes(self.s.wrapKey(attacker, target, oaep_sha1()))
            leaked = offline_unwrap(self.rsa, wrapped) == secret
            self.fail("a user created a CKA_TRUSTED key; the guarded AES key was recovered offline: %s" % leaked)
        # and without CKA_TRUSTED the guarded key does not wrap
        plain = self.s.createObject(rsa_public_template(self.rsa, False))
        self.assertCKR("CKR_KEY_NOT_WRAPPABLE", self.s.wrapKey, plain, target, oaep_sha1())

    def test_trusted_refused_on_every_path_that_makes_an_object(self):
        def gen_pair():
            return self.s.generateKeyPair(
                [(P.CKA_TOKEN, False), (P.CKA_MODULUS_BITS, 2048), (P.CKA_WRAP, True), (P.CKA_TRUSTED, True)],
                [(P.CKA_TOKEN, False), (P.CKA_UNWRAP, True)], P.MechanismRSAGENERATEKEYPAIR)

        def gen_secret():
            return self.s.generateKey([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES),
                                       (P.CKA_VALUE_LEN, 32), (P.CKA_TOKEN, False), (P.CKA_WRAP, True),
                                       (P.CKA_TRUSTED, True)], P.MechanismAESGENERATEKEY)

        kek = self.s.generateKey([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_VALUE_LEN, 32),
                                  (P.CKA_TOKEN, False), (P.CKA_WRAP, True), (P.CKA_UNWRAP, True)],
                                 P.MechanismAESGENERATEKEY)
        inner = self.s.generateKey([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES),
                                    (P.CKA_VALUE_LEN, 16), (P.CKA_TOKEN, False), (P.CKA_EXTRACTABLE, True)],
                                   P.MechanismAESGENERATEKEY)
        kw = P.Mechanism(P.CKM_AES_KEY_WRAP)
        blob = bytes(self.s.wrapKey(kek, inner, kw))

        def unwrap():
            return self.s.unwrapKey(kek, blob, [(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES),
                                                (P.CKA_TOKEN, False), (P.CKA_WRAP, True), (P.CKA_TRUSTED, True)], kw)

        _, ec_priv = self.s.generateKeyPair([(P.CKA_TOKEN, False), (P.CKA_EC_PARAMS, P256)],
                                            [(P.CKA_TOKEN, False), (P.CKA_DERIVE, True)], P.MechanismECGENERATEKEYPAIR)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        peer = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)

        def derive():
            return self.s.deriveKey(ec_priv, [(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES),
                                              (P.CKA_VALUE_LEN, 32), (P.CKA_TOKEN, False), (P.CKA_WRAP, True),
                                              (P.CKA_TRUSTED, True)], P.ECDH1_DERIVE_Mechanism(peer))

        plain = self.s.createObject(rsa_public_template(self.rsa, False))

        def copy():
            rv, _ = self.copy(self.s, plain, [(P.CKA_TRUSTED, T)])
            if rv:
                raise P.PyKCS11Error(rv)

        def set_attr():
            return self.s.setAttributeValue(plain, [(P.CKA_TRUSTED, True)])

        for name, fn in (("C_GenerateKeyPair", gen_pair), ("C_GenerateKey", gen_secret), ("C_UnwrapKey", unwrap),
                         ("C_DeriveKey", derive), ("C_CopyObject", copy), ("C_SetAttributeValue", set_attr)):
            with self.subTest(path=name):
                self.assertCKR("CKR_ATTRIBUTE_READ_ONLY", fn)
        # CKA_TRUSTED false stays allowed everywhere (SoftHSM2 2.6.1 takes no CKA_TRUSTED in a copy's template)
        self.assertRV(h.by_backend("CKR_OK", "CKR_ARGUMENTS_BAD"), self.copy(self.s, plain, [(P.CKA_TRUSTED, F)])[0])

    def test_the_so_makes_a_trusted_key_and_then_it_wraps(self):
        slot = h.slot_of(LIB)
        LIB.closeAllSessions(slot)
        so = LIB.openSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        so.login(h.SO_PIN, P.CKU_SO)
        trusted = so.createObject(rsa_public_template(self.rsa, True, token=True, label="so-trusted"))
        self.assertTrue(so.getAttributeValue(trusted, [P.CKA_TRUSTED])[0])
        # the SO may also turn it on for an existing public key (C_SetAttributeValue) and in a copy
        later = so.createObject(rsa_public_template(self.rsa, False, token=True, label="so-later"))
        if h.HSM:
            # SoftHSM2 2.6.1 takes CKA_TRUSTED at creation only, even from the SO.
            self.assertCKR("CKR_ATTRIBUTE_READ_ONLY", so.setAttributeValue, later, [(P.CKA_TRUSTED, True)])
        else:
            so.setAttributeValue(later, [(P.CKA_TRUSTED, True)])
            rv, c = self.copy(so, later, [(P.CKA_TRUSTED, T), (P.CKA_TOKEN, F)])
            self.assertRV("CKR_OK", rv)
            self.assertEqual(self.raw.get_attr(h.sh(so), c, P.CKA_TRUSTED, size=1)[2], T)
        so.logout()
        so.closeSession()
        self.s = LIB.openSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        self.s.login(h.USER_PIN)
        secret = os.urandom(32)
        target = self.guarded_aes(secret)
        wk = self.s.findObjects([(P.CKA_LABEL, "so-trusted")])[0]
        wrapped = bytes(self.s.wrapKey(wk, target, oaep_sha1()))
        self.assertEqual(offline_unwrap(self.rsa, wrapped), secret)
        # a user's copy of the SO's trusted key stays trusted (the key material is the SO's)
        rv, c = self.copy(self.s, wk, [(P.CKA_LABEL, b"user-copy")])
        self.assertRV("CKR_OK", rv)
        self.assertEqual(self.raw.get_attr(h.sh(self.s), c, P.CKA_TRUSTED, size=1)[2], T)
        for o in self.s.findObjects([(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_TOKEN, True)]):
            self.s.destroyObject(o)


if __name__ == "__main__":
    h.main()
