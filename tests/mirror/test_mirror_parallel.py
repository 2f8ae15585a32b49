"""Many keys are mirrored several at a time (cdcctl key mirror --all, and async mode's worker), so
that a vault's HSM CREATE limit, not the wait for each mirror's requests, sets the pace. The
emulator counts the most Key Vault requests it served at once; imports are slowed so that
mirrors running together overlap there."""
import os
import subprocess
import time
import unittest

from mirrorhelpers import FAILED, MIRRORED, Rig, h

CDCCTL = os.environ.get("CDCCTL", os.path.join(os.environ.get("CDCP11_BUILD", ""), "tools", "cdcctl", "cdcctl"))
KEYS = 4
P256 = bytes.fromhex("06082a8648ce3d030107")


class ParallelMirrors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rig = Rig.start([("pall", "demo-premium", "premium", {"trigger": "on_request"}),
                             ("pasync", "demo-premium", "premium", {"trigger": "on_generate", "mode": "async"})])
        cls.P = cls.rig.P

    @classmethod
    def tearDownClass(cls):
        cls.rig.stop()

    def setUp(self):
        self.rig.emu.admin("DELETE", "/_admin/faults")
        self.rig.fault({"service": "keyvault", "method": "PUT", "path": "/keys/*"}, action="latency", delayMs=400)
        self.addCleanup(self.rig.emu.admin, "DELETE", "/_admin/faults")
        self.assertEqual(self.rig.emu.admin("DELETE", "/_admin/requests").status_code, 204)

    def generate(self, s, label):
        P = self.P
        return s.generateKeyPair(
            [(P.CKA_TOKEN, True), (P.CKA_VERIFY, True), (P.CKA_LABEL, label), (P.CKA_EC_PARAMS, P256)],
            [(P.CKA_TOKEN, True), (P.CKA_SIGN, True), (P.CKA_LABEL, label), (P.CKA_PRIVATE, True),
             (P.CKA_SENSITIVE, True)], mecha=P.Mechanism(P.CKM_EC_KEY_PAIR_GEN))[1]

    def most_at_once(self):
        return self.rig.emu.admin("GET", "/_admin/requests").json()["maxInFlight"]

    def test_cdcctl_mirror_all_mirrors_several_keys_at_once(self):
        s = self.rig.session(self, "pall")
        for i in range(KEYS):
            self.generate(s, "all-%d" % i)
        p = subprocess.run([CDCCTL, "--config", self.rig.tok.conf, "key", "mirror", "pall", "--all", "--pin-env", "PIN"],
                           capture_output=True, text=True, env=self.rig.tok.env(PIN=h.USER_PIN), timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout.count(": mirrored as https://demo-premium.vault.azure.net/keys/all-"), KEYS, p.stdout)
        self.assertGreaterEqual(self.most_at_once(), 2)

    def test_async_mode_mirrors_a_burst_of_generated_keys_several_at_once(self):
        s = self.rig.session(self, "pasync")
        keys = [self.generate(s, "burst-%d" % i) for i in range(KEYS)]
        deadline = time.time() + 240
        while time.time() < deadline:
            states = [self.rig.state(s, k)[0] for k in keys]
            if all(st in (MIRRORED, FAILED) for st in states):
                break
            time.sleep(0.2)
        self.assertEqual(states, [MIRRORED] * KEYS, self.rig.tok.read_log()[-3000:])
        self.assertGreaterEqual(self.most_at_once(), 2)


if __name__ == "__main__":
    unittest.main()
