"""A group whose token is a SoftHSM2 token reached through the forwarding backend ("pkcs11"),
driven through libcdcp11.so with PyKCS11, pkcs11-tool and openssl: login and a wrong PIN, objects
already in the HSM, keys generated in the HSM (seen by SoftHSM2's own module), RSA signatures
openssl verifies, an AES-GCM round trip, two processes, and a group whose module is missing."""
import glob
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import PyKCS11
from PyKCS11.LowLevel import CKA_CLASS, CKA_ENCRYPT, CKA_DECRYPT, CKA_KEY_TYPE, CKA_LABEL, CKA_TOKEN, \
    CKA_VALUE_LEN, CKK_AES, CKO_SECRET_KEY, CKA_UNIQUE_ID

import p11helpers as h

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
SO_PIN = "12345678"
PIN = "1234"


class HsmGroup:
    """A SoftHSM2 token (its own SOFTHSM2_CONF) and a config with two groups: "hsm" forwarding to
    it, and "broken" naming a module that does not exist."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cdcp11-hsm-")
        os.makedirs(os.path.join(self.dir, "tokens"))
        self.softhsm_conf = os.path.join(self.dir, "softhsm2.conf")
        with open(self.softhsm_conf, "w") as f:
            f.write("directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n" % self.dir)
        self.conf = os.path.join(self.dir, "conf.json")
        self.log = os.path.join(self.dir, "module.log")
        with open(self.conf, "w") as f:
            f.write('{"version":1,"groups":['
                    '{"name":"hsm","slot_id":7,"token":{"backend":"pkcs11","module":"%s","token_label":"hsm1"}},'
                    '{"name":"broken","slot_id":8,"token":{"backend":"pkcs11","module":"/nonexistent/libhsm.so",'
                    '"token_label":"x"}}]}' % SOFTHSM)
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "hsm1", "--so-pin", SO_PIN,
                        "--pin", PIN], env=self.env(), check=True, capture_output=True)

    def env(self):
        e = dict(os.environ)
        e.update(SOFTHSM2_CONF=self.softhsm_conf, CDCP11_CONF=self.conf, CDCP11_LOG_FILE=self.log)
        return e

    def tool(self, *args, module=None, login=True, check=True):
        cmd = ["pkcs11-tool", "--module", module or h.MODULE]
        if module is None:
            cmd += ["--slot", "7"]
        if login:
            cmd += ["--login", "--pin", PIN]
        r = subprocess.run(cmd + list(args), env=self.env(), capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError("pkcs11-tool %s failed: %s %s" % (args, r.stdout, r.stderr))
        return r

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class HsmBackendTest(unittest.TestCase):
    def setUp(self):
        h.require_module(self)
        if not os.path.exists(SOFTHSM) or not shutil.which("softhsm2-util"):
            raise unittest.SkipTest("SoftHSM2 is not installed")
        self.g = HsmGroup()
        for k, v in (("SOFTHSM2_CONF", self.g.softhsm_conf), ("CDCP11_CONF", self.g.conf),
                     ("CDCP11_LOG_FILE", self.g.log)):
            os.environ[k] = v
        self.lib = PyKCS11.PyKCS11Lib()
        self.lib.load(h.MODULE)

    def tearDown(self):
        del self.lib
        self.g.cleanup()

    def session(self, login=True):
        s = self.lib.openSession(7, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
        if login:
            s.login(PIN)
        return s

    def test_token_info_says_forwarded_and_pins_are_the_hsms(self):
        info = self.lib.getTokenInfo(7)
        self.assertEqual(info.model.strip(), "PKCS#11 forward")
        self.assertIn("via cdcp11", info.manufacturerID)
        s = self.session(login=False)
        with self.assertRaises(PyKCS11.PyKCS11Error) as e:
            s.login("0000")
        self.assertEqual(e.exception.value, PyKCS11.CKR_PIN_INCORRECT)
        s.login(PIN)
        s.logout()
        s.closeSession()
        # C_InitToken is refused with a reason in the log, and the HSM token is untouched.
        with self.assertRaises(PyKCS11.PyKCS11Error) as e:
            self.lib.initToken(7, SO_PIN, "new".ljust(32))  # 32 blank-padded bytes; PyKCS11 does not pad
        self.assertEqual(e.exception.value, PyKCS11.CKR_FUNCTION_NOT_SUPPORTED)
        with open(self.g.log) as f:
            self.assertIn("C_InitToken refused", f.read())

    def test_the_mechanism_list_is_the_hsms_within_what_the_core_serves(self):
        mechs = self.lib.getMechanismList(7)
        self.assertIn("CKM_ECDSA", mechs)
        self.assertIn("CKM_AES_GCM", mechs)
        # SoftHSM2 2.6.1 has neither: the soft token lists both, the HSM slot does not.
        for absent in (0x210B, 0x1054):  # CKM_AES_KEY_WRAP_KWP, CKM_RSA_AES_KEY_WRAP
            self.assertNotIn(absent, [PyKCS11.CKM.get(m, m) for m in mechs])
            rv = self.lib.lib.C_GetMechanismInfo(7, absent, PyKCS11.LowLevel.CK_MECHANISM_INFO())
            self.assertEqual(rv, PyKCS11.CKR_MECHANISM_INVALID)
        self.assertEqual(self.lib.getMechanismInfo(7, "CKM_RSA_PKCS_KEY_PAIR_GEN").ulMaxKeySize, 16384)

    def test_objects_of_the_hsm_appear_and_keys_made_here_are_in_the_hsm(self):
        self.g.tool("--keypairgen", "--key-type", "rsa:2048", "--id", "01", "--label", "pre", module=SOFTHSM)
        out = self.g.tool("-O").stdout
        self.assertIn("pre", out)
        self.assertRegex(out, r"Unique ID:  [0-9a-f]{32}")  # SoftHSM2 has none: the backend's own id
        self.g.tool("--keypairgen", "--key-type", "EC:prime256v1", "--id", "02", "--label", "made-here")
        direct = self.g.tool("-O", module=SOFTHSM).stdout
        self.assertIn("made-here", direct)
        # The same identity in another process (a new pkcs11-tool): derived from what the HSM holds.
        ids = [l for l in out.splitlines() if "Unique ID" in l]
        again = [l for l in self.g.tool("-O").stdout.splitlines() if "Unique ID" in l]
        self.assertTrue(set(ids) <= set(again))

    def test_a_key_no_host_made_answers_the_vendor_defaults_a_soft_token_key_does(self):
        self.g.tool("--keygen", "--key-type", "AES:32", "--label", "hsm-own", module=SOFTHSM)
        s = self.session()
        key = s.findObjects([(CKA_LABEL, "hsm-own")])
        self.assertEqual(len(key), 1)
        cdc = PyKCS11.CKA_VENDOR_DEFINED | 0x0CDC0000
        raw = [bytes(v) for v in s.getAttributeValue(key[0], [cdc + 3, cdc + 6], allAsBinary=True)]
        # CKA_CDC_MIRROR_STATE none, CKA_CDC_ORIGIN local (both 0), as a soft token's key says.
        self.assertEqual([struct.unpack("<Q", v)[0] for v in raw], [0, 0])
        s.logout()

    def test_rsa_signature_verified_by_openssl(self):
        self.g.tool("--keypairgen", "--key-type", "rsa:2048", "--id", "03", "--label", "signer")
        d = self.g.dir
        with open(os.path.join(d, "msg"), "wb") as f:
            f.write(b"forwarded to the HSM")
        self.g.tool("--sign", "--mechanism", "SHA256-RSA-PKCS", "--id", "03", "-i", d + "/msg", "-o", d + "/sig")
        self.g.tool("--read-object", "--type", "pubkey", "--id", "03", "-o", d + "/pub.der", login=False)
        r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", d + "/pub.der", "-keyform", "DER",
                            "-signature", d + "/sig", d + "/msg"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Verified OK", r.stdout)

    def test_aes_gcm_round_trip_in_the_hsm(self):
        s = self.session()
        key = s.generateKey([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_VALUE_LEN, 32),
                             (CKA_TOKEN, True), (CKA_ENCRYPT, True), (CKA_DECRYPT, True), (CKA_LABEL, "gcm")],
                            mecha=PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_GEN))
        iv = bytes(range(12))
        m = PyKCS11.AES_GCM_Mechanism(iv, b"aad", 128)
        ct = bytes(s.encrypt(key, b"sixteen byte msg", m))
        self.assertEqual(len(ct), 32)
        self.assertEqual(bytes(s.decrypt(key, ct, PyKCS11.AES_GCM_Mechanism(iv, b"aad", 128))), b"sixteen byte msg")
        # The key is the HSM's: SoftHSM2's own module sees it, sensitive.
        direct = self.g.tool("-O", module=SOFTHSM).stdout
        self.assertIn("gcm", direct)
        s.logout()

    def test_two_processes_share_the_hsm_token(self):
        s = self.session()
        s.generateKey([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_VALUE_LEN, 16),
                       (CKA_TOKEN, True), (CKA_ENCRYPT, True), (CKA_LABEL, "shared")],
                      mecha=PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_GEN))
        uid = s.getAttributeValue(s.findObjects([(CKA_LABEL, "shared")])[0], [CKA_UNIQUE_ID])[0]
        code = ("import PyKCS11, sys\nfrom PyKCS11.LowLevel import *\nl=PyKCS11.PyKCS11Lib();l.load(sys.argv[1])\n"
                "s=l.openSession(7, PyKCS11.CKF_SERIAL_SESSION|PyKCS11.CKF_RW_SESSION);s.login(sys.argv[2])\n"
                "o=s.findObjects([(CKA_LABEL,'shared')]);print(len(o), bytes(s.getAttributeValue(o[0],[CKA_UNIQUE_ID])[0]).decode())\n"
                "s.generateKey([(CKA_CLASS,CKO_SECRET_KEY),(CKA_KEY_TYPE,CKK_AES),(CKA_VALUE_LEN,16),(CKA_TOKEN,True),"
                "(CKA_LABEL,'from-b')],mecha=PyKCS11.Mechanism(CKM_AES_KEY_GEN))\n")
        r = subprocess.run([sys.executable, "-c", code, h.MODULE, PIN], env=self.g.env(), capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["1", bytes(uid).decode()])
        self.assertEqual(len(s.findObjects([(CKA_LABEL, "from-b")])), 1)
        s.logout()

    def test_a_second_host_with_its_own_config_uses_the_same_hsm_keys(self):
        # Another config directory (its own metadata store) on the same HSM token stands for a host.
        self.g.tool("--keypairgen", "--key-type", "rsa:2048", "--id", "05", "--label", "host-a")
        other = os.path.join(self.g.dir, "host-b")
        os.makedirs(other)
        with open(self.g.conf) as f, open(os.path.join(other, "conf.json"), "w") as g:
            g.write(f.read())
        env = self.g.env()
        env["CDCP11_CONF"] = os.path.join(other, "conf.json")
        d = self.g.dir
        with open(d + "/msg5", "wb") as f:
            f.write(b"signed on host b")
        r = subprocess.run(["pkcs11-tool", "--module", h.MODULE, "--slot", "7", "--login", "--pin", PIN, "--sign",
                            "--mechanism", "SHA256-RSA-PKCS", "--id", "05", "-i", d + "/msg5", "-o", d + "/sig5"],
                           env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.g.tool("--read-object", "--type", "pubkey", "--id", "05", "-o", d + "/pub5.der", login=False)
        r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", d + "/pub5.der", "-keyform", "DER",
                            "-signature", d + "/sig5", d + "/msg5"], capture_output=True, text=True)
        self.assertIn("Verified OK", r.stdout)
        # Each host's ids of the HSM's objects come from what the HSM holds (no record needed in
        # either metadata store), so both hosts name the keys alike.
        r = subprocess.run(["pkcs11-tool", "--module", h.MODULE, "--slot", "7", "--login", "--pin", PIN, "-O"],
                           env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        ids_b = sorted(l for l in r.stdout.splitlines() if "Unique ID" in l)
        ids_a = sorted(l for l in self.g.tool("-O").stdout.splitlines() if "Unique ID" in l)
        self.assertEqual(len(ids_a), 2)
        self.assertEqual(ids_a, ids_b)

    def test_a_key_deleted_by_the_hsms_own_tools_is_an_invalid_key_handle(self):
        s = self.session()
        key = s.generateKey([(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES), (CKA_VALUE_LEN, 16),
                             (CKA_TOKEN, True), (CKA_ENCRYPT, True), (CKA_LABEL, "doomed")],
                            mecha=PyKCS11.Mechanism(PyKCS11.CKM_AES_KEY_GEN))
        self.g.tool("--delete-object", "--type", "secrkey", "--label", "doomed", module=SOFTHSM)
        with self.assertRaises(PyKCS11.PyKCS11Error) as e:
            s.encrypt(key, b"0123456789abcdef", PyKCS11.Mechanism(PyKCS11.CKM_AES_ECB))
        self.assertEqual(e.exception.value, PyKCS11.CKR_KEY_HANDLE_INVALID)
        self.assertEqual(s.findObjects([(CKA_LABEL, "doomed")]), [])
        s.logout()

    def test_a_failed_token_info_of_the_hsm_does_not_make_the_token_look_uninitialised(self):
        # SoftHSM2 fails C_GetTokenInfo with CKR_GENERAL_ERROR while another process rewrites its
        # token file (test_multiprocess on the HSM backend hit it); an emptied file makes it fail
        # for good in this process. The slot keeps the token info it last read, and says so.
        info = self.lib.getTokenInfo(7)
        self.assertTrue(info.flags & PyKCS11.CKF_TOKEN_INITIALIZED)
        token_object, = glob.glob(os.path.join(self.g.dir, "tokens", "*", "token.object"))
        with open(token_object, "r+b") as f:
            f.truncate(0)
        again = self.lib.getTokenInfo(7)
        self.assertEqual((again.label, again.flags), (info.label, info.flags))
        with open(self.g.log) as f:
            self.assertIn("C_GetTokenInfo of the HSM failed", f.read())

    def test_missing_module_still_lists_the_group_without_a_token(self):
        self.assertIn(8, self.lib.getSlotList(tokenPresent=False))
        self.assertNotIn(8, self.lib.getSlotList(tokenPresent=True))
        with self.assertRaises(PyKCS11.PyKCS11Error) as e:
            self.lib.getTokenInfo(8)
        self.assertEqual(e.exception.value, PyKCS11.CKR_TOKEN_NOT_PRESENT)
        with open(self.g.log) as f:
            log = f.read()
        self.assertIn("group 'broken': token unavailable", log)
        self.assertIn("/nonexistent/libhsm.so", log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
