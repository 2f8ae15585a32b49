"""Java 17 keytool (SunPKCS11) on a mirroring slot: an RSA and an EC key pair made with
`keytool -genkeypair` become token objects (the RSA private key by C_CreateObject, the EC one by
whatever path SunPKCS11 takes: generate + copy or create) and are mirrored into the bundled Key
Vault emulator by BYOK. cdcctl shows both keys mirrored, the vault's copy signs a digest that
verifies with the public key of keytool's certificate, and `keytool -list` shows both entries.

Java absent (no java/keytool on PATH) skips the tests; a JDK without SunPKCS11 is a failure."""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import unittest

SRC = os.environ["CDCP11_SRC"]
BUILD = os.environ["CDCP11_BUILD"]
sys.path.insert(0, os.path.join(SRC, "tests", "emulator"))
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))

import p11helpers as h  # noqa: E402
from azhelpers import Emulator  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils  # noqa: E402

TENANT = "7e57a000-0000-4000-8000-000000000001"
CLIENT = "c1e47000-0000-4000-8000-000000000001"
SUBSCRIPTION = "5ab5c000-0000-4000-8000-000000000001"
SECRET = "demo-secret-not-real"
GROUP, VAULT, SLOT_ID = "javakt", "demo-premium", 41
JAVA_TIMEOUT = 180

JAVA = shutil.which("java")
KEYTOOL = shutil.which("keytool")


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@unittest.skipIf(not JAVA or not KEYTOOL, "Java is not installed (no java/keytool on PATH; "
                 "Debian: apt-get install openjdk-17-jdk-headless)")
class KeytoolMirroring(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator.start()
        cls.emu.map_hosts()
        cls.tok = h.TempToken(groups=[(GROUP, {"slot_id": SLOT_ID})], log_level="info")
        try:
            secret = cls.tok.path("secret")
            with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(SECRET)
            g = cls.tok.groups[0]
            g["azure"] = {"tenant_id": TENANT, "client_id": CLIENT, "subscription_id": SUBSCRIPTION,
                          "credential": {"type": "secret", "secret_file": secret},
                          "tls": {"ca_file": cls.emu.ca, "connect_to": ["::127.0.0.1:%d" % cls.emu.port]},
                          "vault": {"name": VAULT, "type": "premium"}}
            g["mirror"] = {"trigger": "on_generate", "mode": "sync"}
            cls.tok.write_conf()
            cls.tok.init(GROUP)
            cls.p11cfg = cls.tok.path("sunpkcs11.cfg")
            with open(cls.p11cfg, "w") as f:
                f.write("name = cdcp11\nlibrary = %s\nslot = %d\n" % (h.MODULE, SLOT_ID))
            cls.made = {}
            for alias, keyalg in (("rsa1", ["-keyalg", "RSA", "-keysize", "2048"]),
                                  ("ec1", ["-keyalg", "EC", "-groupname", "secp256r1"])):
                cls.made[alias] = cls.keytool("-genkeypair", "-alias", alias, *keyalg, "-dname", "CN=" + alias,
                                              "-validity", "30")
        except BaseException:
            cls.emu.stop()
            cls.tok.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()
        cls.tok.cleanup()

    # ------------------------------------------------------------ helpers

    @classmethod
    def keytool(cls, *args):
        # pkcs11keystore debug: SunPKCS11's P11KeyStore says how it stored each key (on stderr).
        cmd = [KEYTOOL, "-J-Djava.security.debug=pkcs11keystore", *args, "-keystore", "NONE", "-storetype", "PKCS11",
               "-providerClass", "sun.security.pkcs11.SunPKCS11", "-providerArg", cls.p11cfg,
               "-storepass", h.USER_PIN]
        return subprocess.run(cmd, env=cls.tok.env(), capture_output=True, timeout=JAVA_TIMEOUT)

    def check(self, r, what):
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace")
            hint = ""
            if "SunPKCS11" in err and ("not found" in err.lower() or "ClassNotFound" in err):
                hint = ("\nThis JDK has no SunPKCS11 provider (module jdk.crypto.cryptoki, shipped by Debian's "
                        "openjdk-17-jre-headless): check `java --list-modules | grep cryptoki`.")
            failed = [ln for ln in self.tok.read_log().splitlines() if "CKR_" in ln]
            self.fail("%s failed (%d):\n%s%s%s\nmodule log, failed calls:\n%s" % (
                what, r.returncode, r.stdout.decode(errors="replace"), err, hint, "\n".join(failed[-20:])))
        return r.stdout.decode(errors="replace")

    def cdcctl_keys(self):
        cmd = [os.path.join(BUILD, "tools", "cdcctl", "cdcctl"), "--config", self.tok.conf, "--json",
               "key", "list", GROUP, "--pin-env", "KT_PIN"]
        r = h.run(cmd, env=self.tok.env(KT_PIN=h.USER_PIN))
        return json.loads(r.stdout)["keys"]

    def key_of(self, alias):
        """The cdcctl listing entry of alias's private key: SunPKCS11 labels it with the alias or,
        for a key stored with its certificate, puts the alias in CKA_ID."""
        keys = self.cdcctl_keys()
        found = [k for k in keys if k["label"] == alias or k["id"] == alias.encode().hex()]
        self.assertEqual(len(found), 1, "one key for alias %s in %s" % (alias, json.dumps(keys, indent=1)))
        return found[0]

    def certificate(self, alias):
        pem = self.check(self.keytool("-exportcert", "-rfc", "-alias", alias), "keytool -exportcert")
        return x509.load_pem_x509_certificate(pem.encode())

    def vault_sign(self, kid, alg, digest):
        r = self.emu.rest("POST", kid + "/sign", token=self.emu.token(), body={"alg": alg, "value": b64u(digest)})
        self.assertEqual(r.status_code, 200, r.text)
        return b64u_dec(r.json()["value"])

    def assert_mirrored(self, alias, kty, how):
        self.check(self.made[alias], "keytool -genkeypair %s" % alias)
        # The path SunPKCS11 took to make the token key (C_CreateObject or C_CopyObject).
        self.assertIn("pkcs11keystore: %s [%s]" % (how, alias), self.made[alias].stderr.decode(errors="replace"))
        k = self.key_of(alias)
        self.assertEqual((k["mirror"], k["error"]), ("mirrored", None), k)
        kid = k["azure_key_id"]
        self.assertTrue(kid and kid.startswith(Emulator.vault_url(VAULT) + "/keys/"), kid)
        got = self.emu.rest("GET", kid, token=self.emu.token())
        self.assertEqual(got.status_code, 200, got.text)
        self.assertEqual(got.json()["key"]["kty"], kty)
        tags = got.json()["tags"]
        self.assertEqual((tags["cdcp11-uid"], tags["cdcp11-id"], tags["cdcp11-group"]),
                         (k["unique_id"], alias.encode().hex(), GROUP))
        return kid

    # ------------------------------------------------------------ tests

    def test_rsa_key_stored_by_keytool_is_mirrored_and_the_vault_copy_is_the_same_key(self):
        # keytool made the pair in Java; P11KeyStore stored the private key with C_CreateObject.
        kid = self.assert_mirrored("rsa1", "RSA-HSM", "storePkey created token key for")
        digest = hashlib.sha256(b"keytool rsa in the vault").digest()
        sig = self.vault_sign(kid, "RS256", digest)
        pub = self.certificate("rsa1").public_key()
        self.assertIsInstance(pub, rsa.RSAPublicKey)
        self.assertEqual(pub.key_size, 2048)
        pub.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))

    def test_ec_key_stored_by_keytool_is_mirrored_and_the_vault_copy_is_the_same_key(self):
        # SunPKCS11 generated a session pair; P11KeyStore copied the private key into the token.
        kid = self.assert_mirrored("ec1", "EC-HSM", "updateP11Pkey copied private session key for")
        digest = hashlib.sha256(b"keytool ec in the vault").digest()
        raw = self.vault_sign(kid, "ES256", digest)
        self.assertEqual(len(raw), 64)
        pub = self.certificate("ec1").public_key()
        self.assertIsInstance(pub, ec.EllipticCurvePublicKey)
        self.assertEqual(pub.curve.name, "secp256r1")
        der_sig = utils.encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        pub.verify(der_sig, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))

    def test_only_the_two_token_keys_are_in_the_vault(self):
        for alias in self.made:
            self.check(self.made[alias], "keytool -genkeypair %s" % alias)
        keys = self.cdcctl_keys()
        self.assertEqual(sorted(bytes.fromhex(k["id"]).decode() for k in keys), ["ec1", "rsa1"], keys)
        r = self.emu.rest("GET", Emulator.vault_url(VAULT) + "/keys", token=self.emu.token())
        self.assertEqual(r.status_code, 200, r.text)
        names = sorted(item["kid"].rsplit("/", 1)[-1] for item in r.json()["value"])
        # No copy of the EC session key, no KEK left behind.
        self.assertEqual(names, sorted((k["azure_key_id"] or "/" * 4).split("/")[4] for k in keys))

    def test_the_token_keys_sign_a_certificate_request(self):
        # keytool self-signed with the keys before they were stored; -certreq signs with the token's key.
        for alias in ("rsa1", "ec1"):
            self.check(self.made[alias], "keytool -genkeypair %s" % alias)
            pem = self.check(self.keytool("-certreq", "-alias", alias), "keytool -certreq %s" % alias)
            csr = x509.load_pem_x509_csr(pem.encode())
            self.assertTrue(csr.is_signature_valid, alias)
            cert_key = self.certificate(alias).public_key()
            self.assertEqual(csr.public_key().public_numbers(), cert_key.public_numbers())

    def test_keytool_list_shows_both_entries(self):
        for alias in self.made:
            self.check(self.made[alias], "keytool -genkeypair %s" % alias)
        out = self.check(self.keytool("-list"), "keytool -list")
        self.assertIn("contains 2 entries", out)
        for alias in ("rsa1", "ec1"):
            self.assertRegex(out, r"(?m)^%s, PrivateKeyEntry,\s*$" % alias)


if __name__ == "__main__":
    unittest.main()
