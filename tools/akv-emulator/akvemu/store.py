"""Persistent key state of one vault or managed HSM.

Each vault's keys live in one JSON file in the state directory
(vaults/NAME.json or managedhsms/NAME.json, mode 0600, since it holds the
private material), rewritten atomically on every change. The file is small
enough for this; reads are served from memory.

A key record:
  {"name": original-case name,
   "versions": [version, ...]            # creation order, last = latest
   "deleted": null | {"deletedDate", "scheduledPurgeDate", "readyAt"},
   "recoveringUntil": null | float}
A version:
  {"version": 32 hex, "kty": "RSA-HSM", "jwk": {private JWK},
   "key_ops": [...], "attributes": {...}, "tags": {...}}

Soft delete and recovery are asynchronous in Azure: the emulator models that
with a delay ("readyAt" / "recoveringUntil") evaluated lazily on each access.
"""
import json
import os
import threading
import time

from . import keycrypto
from .fsutil import atomic_write

# Lifecycle states a record can be in (computed by VaultStore.state()).
ACTIVE, DELETING, DELETED, RECOVERING = "active", "deleting", "deleted", "recovering"


class VaultStore:
    def __init__(self, vault, state_dir):
        self.vault = vault
        sub = "managedhsms" if vault.kind == "mhsm" else "vaults"
        self.path = os.path.join(state_dir, sub, vault.name.lower() + ".json")
        self.lock = threading.RLock()
        self.keys = {}
        self._cache = {}   # (lname, version) -> live key object
        if os.path.exists(self.path):
            with open(self.path, "r", encoding="utf-8") as f:
                self.keys = json.load(f).get("keys", {})

    def save(self):
        data = json.dumps({"vault": self.vault.name, "kind": self.vault.kind, "keys": self.keys},
                          indent=1, sort_keys=True).encode()
        atomic_write(self.path, data, 0o600)

    # ---------------------------------------------------------- lifecycle
    def state(self, rec, now=None):
        """Current lifecycle state of a record, applying completed transitions.
        Returns None if the record has expired past its scheduled purge date."""
        now = time.time() if now is None else now
        d = rec.get("deleted")
        if d:
            if now >= d["scheduledPurgeDate"]:
                return None
            return DELETING if now < d["readyAt"] else DELETED
        if rec.get("recoveringUntil") and now < rec["recoveringUntil"]:
            return RECOVERING
        return ACTIVE

    def get(self, name):
        """(record, state) for a key name (case-insensitive), or (None, None)."""
        rec = self.keys.get(name.lower())
        if rec is None:
            return None, None
        st = self.state(rec)
        if st is None:   # retention passed: the service purges it itself
            self.remove(name)
            return None, None
        return rec, st

    def remove(self, name):
        lname = name.lower()
        self.keys.pop(lname, None)
        for k in [k for k in self._cache if k[0] == lname]:
            del self._cache[k]

    def records(self, wanted_state):
        out = []
        for lname in sorted(self.keys):
            rec, st = self.get(lname)
            if rec is not None and st == wanted_state:
                out.append(rec)
        return out

    def live_key(self, name, ver):
        """Cached cryptography object for a version's private JWK."""
        k = (name.lower(), ver["version"])
        obj = self._cache.get(k)
        if obj is None:
            obj = keycrypto.load(ver["jwk"])
            self._cache[k] = obj
        return obj

    @staticmethod
    def find_version(rec, version):
        if not version:
            return rec["versions"][-1]
        for v in rec["versions"]:
            if v["version"] == version.lower():
                return v
        return None
