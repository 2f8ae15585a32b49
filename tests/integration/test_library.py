"""Library-level behaviour through ctypes, each scenario in a fresh child process: interfaces,
C_Initialize rules (twice, concurrently), fork safety, logging, slot ids and token info."""
import re
import ctypes
import json
import os
import subprocess
import sys
import threading
import unittest

# A test below searches the log for the PINs: "1234" turned up in a SoftHSM2 slot id (1139011234).
os.environ.setdefault("CDCP11_TEST_USER_PIN", "library-pin-Hx4q")
import p11helpers as h  # noqa: E402

PyKCS11 = None


# ---------------------------------------------------------------- child scenarios (fresh process)

def child_interfaces():
    lib = h.cdll()
    n = ctypes.c_ulong(0)
    rv = lib.C_GetInterfaceList(None, ctypes.byref(n))
    out = {"count_rv": rv, "count": n.value}
    arr = (h.CK_INTERFACE * n.value)()
    small = ctypes.c_ulong(0)
    out["small_rv"] = lib.C_GetInterfaceList(arr, ctypes.byref(small)) if n.value else None
    out["small_n"] = small.value
    rv = lib.C_GetInterfaceList(arr, ctypes.byref(n))
    out["list_rv"] = rv
    out["list"] = []
    for i in range(n.value):
        ver = ctypes.cast(arr[i].pFunctionList, ctypes.POINTER(h.CK_VERSION)).contents
        out["list"].append([arr[i].pInterfaceName.decode(), ver.major, ver.minor, arr[i].flags])
    pi = ctypes.POINTER(h.CK_INTERFACE)()
    lib.C_GetInterface.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(h.CK_INTERFACE)),
                                   ctypes.c_ulong]
    out["default_rv"] = lib.C_GetInterface(None, None, ctypes.byref(pi), 0)
    ver = ctypes.cast(pi.contents.pFunctionList, ctypes.POINTER(h.CK_VERSION)).contents
    out["default"] = [pi.contents.pInterfaceName.decode(), ver.major, ver.minor]
    v30 = h.CK_VERSION(3, 0)
    out["v30_rv"] = lib.C_GetInterface(b"PKCS 11", ctypes.byref(v30), ctypes.byref(pi), 0)
    ver = ctypes.cast(pi.contents.pFunctionList, ctypes.POINTER(h.CK_VERSION)).contents
    out["v30"] = [pi.contents.pInterfaceName.decode(), ver.major, ver.minor]
    v240 = h.CK_VERSION(2, 40)
    out["v240_rv"] = lib.C_GetInterface(b"PKCS 11", ctypes.byref(v240), ctypes.byref(pi), 0)
    if out["v240_rv"] == 0:
        ver = ctypes.cast(pi.contents.pFunctionList, ctypes.POINTER(h.CK_VERSION)).contents
        out["v240"] = [ver.major, ver.minor]
    out["bogus_rv"] = lib.C_GetInterface(b"Vendor thing", None, ctypes.byref(pi), 0)
    # C_GetFunctionList's list is the 2.x-compatible one
    fl = ctypes.c_void_p()
    lib.C_GetFunctionList.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
    out["fl_rv"] = lib.C_GetFunctionList(ctypes.byref(fl))
    ver = ctypes.cast(fl, ctypes.POINTER(h.CK_VERSION)).contents
    out["fl"] = [ver.major, ver.minor]
    return out


def child_double_init():
    lib = h.cdll()
    out = {"first": h.c_init(lib)[0], "second": h.c_init(lib)[0], "null_second": lib.C_Initialize(None)}
    out["finalize"] = lib.C_Finalize(None)
    out["finalize_again"] = lib.C_Finalize(None)
    out["reinit"] = lib.C_Initialize(None)
    out["slots"] = h.c_slots(lib)[1]
    lib.C_Finalize(None)
    # bad arguments: mutex callbacks only partly given
    args = h.CK_C_INITIALIZE_ARGS()
    args.CreateMutex = 1
    out["bad_args"] = lib.C_Initialize(ctypes.byref(args))
    return out


def child_concurrent_init():
    lib = h.cdll()
    rounds = []
    for _ in range(15):
        results = []
        barrier = threading.Barrier(8)

        def worker():
            barrier.wait()
            results.append(h.c_init(lib)[0])
        ts = [threading.Thread(target=worker) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        rv, slots = h.c_slots(lib)
        rounds.append({"results": results, "slots_rv": rv, "nslots": len(slots), "fin": lib.C_Finalize(None)})
    return rounds


def child_fork():
    lib = h.cdll()
    rv, _ = h.c_init(lib)
    assert rv == 0, rv
    _, slots = h.c_slots(lib)
    sess = ctypes.c_ulong(0)
    assert lib.C_OpenSession(ctypes.c_ulong(slots[0]), ctypes.c_ulong(h.CKF_SERIAL_SESSION | h.CKF_RW_SESSION),
                             None, None, ctypes.byref(sess)) == 0
    pin = h.USER_PIN.encode()
    assert lib.C_Login(sess, ctypes.c_ulong(h.CKU_USER), pin, ctypes.c_ulong(len(pin))) == 0
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        res = {}
        try:
            res["init"] = h.c_init(lib)[0]
            rv, sl = h.c_slots(lib)
            res["slots"] = rv
            s2 = ctypes.c_ulong(0)
            res["open"] = lib.C_OpenSession(ctypes.c_ulong(sl[0]) if sl else 0,
                                            ctypes.c_ulong(h.CKF_SERIAL_SESSION | h.CKF_RW_SESSION), None, None,
                                            ctypes.byref(s2))
            res["login"] = lib.C_Login(s2, ctypes.c_ulong(h.CKU_USER), pin, ctypes.c_ulong(len(pin)))
            arr, keep = h.c_attrs([(h.CKA_CLASS, h.ulong_bytes(h.CKO_DATA)), (h.CKA_TOKEN, b"\x01"),
                                   (h.CKA_LABEL, b"from-child")])
            o = ctypes.c_ulong(0)
            res["create"] = lib.C_CreateObject(s2, arr, ctypes.c_ulong(3), ctypes.byref(o))
            buf = (ctypes.c_ubyte * 16)()
            res["random"] = lib.C_GenerateRandom(s2, buf, ctypes.c_ulong(16))
            res["finalize"] = lib.C_Finalize(None)
        except Exception as e:  # report, never raise in the child
            res["error"] = repr(e)
        os.write(w, json.dumps(res).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    _, status = os.waitpid(pid, 0)
    child = json.loads(data or b"{}")
    # the parent still works and sees the child's object
    arr, keep = h.c_attrs([(h.CKA_LABEL, b"from-child")])
    parent = {"find_init": lib.C_FindObjectsInit(sess, arr, ctypes.c_ulong(1))}
    objs = (ctypes.c_ulong * 4)()
    n = ctypes.c_ulong(0)
    parent["find"] = lib.C_FindObjects(sess, objs, ctypes.c_ulong(4), ctypes.byref(n))
    parent["found"] = n.value
    lib.C_FindObjectsFinal(sess)
    lib.C_Finalize(None)
    return {"child": child, "status": status, "parent": parent}


CHILDREN = {f.__name__: f for f in (child_interfaces, child_double_init, child_concurrent_init, child_fork)}


# ---------------------------------------------------------------- tests

class LibraryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h.require_module(cls)
        cls.tok = h.TempToken(groups=(("demo", {}), ("pinned", {"slot_id": 77})), log_level="debug")
        cls.tok.init("demo")
        cls.tok.init("pinned")

    @classmethod
    def tearDownClass(cls):
        cls.tok.cleanup()

    def child(self, name, timeout=60):
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "child", name], env=self.tok.env(),
                           capture_output=True, timeout=timeout)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        return json.loads(r.stdout)

    def test_interfaces(self):
        o = self.child("child_interfaces")
        self.assertEqual(o["count_rv"], 0)
        self.assertGreaterEqual(o["count"], 1)
        self.assertEqual(o["small_rv"], 0x150)  # CKR_BUFFER_TOO_SMALL
        self.assertEqual(o["small_n"], o["count"])
        self.assertEqual(o["list_rv"], 0)
        self.assertIn(["PKCS 11", 3, 0, 0], o["list"])
        self.assertEqual(o["default_rv"], 0)
        self.assertEqual(o["default"], ["PKCS 11", 3, 0])
        self.assertEqual(o["v30_rv"], 0)
        self.assertEqual(o["v30"], ["PKCS 11", 3, 0])
        if o["v240_rv"] == 0:
            self.assertEqual(o["v240"][0], 2)
        self.assertNotEqual(o["bogus_rv"], 0)
        self.assertEqual(o["fl_rv"], 0)
        self.assertEqual(o["fl"][0], 2)

    def test_double_initialize(self):
        o = self.child("child_double_init")
        self.assertEqual(o["first"], 0)
        self.assertEqual(o["second"], 0x191)  # CKR_CRYPTOKI_ALREADY_INITIALIZED
        self.assertEqual(o["null_second"], 0x191)
        self.assertEqual(o["finalize"], 0)
        self.assertEqual(o["finalize_again"], 0x190)  # CKR_CRYPTOKI_NOT_INITIALIZED
        self.assertEqual(o["reinit"], 0)
        self.assertEqual(len(o["slots"]), 2)
        self.assertEqual(o["bad_args"], 0x7)  # CKR_ARGUMENTS_BAD

    def test_concurrent_initialize(self):
        rounds = self.child("child_concurrent_init", timeout=120)
        self.assertEqual(len(rounds), 15)
        for r in rounds:
            self.assertEqual(sorted(r["results"]), [0] + [0x191] * 7, r)
            self.assertEqual(r["slots_rv"], 0)
            self.assertEqual(r["nslots"], 2)
            self.assertEqual(r["fin"], 0)

    def test_fork_child_initializes_and_works(self):
        o = self.child("child_fork")
        c = o["child"]
        self.assertNotIn("error", c)
        self.assertEqual(c["init"], 0, c)
        for k in ("slots", "open", "login", "create", "random", "finalize"):
            self.assertEqual(c[k], 0, (k, c))
        self.assertEqual(o["status"], 0)
        self.assertEqual(o["parent"]["find"], 0)
        self.assertEqual(o["parent"]["found"], 1)

    def test_log_names_ckr_and_reason_and_no_pin(self):
        wrong = "wrong-pin-Vk3w"
        r = self.tok.tool("--token-label", "demo", "--login", "--pin", wrong, "-O", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.tok.tool("--token-label", "demo", "-O", login=True)
        self.tok.tool("--token-label", "demo", "--login", "--pin", h.USER_PIN, "--change-pin", "--new-pin",
                      "changed-pin-Rt8m")
        self.tok.tool("--token-label", "demo", "--login", "--pin", "changed-pin-Rt8m", "--change-pin", "--new-pin",
                      h.USER_PIN)
        log = self.tok.read_log()
        lines = [l for l in log.splitlines() if "C_Login: CKR_PIN_INCORRECT:" in l]
        self.assertTrue(lines, log)
        self.assertGreater(len(lines[0].split("CKR_PIN_INCORRECT:", 1)[1].strip()), 3)
        # The line header holds a time and a process id, which could spell a PIN of digits.
        messages = "\n".join(re.sub(r"^\S+ cdcp11\[\d+\] ", "", l) for l in log.splitlines())
        for secret in (wrong, h.USER_PIN, h.SO_PIN, "changed-pin-Rt8m"):
            self.assertNotIn(secret, messages)

    def test_slot_ids_stable_and_token_info(self):
        P = h.pykcs11()

        def snapshot():
            code = ("import sys, json; sys.path.insert(0, %r)\n"
                    "import p11helpers as h, PyKCS11 as P\n"
                    "lib = P.PyKCS11Lib(); lib.load(h.MODULE)\n"
                    "out = {}\n"
                    "for s in lib.getSlotList(tokenPresent=True):\n"
                    "    ti = lib.getTokenInfo(s)\n"
                    "    out[ti.label.strip()] = [s, ti.flags, ti.serialNumber.strip()]\n"
                    "print(json.dumps(out))\n") % os.path.dirname(os.path.abspath(__file__))
            r = subprocess.run([sys.executable, "-c", code], env=self.tok.env(), capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            return json.loads(r.stdout)

        a = snapshot()
        self.assertEqual(set(a), {"demo", "pinned"})
        self.assertEqual(a["pinned"][0], 77)
        for label in a:
            flags = a[label][1]
            for f in (P.CKF_TOKEN_INITIALIZED, P.CKF_USER_PIN_INITIALIZED, P.CKF_LOGIN_REQUIRED, P.CKF_RNG):
                self.assertTrue(flags & f, (label, P.CKF[f]))
        b = snapshot()  # a restart
        self.assertEqual(a["demo"][0], b["demo"][0])
        # re-initialise the token: same slot id, PIN flag drops until InitPIN (a forwarded token
        # refuses C_InitToken by design)
        if not h.HSM:
            self.tok.tool("--token-label", "demo", "--init-token", "--label", "demo", "--so-pin", h.SO_PIN)
            c = snapshot()
            self.assertEqual(c["demo"][0], a["demo"][0])
            self.assertFalse(c["demo"][1] & P.CKF_USER_PIN_INITIALIZED)
            self.assertTrue(c["demo"][1] & P.CKF_TOKEN_INITIALIZED)
            self.tok.init("demo")
        # reordering the groups in the config does not move the slot ids
        self.tok.groups.reverse()
        self.tok.write_conf()
        try:
            d = snapshot()
        finally:
            self.tok.groups.reverse()
            self.tok.write_conf()
        self.assertEqual(d["demo"][0], a["demo"][0])
        self.assertEqual(d["pinned"][0], 77)

    @h.soft_only("a group forwards to an initialised HSM token; SoftHSM2 makes no labelled uninitialised one")
    def test_uninitialized_token_flags(self):
        tok = h.TempToken()
        try:
            r = tok.tool("-L")
            out = r.stdout.decode()
            self.assertIn("CDC group demo", out)
            self.assertIn("token state:   uninitialized", out)  # CKF_TOKEN_INITIALIZED is clear
            tok.init()
            out = tok.tool("-L").stdout.decode()
            self.assertIn("token initialized", out)
            self.assertIn("PIN initialized", out)
            self.assertIn("login required", out)
            self.assertIn("rng", out)
        finally:
            tok.cleanup()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        print(json.dumps(CHILDREN[sys.argv[2]]()))
        sys.exit(0)
    h.main()
