"""A second (third) process for the cross-process mirror tests. The config comes from CDCP11_CONF.

  mirror_worker.py GROUP LABEL mirror
      opens a session, logs in, finds the private key labelled LABEL, prints READY, waits for a
      line on stdin, then calls C_CDC_MirrorKey on it.
  mirror_worker.py GROUP LABEL login
      opens a session, prints READY, waits for a line on stdin, then logs in (which resumes the
      token's unfinished mirror jobs in the background) and waits until the key is mirrored.

Either way it ends by printing one JSON line: {"rv": CKR of C_CDC_MirrorKey or 0, "state": ...,
"error": CKA_CDC_MIRROR_ERROR}.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mirrorhelpers import FAILED, MIRRORED, Rig, h, vendor_mirror_key  # noqa: E402

P = h.pykcs11()


def main():
    group, label, mode = sys.argv[1:4]
    lib = P.PyKCS11Lib()
    lib.load(h.MODULE)
    s = lib.openSession(h.slot_of(lib, group), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
    rig = Rig(None, None, lib, [])
    rv = 0
    if mode == "mirror":
        s.login(h.USER_PIN)
        key = rig.find(s, P.CKO_PRIVATE_KEY, label)
        mirror_key = vendor_mirror_key()
        print("READY", flush=True)
        sys.stdin.readline()
        rv = mirror_key(s, key)
        state = rig.state(s, key)
    else:
        print("READY", flush=True)
        sys.stdin.readline()
        s.login(h.USER_PIN)
        key = rig.find(s, P.CKO_PRIVATE_KEY, label)
        deadline = time.monotonic() + 120
        state = rig.state(s, key)
        while state[0] != MIRRORED and time.monotonic() < deadline:
            time.sleep(0.05)
            state = rig.state(s, key)
    print(json.dumps({"rv": rv, "state": state[0], "kid": state[1], "error": state[2]}), flush=True)
    s.logout()
    s.closeSession()
    return 0 if state[0] in (MIRRORED, FAILED) else 1


if __name__ == "__main__":
    sys.exit(main())
