"""A child creating token objects is killed with SIGKILL at pseudo-random points, many times.
After every kill the token opens in a fresh process and holds every object whose creation the
child saw return CKR_OK (it reports each label on a pipe only after the call returned)."""
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
import unittest

import p11helpers as h

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "p11worker.py")
ITERATIONS = 40


class CrashTest(unittest.TestCase):
    def setUp(self):
        h.require_module(self)
        self.tok = h.TempToken()
        self.tok.init()

    def tearDown(self):
        self.tok.cleanup()

    def run_and_kill(self, prefix, delay):
        """Starts a creator, kills it `delay` seconds after it is ready; returns the labels it reported."""
        p = subprocess.Popen([sys.executable, WORKER, "create", prefix, "100000", "4"], env=self.tok.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        got = []
        buf = b""
        deadline = None
        start = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now - start > 30:
                    self.fail("creator never became ready")
                if deadline is not None and now >= deadline:
                    break
                wait = 0.05 if deadline is None else max(0.0, deadline - now)
                r, _, _ = select.select([p.stdout], [], [], wait)
                if r:
                    chunk = os.read(p.stdout.fileno(), 65536)
                    if not chunk:
                        break  # the child exited (it should not before the kill)
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line == b"READY" and deadline is None:
                            deadline = time.monotonic() + delay
                        elif line.startswith(b"OK "):
                            got.append(line[3:].decode())
        finally:
            p.send_signal(signal.SIGKILL)
            rest = p.stdout.read()  # reported before the kill landed: also completed
            p.stdout.close()
            p.wait()
        for line in (buf + rest).split(b"\n"):
            if line.startswith(b"OK "):
                got.append(line[3:].decode())
        self.assertEqual(p.returncode, -signal.SIGKILL)
        return got

    def list_token(self):
        r = subprocess.run([sys.executable, WORKER, "list"], env=self.tok.env(), capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, "token did not open after a kill: " + r.stderr)
        return json.loads(r.stdout)

    # On the HSM backend this takes 100-170 s on two busy cores: every check lists the token in a
    # fresh process, which reads each object from SoftHSM2 anew (SoftHSM2 opens and locks its files
    # ~900 times per object listed), and the token grows to ~110 objects. A hang would fail at the
    # 30 s / 60 s / 120 s limits below, not run into the suite's timeout.
    def test_sigkill_during_creation(self):
        rnd = random.Random(20240601)  # fixed seed: the same schedule every run
        confirmed = set()
        for i in range(ITERATIONS):
            delay = rnd.uniform(0.0, 0.25)
            got = self.run_and_kill("it%d" % i, delay)
            confirmed |= set(got)
            seen = self.list_token()
            missing = confirmed - set(seen)
            self.assertEqual(missing, set(), "iteration %d (delay %.3f): lost %d confirmed objects"
                             % (i, delay, len(missing)))
            for label in got:
                if seen[label]["class"] == 0:
                    self.assertEqual(seen[label]["value"], "value of " + label)
        # the kills did land mid-way through real work (SoftHSM2 creates more slowly: fewer per run)
        self.assertGreater(len(confirmed), h.by_backend(ITERATIONS, ITERATIONS // 2))
        # the token still takes new objects and pkcs11-tool still works on it
        self.tok.tool("--write-object", self.tok.conf, "--type", "data", "--label", "after", "--private", login=True)
        self.assertIn("after", self.list_token())


if __name__ == "__main__":
    h.main()
