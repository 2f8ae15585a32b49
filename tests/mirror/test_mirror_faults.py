"""The mirror under faults at every step, injected through the emulator's fault rules: the KEK
create (500, 429 storms, the connection dropped before and after the create is applied, an answer
lost in an outage), the import (429 storms), the KEK delete and purge, and 429s with Retry-After
at every step of one mirror. For each: no key is lost locally, nothing is imported twice (key
versions counted in the vault), the job ends mirrored or failed with a reason readable through
CKA_CDC_MIRROR_ERROR, a retry completes it, and no KEK is left behind (vault keys tagged
cdcp11-kek-for, live or soft-deleted).

Also: a name held by a soft-deleted key, with and without the group's recover_soft_deleted; and
two processes mirroring one key at the same moment (one import, one KEK).
"""
import collections
import json
import os
import subprocess
import sys
import time
import unittest

from cryptography.hazmat.primitives.asymmetric import ec

from mirrorhelpers import FAILED, MIRRORED, NONE, Rig, b64u, h, vendor_mirror_key

HERE = os.path.dirname(os.path.abspath(__file__))
CKR_FUNCTION_FAILED = 0x6
P256 = bytes.fromhex("06082a8648ce3d030107")

# A fault rule: (method, path with {name} = the key's Azure name and {kek} = its KEKs' name prefix,
# the rule's action and settings).
Rule = collections.namedtuple("Rule", "method path action")
# first: what the first attempt ends in: "mirrored" (clean), "failed" (error matches `error`), or
# "cleanup" (mirrored, the KEK's cleanup pending and reported in `error`).
# kek_creates / imports: the statuses the emulator logs for the KEK creates and the imports, in
# order, over both attempts ("DROP": connection closed without an answer).
Scenario = collections.namedtuple("Scenario", "name rules first error kek_creates imports",
                                  defaults=(None,))

KEK_CREATE = ("POST", "/keys/{kek}-*/create")
IMPORT = ("PUT", "/keys/{name}")
KEK_DELETE = ("DELETE", "/keys/{kek}-*")
KEK_PURGE = ("DELETE", "/deletedkeys/{kek}-*")


def status(code, count, retry_after=None):
    r = {"action": "status", "status": code, "count": count}
    if retry_after is not None:
        r["retryAfter"] = retry_after
    return r


# Retry-After 0 makes the client's retries immediate, so a storm that outlasts them (6 attempts)
# costs no backoff time.
SCENARIOS = [
    Scenario("kek-create-500-once", [Rule(*KEK_CREATE, status(500, 1))], "mirrored", None, ["500", "200"]),
    Scenario("kek-create-500-storm", [Rule(*KEK_CREATE, status(500, 6, 0))], "failed",
             r"failed with a server error \(HTTP 500 InternalServerError\) after 6 attempts", ["500"] * 6 + ["200"]),
    Scenario("kek-create-429-storm", [Rule(*KEK_CREATE, status(429, 3, 1))], "mirrored", None, ["429"] * 3 + ["200"]),
    Scenario("kek-create-429-outlasts-retries", [Rule(*KEK_CREATE, status(429, 6, 0))], "failed",
             r"kept throttling requests \(HTTP 429\) after 6 attempts", ["429"] * 6 + ["200"]),
    Scenario("kek-create-dropped-before-applied", [Rule(*KEK_CREATE, {"action": "drop_before", "count": 1})],
             "mirrored", None, ["DROP", "200"]),
    Scenario("kek-create-dropped-after-applied", [Rule(*KEK_CREATE, {"action": "drop_after", "count": 1})],
             "mirrored", None, ["DROP"]),
    # The create is applied, its answer lost, and the check "did it happen?" fails too: the KEK
    # exists but the attempt cannot know it. The retry must find and reuse it, not leak it.
    Scenario("kek-create-answer-lost-in-an-outage",
             [Rule(*KEK_CREATE, {"action": "drop_after", "count": 1}),
              Rule("GET", "/keys/{kek}-*", status(503, 6, 0))], "failed",
             r"failed with a server error \(HTTP 503 ServiceUnavailable\) after 6 attempts", ["DROP"]),
    Scenario("import-429-storm", [Rule(*IMPORT, status(429, 3, 1))], "mirrored", None, ["200"],
             ["429"] * 3 + ["200"]),
    Scenario("import-429-outlasts-retries", [Rule(*IMPORT, status(429, 6, 0))], "failed",
             r"kept throttling requests \(HTTP 429\) after 6 attempts", ["200"], ["429"] * 6 + ["200"]),
    Scenario("kek-delete-refused", [Rule(*KEK_DELETE, status(403, 1))], "cleanup",
             r"mirrored but its KEK cdcp11-kek-[\w-]+ could not be deleted", ["200"], ["200"]),
    Scenario("kek-delete-500-storm", [Rule(*KEK_DELETE, status(500, 6, 0))], "cleanup",
             r"mirrored but its KEK cdcp11-kek-[\w-]+ could not be deleted", ["200"], ["200"]),
    Scenario("kek-purge-500-storm", [Rule(*KEK_PURGE, status(500, 6, 0))], "cleanup",
             r"mirrored but its KEK cdcp11-kek-[\w-]+ was deleted and not purged", ["200"], ["200"]),
    Scenario("429-with-retry-after-at-every-step",
             [Rule("GET", "/keys/{name}", status(429, 1, 1)), Rule(*KEK_CREATE, status(429, 1, 1)),
              Rule(*IMPORT, status(429, 1, 1)), Rule(*KEK_DELETE, status(429, 1, 1)),
              Rule("GET", "/deletedkeys/{kek}-*", status(429, 1, 1)), Rule(*KEK_PURGE, status(429, 1, 1))],
             "mirrored", None, ["429", "200"], ["429", "200"]),
]


class MirrorFaults(unittest.TestCase):
    VAULT = "demo-premium"

    @classmethod
    def setUpClass(cls):
        on_request = {"trigger": "on_request", "mode": "sync"}
        cls.rig = Rig.start([("faults", cls.VAULT, "premium", on_request),
                             ("recover", cls.VAULT, "premium", dict(on_request, recover_soft_deleted=True))])
        cls.mirror_key = staticmethod(vendor_mirror_key())

    @classmethod
    def tearDownClass(cls):
        cls.rig.stop()

    def setUp(self):
        self.addCleanup(self.rig.emu.admin, "DELETE", "/_admin/faults")

    # ------------------------------------------------------------ helpers

    def ec_key(self, s, label):
        P = self.rig.P
        _, priv = s.generateKeyPair(
            [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_TOKEN, True),
             (P.CKA_EC_PARAMS, P256), (P.CKA_LABEL, label)],
            [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_TOKEN, True),
             (P.CKA_PRIVATE, True), (P.CKA_SIGN, True), (P.CKA_LABEL, label)],
            P.Mechanism(P.CKM_EC_KEY_PAIR_GEN))
        self.assertEqual(self.rig.state(s, priv), (NONE, "", ""))
        return priv

    def ec_key_from(self, s, label, private):
        """A token key made from known key material (C_CreateObject), not mirrored yet."""
        P = self.rig.P
        d = private.private_numbers().private_value.to_bytes(32, "big")
        return s.createObject([(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_TOKEN, True),
                               (P.CKA_PRIVATE, True), (P.CKA_SIGN, True), (P.CKA_LABEL, label),
                               (P.CKA_EC_PARAMS, P256), (P.CKA_VALUE, d)])

    def kek_creates(self, uid):
        return self.rig.requests("POST", self.VAULT, r"/keys/cdcp11-kek-%s-\d+/create" % uid[:16])

    def imports(self, name):
        return self.rig.requests("PUT", self.VAULT, "/keys/%s" % name)

    def assert_no_kek_left(self, uid):
        self.assertEqual(self.rig.keks(self.VAULT, uid), [], "a live KEK is left")
        self.assertEqual(self.rig.keks(self.VAULT, uid, deleted=True), [], "a soft-deleted KEK is left")

    def assert_mirrored_copy_is_the_token_key(self, s, priv, name, public_key):
        state, kid, error = self.rig.state(s, priv)
        self.assertEqual((state, error), (MIRRORED, ""))
        self.assertTrue(kid.startswith("%s/keys/%s/" % (self.rig.vault_url(self.VAULT), name)), kid)
        self.assertEqual(self.rig.versions(self.VAULT, name), 1, "imported more than once")
        got = self.rig.rest("GET", kid)
        self.assertEqual(got.status_code, 200, got.text)
        self.assertEqual(self.rig.vault_public_key(got.json()).public_numbers(), public_key.public_numbers())
        return kid

    def soft_delete(self, name):
        """Deletes the vault key `name` and waits until it is soft-deleted (deletion is asynchronous)."""
        url = "%s/keys/%s" % (self.rig.vault_url(self.VAULT), name)
        r = self.rig.rest("DELETE", url)
        self.assertEqual(r.status_code, 200, r.text)
        deleted = "%s/deletedkeys/%s" % (self.rig.vault_url(self.VAULT), name)
        self.assertTrue(wait_for(lambda: self.rig.rest("GET", deleted).status_code == 200), "deletion never finished")

    def import_into_vault(self, name, private):
        n = private.private_numbers()
        pub = n.public_numbers
        jwk = {"kty": "EC", "crv": "P-256", "key_ops": ["sign", "verify"],
               "x": b64u(pub.x.to_bytes(32, "big")), "y": b64u(pub.y.to_bytes(32, "big")),
               "d": b64u(n.private_value.to_bytes(32, "big"))}
        r = self.rig.rest("PUT", "%s/keys/%s" % (self.rig.vault_url(self.VAULT), name), {"key": jwk})
        self.assertEqual(r.status_code, 200, r.text)
        return r.json()["key"]["kid"]

    # ------------------------------------------------------------ faults at every step

    def test_faults_at_every_step_lose_nothing_import_once_and_a_retry_completes(self):
        for sc in SCENARIOS:
            with self.subTest(sc.name):
                try:
                    self.run_scenario(sc)
                finally:
                    self.rig.emu.admin("DELETE", "/_admin/faults")

    def run_scenario(self, sc):
        rig = self.rig
        s = rig.session(self, "faults")
        name = "f-" + sc.name
        priv = self.ec_key(s, name)
        uid = rig.uid(s, priv)
        public_key = rig.token_public_key(s, name)
        waits_before = rig.tok.read_log().count("server asked to wait 1000 ms")
        for r in sc.rules:
            rig.fault({"method": r.method, "path": r.path.format(name=name, kek="cdcp11-kek-" + uid[:16])},
                      **r.action)

        rv = self.mirror_key(s, priv)
        state, kid, error = rig.state(s, priv)
        self.assertEqual(len(rig.find_all(s, name)), 2, "the local key pair is intact")
        if sc.first == "failed":
            self.assertEqual((rv, state), (CKR_FUNCTION_FAILED, FAILED))
            self.assertRegex(error, sc.error)
            self.assertEqual(kid, "")
        elif sc.first == "cleanup":
            # The key is mirrored and usable; its KEK is still tracked: the journal keeps the job
            # open, the error attribute says what is pending, and the KEK is still in the vault.
            self.assertEqual((rv, state), (0, MIRRORED))
            self.assertRegex(error, sc.error)
            self.assertTrue(kid.startswith("%s/keys/%s/" % (rig.vault_url(self.VAULT), name)), kid)
            self.assertEqual(len(rig.keks(self.VAULT, uid)) + len(rig.keks(self.VAULT, uid, deleted=True)), 1)
        else:
            self.assertEqual((rv, state, error), (0, MIRRORED, ""))
        if sc.first != "mirrored":
            self.assertEqual(self.mirror_key(s, priv), 0)  # the retry
        self.assert_mirrored_copy_is_the_token_key(s, priv, name, public_key)
        self.assertEqual(self.kek_creates(uid), sc.kek_creates)
        self.assertEqual(self.imports(name), sc.imports or ["200"])
        self.assert_no_kek_left(uid)
        # Every 429 with Retry-After: 1 was waited out as the server asked.
        retry_afters = sum(r.action["count"] for r in sc.rules if r.action.get("retryAfter") == 1)
        self.assertEqual(rig.tok.read_log().count("server asked to wait 1000 ms") - waits_before, retry_afters)

    def test_cdcctl_key_mirror_all_finishes_failed_mirrors_and_pending_cleanups(self):
        rig = self.rig
        s = rig.session(self, "faults")
        failed, pending = self.ec_key(s, "f-cdcctl-failed"), self.ec_key(s, "f-cdcctl-cleanup")
        rig.fault({"method": "PUT", "path": "/keys/f-cdcctl-failed"}, **status(503, 6, 0))
        rig.fault({"method": "DELETE", "path": "/keys/cdcp11-kek-%s-*" % rig.uid(s, pending)[:16]}, **status(403, 1))
        self.assertEqual(self.mirror_key(s, failed), CKR_FUNCTION_FAILED)
        self.assertEqual(self.mirror_key(s, pending), 0)
        self.assertEqual(rig.state(s, failed)[0], FAILED)
        self.assertEqual(rig.state(s, pending)[0], MIRRORED)
        self.assertNotEqual(rig.state(s, pending)[2], "")
        cdcctl = [os.path.join(os.environ["CDCP11_BUILD"], "tools", "cdcctl", "cdcctl"), "--config", rig.tok.conf]
        r = h.run(cdcctl + ["key", "mirror", "faults", "--all", "--pin-env", "DEMO_PIN"],
                  env=rig.tok.env(DEMO_PIN=h.USER_PIN))
        for name, priv in (("f-cdcctl-failed", failed), ("f-cdcctl-cleanup", pending)):
            self.assertIn("%s: mirrored as %s/keys/%s/" % (name, rig.vault_url(self.VAULT), name), r.stdout.decode())
            self.assert_mirrored_copy_is_the_token_key(s, priv, name, rig.token_public_key(s, name))
            self.assertEqual(self.kek_creates(rig.uid(s, priv)), ["200"])  # the KEK of the first attempt, reused
            self.assert_no_kek_left(rig.uid(s, priv))

    def test_a_key_destroyed_mid_mirror_takes_its_kek_and_its_job_with_it(self):
        rig = self.rig
        s = rig.session(self, "faults")
        priv = self.ec_key(s, "f-destroyed")
        uid = rig.uid(s, priv)
        rig.fault({"method": "PUT", "path": "/keys/f-destroyed"}, **status(503, 6, 0))
        self.assertEqual(self.mirror_key(s, priv), CKR_FUNCTION_FAILED)
        self.assertEqual(len(rig.keks(self.VAULT, uid)), 1)  # the failed job keeps its KEK for the retry
        job = os.path.join(rig.tok.dir, "tokens", "faults.mirror", "objects", uid)
        self.assertTrue(os.path.exists(job), job)
        s.destroyObject(priv)
        self.assert_no_kek_left(uid)
        self.assertEqual(self.imports("f-destroyed"), ["503"] * 6)
        self.assertFalse(os.path.exists(job), "the destroyed key's job is still in the journal")

    # ------------------------------------------------------------ a name held by a soft-deleted key

    def test_soft_deleted_name_without_recover_soft_deleted_is_a_clear_error(self):
        rig = self.rig
        s = rig.session(self, "faults")
        mine = ec.generate_private_key(ec.SECP256R1())
        self.import_into_vault("sd-plain", mine)
        self.soft_delete("sd-plain")
        priv = self.ec_key_from(s, "sd-plain", mine)
        self.assertEqual(self.mirror_key(s, priv), CKR_FUNCTION_FAILED)
        state, _, error = rig.state(s, priv)
        self.assertEqual(state, FAILED)
        self.assertIn("the name 'sd-plain' is held by a soft-deleted key in vault 'demo-premium'", error)
        self.assertIn("recover_soft_deleted", error)
        self.assertEqual(rig.get_key(self.VAULT, "sd-plain").status_code, 404)  # not recovered
        # Once the operator purges it, a retry completes the mirror.
        purge = rig.rest("DELETE", "%s/deletedkeys/sd-plain" % rig.vault_url(self.VAULT))
        self.assertEqual(purge.status_code, 204, purge.text)
        self.assertEqual(self.mirror_key(s, priv), 0)
        self.assert_mirrored_copy_is_the_token_key(s, priv, "sd-plain", mine.public_key())
        self.assert_no_kek_left(rig.uid(s, priv))

    def test_recover_soft_deleted_recovers_the_key_when_it_is_this_key(self):
        rig = self.rig
        s = rig.session(self, "recover")
        mine = ec.generate_private_key(ec.SECP256R1())
        kid = self.import_into_vault("sd-mine", mine)
        self.soft_delete("sd-mine")
        priv = self.ec_key_from(s, "sd-mine", mine)
        self.assertEqual(self.mirror_key(s, priv), 0)
        # The soft-deleted copy is recovered and is the mirror: no new version is imported.
        self.assertEqual(self.assert_mirrored_copy_is_the_token_key(s, priv, "sd-mine", mine.public_key()), kid)
        self.assertIn("POST %s/deletedkeys/sd-mine/recover 200" % rig.vault_url(self.VAULT)[8:], rig.emu.log())
        rig.sign_in_vault_and_verify(kid, mine.public_key())
        self.assert_no_kek_left(rig.uid(s, priv))

    def test_recover_soft_deleted_refuses_a_different_key(self):
        rig = self.rig
        s = rig.session(self, "recover")
        other = ec.generate_private_key(ec.SECP256R1())
        self.import_into_vault("sd-other", other)
        self.soft_delete("sd-other")
        mine = ec.generate_private_key(ec.SECP256R1())
        priv = self.ec_key_from(s, "sd-other", mine)
        self.assertEqual(self.mirror_key(s, priv), CKR_FUNCTION_FAILED)
        state, kid, error = rig.state(s, priv)
        self.assertEqual((state, kid), (FAILED, ""))
        self.assertRegex(error, r"the soft-deleted key holding the name 'sd-other' in vault 'demo-premium' is a "
                                r"different key .*: it was not recovered")
        # Left as it was: still soft-deleted, nothing recovered, nothing imported over it.
        self.assertEqual(rig.get_key(self.VAULT, "sd-other").status_code, 404)
        self.assertNotIn("deletedkeys/sd-other/recover", rig.emu.log())
        deleted = rig.rest("GET", "%s/deletedkeys/sd-other" % rig.vault_url(self.VAULT))
        self.assertEqual(deleted.status_code, 200)
        self.assertEqual(rig.vault_public_key(deleted.json()).public_numbers(), other.public_key().public_numbers())
        # Purged by the operator: the retry mirrors this key under the name.
        self.assertEqual(rig.rest("DELETE", "%s/deletedkeys/sd-other" % rig.vault_url(self.VAULT)).status_code, 204)
        self.assertEqual(self.mirror_key(s, priv), 0)
        self.assert_mirrored_copy_is_the_token_key(s, priv, "sd-other", mine.public_key())
        self.assert_no_kek_left(rig.uid(s, priv))

    # ------------------------------------------------------------ two processes, one key

    def test_two_processes_mirroring_one_key_at_once_import_it_once_with_one_kek(self):
        """Each process serialises its own mirrors; across processes only a lock per key keeps two
        from running the same job. The import is slowed so that the two would overlap."""
        for mode in ("mirror", "login"):
            with self.subTest(mode):
                try:
                    self.race(mode)
                finally:
                    self.rig.emu.admin("DELETE", "/_admin/faults")

    def race(self, mode):
        rig = self.rig
        s = rig.session(self, "faults")
        name = "race-" + mode
        priv = self.ec_key(s, name)
        uid = rig.uid(s, priv)
        if mode == "login":
            # A journaled job that failed at the import: every login resumes it.
            rig.fault({"method": "PUT", "path": "/keys/" + name}, **status(403, 1))
            self.assertEqual(self.mirror_key(s, priv), CKR_FUNCTION_FAILED)
        rig.fault({"method": "PUT", "path": "/keys/" + name}, action="latency", delayMs=3000, count=2)
        waited_before = rig.tok.read_log().count("key %s: another process is mirroring it" % uid)
        workers = [subprocess.Popen([sys.executable, os.path.join(HERE, "mirror_worker.py"), "faults", name, mode],
                                    env=rig.tok.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(2)]
        try:
            for w in workers:
                self.assertEqual(w.stdout.readline().strip(), "READY", w.stderr.read() if w.poll() else "")
            for w in workers:
                w.stdin.write("go\n")
                w.stdin.flush()
            results = []
            for w in workers:
                out, err = w.communicate(timeout=180)
                self.assertEqual(w.returncode, 0, err)
                results.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                    w.wait()
        self.assertEqual([(r["rv"], r["state"], r["error"]) for r in results], [(0, MIRRORED, "")] * 2)
        self.assertEqual(results[0]["kid"], results[1]["kid"])
        self.assertEqual(rig.versions(self.VAULT, name), 1, "imported twice")
        self.assertEqual([st for st in self.imports(name) if st != "403"], ["200"])
        self.assertEqual(self.kek_creates(uid), ["200"])
        self.assert_no_kek_left(uid)
        # And they did overlap: one of them found the other at work on the key and waited.
        self.assertEqual(rig.tok.read_log().count("key %s: another process is mirroring it" % uid) - waited_before, 1)


def wait_for(cond, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


if __name__ == "__main__":
    unittest.main(verbosity=2)
