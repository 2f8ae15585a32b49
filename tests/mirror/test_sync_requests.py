"""Vault sync's requests, counted by the emulator: a sync in which nothing changed lists the vault
and reads no key one by one (the list answer tells which version each key is at); a key that has a
new version costs one GET. A key sync skipped (its tag names a local key whose public key differs)
is remembered with the version it had: the next sync does not read it again until it changes."""
import json
import os
import subprocess
import sys
import time
import unittest

SRC = os.environ["CDCP11_SRC"]
sys.path.insert(0, os.path.join(SRC, "tests", "emulator"))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

import p11helpers as h  # noqa: E402
from azhelpers import Emulator  # noqa: E402
from mirrorhelpers import azure_section, write_secret  # noqa: E402

CDCCTL = os.environ.get("CDCCTL", os.path.join(os.environ.get("CDCP11_BUILD", ""), "tools", "cdcctl", "cdcctl"))
VAULT = "demo-premium"
SKIPS_VAULT = "demo-standard"  # the skipped-key test's own vault, so the counts above stay its own
KEYS = 30   # two list pages of at most 25


class SyncRequests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator.start()
        cls.emu.map_hosts()
        cls.tok = h.TempToken(groups=[("big", {"slot_id": 41}), ("skips", {"slot_id": 42})], log_level="info")
        secret = write_secret(cls.tok.path("secret"))
        for g, (vault, vtype) in zip(cls.tok.groups, ((VAULT, "premium"), (SKIPS_VAULT, "standard"))):
            g["azure"] = azure_section(cls.emu, secret, vault, vtype)
            g["mirror"] = {"trigger": "on_request", "mode": "sync"}
        cls.tok.write_conf()
        cls.tok.init("big")
        cls.tok.init("skips")
        cls.vtok = cls.emu.token()

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()
        cls.tok.cleanup()

    def create(self, name, vault=VAULT, tags=None):
        body = {"kty": "EC", "crv": "P-256", "key_ops": ["sign", "verify"]}
        if tags:
            body["tags"] = tags
        r = self.emu.rest("POST", "%s/keys/%s/create" % (Emulator.vault_url(vault), name), self.vtok, body)
        self.assertEqual(r.status_code, 200, r.text)

    def sync(self, group="big"):
        p = subprocess.run([CDCCTL, "--config", self.tok.conf, "--json", "group", "sync", group, "--pin-env", "PIN"],
                           capture_output=True, text=True, env=self.tok.env(PIN=h.USER_PIN), timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return json.loads(p.stdout)

    def requests(self, vault=VAULT):
        r = self.emu.admin("GET", "/_admin/requests")
        self.assertEqual(r.status_code, 200, r.text)
        out = {}
        for c in r.json()["value"]:
            if c["vault"] == vault:
                out[(c["op"], c["status"])] = out.get((c["op"], c["status"]), 0) + c["count"]
        return out

    def reset(self):
        self.assertEqual(self.emu.admin("DELETE", "/_admin/requests").status_code, 204)

    def test_a_second_sync_lists_the_vault_and_gets_only_keys_with_a_new_version(self):
        for i in range(KEYS):
            self.create("many-%02d" % i)
        # Versions made in the last seconds are read again (one made in the same second would show
        # the same time); these are older by the time the first sync runs.
        time.sleep(2.2)
        self.reset()
        first = self.sync()
        self.assertEqual((first["added"], first["skipped"]), (KEYS, 0), first)
        self.assertEqual(self.requests().get(("get", 200)), KEYS)   # the public keys: one GET each

        self.reset()
        second = self.sync()
        self.assertEqual((second["added"], second["updated"], second["unchanged"]), (0, 0, KEYS), second)
        self.assertEqual(self.requests(), {("list", 200): 2})   # two pages, no GET per key

        self.create("many-07")   # a new version of one key
        time.sleep(2.2)
        self.reset()
        third = self.sync()
        self.assertEqual((third["updated"], third["unchanged"]), (1, KEYS - 1), third)
        self.assertEqual(self.requests(), {("list", 200): 2, ("get", 200): 1})

    def local_key_uid(self, label):
        """A key pair made on the "skips" token: its private key's CKA_UNIQUE_ID."""
        P = h.pykcs11()
        lib = h.load_lib(self.tok)
        s = lib.openSession(h.slot_of(lib, "skips"), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        s.login(h.USER_PIN)
        ec = [(P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107"))]
        _, priv = s.generateKeyPair([(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_TOKEN, True), (P.CKA_LABEL, label)] + ec,
                                    [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_TOKEN, True), (P.CKA_LABEL, label),
                                     (P.CKA_SIGN, True)], P.Mechanism(P.CKM_EC_KEY_PAIR_GEN))
        uid = bytes(s.getAttributeValue(priv, [P.CKA_UNIQUE_ID], allAsBinary=True)[0]).decode()
        s.logout()
        s.closeSession()
        return uid

    def test_a_key_sync_skipped_is_not_read_again_until_it_changes(self):
        # A vault key tagged as the copy of a local key whose public key it does not have: skipped.
        uid = self.local_key_uid("impostor-local")
        self.create("impostor", SKIPS_VAULT, {"cdcp11-uid": uid})
        self.create("plain", SKIPS_VAULT)
        time.sleep(2.2)
        self.reset()
        first = self.sync("skips")
        self.assertEqual((first["skipped"], first["added"]), (1, 1), first)
        self.assertEqual(self.requests(SKIPS_VAULT).get(("get", 200)), 2)

        self.reset()
        second = self.sync("skips")
        self.assertEqual((second["skipped"], second["unchanged"]), (1, 1), second)
        self.assertEqual(self.requests(SKIPS_VAULT), {("list", 200): 1})   # the skipped key is not read again

        self.create("impostor", SKIPS_VAULT, {"cdcp11-uid": uid})   # a new version: read again, still skipped
        time.sleep(2.2)
        self.reset()
        third = self.sync("skips")
        self.assertEqual(third["skipped"], 1, third)
        self.assertEqual(self.requests(SKIPS_VAULT), {("list", 200): 1, ("get", 200): 1})


if __name__ == "__main__":
    unittest.main()
