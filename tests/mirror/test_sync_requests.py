"""Vault sync's requests, counted by the emulator: a sync in which nothing changed lists the vault
and reads no key one by one (the list answer tells which version each key is at); a key that has a
new version costs one GET."""
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
KEYS = 30   # two list pages of at most 25


class SyncRequests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator.start()
        cls.emu.map_hosts()
        cls.tok = h.TempToken(groups=[("big", {"slot_id": 41})], log_level="info")
        g = cls.tok.groups[0]
        g["azure"] = azure_section(cls.emu, write_secret(cls.tok.path("secret")), VAULT, "premium")
        g["mirror"] = {"trigger": "on_request", "mode": "sync"}
        cls.tok.write_conf()
        cls.tok.init("big")
        cls.vtok = cls.emu.token()

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()
        cls.tok.cleanup()

    def create(self, name):
        r = self.emu.rest("POST", "%s/keys/%s/create" % (Emulator.vault_url(VAULT), name), self.vtok,
                          {"kty": "EC", "crv": "P-256", "key_ops": ["sign", "verify"]})
        self.assertEqual(r.status_code, 200, r.text)

    def sync(self):
        p = subprocess.run([CDCCTL, "--config", self.tok.conf, "--json", "group", "sync", "big", "--pin-env", "PIN"],
                           capture_output=True, text=True, env=self.tok.env(PIN=h.USER_PIN), timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return json.loads(p.stdout)

    def requests(self):
        r = self.emu.admin("GET", "/_admin/requests")
        self.assertEqual(r.status_code, 200, r.text)
        out = {}
        for c in r.json()["value"]:
            if c["vault"] == VAULT:
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


if __name__ == "__main__":
    unittest.main()
