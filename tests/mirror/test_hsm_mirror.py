"""Mirroring from an HSM group (the forwarding backend in front of SoftHSM2) into the emulator's
Premium vault: SoftHSM2 has no CKM_RSA_AES_KEY_WRAP, so the BYOK blob is composed inside it
(RSA-OAEP of an ephemeral AES key + AES key wrap with padding). The vault's copy signs and the
HSM's public key verifies it. The native path (one C_WrapKey with CKM_RSA_AES_KEY_WRAP) with a
copy of our own module as the "HSM". A pkcs11-spy trace of the HSM side shows no key material. Refused before any Azure call: a key that is not extractable, and
any key on a group whose vault is a Standard one (a plain JWK would put the clear key outside the
HSM)."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SRC = os.environ["CDCP11_SRC"]
sys.path.insert(0, os.path.join(SRC, "tests", "emulator"))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

import p11helpers as h  # noqa: E402
from azhelpers import SECRET, SECRET_APP, SUBSCRIPTION, TENANT, Emulator  # noqa: E402
from mirrorhelpers import (CKA_CDC_MIRROR_STATE, FAILED, MIRRORED, Rig, vendor_mirror_key)  # noqa: E402

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "1234"
# (group, vault, vault type, slot id)
GROUPS = [("hsmprem", "demo-premium", "premium", 41), ("hsmstd", "demo-standard", "standard", 42),
          ("hsmnative", "demo-premium", "premium", 43), ("hsmspy", "demo-premium", "premium", 44)]
SPY = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so"


class _Tok:
    """Just what Rig's token-side helpers need of a token (its log)."""

    def __init__(self, log):
        self.log = log


class HsmMirror(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h.require_module(cls)
        if not os.path.exists(SOFTHSM):
            raise unittest.SkipTest("SoftHSM2 is not installed")
        cls.dir = tempfile.mkdtemp(prefix="cdcp11-hsm-mirror-")
        os.makedirs(os.path.join(cls.dir, "tokens"))
        cls.softhsm_conf = os.path.join(cls.dir, "softhsm2.conf")
        with open(cls.softhsm_conf, "w") as f:
            f.write("directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n" % cls.dir)
        os.environ["SOFTHSM2_CONF"] = cls.softhsm_conf
        for label in ("hsm-prem", "hsm-std", "hsm-spy"):
            subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "12345678",
                            "--pin", PIN], check=True, capture_output=True)
        cls.emu = Emulator.start()
        cls.emu.map_hosts()
        secret = os.path.join(cls.dir, "secret")
        with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(SECRET)
        # The native path: a copy of our own module (its soft token has CKM_RSA_AES_KEY_WRAP) as the
        # "HSM", its configuration passed as C_Initialize's pReserved (module_args).
        cls.inner = h.TempToken(groups=[("inner", {})])
        cls.inner.init("inner")
        cls.inner_module = os.path.join(cls.dir, "inner-hsm.so")
        shutil.copy(h.MODULE, cls.inner_module)
        modules = {"hsm-prem": (SOFTHSM, ""), "hsm-std": (SOFTHSM, ""),
                   "inner": (cls.inner_module, ',"module_args":"%s"' % cls.inner.conf),
                   "hsm-spy": (SPY, "")}
        # OpenSC's pkcs11-spy in front of SoftHSM2 records every call of one group to its HSM.
        cls.trace = os.path.join(cls.dir, "spy.log")
        os.environ.update(PKCS11SPY=SOFTHSM, PKCS11SPY_OUTPUT=cls.trace)
        groups = []
        for (name, vault, vtype, slot), label in zip(GROUPS, ("hsm-prem", "hsm-std", "inner", "hsm-spy")):
            module, args = modules[label]
            groups.append('{"name":"%s","slot_id":%d,"token":{"backend":"pkcs11","module":"%s","token_label":"%s"%s},'
                          '"azure":{"tenant_id":"%s","client_id":"%s","subscription_id":"%s",'
                          '"credential":{"type":"secret","secret_file":"%s"},'
                          '"tls":{"ca_file":"%s","connect_to":["::127.0.0.1:%d"]},"vault":{"name":"%s","type":"%s"}},'
                          '"mirror":{"trigger":"on_generate","mode":"sync"}}'
                          % (name, slot, module, label, args, TENANT, SECRET_APP, SUBSCRIPTION, secret, cls.emu.ca,
                             cls.emu.port, vault, vtype))
        cls.conf = os.path.join(cls.dir, "conf.json")
        with open(cls.conf, "w") as f:
            f.write('{"version":1,"groups":[%s]}' % ",".join(groups))
        cls.log = os.path.join(cls.dir, "module.log")
        os.environ.update(CDCP11_CONF=cls.conf, CDCP11_LOG_FILE=cls.log, CDCP11_LOG_LEVEL="info")
        cls.P = h.pykcs11()
        cls.lib = cls.P.PyKCS11Lib()
        cls.lib.load(h.MODULE)
        # Rig's vault-side helpers (REST views, signing in the vault).
        cls.rig = Rig(cls.emu, _Tok(cls.log), cls.lib, [(g, v, t, {}) for g, v, t, _ in GROUPS])

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()
        cls.inner.cleanup()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def session(self, slot):
        s = self.lib.openSession(slot, self.P.CKF_SERIAL_SESSION | self.P.CKF_RW_SESSION)
        self.addCleanup(s.closeSession)
        try:
            s.login(PIN)
        except self.P.PyKCS11Error as e:
            if e.value != self.P.CKR_USER_ALREADY_LOGGED_IN:
                raise
        return s

    def pair(self, s, label, key_type, *priv_extra):
        P = self.P
        pub_t = [(P.CKA_CLASS, P.CKO_PUBLIC_KEY), (P.CKA_TOKEN, True), (P.CKA_VERIFY, True), (P.CKA_LABEL, label),
                 (P.CKA_ID, label.encode())]
        priv_t = [(P.CKA_CLASS, P.CKO_PRIVATE_KEY), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, True), (P.CKA_SIGN, True),
                  (P.CKA_SENSITIVE, True), (P.CKA_LABEL, label), (P.CKA_ID, label.encode()), *priv_extra]
        if key_type == "rsa":
            pub_t += [(P.CKA_KEY_TYPE, P.CKK_RSA), (P.CKA_MODULUS_BITS, 2048),
                      (P.CKA_PUBLIC_EXPONENT, (1, 0, 1))]
            mech = P.CKM_RSA_PKCS_KEY_PAIR_GEN
        else:
            pub_t += [(P.CKA_KEY_TYPE, P.CKK_EC), (P.CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107"))]
            mech = P.CKM_EC_KEY_PAIR_GEN
        return s.generateKeyPair(pub_t, priv_t, P.Mechanism(mech))

    def test_rsa_and_ec_keys_made_in_the_hsm_are_mirrored_with_the_composed_wrap(self):
        s = self.session(41)
        for label, kt in (("hsm-rsa", "rsa"), ("hsm-ec", "ec")):
            _, priv = self.pair(s, label, kt)
            # Made extractable for the mirror, as the group mirrors on generate; still sensitive.
            ext, sens = s.getAttributeValue(priv, [self.P.CKA_EXTRACTABLE, self.P.CKA_SENSITIVE])
            self.assertEqual((bool(ext), bool(sens)), (True, True))
            st, kid, err = self.rig.state(s, priv)
            self.assertEqual((st, err), (MIRRORED, ""), label)
            self.assertIn("demo-premium", kid)
            bundle = self.rig.rest("GET", kid).json()
            self.assertEqual(bundle["key"]["kty"], "RSA-HSM" if kt == "rsa" else "EC-HSM")
            self.rig.sign_in_vault_and_verify(kid, self.rig.token_public_key(s, label))
            self.assertEqual(self.rig.keks("demo-premium", self.rig.uid(s, priv)), [])
        with open(self.log) as f:
            self.assertIn("composed RSA-OAEP + AES key wrap with padding", f.read())

    def test_an_hsm_with_rsa_aes_key_wrap_makes_the_blob_in_one_call(self):
        s = self.session(43)
        _, priv = self.pair(s, "native-rsa", "rsa")
        st, kid, err = self.rig.state(s, priv)
        self.assertEqual((st, err), (MIRRORED, ""))
        self.rig.sign_in_vault_and_verify(kid, self.rig.token_public_key(s, "native-rsa"))
        with open(self.log) as f:
            self.assertIn("wrapped in the HSM for Azure (CKM_RSA_AES_KEY_WRAP)", f.read())

    def test_a_spy_on_the_hsm_sees_no_key_material_leave_it_during_a_mirror(self):
        s = self.session(44)
        _, priv = self.pair(s, "spied", "rsa")
        st, kid, err = self.rig.state(s, priv)
        self.assertEqual((st, err), (MIRRORED, ""))
        self.assertTrue(s.getAttributeValue(priv, [self.P.CKA_SENSITIVE])[0])
        with open(self.trace) as f:
            trace = f.read()
        self.assertIn("C_WrapKey", trace)
        for secret in ("CKA_PRIVATE_EXPONENT", "CKA_PRIME_1", "CKA_PRIME_2", "CKA_EXPONENT_1", "CKA_EXPONENT_2",
                       "CKA_COEFFICIENT"):
            self.assertFalse(secret in trace, secret + " was asked of the HSM")
        # CKA_VALUE is asked of public key objects only, which have none: never a value returned.
        for line in trace.splitlines():
            if line.strip().startswith("CKA_VALUE "):
                self.assertIn(line.split("/")[-1].strip(), ("0", "-1"), line)

    def test_a_key_the_hsm_will_not_wrap_is_refused_before_any_azure_call(self):
        s = self.session(41)
        mark = len(self.emu.log().splitlines())
        with self.assertRaises(self.P.PyKCS11Error) as e:
            self.pair(s, "hsm-unextractable", "rsa", (self.P.CKA_EXTRACTABLE, False))
        self.assertEqual(e.exception.value, self.P.CKR_TEMPLATE_INCONSISTENT)
        self.assertEqual(s.findObjects([(self.P.CKA_LABEL, "hsm-unextractable")]), [])
        with open(self.log) as f:
            self.assertIn("CKA_EXTRACTABLE is false", f.read())
        self.assertEqual([l for l in self.emu.log().splitlines()[mark:] if "demo-premium" in l], [])

    def test_a_standard_vault_is_refused_naming_premium_and_managed_hsm(self):
        s = self.session(42)
        mark = len(self.emu.log().splitlines())
        with self.assertRaises(self.P.PyKCS11Error) as e:
            self.pair(s, "hsm-std", "ec")
        self.assertEqual(e.exception.value, self.P.CKR_TEMPLATE_INCONSISTENT)
        with open(self.log) as f:
            self.assertIn("Premium vault or a Managed HSM", f.read())
        self.assertEqual([l for l in self.emu.log().splitlines()[mark:] if "demo-standard" in l], [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
