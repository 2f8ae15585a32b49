"""Several processes create objects in one token at the same time; afterwards every object is
there, and a session opened in a third process before they started sees them all."""
import json
import os
import subprocess
import sys
import unittest

import p11helpers as h

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "p11worker.py")
WRITERS = 4
# SoftHSM2's file store reads every object again in every process after each creation (minutes for
# 4 x 100 on 2 cores): fewer on the HSM backend.
PER_WRITER = h.by_backend(100, 25)


class MultiProcessTest(unittest.TestCase):
    def setUp(self):
        h.require_module(self)
        self.tok = h.TempToken()
        self.tok.init()

    def tearDown(self):
        self.tok.cleanup()

    def spawn(self, *args, stdin=None):
        return subprocess.Popen([sys.executable, WORKER, *args], env=self.tok.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=stdin, text=True)

    def test_concurrent_writers_and_an_open_reader(self):
        reader = self.spawn("reader", stdin=subprocess.PIPE)
        try:
            self.assertEqual(reader.stdout.readline().strip(), "READY")
            # The writers open the token and log in one after the other, then write all at once:
            # SoftHSM2 2.6.1 (the HSM backend) fails C_Initialize, C_GetTokenInfo or C_Login with
            # CKR_GENERAL_ERROR in processes that start at the same moment (its token file store).
            writers = []
            for i in range(WRITERS):
                writers.append(self.spawn("create", "w%d" % i, str(PER_WRITER), "5", "wait", stdin=subprocess.PIPE))
                self.assertEqual(writers[-1].stdout.readline().strip(), "READY")
            created = set()
            for w in writers:
                w.stdin.write("go\n")
                w.stdin.flush()
            for w in writers:
                out, err = w.communicate(timeout=180)
                self.assertEqual(w.returncode, 0, err)
                created |= {l[3:] for l in out.split("\n") if l.startswith("OK ")}
            self.assertEqual(len(created), WRITERS * PER_WRITER)
            out, err = reader.communicate("go\n", timeout=120)
            self.assertEqual(reader.returncode, 0, err)
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.wait()
        seen = json.loads(out)
        self.assertEqual(created - set(seen), set())
        for label in created:
            entry = seen[label]
            if entry["class"] == 0:  # CKO_DATA: the value belongs to this label
                self.assertEqual(entry["value"], "value of " + label)
        # a fresh process sees exactly the same
        r = subprocess.run([sys.executable, WORKER, "list"], env=self.tok.env(), capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(set(json.loads(r.stdout)), set(seen))
        # and pkcs11-tool counts the keys
        keys = self.tok.tool("-O", "--type", "secrkey", login=True).stdout.decode().count("Secret Key Object")
        self.assertEqual(keys, WRITERS * (PER_WRITER // 5))


if __name__ == "__main__":
    h.main()
