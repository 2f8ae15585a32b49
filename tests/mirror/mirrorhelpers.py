"""Shared by the mirror tests: an emulator plus a token whose groups mirror into its vaults, the
vendor interface through ctypes, and REST views of the vault (versions, tagged keys, signing).

    rig = Rig.start([("premium", "demo-premium", "premium", {"trigger": "on_request"})])
    s = rig.session("premium")
    ...
    rig.stop()
"""
import base64
import ctypes
import os
import re
import struct
import sys

SRC = os.environ["CDCP11_SRC"]
sys.path.insert(0, os.path.join(SRC, "tests", "emulator"))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

import p11helpers as h  # noqa: E402
from azhelpers import SECRET, SECRET_APP, SUBSCRIPTION, TENANT, Emulator  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils  # noqa: E402

CKA_CDC = 0x80000000 | 0x0CDC0000
CKA_CDC_MIRROR = CKA_CDC + 1
CKA_CDC_AZURE_KEY_NAME = CKA_CDC + 2
CKA_CDC_MIRROR_STATE = CKA_CDC + 3
CKA_CDC_AZURE_KEY_ID = CKA_CDC + 4
CKA_CDC_MIRROR_ERROR = CKA_CDC + 5
CKA_UNIQUE_ID = 0x4
NONE, PENDING, MIRRORED, FAILED = 0, 1, 2, 3

CURVES = {"P-256": (ec.SECP256R1(), hashes.SHA256(), "ES256"), "P-384": (ec.SECP384R1(), hashes.SHA384(), "ES384"),
          "P-521": (ec.SECP521R1(), hashes.SHA512(), "ES512")}


CKA_CDC_ORIGIN = CKA_CDC + 6
CKA_CDC_CLOUD_NATIVE = CKA_CDC + 7


class CK_VERSION(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class CK_INTERFACE(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("functions", ctypes.c_void_p), ("flags", ctypes.c_ulong)]


class CDC_SYNC_RESULT(ctypes.Structure):
    _fields_ = [(n, ctypes.c_ulong) for n in ("linked", "added", "updated", "removed", "unchanged", "skipped")]


MIRROR_KEY = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
GET_STATUS = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong),
                              ctypes.c_char_p, ctypes.POINTER(ctypes.c_ulong))
SYNC_KEYS = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong, ctypes.POINTER(CDC_SYNC_RESULT))
ROTATE_KEY = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.POINTER(ctypes.c_ulong))


class CDC_FUNCTION_LIST(ctypes.Structure):
    _fields_ = [("version", CK_VERSION), ("mirror_key", MIRROR_KEY), ("get_status", GET_STATUS),
                ("sync_keys", SYNC_KEYS), ("rotate_key", ROTATE_KEY)]


def vendor():
    """The 'Vendor cdcp11' function list of the module PyKCS11 has loaded in this process (same
    library state, so PyKCS11's session and object handles are valid)."""
    lib = ctypes.CDLL(h.MODULE)
    iface = ctypes.POINTER(CK_INTERFACE)()
    rv = lib.C_GetInterface(b"Vendor cdcp11", None, ctypes.byref(iface), ctypes.c_ulong(0))
    assert rv == 0, rv
    fl = ctypes.cast(iface.contents.functions, ctypes.POINTER(CDC_FUNCTION_LIST)).contents
    assert (fl.version.major, fl.version.minor) == (1, 1)
    return fl


def vendor_mirror_key():
    """C_CDC_MirrorKey, taking PyKCS11 sessions and objects."""
    fl = vendor()
    return lambda session, obj: fl.mirror_key(h.sh(session), h.oh(obj))


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def ckr_name(rv):
    return h.ckr_name(rv)


def write_secret(path):
    """The test app's client secret in a 0600 file, as a group's credential names it."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(SECRET)
    return path


def azure_section(emu, secret, vault, vtype):
    """A group's "azure" section: the test app with its secret file, the emulator's TLS, one vault."""
    return {"tenant_id": TENANT, "client_id": SECRET_APP, "subscription_id": SUBSCRIPTION,
            "credential": {"type": "secret", "secret_file": secret},
            "tls": {"ca_file": emu.ca, "connect_to": ["::127.0.0.1:%d" % emu.port]},
            "vault": {"name": vault, "type": vtype}}


class LogOnly:
    """What Rig's token-side helpers need of a token whose configuration a test writes itself: its log."""

    def __init__(self, log):
        self.log = log


class Rig:
    """groups: (group name, vault, vault type, mirror settings). Slot ids are 31, 32, ..."""

    def __init__(self, emu, tok, lib, groups):
        self.emu, self.tok, self.lib, self.groups = emu, tok, lib, groups
        self.P = h.pykcs11()

    @classmethod
    def start(cls, groups, delete_delay=0.2):
        # Deletion and recovery still complete asynchronously, but quickly: the e2e tests cover
        # the slow case, these run many mirrors.
        emu = Emulator.start(modify=lambda c: c["emulator"].update(softDeleteDelaySeconds=delete_delay))
        emu.map_hosts()
        tok = h.TempToken(groups=[(g[0], {"slot_id": 31 + i}) for i, g in enumerate(groups)], log_level="info")
        secret = write_secret(tok.path("secret"))
        for g, (_, vault, vtype, mirror) in zip(tok.groups, groups):
            g["azure"] = azure_section(emu, secret, vault, vtype)
            g["mirror"] = dict(mirror)
        tok.write_conf()
        for g in groups:
            tok.init(g[0])
        return cls(emu, tok, h.load_lib(tok), groups)

    def stop(self):
        self.emu.stop()
        self.tok.cleanup()

    # ------------------------------------------------------------ token side
    def slot_index(self, group):
        return [g[0] for g in self.groups].index(group)

    def vault_of(self, group):
        return self.groups[self.slot_index(group)][1]

    def tool(self, group, *args):
        """pkcs11-tool, logged in on the group's slot; returns the CompletedProcess."""
        return self.tok.tool("--slot-index", str(self.slot_index(group)), *args, login=True, check=False)

    def session(self, test, group):
        P = self.P
        s = self.lib.openSession(h.slot_of(self.lib, group), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        test.addCleanup(s.closeSession)
        try:
            s.login(h.USER_PIN)
        except P.PyKCS11Error as e:  # the login state is the token's: another open session logged in
            if e.value != P.CKR_USER_ALREADY_LOGGED_IN:
                raise
        return s

    def find(self, s, cls, label):
        objs = s.findObjects([(self.P.CKA_CLASS, cls), (self.P.CKA_LABEL, label)])
        assert len(objs) == 1, "%d objects of class %d labelled %s" % (len(objs), cls, label)
        return objs[0]

    def find_all(self, s, label):
        return s.findObjects([(self.P.CKA_LABEL, label)])

    @staticmethod
    def raw(s, obj, t):
        return bytes(s.getAttributeValue(obj, [t], allAsBinary=True)[0])

    def state(self, s, obj):
        """(CKA_CDC_MIRROR_STATE, CKA_CDC_AZURE_KEY_ID, CKA_CDC_MIRROR_ERROR)"""
        st = struct.unpack("<Q", self.raw(s, obj, CKA_CDC_MIRROR_STATE))[0]
        return st, self.raw(s, obj, CKA_CDC_AZURE_KEY_ID).decode(), self.raw(s, obj, CKA_CDC_MIRROR_ERROR).decode()

    def uid(self, s, obj):
        return self.raw(s, obj, CKA_UNIQUE_ID).decode()

    def token_public_key(self, s, label):
        """The public key object labelled `label`, as a cryptography public key."""
        P = self.P
        pub = self.find(s, P.CKO_PUBLIC_KEY, label)
        kt = s.getAttributeValue(pub, [P.CKA_KEY_TYPE])[0]
        if kt == P.CKK_RSA:
            n = int.from_bytes(self.raw(s, pub, P.CKA_MODULUS), "big")
            e = int.from_bytes(self.raw(s, pub, P.CKA_PUBLIC_EXPONENT), "big")
            return rsa.RSAPublicNumbers(e, n).public_key()
        params = self.raw(s, pub, P.CKA_EC_PARAMS)
        point = h.der_octets(self.raw(s, pub, P.CKA_EC_POINT))
        curve = {bytes.fromhex("06082a8648ce3d030107"): ec.SECP256R1(), bytes.fromhex("06052b81040022"): ec.SECP384R1(),
                 bytes.fromhex("06052b81040023"): ec.SECP521R1()}[params]
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)

    # ------------------------------------------------------------ vault side
    def vault_url(self, vault):
        return self.emu.vault_url(vault, hsm=vault.endswith("mhsm"))

    def rest(self, method, url, body=None):
        resource = "https://managedhsm.azure.net" if ".managedhsm." in url else "https://vault.azure.net"
        if not hasattr(self, "_tokens"):
            self._tokens = {}
        if resource not in self._tokens:
            self._tokens[resource] = self.emu.token(resource=resource)
        return self.emu.rest(method, url, token=self._tokens[resource], body=body)

    def get_key(self, vault, name):
        return self.rest("GET", "%s/keys/%s" % (self.vault_url(vault), name))

    def versions(self, vault, name):
        """Versions of the key `name` in the vault (0 when there is no such key)."""
        r = self.rest("GET", "%s/keys/%s/versions" % (self.vault_url(vault), name))
        if r.status_code == 404:
            return 0
        assert r.status_code == 200, r.text
        return len(self.paged(r)["value"])

    def paged(self, first):
        out = first.json()
        nxt = out.get("nextLink")
        while nxt:
            page = self.rest("GET", nxt).json()
            out["value"] += page["value"]
            nxt = page.get("nextLink")
        return out

    def tagged(self, vault, tag, value, deleted=False):
        """Names of the vault's keys (or soft-deleted keys) whose tag `tag` is `value`."""
        r = self.rest("GET", "%s/%s?maxresults=25" % (self.vault_url(vault), "deletedkeys" if deleted else "keys"))
        assert r.status_code == 200, r.text
        return sorted(it["kid"].split("/keys/")[1].split("/")[0] for it in self.paged(r)["value"]
                      if it.get("tags", {}).get(tag) == value)

    def keks(self, vault, uid, deleted=False):
        return self.tagged(vault, "cdcp11-kek-for", uid, deleted)

    def vault_public_key(self, bundle):
        k = bundle["key"]
        if k["kty"].startswith("RSA"):
            return rsa.RSAPublicNumbers(int.from_bytes(b64u_dec(k["e"]), "big"),
                                        int.from_bytes(b64u_dec(k["n"]), "big")).public_key()
        x, y = (int.from_bytes(b64u_dec(k[c]), "big") for c in ("x", "y"))
        return ec.EllipticCurvePublicNumbers(x, y, CURVES[k["crv"]][0]).public_key()

    def sign_in_vault_and_verify(self, kid, public_key, message=b"signed in the vault"):
        """A digest signed by the vault with `kid` verifies with `public_key` (from the token)."""
        if isinstance(public_key, rsa.RSAPublicKey):
            alg, hash_ = "RS256", hashes.SHA256()
        else:
            _, hash_, alg = CURVES[{"secp256r1": "P-256", "secp384r1": "P-384",
                                    "secp521r1": "P-521"}[public_key.curve.name]]
        d = hashes.Hash(hash_)
        d.update(message)
        digest = d.finalize()
        r = self.rest("POST", kid + "/sign", {"alg": alg, "value": b64u(digest)})
        assert r.status_code == 200, r.text
        sig = b64u_dec(r.json()["value"])
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hash_))
        else:
            half = len(sig) // 2
            der = utils.encode_dss_signature(int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big"))
            public_key.verify(der, digest, ec.ECDSA(utils.Prehashed(hash_)))
        return alg

    # ------------------------------------------------------------ emulator
    def assert_vault_copy(self, test, s, priv, label, vault, kty, bits=None, crv=None):
        """The private key PRIV (labelled LABEL) is mirrored into VAULT as a key of type KTY (RSA of BITS
        or EC on CRV) whose public key is the token's, and the vault signs with it. Returns its kid."""
        state, kid, error = self.state(s, priv)
        test.assertEqual((state, error), (MIRRORED, ""))
        test.assertTrue(kid.startswith("%s/keys/%s/" % (self.vault_url(vault), label)), kid)
        got = self.rest("GET", kid)
        test.assertEqual(got.status_code, 200, got.text)
        jwk = got.json()["key"]
        test.assertEqual(jwk["kty"], kty)
        if bits:
            test.assertEqual(int.from_bytes(b64u_dec(jwk["n"]), "big").bit_length(), bits)
        else:
            test.assertEqual(jwk["crv"], crv)
        token_key = self.token_public_key(s, label)
        test.assertEqual(self.vault_public_key(got.json()).public_numbers(), token_key.public_numbers())
        self.sign_in_vault_and_verify(kid, token_key)
        return kid

    def assert_aes_round_trip(self, test, s, aes, kid):
        """The vault's AES key KID wraps a fresh secret (A256KW) that the token's key AES unwraps, and
        the token's wrap of it the vault unwraps."""
        P = self.P
        secret = os.urandom(32)
        w = self.rest("POST", kid + "/wrapkey", {"alg": "A256KW", "value": b64u(secret)})
        test.assertEqual(w.status_code, 200, w.text)
        tmpl = [(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_GENERIC_SECRET), (P.CKA_TOKEN, False),
                (P.CKA_SENSITIVE, False), (P.CKA_EXTRACTABLE, True)]
        k = s.unwrapKey(aes, b64u_dec(w.json()["value"]), tmpl, P.Mechanism(P.CKM_AES_KEY_WRAP))
        test.assertEqual(bytes(s.getAttributeValue(k, [P.CKA_VALUE])[0]), secret)
        wrapped = bytes(s.wrapKey(aes, k, P.Mechanism(P.CKM_AES_KEY_WRAP)))
        u = self.rest("POST", kid + "/unwrapkey", {"alg": "A256KW", "value": b64u(wrapped)})
        test.assertEqual(u.status_code, 200, u.text)
        test.assertEqual(b64u_dec(u.json()["value"]), secret)

    def fault(self, match, **rule):
        """Adds a fault rule on the data plane; match holds method/path globs."""
        body = dict(rule)
        body["match"] = dict(match, service="keyvault")
        r = self.emu.admin("POST", "/_admin/faults", body)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def requests(self, method, vault, path_re):
        """Statuses the emulator logged for requests `method` to paths matching `path_re`, in order."""
        host = re.escape(self.vault_url(vault)[len("https://"):])
        pat = re.compile(r" %s %s(%s) (\S+) client=" % (method, host, path_re))
        return [m.group(2) for m in pat.finditer(self.emu.log())]
