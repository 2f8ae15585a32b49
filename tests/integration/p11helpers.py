"""Shared helpers for the integration tests: a private temp token per test, PyKCS11 loading,
running pkcs11-tool / openssl, and a ctypes view of the module for what PyKCS11 cannot reach.

Every test gets its own directory with a config and a token; nothing outside it is touched.
The module path comes from CDCP11_MODULE (set by meson), the PINs below are test constants and
are never printed.

CDCP11_TEST_BACKEND picks the backend behind every group TempToken makes: "soft" (the default,
the soft token) or "hsm" (the forwarding backend in front of a throw-away SoftHSM2 token per
group, with its own SOFTHSM2_CONF in the test directory). Tests say where the backends answer
differently with soft_only(why) or by_backend(soft=..., hsm=...).

Shell tests make their tokens with the same code:
    eval "$(python3 p11helpers.py tokens DIR demo second,init=no,max_pin_retries=0)"
writes DIR/conf.json (and DIR/softhsm2.conf), initializes the groups (SO and user PIN) and prints
the exports (CDCP11_CONF, CDCP11_LOG_FILE, SOFTHSM2_CONF, CDCP11_TEST_BACKEND)."""
import ctypes
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

MODULE = os.environ.get("CDCP11_MODULE", "")
SO_PIN = "12345678"
# A test that greps a log for the PIN sets a PIN no id, path or number can contain by chance.
USER_PIN = os.environ.get("CDCP11_TEST_USER_PIN", "1234")
TOOL_TIMEOUT = 120

BACKEND = os.environ.get("CDCP11_TEST_BACKEND", "soft")
if BACKEND not in ("soft", "hsm"):
    raise SystemExit("CDCP11_TEST_BACKEND must be soft or hsm, not %r" % BACKEND)
HSM = BACKEND == "hsm"
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
# Settings of the soft token only: the config refuses them in a pkcs11 group.
SOFT_SETTINGS = ("dir", "kdf_scrypt_log2_n", "max_pin_retries")


def soft_only(why):
    """Skips a test or class on the HSM backend: it is about the soft token itself (why says how)."""
    return unittest.skipIf(HSM, "soft token only: " + why)


def hsm_expected_failure(why):
    """A known failure of the HSM backend, named (why) until it is fixed; a pass then fails the run."""
    def mark(fn):
        return unittest.expectedFailure(fn) if HSM else fn
    mark.why = why
    return mark


def by_backend(soft, hsm):
    """The value a test expects on this run's backend (where SoftHSM2 legitimately answers otherwise)."""
    return hsm if HSM else soft

# CKR values used by the tests (PKCS#11 3.0).
CKR = {
    "CKR_OK": 0x0, "CKR_ARGUMENTS_BAD": 0x7, "CKR_CRYPTOKI_ALREADY_INITIALIZED": 0x191,
    "CKR_CRYPTOKI_NOT_INITIALIZED": 0x190,
}


def require_module(test):
    if not MODULE or not os.path.exists(MODULE):
        raise unittest.SkipTest("CDCP11_MODULE not set or missing")


def softhsm_tokens(directory, labels):
    """A SoftHSM2 configuration in DIRECTORY (tokens in DIRECTORY/tokens) with the tokens LABELS
    initialised with the test SO and user PINs; this process's SOFTHSM2_CONF points at it.
    Returns the configuration's path."""
    os.makedirs(os.path.join(directory, "tokens"), exist_ok=True)
    conf = os.path.join(directory, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write("directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n" % directory)
    os.environ["SOFTHSM2_CONF"] = conf
    for label in labels:
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", SO_PIN,
                        "--pin", USER_PIN], check=True, capture_output=True)
    return conf


def require_softhsm():
    # The HSM suites are registered only where SoftHSM2 is a dependency: its absence is a failure.
    if not os.path.exists(SOFTHSM) or not shutil.which("softhsm2-util"):
        raise AssertionError("CDCP11_TEST_BACKEND=hsm needs SoftHSM2 (%s, softhsm2-util)" % SOFTHSM)


class TempToken:
    """A config + token directory. groups: list of (name, extra token settings). On the HSM
    backend each group forwards to its own SoftHSM2 token labelled with the group's name; the
    soft token's settings (dir, KDF cost, PIN retries) are dropped there."""

    def __init__(self, groups=(("demo", {}),), log2n=10, retries=3, log_level=None, directory=None):
        if directory:
            os.makedirs(directory, exist_ok=True)
        self.dir = directory or tempfile.mkdtemp(prefix="cdcp11-int-")
        self.conf = os.path.join(self.dir, "conf.json")
        self.log = os.path.join(self.dir, "module.log")
        self.softhsm_conf = os.path.join(self.dir, "softhsm2.conf") if HSM else None
        if HSM:
            require_softhsm()
            os.makedirs(os.path.join(self.dir, "softhsm"), exist_ok=True)
            with open(self.softhsm_conf, "w") as f:
                f.write("directories.tokendir = %s/softhsm\nobjectstore.backend = file\nlog.level = ERROR\n"
                        % self.dir)
        self.groups = []
        for name, extra in groups:
            if HSM:
                tok = {"backend": "pkcs11", "module": SOFTHSM, "token_label": name}
            else:
                tok = {"dir": "tokens/" + name, "kdf_scrypt_log2_n": log2n, "max_pin_retries": retries}
            g = {"name": name, "token": tok}
            extra = dict(extra)
            if "slot_id" in extra:
                g["slot_id"] = extra.pop("slot_id")
            tok.update({k: v for k, v in extra.items() if not (HSM and k in SOFT_SETTINGS)})
            self.groups.append(g)
        self.write_conf()
        self.log_level = log_level

    def write_conf(self):
        with open(self.conf, "w") as f:
            json.dump({"version": 1, "groups": self.groups}, f)

    def env(self, **extra):
        e = dict(os.environ)
        e["CDCP11_CONF"] = self.conf
        e["CDCP11_LOG_FILE"] = self.log
        if self.softhsm_conf:
            e["SOFTHSM2_CONF"] = self.softhsm_conf
        if self.log_level:
            e["CDCP11_LOG_LEVEL"] = self.log_level
        e.update(extra)
        return e

    def apply_env(self):
        """Point this process (PyKCS11/ctypes loads) at the token."""
        os.environ["CDCP11_CONF"] = self.conf
        os.environ["CDCP11_LOG_FILE"] = self.log
        if self.softhsm_conf:
            os.environ["SOFTHSM2_CONF"] = self.softhsm_conf
        if self.log_level:
            os.environ["CDCP11_LOG_LEVEL"] = self.log_level

    def tool(self, *args, check=True, login=False, so=False, input=None, timeout=TOOL_TIMEOUT):
        cmd = ["pkcs11-tool", "--module", MODULE]
        if login:
            cmd += ["--login", "--pin", USER_PIN]
        if so:
            cmd += ["--login", "--login-type", "so", "--so-pin", SO_PIN]
        cmd += list(args)
        r = subprocess.run(cmd, env=self.env(), capture_output=True, input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("pkcs11-tool %s failed (%d): %s %s" % (
                " ".join(a for a in args), r.returncode, r.stdout.decode(errors="replace"),
                r.stderr.decode(errors="replace")))
        return r

    def init(self, label="demo", user_pin=True):
        """Initializes the group's token with the test SO PIN and (user_pin) the user PIN. On the HSM
        backend that is SoftHSM2's own softhsm2-util: our slot refuses C_InitToken there by design."""
        if HSM:
            assert user_pin, "softhsm2-util --init-token always sets the user PIN"
            run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", USER_PIN],
                env=self.env())
            return
        slot = self.slot_id(label)
        self.tool("--slot", slot, "--init-token", "--label", label, "--so-pin", SO_PIN)
        if user_pin:
            self.tool("--slot", slot, "--login", "--login-type", "so", "--so-pin", SO_PIN,
                      "--init-pin", "--pin", USER_PIN)

    def slot_id(self, group):
        """The slot id of a group, from its slot description ("CDC group NAME"), as pkcs11-tool lists it."""
        out = self.tool("-L").stdout.decode(errors="replace")
        m = re.search(r"^Slot \d+ \((0x[0-9a-f]+)\): CDC group %s\s*$" % re.escape(group), out, re.M)
        assert m, "no slot of group %r in: %s" % (group, out)
        return m.group(1)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def read_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


def run(cmd, env=None, check=True, input=None, timeout=TOOL_TIMEOUT, cwd=None):
    r = subprocess.run(cmd, env=env, capture_output=True, input=input, timeout=timeout, cwd=cwd)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s %s" % (cmd[0], r.returncode, r.stdout.decode(errors="replace"),
                                                        r.stderr.decode(errors="replace")))
    return r


# ---------------------------------------------------------------- PyKCS11

def pykcs11():
    import PyKCS11
    return PyKCS11


def load_lib(tok):
    """A PyKCS11 library bound to tok's config (the env must be set before the load)."""
    PyKCS11 = pykcs11()
    tok.apply_env()
    lib = PyKCS11.PyKCS11Lib()
    lib.load(MODULE)
    return lib


def slot_of(lib, label="demo"):
    for s in lib.getSlotList(tokenPresent=True):
        if lib.getTokenInfo(s).label.strip() == label:
            return s
    raise AssertionError("no slot with token %r" % label)


def ckr_name(code):
    PyKCS11 = pykcs11()
    if code in EXTRA_CKR:
        return EXTRA_CKR[code]
    return PyKCS11.CKR.get(code, hex(code))


class P11Case(unittest.TestCase):
    """assertCKR(code_name, fn, *args): fn must raise PyKCS11Error with exactly that CKR."""

    def assertCKR(self, name, fn, *args, **kw):
        PyKCS11 = pykcs11()
        with self.assertRaises(PyKCS11.PyKCS11Error) as cm:
            fn(*args, **kw)
        got = cm.exception.value
        self.assertEqual(ckr_name(got), name, "expected %s, got %s" % (name, ckr_name(got)))
        return cm.exception

    def assertRV(self, name, rv):
        self.assertEqual(ckr_name(rv), name, "expected %s, got %s" % (name, ckr_name(rv)))


class UserSessionCase(P11Case):
    """For a file using shared_token(): each test gets a logged-in R/W session on the "demo" slot
    (self.s), the ctypes caller (self.raw) and the session's handle for it (self.hs)."""
    lib = None

    def setUp(self):
        P = pykcs11()
        self.s = self.lib.openSession(slot_of(self.lib), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        self.s.login(USER_PIN)
        self.raw = Raw()
        self.hs = sh(self.s)

    def tearDown(self):
        self.lib.closeAllSessions(slot_of(self.lib))


# ---------------------------------------------------------------- ctypes

class CK_VERSION(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class CK_INTERFACE(ctypes.Structure):
    _fields_ = [("pInterfaceName", ctypes.c_char_p), ("pFunctionList", ctypes.c_void_p),
                ("flags", ctypes.c_ulong)]


class CK_C_INITIALIZE_ARGS(ctypes.Structure):
    _fields_ = [("CreateMutex", ctypes.c_void_p), ("DestroyMutex", ctypes.c_void_p),
                ("LockMutex", ctypes.c_void_p), ("UnlockMutex", ctypes.c_void_p),
                ("flags", ctypes.c_ulong), ("pReserved", ctypes.c_void_p)]


CKF_OS_LOCKING_OK = 0x2


def cdll(mode=0):
    """A fresh ctypes handle on the module. Exported symbols are called directly."""
    lib = ctypes.CDLL(MODULE, mode=mode)
    for name in ("C_Initialize", "C_Finalize", "C_GetInterfaceList", "C_GetInterface", "C_GetSlotList",
                 "C_OpenSession", "C_CloseSession", "C_Login", "C_CreateObject", "C_GetFunctionList",
                 "C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal", "C_GetTokenInfo",
                 "C_GenerateRandom"):
        getattr(lib, name).restype = ctypes.c_ulong
    return lib


def c_init(lib, os_locking=True):
    args = CK_C_INITIALIZE_ARGS()
    args.flags = CKF_OS_LOCKING_OK if os_locking else 0
    return lib.C_Initialize(ctypes.byref(args)), args


def c_slots(lib):
    n = ctypes.c_ulong(0)
    rv = lib.C_GetSlotList(ctypes.c_ubyte(1), None, ctypes.byref(n))
    if rv:
        return rv, []
    arr = (ctypes.c_ulong * max(n.value, 1))()
    rv = lib.C_GetSlotList(ctypes.c_ubyte(1), arr, ctypes.byref(n))
    return rv, list(arr[:n.value])


# CK_ATTRIBUTE for a data object: the minimal object the crash/multi-process tests create.
class CK_ATTRIBUTE(ctypes.Structure):
    _fields_ = [("type", ctypes.c_ulong), ("pValue", ctypes.c_void_p), ("ulValueLen", ctypes.c_ulong)]


CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_LABEL, CKA_VALUE = 0x0, 0x1, 0x2, 0x3, 0x11
CKO_DATA = 0x0
CKF_RW_SESSION, CKF_SERIAL_SESSION = 0x2, 0x4
CKU_USER = 1


def c_attrs(items):
    """items: list of (type, bytes). Returns (array, keepalive)."""
    arr = (CK_ATTRIBUTE * len(items))()
    keep = []
    for i, (t, v) in enumerate(items):
        buf = ctypes.create_string_buffer(v, len(v))
        keep.append(buf)
        arr[i].type = t
        arr[i].pValue = ctypes.cast(buf, ctypes.c_void_p)
        arr[i].ulValueLen = len(v)
    return arr, keep


def ulong_bytes(v):
    return bytes(ctypes.c_ulong(v))


def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def der(tag, body):
    return bytes([tag]) + der_len(len(body)) + body


def der_octets(data):
    """The content of a DER OCTET STRING (CKA_EC_POINT)."""
    assert data[0] == 0x04, data[:4].hex()
    if data[1] < 0x80:
        return data[2:2 + data[1]]
    n = data[1] & 0x7F
    ln = int.from_bytes(data[2:2 + n], "big")
    return data[2 + n:2 + n + ln]


OID_EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")
OID_ED25519 = bytes.fromhex("06032b6570")


def spki_from_ec(params, point):
    """SubjectPublicKeyInfo DER from CKA_EC_PARAMS and CKA_EC_POINT (EC or Ed25519)."""
    raw = der_octets(point)
    if params == OID_ED25519 or params == der(0x13, b"edwards25519"):
        alg = der(0x30, OID_ED25519)
    else:
        alg = der(0x30, OID_EC_PUBLIC_KEY + params)
    return der(0x30, alg + der(0x03, b"\x00" + raw))


def ec_spki(tok, label, token_label="demo"):
    """The SPKI of the public key object labelled `label`, read with PyKCS11."""
    PyKCS11 = pykcs11()
    lib = load_lib(tok)
    s = lib.openSession(slot_of(lib, token_label))
    try:
        o = s.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_LABEL, label)])
        assert len(o) == 1, "public key %r: %d objects" % (label, len(o))
        params, point = s.getAttributeValue(o[0], [PyKCS11.CKA_EC_PARAMS, PyKCS11.CKA_EC_POINT])
        return spki_from_ec(bytes(params), bytes(point))
    finally:
        s.closeSession()


# ---------------------------------------------------------------- raw ctypes calls next to PyKCS11
# ctypes.CDLL on the module path returns the handle PyKCS11 already dlopen()ed, so these calls
# share its library state and session handles: exact CKR codes and buffer semantics.

EXTRA_CKR = {0x1B: "CKR_ACTION_PROHIBITED"}
CK_UNAVAILABLE_INFORMATION = ctypes.c_ulong(-1).value
CKA_MODIFIABLE, CKA_COPYABLE, CKA_DESTROYABLE = 0x170, 0x171, 0x172
CKU_CONTEXT_SPECIFIC = 2


class CK_MECHANISM(ctypes.Structure):
    _fields_ = [("mechanism", ctypes.c_ulong), ("pParameter", ctypes.c_void_p), ("ulParameterLen", ctypes.c_ulong)]


def mech(m, param=None):
    mm = CK_MECHANISM()
    mm.mechanism = m
    keep = None
    if param:
        keep = ctypes.create_string_buffer(bytes(param), len(param))
        mm.pParameter = ctypes.cast(keep, ctypes.c_void_p)
        mm.ulParameterLen = len(param)
    mm._keep = keep
    return mm


class Raw:
    def __init__(self):
        self.lib = ctypes.CDLL(MODULE)

    def __getattr__(self, name):
        f = getattr(self.lib, name)
        f.restype = ctypes.c_ulong
        return f

    def out_call(self, fn, *args, size=None):
        """Calls fn(*args, out, &len). size None: NULL buffer (length query). Returns (rv, bytes|None, len)."""
        n = ctypes.c_ulong(size or 0)
        if size is None:
            rv = fn(*args, None, ctypes.byref(n))
            return rv, None, n.value
        buf = ctypes.create_string_buffer(max(size, 1))
        rv = fn(*args, buf, ctypes.byref(n))
        return rv, buf.raw[:n.value] if rv == 0 else None, n.value

    def init(self, fn, session, m, key):
        return getattr(self, fn)(ctypes.c_ulong(session), ctypes.byref(m), ctypes.c_ulong(key))

    def single(self, fn, session, data, size=None):
        d = ctypes.create_string_buffer(data, len(data))
        return self.out_call(getattr(self, fn), ctypes.c_ulong(session), d, ctypes.c_ulong(len(data)), size=size)

    def get_attr(self, session, obj, atype, size=None):
        """(rv, ulValueLen) for one attribute; size None: length query."""
        a = CK_ATTRIBUTE()
        a.type = atype
        buf = None
        if size is not None:
            buf = ctypes.create_string_buffer(max(size, 1))
            a.pValue = ctypes.cast(buf, ctypes.c_void_p)
        a.ulValueLen = size or 0
        rv = self.C_GetAttributeValue(ctypes.c_ulong(session), ctypes.c_ulong(obj), ctypes.byref(a), ctypes.c_ulong(1))
        return rv, a.ulValueLen, (buf.raw[:a.ulValueLen] if rv == 0 and buf is not None else None)

    def set_attrs(self, session, obj, items):
        arr, keep = c_attrs(items)
        return self.C_SetAttributeValue(ctypes.c_ulong(session), ctypes.c_ulong(obj), arr, ctypes.c_ulong(len(items)))

    def copy(self, session, obj, items=()):
        arr, keep = c_attrs(list(items)) if items else (None, None)
        h = ctypes.c_ulong(0)
        rv = self.C_CopyObject(ctypes.c_ulong(session), ctypes.c_ulong(obj), arr, ctypes.c_ulong(len(items)),
                               ctypes.byref(h))
        return rv, h.value

    def create(self, session, items):
        arr, keep = c_attrs(items)
        h = ctypes.c_ulong(0)
        rv = self.C_CreateObject(ctypes.c_ulong(session), arr, ctypes.c_ulong(len(items)), ctypes.byref(h))
        return rv, h.value


def sh(session):
    """The CK_SESSION_HANDLE of a PyKCS11 Session."""
    return int(session.session.value())


def oh(obj):
    return int(obj.value()) if hasattr(obj, "value") else int(obj)


def shared_token(g, groups=(("demo", {}),), **kw):
    """(setUpModule, tearDownModule) for a test file whose tests share one token: every group
    initialized, the module loaded with PyKCS11; g (the file's globals()) gets TOK and LIB."""
    def setup():
        require_module(None)
        g["TOK"] = TempToken(groups=groups, **kw)
        for name, _ in groups:
            g["TOK"].init(name)
        g["LIB"] = load_lib(g["TOK"])
        UserSessionCase.lib = g["LIB"]

    def teardown():
        g["LIB"] = UserSessionCase.lib = None
        if g.get("TOK"):
            g["TOK"].cleanup()
    g.setdefault("TOK", None)
    g.setdefault("LIB", None)
    return setup, teardown


def shell_tokens(directory, specs):
    """The `tokens` command for shell tests: specs are NAME[,init=no][,SETTING=INT]..."""
    groups, init = [], []
    for spec in specs:
        name, *opts = spec.split(",")
        extra = {}
        for o in opts:
            k, v = o.split("=", 1)
            if k == "init":
                if v != "no":
                    raise SystemExit("init=no is the only init option")
                continue
            extra[k] = int(v)
        if "init=no" not in opts:
            init.append(name)
        groups.append((name, extra))
    tok = TempToken(groups=groups, directory=directory)
    for name in init:
        tok.init(name)
    exports = {"CDCP11_CONF": tok.conf, "CDCP11_LOG_FILE": tok.log, "CDCP11_TEST_BACKEND": BACKEND}
    if tok.softhsm_conf:
        exports["SOFTHSM2_CONF"] = tok.softhsm_conf
    return "".join("export %s=%s\n" % (k, shlex.quote(v)) for k, v in exports.items())


def main():
    unittest.main(verbosity=2)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "tokens":
        sys.stdout.write(shell_tokens(sys.argv[2], sys.argv[3:]))
    else:
        raise SystemExit("usage: p11helpers.py tokens DIR NAME[,init=no][,SETTING=INT]...")
