"""An AES key of the soft token mirrored into a Managed HSM carries its check value (tag cdcp11-kcv
= CKA_CHECK_VALUE, the first 3 bytes of AES-ECB of a zero block), and a mirror that finds a vault
key tagged with the key's uid (an earlier attempt's import whose answer was lost) takes it as its
copy only when that tag is the key's check value; otherwise it mirrors under the next free name."""
import unittest

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mirrorhelpers import MIRRORED, Rig, vendor_mirror_key

VAULT = "demo-mhsm"


def aes_kcv(key):
    e = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (e.update(bytes(16)) + e.finalize())[:3]


class MirrorCheckValue(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rig = Rig.start([("mhsm", VAULT, "managed_hsm", {"trigger": "on_request", "mode": "sync"})])
        cls.mirror_key = staticmethod(vendor_mirror_key())

    @classmethod
    def tearDownClass(cls):
        cls.rig.stop()

    def aes_key(self, s, label, value):
        P = self.rig.P
        return s.createObject([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_TOKEN, True),
                               (P.CKA_PRIVATE, True), (P.CKA_ENCRYPT, True), (P.CKA_WRAP, True), (P.CKA_UNWRAP, True),
                               (P.CKA_LABEL, label), (P.CKA_VALUE, value)])

    def vault_key_tagged(self, name, tags):
        r = self.rig.rest("POST", "%s/keys/%s/create" % (self.rig.vault_url(VAULT), name),
                          {"kty": "oct-HSM", "key_size": 256, "key_ops": ["wrapKey", "unwrapKey"], "tags": tags})
        self.assertEqual(r.status_code, 200, r.text)
        return r.json()["key"]["kid"]

    def test_a_soft_token_aes_key_mirrored_is_tagged_with_its_check_value(self):
        rig = self.rig
        s = rig.session(self, "mhsm")
        value = bytes(range(32))
        k = self.aes_key(s, "kcv-tag", value)
        self.assertEqual(self.mirror_key(s, k), 0)
        state, kid, error = rig.state(s, k)
        self.assertEqual((state, error), (MIRRORED, ""))
        tags = rig.rest("GET", kid).json().get("tags", {})
        self.assertEqual(tags.get("cdcp11-kcv"), aes_kcv(value).hex(), tags)
        rig.assert_aes_round_trip(self, s, k, kid)

    def test_a_uid_tagged_vault_key_is_taken_as_the_copy_only_with_the_keys_check_value(self):
        rig = self.rig
        s = rig.session(self, "mhsm")
        value = bytes(range(40, 72))
        # The key's check value on the uid-tagged vault key: an earlier import, taken as is.
        k = self.aes_key(s, "kcv-same", value)
        earlier = self.vault_key_tagged("kcv-same", {"cdcp11-uid": rig.uid(s, k), "cdcp11-kcv": aes_kcv(value).hex()})
        self.assertEqual(self.mirror_key(s, k), 0)
        self.assertEqual(rig.state(s, k), (MIRRORED, earlier, ""))
        self.assertEqual(rig.requests("PUT", VAULT, "/keys/kcv-same"), [])
        # Another check value: another key, whatever its uid tag says. Not adopted, left alone, and
        # this key is imported under the next free name.
        k2 = self.aes_key(s, "kcv-other", value)
        wrong = bytes(b ^ 0x5A for b in aes_kcv(value)).hex()
        other = self.vault_key_tagged("kcv-other", {"cdcp11-uid": rig.uid(s, k2), "cdcp11-kcv": wrong})
        self.assertEqual(self.mirror_key(s, k2), 0)
        state, kid, error = rig.state(s, k2)
        self.assertEqual((state, error), (MIRRORED, ""))
        self.assertTrue(kid.startswith("%s/keys/kcv-other-2/" % rig.vault_url(VAULT)), kid)
        self.assertEqual(rig.rest("GET", kid).json()["tags"].get("cdcp11-kcv"), aes_kcv(value).hex())
        self.assertEqual(rig.versions(VAULT, "kcv-other"), 1)
        self.assertEqual(rig.rest("GET", other).json()["key"]["kid"], other)
        rig.assert_aes_round_trip(self, s, k2, kid)
        log = rig.tok.read_log()
        lines = [l for l in log.splitlines() if "check value (cdcp11-kcv) differs" in l and "kcv-other" in l]
        self.assertEqual(len(lines), 1, log)
        self.assertNotIn(value.hex(), log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
