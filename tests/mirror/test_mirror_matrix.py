"""The mirror across the whole matrix: every key type Key Vault takes (RSA 2048/3072/4096, EC
P-256/P-384/P-521), made by the real pkcs11-tool on a mirroring slot with no vendor attribute,
into each target (Standard: plain JWK import; Premium and Managed HSM: BYOK). For each, the vault
holds a key of the right type and size, and a digest signed by the vault verifies with the public
key read from the token. AES-256 goes into the Managed HSM only (wrapped by one side, unwrapped by
the other); into a vault it is refused before it is made, with CKR_KEY_TYPE_INCONSISTENT.

The keys of one kind are made for the three targets at once (three pkcs11-tool processes):
RSA-4096 generation dominates the run time."""
import subprocess
import unittest

from mirrorhelpers import MIRRORED, Rig, h

# (group, vault, vault type)
TARGETS = [("standard", "demo-standard", "standard"), ("premium", "demo-premium", "premium"),
           ("mhsm", "demo-mhsm", "managed_hsm")]
# (pkcs11-tool --key-type, Key Vault kty, RSA bits, curve)
ASYMMETRIC = [("rsa:2048", "RSA", 2048, None), ("rsa:3072", "RSA", 3072, None), ("rsa:4096", "RSA", 4096, None),
              ("EC:prime256v1", "EC", None, "P-256"), ("EC:secp384r1", "EC", None, "P-384"),
              ("EC:secp521r1", "EC", None, "P-521")]


def label_of(group, key_type):
    return "m-%s-%s" % (group, key_type.replace(":", "-").lower())


class MirrorMatrix(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # pkcs11-tool's keys are not extractable: the Standard vault gets them by the group's leave.
        cls.rig = Rig.start([(g, v, t, {"trigger": "on_generate", "mode": "sync",
                                        **({"allow_plain_export_of_non_extractable": True} if t == "standard" else {})})
                             for g, v, t in TARGETS])

    @classmethod
    def tearDownClass(cls):
        cls.rig.stop()

    def keygen_everywhere(self, *args, label_for):
        """pkcs11-tool ARGS on every target's slot at once: {group: (exit code, output)}."""
        rig = self.rig
        procs = {}
        for g, _, _ in TARGETS:
            cmd = ["pkcs11-tool", "--module", h.MODULE, "--slot-index", str(rig.slot_index(g)), "--login",
                   "--pin", h.USER_PIN, *args, "--label", label_for(g)]
            procs[g] = subprocess.Popen(cmd, env=rig.tok.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = {}
        for g, p in procs.items():
            text, _ = p.communicate(timeout=h.TOOL_TIMEOUT)
            out[g] = (p.returncode, text.decode(errors="replace"))
        return out

    def test_asymmetric_keys_into_every_target_sign_in_the_vault_and_verify_with_the_token_key(self):
        rig, P = self.rig, self.rig.P
        for key_type, kty, bits, crv in ASYMMETRIC:
            results = self.keygen_everywhere("--keypairgen", "--key-type", key_type,
                                             label_for=lambda g: label_of(g, key_type))
            for g, vault, vtype in TARGETS:
                with self.subTest(target=vtype, key=key_type):
                    rc, out = results[g]
                    self.assertEqual(rc, 0, out)
                    label = label_of(g, key_type)
                    s = rig.session(self, g)
                    priv = rig.find(s, P.CKO_PRIVATE_KEY, label)
                    # Standard vaults hold software keys (plain JWK import); the others HSM keys (BYOK).
                    rig.assert_vault_copy(self, s, priv, label, vault, kty if vtype == "standard" else kty + "-HSM",
                                          bits, crv)
                    self.assertEqual(rig.versions(vault, label), 1)
                    self.assertEqual(rig.keks(vault, rig.uid(s, priv)), [])

    def test_aes_256_into_the_managed_hsm_and_refused_by_vaults(self):
        rig, P = self.rig, self.rig.P
        results = self.keygen_everywhere("--keygen", "--key-type", "AES:32", "--usage-wrap",
                                         label_for=lambda g: "aes-" + g)
        for g, vault, vtype in TARGETS:
            with self.subTest(target=vtype):
                rc, out = results[g]
                s = rig.session(self, g)
                if vtype != "managed_hsm":
                    # check_target refuses before the key is made: nothing is left in the token.
                    self.assertNotEqual(rc, 0)
                    self.assertIn("rv = CKR_KEY_TYPE_INCONSISTENT (0x63)", out)
                    self.assertEqual(rig.find_all(s, "aes-" + g), [])
                    self.assertEqual(rig.get_key(vault, "aes-" + g).status_code, 404)
                    continue
                self.assertEqual(rc, 0, out)
                aes = rig.find(s, P.CKO_SECRET_KEY, "aes-" + g)
                state, kid, error = rig.state(s, aes)
                self.assertEqual((state, error), (MIRRORED, ""))
                self.assertEqual(rig.rest("GET", kid).json()["key"]["kty"], "oct-HSM")
                rig.assert_aes_round_trip(self, s, aes, kid)

if __name__ == "__main__":
    unittest.main(verbosity=2)
