"""On a group that mirrors on generate, a key made through our slot is made the way the mirror needs
it on every path that makes one, not only key generation: where the backend wraps only extractable
keys (the HSM), a key from C_CreateObject or C_UnwrapKey gets CKA_EXTRACTABLE true unless the
application's template says otherwise, and is mirrored; so is an EC session key copied into the
token (C_CopyObject, as Java's keytool does). The soft token exports for the mirror
itself: its keys keep the PKCS#11 default (false) and are mirrored all the same."""
import os
import sys
import unittest

SRC = os.environ["CDCP11_SRC"]
sys.path.insert(0, os.path.join(SRC, "tests", "mirror"))

import p11helpers as h  # noqa: E402
from cryptography.hazmat.primitives.keywrap import aes_key_wrap  # noqa: E402
from mirrorhelpers import CKA_CDC_MIRROR, MIRRORED, NONE, Rig  # noqa: E402

GROUP, VAULT = "mx", "demo-mhsm"
# What the slot gives a key whose template does not say: extractable on the HSM only.
DEFAULT = h.by_backend(soft=False, hsm=True)


class ExtractableForTheMirror(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h.require_module(cls)
        cls.rig = Rig.start([(GROUP, VAULT, "managed_hsm", {"trigger": "on_generate", "mode": "sync"})])
        cls.P = cls.rig.P

    @classmethod
    def tearDownClass(cls):
        cls.rig.stop()

    def aes(self, label, *extra):
        P = self.P
        return [(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_TOKEN, True),
                (P.CKA_PRIVATE, True), (P.CKA_ENCRYPT, True), (P.CKA_DECRYPT, True), (P.CKA_LABEL, label), *extra]

    def extractable(self, s, key):
        return bool(s.getAttributeValue(key, [self.P.CKA_EXTRACTABLE])[0])

    def assert_mirrored(self, s, key):
        state, kid, error = self.rig.state(s, key)
        self.assertEqual((state, error), (MIRRORED, ""))
        self.assertTrue(kid.startswith(self.rig.vault_url(VAULT) + "/keys/"), kid)

    def test_a_created_key_is_made_extractable_for_the_mirror(self):
        s = self.rig.session(self, GROUP)
        key = s.createObject(self.aes("created", (self.P.CKA_VALUE, os.urandom(32))))
        self.assertEqual(self.extractable(s, key), DEFAULT)
        self.assert_mirrored(s, key)

    def test_an_unwrapped_key_is_made_extractable_for_the_mirror(self):
        P = self.P
        s = self.rig.session(self, GROUP)
        kek_value = os.urandom(32)
        kek = s.createObject([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_TOKEN, False),
                              (P.CKA_UNWRAP, True), (P.CKA_VALUE, kek_value), (P.CKA_LABEL, "kek")])
        wrapped = aes_key_wrap(kek_value, os.urandom(32))
        key = s.unwrapKey(kek, wrapped, self.aes("unwrapped"), P.Mechanism(P.CKM_AES_KEY_WRAP))
        self.assertEqual(self.extractable(s, key), DEFAULT)
        self.assert_mirrored(s, key)

    def test_an_ec_session_key_copied_into_the_token_is_mirrored(self):
        # What SunPKCS11's keytool does: a session pair, then the private key copied into the token
        # under its alias. The HSM keeps no public point with the private key: the copy's is its source's.
        P = self.P
        s = self.rig.session(self, GROUP)
        p256 = bytes.fromhex("06082a8648ce3d030107")
        pub, priv = s.generateKeyPair([(P.CKA_TOKEN, False), (P.CKA_EC_PARAMS, p256), (P.CKA_VERIFY, True)],
                                      [(P.CKA_TOKEN, False), (P.CKA_PRIVATE, True), (P.CKA_SIGN, True)],
                                      mecha=P.Mechanism(P.CKM_EC_KEY_PAIR_GEN))
        rv, handle = h.Raw().copy(h.sh(s), h.oh(priv), [(P.CKA_TOKEN, b"\x01"), (P.CKA_LABEL, b"copied"),
                                                         (P.CKA_ID, b"copied")])
        self.assertEqual(h.ckr_name(rv), "CKR_OK")
        copy = P.CK_OBJECT_HANDLE(s)
        copy.assign(handle)
        self.assertEqual(self.extractable(s, copy), DEFAULT)
        self.assert_mirrored(s, copy)

    def test_the_applications_template_decides(self):
        P = self.P
        s = self.rig.session(self, GROUP)
        # Not extractable and not mirrored, as asked, on both backends.
        key = s.createObject(self.aes("kept", (P.CKA_VALUE, os.urandom(32)), (P.CKA_EXTRACTABLE, False),
                                      (CKA_CDC_MIRROR, [0])))
        self.assertFalse(self.extractable(s, key))
        self.assertEqual(self.rig.state(s, key)[0], NONE)
        # Not extractable but mirrored: the HSM cannot wrap such a key, so the group refuses it.
        template = self.aes("refused", (P.CKA_VALUE, os.urandom(32)), (P.CKA_EXTRACTABLE, False))
        if h.HSM:
            with self.assertRaises(P.PyKCS11Error) as e:
                s.createObject(template)
            self.assertEqual(e.exception.value, P.CKR_TEMPLATE_INCONSISTENT)
        else:
            key = s.createObject(template)
            self.assertFalse(self.extractable(s, key))
            self.assert_mirrored(s, key)


if __name__ == "__main__":
    h.main()
