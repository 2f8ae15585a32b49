"""A child process for the multi-process and crash tests. The config comes from CDCP11_CONF.

  p11worker.py create PREFIX COUNT [KEYS_EVERY [wait]]
      logs in and creates COUNT token data objects labelled PREFIX-<i> (every KEYS_EVERY-th one is an
      AES key made with C_GenerateKey instead); after each call returns CKR_OK it prints "OK <label>"
      and flushes, so a parent that kills it knows exactly which creations completed. With wait, it
      waits for a line on stdin after "READY" (so that every writer has opened the token first).
  p11worker.py reader
      opens a session and logs in, prints "READY", waits for a line on stdin, then searches the
      token from that same session and prints the labels it finds as JSON.
  p11worker.py list
      prints the labels of all objects as JSON (a fresh process opening the token).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import p11helpers as h  # noqa: E402

P = h.pykcs11()


def open_session():
    lib = P.PyKCS11Lib()
    lib.load(h.MODULE)
    s = lib.openSession(h.slot_of(lib), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
    s.login(h.USER_PIN)
    return lib, s


def labels(s):
    out = {}
    for o in s.findObjects([]):
        a = s.getAttributeValue(o, [P.CKA_LABEL, P.CKA_CLASS])
        label, cls = a[0], a[1]
        entry = {"class": cls}
        if cls == P.CKO_DATA:
            entry["value"] = bytes(s.getAttributeValue(o, [P.CKA_VALUE])[0]).decode()
        out[label] = entry
    return out


def main():
    mode = sys.argv[1]
    if mode == "create":
        prefix, count = sys.argv[2], int(sys.argv[3])
        keys_every = int(sys.argv[4]) if len(sys.argv) > 4 else 0
        lib, s = open_session()
        print("READY", flush=True)
        if sys.argv[5:] == ["wait"]:
            sys.stdin.readline()
        for i in range(count):
            label = "%s-%d" % (prefix, i)
            if keys_every and i % keys_every == keys_every - 1:
                s.generateKey([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_VALUE_LEN, 16),
                               (P.CKA_TOKEN, True), (P.CKA_LABEL, label), (P.CKA_ENCRYPT, True)],
                              P.MechanismAESGENERATEKEY)
            else:
                s.createObject([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, True),
                                (P.CKA_LABEL, label), (P.CKA_VALUE, ("value of " + label).encode())])
            print("OK " + label, flush=True)
        s.logout()
        s.closeSession()
    elif mode == "reader":
        lib, s = open_session()
        print("READY", flush=True)
        sys.stdin.readline()
        print(json.dumps(labels(s)), flush=True)
    elif mode == "list":
        lib, s = open_session()
        print(json.dumps(labels(s)), flush=True)
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main()
