#!/usr/bin/python3
"""Mirroring at Azure's own rate and vault sync of many keys (issue #13), against the bundled Key
Vault emulator with Azure's published rate limits switched on. A benchmark, not a test: it prints
figures and fails only when something does not work at all.

  mirror --all   `cdcctl key mirror GROUP --all` of N local keys (BYOK into a Premium vault)
  mhsm           the same into a Managed HSM
  async burst    N keys generated in one process by a group that mirrors on generation, in async
                 mode; from the first C_GenerateKeyPair until every key is mirrored
  sync           `cdcctl group sync` of a vault holding S keys: first sync (all new) and second
                 (nothing changed)

Beside each mirror figure: the rate the limits allow, from the requests the run made per key
(counted by the emulator) in each of the vault's 10-second buckets: the bucket that allows the
fewest keys per second binds. One KEK per key (Microsoft does not document reusing one), so the
HSM key CREATE bucket (10 per 10 s) binds: 1 key/s. A Managed HSM publishes capacity per second
instead (scaling guidance, reference §11): key create 1/s, delete and purge 10/s, get 1100/s, import
not published; its create capacity binds: 1 key/s as well. The emulator hands out its RSA keys from a
small pool here (its "rsaKeyPool" setting): Python makes an RSA-4096 KEK in a second or more of
CPU, which would otherwise set the pace instead of the limits.

  bench/mirror_rate.py --build BUILD [--keys N] [--burst N] [--sync-keys S] [--only mirror,mhsm,burst,sync]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "emulator"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "tools", "akv-emulator"))

VAULT = "demo-premium"
MHSM = "demo-mhsm"
WINDOW = 10.0
# The vault buckets a mirror's requests count in (akvemu/limits.py, reference §9 and §11). The
# only keys a mirror creates are its KEKs (RSA-HSM); what it reads or changes are HSM keys.
BUCKET_OF = {"create": "create-hsm", "import": "import", "get": "other-hsm", "update": "other-hsm"}
MIRRORED, FAILED = 2, 3
KEK_POOL = 4
CKA_CDC_MIRROR_STATE = 0x80000000 | 0x0CDC0000 | 3


def log(msg):
    print("mirror_rate: " + msg, file=sys.stderr, flush=True)


class Rig:
    def __init__(self, build, groups, state_writer=None, rate_limit=True):
        """groups: (name, mirror settings[, (vault, vault type)]); the vault is VAULT unless given."""
        os.environ["CDCP11_MODULE"] = os.path.join(build, "p11module", "libcdcp11.so")
        import p11helpers as h
        from azhelpers import Emulator
        from azhelpers import SECRET, SECRET_APP, SUBSCRIPTION, TENANT
        self.h = h
        self.cdcctl = os.path.join(build, "tools", "cdcctl", "cdcctl")
        workdir = tempfile.mkdtemp(prefix="mirror-rate-emu-")
        if state_writer:
            state_writer(os.path.join(workdir, "state"))

        def modify(c):
            c["emulator"]["softDeleteDelaySeconds"] = 1
            c["emulator"]["rateLimit"] = {"enabled": rate_limit, "scale": 1.0, "retryAfter": None}
            # The KEKs (RSA-4096) from a pool made once: Python needs a second or more of CPU for
            # each, Azure makes a vault's ten per 10 s without it showing.
            c["emulator"]["rsaKeyPool"] = KEK_POOL
        self.emu = Emulator.start(modify=modify, workdir=workdir)
        self.emu.map_hosts()
        self.tok = h.TempToken(groups=[(g[0], {"slot_id": 51 + i}) for i, g in enumerate(groups)])
        secret = self.tok.path("secret")
        with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(SECRET)
        for g, spec in zip(self.tok.groups, groups):
            vault, vtype = spec[2] if len(spec) > 2 else (VAULT, "premium")
            g["azure"] = {"tenant_id": TENANT, "client_id": SECRET_APP, "subscription_id": SUBSCRIPTION,
                          "credential": {"type": "secret", "secret_file": secret},
                          "tls": {"ca_file": self.emu.ca, "connect_to": ["::127.0.0.1:%d" % self.emu.port]},
                          "vault": {"name": vault, "type": vtype}}
            g["mirror"] = dict(spec[1])
        self.tok.write_conf()
        for g in groups:
            self.tok.init(g[0])
        if state_writer is None:
            # Fill the pool before anything is measured, in another vault (limits are per vault).
            tok = self.emu.token()
            for i in range(KEK_POOL):
                r = self.emu.rest("POST", "%s/keys/pool-%d/create" % (Emulator.vault_url("demo-rbac"), i), tok,
                                  {"kty": "RSA-HSM", "key_size": 4096, "key_ops": ["import"]})
                assert r.status_code == 200, r.text

    def stop(self):
        self.emu.stop()
        self.tok.cleanup()

    def reset_counts(self):
        self.emu.admin("DELETE", "/_admin/requests")

    def counts(self, vault=VAULT):
        out = {}
        for c in self.emu.admin("GET", "/_admin/requests").json()["value"]:
            if c["vault"] == vault:
                out[(c["op"], c["status"])] = out.get((c["op"], c["status"]), 0) + c["count"]
        return out

    def cdcctl_run(self, *args):
        """cdcctl [--json] COMMAND..., logged in with the user PIN."""
        env = self.tok.env(BENCH_PIN=self.h.USER_PIN)
        json_flag = [a for a in args if a == "--json"]
        rest = [a for a in args if a != "--json"]
        return subprocess.run([self.cdcctl, "--config", self.tok.conf] + json_flag + rest + ["--pin-env", "BENCH_PIN"],
                              capture_output=True, text=True, env=env, timeout=3600)


def allowed_rate(counts, keys, mhsm=False):
    """(keys/s the published limits allow with these requests per key, the bucket that binds). A
    Managed HSM's capacity is per second, and only for the operations it publishes a figure for."""
    from akvemu import limits
    per_bucket, capacity = {}, {}
    for (op, status), n in counts.items():
        if status == 429:
            continue   # refused requests do not count (as in Azure)
        if mhsm:
            c = limits.mhsm_charge(op)
            if c is None:
                continue
            b, capacity[b] = c.bucket, c.limit / c.window
        else:
            b = BUCKET_OF.get(op, "vault")
            capacity[b] = limits.VAULT_LIMITS[b] / WINDOW
        per_bucket[b] = per_bucket.get(b, 0) + n
    best = None
    for b, n in per_bucket.items():
        rate = capacity[b] / (n / keys)
        if best is None or rate < best[0]:
            best = (rate, b)
    return best


def describe_counts(counts, keys):
    ops = {}
    for (op, status), n in counts.items():
        key = op if status < 400 or status == 404 else "%s %d" % (op, status)
        ops[key] = ops.get(key, 0) + n
    return ", ".join("%s %.2g" % (k, v / keys) for k, v in sorted(ops.items()))


def generate_ec(session, P, label, token=True):
    pub = [(P.CKA_TOKEN, token), (P.CKA_VERIFY, True), (P.CKA_LABEL, label),
           (P.CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107"))]
    priv = [(P.CKA_TOKEN, token), (P.CKA_SIGN, True), (P.CKA_LABEL, label), (P.CKA_PRIVATE, True),
            (P.CKA_SENSITIVE, True), (P.CKA_EXTRACTABLE, False)]
    return session.generateKeyPair(pub, priv, mecha=P.Mechanism(P.CKM_EC_KEY_PAIR_GEN))


def mirror_all(rig, lib, P, group, keys, vault, row):
    """`cdcctl key mirror GROUP --all` of `keys` EC keys made first: the row's result dict."""
    s = lib.openSession(rig.h.slot_of(lib, group), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
    s.login(rig.h.USER_PIN)
    for i in range(keys):
        generate_ec(s, P, "%s-%03d" % (group, i))
    s.logout()
    s.closeSession()
    log("%s of %d keys" % (row, keys))
    rig.reset_counts()
    t0 = time.monotonic()
    p = rig.cdcctl_run("key", "mirror", group, "--all")
    secs = time.monotonic() - t0
    counts = rig.counts(vault)
    failed = p.stdout.count("FAILED")
    if p.returncode != 0 and not failed:
        raise SystemExit("cdcctl key mirror --all failed: " + p.stdout + p.stderr)
    return dict(row=row, keys=keys, secs=secs, counts=counts, failed=failed, mhsm=vault == MHSM,
                thrown_429=("429" in p.stdout) or ("Throttled" in p.stdout))


def mirror_rows(build, keys, mhsm_keys, burst):
    """The mirror rows; returns their result dicts."""
    rows = []
    rig = Rig(build, [("mall", {"trigger": "on_request", "mode": "sync"}),
                      ("burst", {"trigger": "on_generate", "mode": "async"}),
                      ("mhsm", {"trigger": "on_request", "mode": "sync"}, (MHSM, "managed_hsm"))])
    try:
        lib = rig.h.load_lib(rig.tok)
        P = rig.h.pykcs11()
        if keys:
            rows.append(mirror_all(rig, lib, P, "mall", keys, VAULT, "cdcctl key mirror --all"))
        if mhsm_keys:
            # Its own vault, so its own limits: no wait for the Premium vault's windows to empty.
            rows.append(mirror_all(rig, lib, P, "mhsm", mhsm_keys, MHSM, "cdcctl key mirror --all, Managed HSM"))
        if keys and burst:
            time.sleep(WINDOW + 1)   # the burst starts with the Premium vault's windows empty
        if burst:
            s = lib.openSession(rig.h.slot_of(lib, "burst"), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
            s.login(rig.h.USER_PIN)
            log("async burst of %d generated keys" % burst)
            rig.reset_counts()
            t0 = time.monotonic()
            privs = [generate_ec(s, P, "burst-%03d" % i)[1] for i in range(burst)]
            states = {}
            deadline = t0 + 60 + 30 * burst
            while time.monotonic() < deadline:
                for i, k in enumerate(privs):
                    if states.get(i) not in (MIRRORED, FAILED):
                        raw = bytes(s.getAttributeValue(k, [CKA_CDC_MIRROR_STATE], allAsBinary=True)[0])
                        states[i] = int.from_bytes(raw, sys.byteorder)
                if all(states.get(i) in (MIRRORED, FAILED) for i in range(burst)):
                    break
                time.sleep(0.2)
            secs = time.monotonic() - t0
            counts = rig.counts()
            failed = sum(1 for v in states.values() if v != MIRRORED)
            errors = rig.tok.read_log().count("429") if hasattr(rig.tok, "read_log") else 0
            rows.append(dict(row="async burst (C_GenerateKeyPair)", keys=burst, secs=secs, counts=counts,
                             failed=failed, mhsm=False, thrown_429=False, log_429=errors))
            s.logout()
            s.closeSession()
    finally:
        rig.stop()
    return rows


def write_vault_state(n):
    """A state writer: vault VAULT holding n EC P-256 keys made a minute ago (written directly, as
    the emulator stores them, since n creates through HTTPS would take longer than the sync)."""
    def write(state_dir):
        from akvemu import keycrypto
        os.makedirs(os.path.join(state_dir, "vaults"), exist_ok=True)
        t = int(time.time()) - 60
        keys = {}
        for i in range(n):
            name = "sync-%05d" % i
            ver = {"version": uuid.uuid4().hex, "kty": "EC", "jwk": keycrypto.generate("EC", None, "P-256", None),
                   "key_ops": ["sign", "verify"], "attributes": {"enabled": True, "created": t, "updated": t},
                   "tags": {}, "origin": "create"}
            keys[name] = {"name": name, "versions": [ver], "deleted": None, "recoveringUntil": None}
        path = os.path.join(state_dir, "vaults", VAULT + ".json")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            json.dump({"vault": VAULT, "kind": "vault", "keys": keys}, f)
    return write


def sync_row(build, n):
    log("vault sync of %d keys (writing the vault)" % n)
    rig = Rig(build, [("sync", {"trigger": "on_request", "mode": "sync"})], state_writer=write_vault_state(n))
    out = []
    try:
        for which in ("first", "second"):
            rig.reset_counts()
            t0 = time.monotonic()
            p = rig.cdcctl_run("--json", "group", "sync", "sync")
            secs = time.monotonic() - t0
            if p.returncode != 0:
                raise SystemExit("cdcctl group sync failed: " + p.stdout + p.stderr)
            rep = json.loads(p.stdout)
            c = rig.counts()
            out.append(dict(which=which, secs=secs, rep=rep, gets=c.get(("get", 200), 0),
                            lists=c.get(("list", 200), 0), throttled=sum(v for (o, st), v in c.items() if st == 429)))
            log("%s sync: %.1f s" % (which, secs))
    finally:
        rig.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="a build directory with cdcctl and libcdcp11.so")
    ap.add_argument("--keys", type=int, default=30, help="keys mirrored by mirror --all (default 30)")
    ap.add_argument("--burst", type=int, default=30, help="keys generated in the async burst (default 30)")
    ap.add_argument("--sync-keys", type=int, default=5000, help="keys in the synced vault (default 5000)")
    ap.add_argument("--only", default="mirror,mhsm,burst,sync")
    a = ap.parse_args()
    only = set(a.only.split(","))
    build = os.path.abspath(a.build)
    # Token files on tmpfs where there is one: the sync writes two objects per vault key.
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        tempfile.tempdir = tempfile.mkdtemp(prefix="mirror-rate-", dir="/dev/shm")
    try:
        rows = mirror_rows(build, a.keys if "mirror" in only else 0, a.keys if "mhsm" in only else 0,
                           a.burst if "burst" in only else 0)
        syncs = sync_row(build, a.sync_keys) if "sync" in only else []
    finally:
        if tempfile.tempdir and tempfile.tempdir.startswith("/dev/shm/"):
            shutil.rmtree(tempfile.tempdir, ignore_errors=True)
    print("| mirroring (emulator, Azure's limits on) | keys | s | keys/s | limits allow | ratio (target 0.9) "
          "| 429s to the user | requests per key |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate = (r["keys"] - r["failed"]) / r["secs"]
        allowed, bucket = allowed_rate(r["counts"], r["keys"], r["mhsm"])
        ratio = rate / allowed
        print("| %s | %d | %.1f | %.3f | %.3f (%s) | %.2f %s | %s | %s |" % (
            r["row"], r["keys"], r["secs"], rate, allowed, bucket, ratio, "met" if ratio >= 0.9 else "NOT met",
            "%d failed" % r["failed"] if r["failed"] else "none",
            describe_counts(r["counts"], r["keys"])))
    if syncs:
        print()
        print("| vault sync, %d keys | s | added | unchanged | GET per key | list pages | 429s |" % a.sync_keys)
        print("|---|---|---|---|---|---|---|")
        for s in syncs:
            print("| %s sync | %.1f | %d | %d | %.2f | %d | %d |" % (
                s["which"], s["secs"], s["rep"]["added"], s["rep"]["unchanged"], s["gets"] / a.sync_keys, s["lists"],
                s["throttled"]))


if __name__ == "__main__":
    main()
