"""Mirroring from an HSM group (the forwarding backend in front of SoftHSM2) into the emulator's
Premium vault and Managed HSM: SoftHSM2 has no CKM_RSA_AES_KEY_WRAP, so the BYOK blob is composed
inside it (RSA-OAEP of an ephemeral AES key + AES key wrap with padding). The native path (one
C_WrapKey with CKM_RSA_AES_KEY_WRAP) with a copy of our own module as the "HSM".

The matrix: RSA 2048/3072/4096 and EC P-256/384/521 into the Premium vault and the Managed HSM,
AES-256 into the Managed HSM, each made in SoftHSM2 by pkcs11-tool through our slot (the two
targets' keys at once: RSA-4096 generation dominates); the vault signs (or wraps and unwraps, for
AES) and the HSM's public key verifies. The native path for one RSA, one EC and the AES key.

A pkcs11-spy trace of the HSM side during a mirror shows the composed wrap as SoftHSM2 makes it
(its CKM_AES_KEY_WRAP_PAD is the RFC 5649 wrap: hsm/README.md), no key material returned, the KEK
and the ephemeral key destroyed, and the key's CKA_SENSITIVE / CKA_NEVER_EXTRACTABLE as they were.
Refused before any Azure call: a key that is not extractable, one that only a CKA_TRUSTED key may
wrap, an HSM without a usable wrap mechanism (SoftHSM2 behind mechanism_filter.so, which hides its
CKM_AES_KEY_WRAP_PAD), and any key on a group whose vault is a Standard one (a plain JWK would put
the clear key outside the HSM)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

SRC = os.environ["CDCP11_SRC"]
sys.path.insert(0, os.path.join(SRC, "tests", "emulator"))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

import p11helpers as h  # noqa: E402
from azhelpers import Emulator  # noqa: E402
from mirrorhelpers import FAILED, MIRRORED, LogOnly, Rig, azure_section, vendor_mirror_key, write_secret  # noqa: E402

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "1234"
SPY = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so"
FILTER = os.environ.get("CDCP11_TEST_MECHANISM_FILTER", "")
CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP_KWP, CKM_RSA_AES_KEY_WRAP = 0x210A, 0x210B, 0x1054
# (group, vault, vault type, slot id, the "HSM": SoftHSM2 / our own module / pkcs11-spy / SoftHSM2 without
# its wrap mechanisms, its token label)
GROUPS = [("hsmprem", "demo-premium", "premium", 41, "softhsm", "hsm-prem"),
          ("hsmstd", "demo-standard", "standard", 42, "softhsm", "hsm-std"),
          ("hsmnative", "demo-premium", "premium", 43, "inner", "inner"),
          ("hsmspy", "demo-premium", "premium", 44, "spy", "hsm-spy"),
          ("hsmmhsm", "demo-mhsm", "managed_hsm", 45, "softhsm", "hsm-mhsm"),
          ("hsmnativemhsm", "demo-mhsm", "managed_hsm", 46, "inner", "inner-mhsm"),
          ("hsmreq", "demo-premium", "premium", 47, "softhsm", "hsm-req"),
          ("hsmnowrap", "demo-premium", "premium", 48, "filter", "hsm-nowrap")]
SLOT = {g[0]: g[3] for g in GROUPS}
# Groups that mirror only when asked (C_CDC_MirrorKey), so a key is made as the test says first.
ON_REQUEST = ("hsmspy", "hsmreq", "hsmnowrap")
# pkcs11-tool 0.23 sends CKA_EXTRACTABLE false for --keygen unless --extractable is given, and a key
# the application makes non-extractable cannot be wrapped for Azure: the group refuses it.
# (pkcs11-tool --key-type, Key Vault kty, RSA bits, curve)
ASYMMETRIC = [("rsa:2048", "RSA", 2048, None), ("rsa:3072", "RSA", 3072, None), ("rsa:4096", "RSA", 4096, None),
              ("EC:prime256v1", "EC", None, "P-256"), ("EC:secp384r1", "EC", None, "P-384"),
              ("EC:secp521r1", "EC", None, "P-521")]


class HsmMirror(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h.require_module(cls)
        if not os.path.exists(SOFTHSM):
            raise unittest.SkipTest("SoftHSM2 is not installed")
        if not os.path.exists(FILTER):
            raise AssertionError("CDCP11_TEST_MECHANISM_FILTER does not name the built mechanism_filter module")
        cls.dir = tempfile.mkdtemp(prefix="cdcp11-hsm-mirror-")
        cls.softhsm_conf = h.softhsm_tokens(cls.dir, [g[5] for g in GROUPS if g[4] != "inner"])
        cls.emu = Emulator.start()
        cls.emu.map_hosts()
        secret = write_secret(os.path.join(cls.dir, "secret"))
        # The native path: a copy of our own module (its soft token has CKM_RSA_AES_KEY_WRAP) as the
        # "HSM", its configuration passed as C_Initialize's pReserved (module_args).
        inner = [g[5] for g in GROUPS if g[4] == "inner"]
        cls.inner = h.TempToken(groups=[(label, {}) for label in inner])
        for label in inner:
            cls.inner.init(label)
        cls.inner_module = os.path.join(cls.dir, "inner-hsm.so")
        shutil.copy(h.MODULE, cls.inner_module)
        hide = ",".join(hex(m) for m in (CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP_KWP, CKM_RSA_AES_KEY_WRAP))
        modules = {"softhsm": (SOFTHSM, ""), "inner": (cls.inner_module, cls.inner.conf),
                   "spy": (SPY, ""), "filter": (FILTER, "hide=" + hide)}
        # OpenSC's pkcs11-spy in front of SoftHSM2 records every call of one group to its HSM.
        cls.trace = os.path.join(cls.dir, "spy.log")
        os.environ.update(PKCS11SPY=SOFTHSM, PKCS11SPY_OUTPUT=cls.trace)
        groups = []
        for name, vault, vtype, slot, hsm, label in GROUPS:
            module, args = modules[hsm]
            token = {"backend": "pkcs11", "module": module, "token_label": label}
            if args:
                token["module_args"] = args
            groups.append({"name": name, "slot_id": slot, "token": token,
                           "azure": azure_section(cls.emu, secret, vault, vtype),
                           "mirror": {"trigger": "on_request" if name in ON_REQUEST else "on_generate",
                                      "mode": "sync"}})
        cls.conf = os.path.join(cls.dir, "conf.json")
        with open(cls.conf, "w") as f:
            json.dump({"version": 1, "groups": groups}, f)
        cls.log = os.path.join(cls.dir, "module.log")
        os.environ.update(CDCP11_CONF=cls.conf, CDCP11_LOG_FILE=cls.log, CDCP11_LOG_LEVEL="info")
        cls.P = h.pykcs11()
        cls.lib = cls.P.PyKCS11Lib()
        cls.lib.load(h.MODULE)
        # Rig's vault-side helpers (REST views, signing in the vault).
        cls.rig = Rig(cls.emu, LogOnly(cls.log), cls.lib, [(g[0], g[1], g[2], {}) for g in GROUPS])

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

    @staticmethod
    def softhsm_access(label, token):
        """The private key's access flags as SoftHSM2 itself reports them (pkcs11-tool, not our slot)."""
        out = subprocess.run(["pkcs11-tool", "--module", SOFTHSM, "--token-label", token, "--login", "--pin", PIN,
                              "--list-objects", "--type", "privkey"],
                             capture_output=True, text=True, timeout=h.TOOL_TIMEOUT, check=True).stdout
        blocks = re.split(r"\n(?=\S)", out)
        [block] = [b for b in blocks if b.startswith("Private Key Object")
                   and re.search(r"^\s*label:\s*%s$" % re.escape(label), b, re.M)]
        [access] = [l for l in block.splitlines() if l.strip().startswith("Access:")]
        return {f.strip() for f in access.split(":", 1)[1].split(",")}

    def spy_calls(self, since):
        """The spy trace's calls from byte offset `since`: [(name, body)]."""
        with open(self.trace) as f:
            f.seek(since)
            calls = []
            for line in f.read().splitlines():
                m = re.match(r"^\d+: (C_\w+)", line)
                if m:
                    calls.append((m.group(1), ""))
                elif calls:
                    calls[-1] = (calls[-1][0], calls[-1][1] + line + "\n")
        return calls

    def test_a_spy_on_the_hsm_sees_no_key_material_leave_it_during_a_mirror(self):
        s = self.session(44)
        mirror_key = vendor_mirror_key()
        for label, kt in (("spied-rsa", "rsa"), ("spied-ec", "ec")):
            _, priv = self.pair(s, label, kt, (self.P.CKA_EXTRACTABLE, True))
            before = self.softhsm_access(label, "hsm-spy")
            self.assertIn("sensitive", before)
            mark = os.path.getsize(self.trace)
            self.assertEqual(mirror_key(s, priv), 0, label)
            st, kid, err = self.rig.state(s, priv)
            self.assertEqual((st, err), (MIRRORED, ""), label)
            # The key is as it was in the HSM: still sensitive, never-extractable unchanged.
            self.assertEqual(self.softhsm_access(label, "hsm-spy"), before, label)
            calls = self.spy_calls(mark)
            names = [c[0] for c in calls]
            # Composed in SoftHSM2: the key under the ephemeral AES key with its RFC 5649 wrap
            # (CKM_AES_KEY_WRAP_PAD, 0x210A, which the spy prints as a number), the AES key under the
            # KEK with RSA-OAEP; each wrap asked for its length first.
            wraps = [re.search(r"pMechanism->type = (\S+)", body).group(1) for name, body in calls if name == "C_WrapKey"]
            self.assertEqual(sorted(wraps), ["0x0000210A"] * 2 + ["CKM_RSA_PKCS_OAEP"] * 2, wraps)
            # The KEK (imported) and the ephemeral key (generated) are session objects, destroyed.
            self.assertEqual(names.count("C_CreateObject"), 1, names)
            self.assertEqual(names.count("C_GenerateKey"), 1, names)
            self.assertEqual(names.count("C_DestroyObject"), 2, names)
            for name, body in calls:
                for secret in ("CKA_PRIVATE_EXPONENT", "CKA_PRIME_1", "CKA_PRIME_2", "CKA_EXPONENT_1",
                               "CKA_EXPONENT_2", "CKA_COEFFICIENT"):
                    self.assertNotIn(secret, body, "%s asked of the HSM in %s" % (secret, name))
                # CKA_VALUE may be asked of objects that have none public: never a value returned.
                for line in body.splitlines():
                    if line.strip().startswith("CKA_VALUE "):
                        self.assertIn(line.split("/")[-1].strip(), ("0", "-1"), line)

    def test_a_key_that_is_not_extractable_is_refused_before_any_azure_call(self):
        s = self.session(47)
        mirror_key = vendor_mirror_key()
        mark = len(self.emu.log().splitlines())
        _, priv = self.pair(s, "req-unextractable", "rsa", (self.P.CKA_EXTRACTABLE, False))
        self.assertEqual(mirror_key(s, priv), self.P.CKR_KEY_UNEXTRACTABLE)
        st, kid, err = self.rig.state(s, priv)
        self.assertEqual((st, kid), (FAILED, ""))
        self.assertIn("the HSM will not wrap it for Azure: CKA_EXTRACTABLE is false", err)
        self.assertIn("cannot be changed after creation", err)
        self.assertEqual([l for l in self.emu.log().splitlines()[mark:] if "demo-premium" in l], [])

    def test_a_key_only_a_trusted_key_may_wrap_is_refused_before_any_azure_call(self):
        s = self.session(47)
        mirror_key = vendor_mirror_key()
        mark = len(self.emu.log().splitlines())
        _, priv = self.pair(s, "req-wwt", "ec", (self.P.CKA_EXTRACTABLE, True), (self.P.CKA_WRAP_WITH_TRUSTED, True))
        self.assertEqual(mirror_key(s, priv), self.P.CKR_KEY_NOT_WRAPPABLE)
        st, kid, err = self.rig.state(s, priv)
        self.assertEqual((st, kid), (FAILED, ""))
        self.assertIn("CKA_WRAP_WITH_TRUSTED is true: only a CKA_TRUSTED wrapping key (set by the SO)", err)
        self.assertEqual([l for l in self.emu.log().splitlines()[mark:] if "demo-premium" in l], [])

    def test_an_hsm_without_a_usable_wrap_mechanism_is_refused_before_any_azure_call(self):
        s = self.session(48)
        mirror_key = vendor_mirror_key()
        mark = len(self.emu.log().splitlines())
        _, priv = self.pair(s, "nowrap", "rsa", (self.P.CKA_EXTRACTABLE, True))
        self.assertEqual(mirror_key(s, priv), self.P.CKR_MECHANISM_INVALID)
        st, kid, err = self.rig.state(s, priv)
        self.assertEqual((st, kid), (FAILED, ""))
        self.assertIn("the HSM has no mechanism to make the BYOK blob: the HSM offers neither CKM_RSA_AES_KEY_WRAP "
                      "nor an RFC 5649 AES key wrap (CKM_AES_KEY_WRAP_KWP) to compose it from", err)
        self.assertEqual([l for l in self.emu.log().splitlines()[mark:] if "demo-premium" in l], [])

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

    # ------------------------------------------------------------ the matrix (one rig: one emulator, one set of tokens)

    def keygen(self, groups, *args, label_for):
        """pkcs11-tool ARGS on the groups' slots at once: {group: (exit code, output)}."""
        procs = {g: subprocess.Popen(["pkcs11-tool", "--module", h.MODULE, "--slot", str(SLOT[g]), "--login",
                                      "--pin", PIN, *args, "--label", label_for(g)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for g in groups}
        out = {g: p.communicate(timeout=h.TOOL_TIMEOUT)[0].decode(errors="replace") for g, p in procs.items()}
        return {g: (procs[g].returncode, out[g]) for g in procs}

    def assert_mirrored_and_signs(self, group, label, kty, bits, crv):
        rig, P = self.rig, self.P
        vault = GROUPS[[g[0] for g in GROUPS].index(group)][1]
        s = self.session(SLOT[group])
        priv = rig.find(s, P.CKO_PRIVATE_KEY, label)
        rig.assert_vault_copy(self, s, priv, label, vault, kty + "-HSM", bits, crv)
        self.assertEqual(rig.keks(vault, rig.uid(s, priv)), [])
        # Still the HSM's: sensitive, and the wrap did not read it out.
        self.assertTrue(s.getAttributeValue(priv, [P.CKA_SENSITIVE])[0])

    def assert_aes_round_trip(self, group, label):
        """The Managed HSM's copy wraps a key (A256KW) the HSM unwraps with the original, and back."""
        rig, P = self.rig, self.P
        s = self.session(SLOT[group])
        aes = rig.find(s, P.CKO_SECRET_KEY, label)
        state, kid, error = rig.state(s, aes)
        self.assertEqual((state, error), (MIRRORED, ""))
        self.assertTrue(kid.startswith("%s/keys/%s/" % (rig.vault_url("demo-mhsm"), label)), kid)
        self.assertEqual(rig.rest("GET", kid).json()["key"]["kty"], "oct-HSM")
        rig.assert_aes_round_trip(self, s, aes, kid)

    def test_every_asymmetric_type_from_softhsm_into_premium_and_managed_hsm_composed(self):
        targets = ("hsmprem", "hsmmhsm")
        for key_type, kty, bits, crv in ASYMMETRIC:
            label_for = lambda g: "mx-%s-%s" % (g, key_type.replace(":", "-").lower())  # noqa: E731
            results = self.keygen(targets, "--keypairgen", "--key-type", key_type, label_for=label_for)
            for g in targets:
                with self.subTest(group=g, key=key_type):
                    rc, out = results[g]
                    self.assertEqual(rc, 0, out)
                    self.assert_mirrored_and_signs(g, label_for(g), kty, bits, crv)

    def test_aes_256_from_softhsm_into_the_managed_hsm_composed(self):
        rc, out = self.keygen(["hsmmhsm"], "--keygen", "--key-type", "AES:32", "--usage-wrap", "--extractable",
                              label_for=lambda g: "mx-aes")["hsmmhsm"]
        self.assertEqual(rc, 0, out)
        self.assert_aes_round_trip("hsmmhsm", "mx-aes")

    def native_log_since(self, before):
        with open(self.log) as f:
            f.seek(before)
            return f.read()

    def test_native_rsa_aes_key_wrap_rsa_and_ec_into_premium(self):
        before = os.path.getsize(self.log)
        for key_type, kty, bits, crv in (ASYMMETRIC[0], ASYMMETRIC[4]):
            label = "nx-" + key_type.replace(":", "-").lower()
            rc, out = self.keygen(["hsmnative"], "--keypairgen", "--key-type", key_type,
                                  label_for=lambda g: label)["hsmnative"]  # noqa: B023
            self.assertEqual(rc, 0, out)
            with self.subTest(key=key_type):
                self.assert_mirrored_and_signs("hsmnative", label, kty, bits, crv)
        log = self.native_log_since(before)
        self.assertEqual(log.count("wrapped in the HSM for Azure (CKM_RSA_AES_KEY_WRAP)"), 2, log)
        self.assertNotIn("composed RSA-OAEP", log)

    def test_native_rsa_aes_key_wrap_aes_into_managed_hsm(self):
        before = os.path.getsize(self.log)
        rc, out = self.keygen(["hsmnativemhsm"], "--keygen", "--key-type", "AES:32", "--usage-wrap", "--extractable",
                              label_for=lambda g: "nx-aes")["hsmnativemhsm"]
        self.assertEqual(rc, 0, out)
        self.assert_aes_round_trip("hsmnativemhsm", "nx-aes")
        self.assertIn("wrapped in the HSM for Azure (CKM_RSA_AES_KEY_WRAP)", self.native_log_since(before))


if __name__ == "__main__":
    unittest.main(verbosity=2)
