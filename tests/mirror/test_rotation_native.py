"""Rotation of Azure-resident keys (made in Key Vault): `cdcctl key rotate` calls Key Vault's rotate
operation and the token follows the new version (the token signs through the vault with it, and its
public key object is the new version's); `cdcctl key rotation-policy` reads and writes Key Vault's
rotation policy, and refuses a Rotate action on a vault key that mirrors a local key (the token is
that key's source)."""
import json
import os
import unittest

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from mirrorhelpers import CKA_CDC_AZURE_KEY_ID, CKA_CDC_CLOUD_NATIVE, MIRRORED, Rig, h, vendor_mirror_key

CDCCTL = os.path.join(os.environ["CDCP11_BUILD"], "tools", "cdcctl", "cdcctl")
P256 = bytes.fromhex("06082a8648ce3d030107")


class RotationNative(unittest.TestCase):
    VAULT = "demo-premium"

    @classmethod
    def setUpClass(cls):
        cls.rig = Rig.start([("native", cls.VAULT, "premium", {"trigger": "on_request", "mode": "sync"})])

    @classmethod
    def tearDownClass(cls):
        cls.rig.stop()

    def cdcctl(self, *args, check=True):
        env = self.rig.tok.env(DEMO_PIN=h.USER_PIN)
        r = h.run([CDCCTL, "--config", self.rig.tok.conf, "--json", "key", *args, "--pin-env", "DEMO_PIN"], env=env,
                  check=check)
        return r.returncode, json.loads(r.stdout.decode())

    def ec_pair(self, s, label, native):
        P = self.rig.P
        pub = [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_EC_PARAMS, P256),
               (P.CKA_TOKEN, True), (P.CKA_LABEL, label), (P.CKA_VERIFY, True)]
        priv = [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_TOKEN, True),
                (P.CKA_LABEL, label), (P.CKA_SIGN, True)]
        if native:
            priv.append((CKA_CDC_CLOUD_NATIVE, [1]))
        return s.generateKeyPair(pub, priv, P.Mechanism(P.CKM_EC_KEY_PAIR_GEN))

    def test_rotate_an_azure_resident_key_in_key_vault_and_follow_it(self):
        rig, P = self.rig, self.rig.P
        s = rig.session(self, "native")
        _, priv = self.ec_pair(s, "native-a", native=True)
        kid1 = Rig.raw(s, priv, CKA_CDC_AZURE_KEY_ID).decode()
        rc, out = self.cdcctl("rotate", "native", "--label", "native-a")
        self.assertEqual(rc, 0, out)
        [r] = out["rotated"]
        self.assertIsNone(r["version"])
        self.assertEqual(r["former_azure_key_id"], kid1)
        kid2 = r["azure_key_id"]
        self.assertEqual(kid2.rsplit("/", 1)[0], kid1.rsplit("/", 1)[0])
        self.assertNotEqual(kid2, kid1)
        self.assertIn("POST %s/keys/native-a/rotate" % rig.vault_url(self.VAULT)[len("https://"):], rig.emu.log())
        self.assertEqual(rig.versions(self.VAULT, "native-a"), 2)
        # The token follows: its key names the new version, signs through it, and its public key
        # object is the new version's.
        priv = rig.find(s, P.CKO_PRIVATE_KEY, "native-a")
        self.assertEqual(Rig.raw(s, priv, CKA_CDC_AZURE_KEY_ID).decode(), kid2)
        public = rig.token_public_key(s, "native-a")
        self.assertEqual(public.public_numbers(), rig.vault_public_key(rig.rest("GET", kid2).json()).public_numbers())
        sig = bytes(s.sign(priv, b"after rotation", P.Mechanism(P.CKM_ECDSA_SHA256)))
        half = len(sig) // 2
        der = utils.encode_dss_signature(int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big"))
        public.verify(der, b"after rotation", ec.ECDSA(hashes.SHA256()))

    def test_rotation_policy_get_and_set(self):
        rig = self.rig
        s = rig.session(self, "native")
        self.ec_pair(s, "native-p", native=True)
        rc, out = self.cdcctl("rotation-policy", "native", "--name", "native-p", "--set", "--rotate-after", "P90D",
                              "--notify-before-expiry", "P30D", "--expiry", "P2Y")
        self.assertEqual(rc, 0, out)
        rc, got = self.cdcctl("rotation-policy", "native", "--label", "native-p", "--get")
        self.assertEqual(rc, 0, got)
        self.assertEqual(got["expiry_time"], "P2Y")
        self.assertEqual(sorted((a["action"], a["time_after_create"], a["time_before_expiry"])
                                for a in got["lifetime_actions"]),
                         [("Notify", None, "P30D"), ("Rotate", "P90D", None)])
        rc, bad = self.cdcctl("rotation-policy", "native", "--name", "native-p", "--set", "--rotate-after", "90 days",
                              check=False)
        self.assertEqual(rc, 1)
        self.assertIn("--rotate-after '90 days' is not an ISO 8601 duration", bad["error"])

    def test_rotation_policy_refuses_rotate_on_a_mirrored_key(self):
        rig = self.rig
        s = rig.session(self, "native")
        _, priv = self.ec_pair(s, "native-mirrored", native=False)
        self.assertEqual(vendor_mirror_key()(s, priv), 0)
        self.assertEqual(rig.state(s, priv)[0], MIRRORED)
        rc, out = self.cdcctl("rotation-policy", "native", "--label", "native-mirrored", "--set", "--rotate-after",
                              "P90D", check=False)
        self.assertEqual(rc, 1)
        self.assertIn("is the mirror of local key 'native-mirrored'", out["error"])
        rc, out = self.cdcctl("rotation-policy", "native", "--label", "native-mirrored", "--set",
                              "--notify-before-expiry", "P30D", "--expiry", "P1Y")
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
