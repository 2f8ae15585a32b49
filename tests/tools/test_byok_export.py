"""cdcctl byok export: the .byok file opens with Python's `cryptography` alone (no project code):
RSA-OAEP(SHA-1, MGF1-SHA-1) of an AES-256 key, then AES-KWP (RFC 5649) of the PKCS#8 private
key or the raw AES value. The unwrapped key is compared with what the token shows through
pkcs11-tool. Also: the printed az command, --json, the file's mode, and the refusals."""
import base64
import json
import os
import re
import stat
import subprocess
import tempfile
import unittest

from cryptography.hazmat.primitives import hashes, padding as sympadding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding

CDCCTL = os.environ["CDCCTL"]
MODULE = os.environ["CDCP11_MODULE"]
GROUP = "byok"
SO_PIN, USER_PIN = "87654321", "123456"
VERSION = "0123456789abcdef0123456789abcdef"
VAULT_KID = "https://contoso-prem.vault.azure.net/keys/kek-4096/" + VERSION
HSM_KID = "https://contoso-mhsm.managedhsm.azure.net/keys/kek-4096/" + VERSION


def spki(pub):
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_public(path, key):
    with open(path, "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ByokExport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        cls.conf = os.path.join(cls.dir, "cdcp11.json")
        cls.env = dict(os.environ, CDCP11_CONF=cls.conf, BYOK_PIN=USER_PIN, WRONG_PIN="000000")
        cls.cdcctl_ok("group", "add", GROUP)
        cls.p11("--init-token", "--label", GROUP, "--so-pin", SO_PIN, login=False)
        cls.p11("--login", "--login-type", "so", "--so-pin", SO_PIN, "--init-pin", "--pin", USER_PIN, login=False)
        cls.p11("--keypairgen", "--key-type", "rsa:2048", "--label", "rsa1", "--id", "01")
        cls.p11("--keypairgen", "--key-type", "EC:prime256v1", "--label", "ec256", "--id", "02")
        cls.p11("--keypairgen", "--key-type", "EC:secp384r1", "--label", "ec384", "--id", "03")
        cls.p11("--keygen", "--key-type", "AES:32", "--label", "aes-x", "--id", "04", "--extractable")
        cls.p11("--keygen", "--key-type", "AES:32", "--label", "aes-n", "--id", "05")
        cls.p11("--keygen", "--key-type", "AES:16", "--label", "dup", "--id", "06")
        cls.p11("--keygen", "--key-type", "AES:16", "--label", "dup", "--id", "07")
        # The KEKs, made here with cryptography: the right one, and the ones BYOK refuses.
        cls.kek = rsa.generate_private_key(public_exponent=65537, key_size=4096)
        cls.kek_pem = os.path.join(cls.dir, "kek.pem")
        write_public(cls.kek_pem, cls.kek)
        cls.kek_1024_pem = os.path.join(cls.dir, "kek1024.pem")
        write_public(cls.kek_1024_pem, rsa.generate_private_key(public_exponent=65537, key_size=1024))
        cls.kek_ec_pem = os.path.join(cls.dir, "kek-ec.pem")
        write_public(cls.kek_ec_pem, ec.generate_private_key(ec.SECP384R1()))
        cls.out_dir = os.path.join(cls.dir, "out")
        os.mkdir(cls.out_dir)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def p11(cls, *args, login=True):
        cmd = ["pkcs11-tool", "--module", MODULE, "--token-label", GROUP]
        if login:
            cmd += ["--login", "--pin", USER_PIN]
        p = subprocess.run(cmd + list(args), capture_output=True, env=cls.env, timeout=60)
        if p.returncode != 0:
            raise AssertionError("pkcs11-tool %s failed: %s" % (args, p.stderr.decode(errors="replace")))
        return p

    @classmethod
    def cdcctl(cls, *args):
        return subprocess.run([CDCCTL, "--config", cls.conf, *args], capture_output=True, text=True, env=cls.env,
                              timeout=60)

    @classmethod
    def cdcctl_ok(cls, *args):
        p = cls.cdcctl(*args)
        if p.returncode != 0:
            raise AssertionError("cdcctl %s failed: %s" % (args, p.stderr))
        return p

    def export(self, name, *selector, kid=VAULT_KID, kek=None, json_out=False, pin_env="BYOK_PIN", extra=()):
        out = os.path.join(self.out_dir, name + ".byok")
        args = (["--json"] if json_out else []) + ["byok", "export", GROUP, *selector, "--kek-pem",
                                                    kek or self.kek_pem, "--kek-kid", kid, "--out", out,
                                                    "--pin-env", pin_env, *extra]
        return out, self.cdcctl(*args)

    def export_ok(self, name, *selector, **kw):
        out, p = self.export(name, *selector, **kw)
        self.assertEqual(p.returncode, 0, p.stderr)
        return out, p

    def refused(self, *args, **kw):
        """Exit 1, nothing on stdout, and the one error line."""
        _, p = self.export("refused", *args, **kw)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertEqual(p.stdout, "")
        self.assertFalse(os.path.exists(os.path.join(self.out_dir, "refused.byok")))
        return p.stderr.strip().splitlines()[-1]

    def open_blob(self, path):
        """Everything the importing side does, with cryptography only: the plaintext key."""
        with open(path, "rb") as f:
            blob = json.loads(f.read().decode("utf-8"))
        self.assertEqual(blob["schema_version"], "1.0.0")
        self.assertEqual(blob["header"], {"kid": blob["header"]["kid"], "alg": "dir", "enc": "CKM_RSA_AES_KEY_WRAP"})
        self.assertTrue(blob["generator"].startswith("cdcp11 "), blob["generator"])
        self.assertRegex(blob["ciphertext"], r"^[A-Za-z0-9_-]+$")  # base64url, no padding
        ct = b64url_decode(blob["ciphertext"])
        k = self.kek.key_size // 8
        self.assertEqual(len(ct), k + 8 * ((len(ct) - k) // 8))
        aes = self.kek.decrypt(ct[:k], padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(),
                                                    label=None))
        self.assertEqual(len(aes), 32)
        return blob, aes_key_unwrap_with_padding(aes, ct[k:])

    def token_public(self, key_id, curve=None):
        if curve is None:  # RSA: the SubjectPublicKeyInfo pkcs11-tool builds
            der = os.path.join(self.dir, "pub-%s.der" % key_id)
            self.p11("--read-object", "--type", "pubkey", "--id", key_id, "-o", der)
            with open(der, "rb") as f:
                return serialization.load_der_public_key(f.read())
        # EC: CKA_EC_POINT from the listing (opensc 0.23 cannot --read-object a P-384 public key).
        listing = self.p11("--list-objects", "--type", "pubkey").stdout.decode()
        block = [b for b in listing.split("Public Key Object") if re.search(r"\n\s*ID:\s+%s\n" % key_id, b)]
        self.assertEqual(len(block), 1, listing)
        point = bytes.fromhex(re.search(r"EC_POINT:\s+([0-9a-f]+)", block[0]).group(1))
        self.assertEqual(point[0], 0x04)  # DER OCTET STRING around the uncompressed point
        hdr = 2 + (point[1] & 0x7F if point[1] & 0x80 else 0)
        return ec.EllipticCurvePublicKey.from_encoded_point(curve(), point[hdr:])

    def assert_pkcs8(self, der):
        # PrivateKeyInfo: SEQUENCE { INTEGER 0, AlgorithmIdentifier SEQUENCE, ... }, not the bare
        # RSAPrivateKey / ECPrivateKey (whose version INTEGER is followed by an INTEGER / OCTET STRING).
        self.assertEqual(der[0], 0x30)
        i = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
        self.assertEqual(der[i:i + 4], b"\x02\x01\x00\x30")

    def az_command(self, stdout):
        lines = [line.strip() for line in stdout.splitlines() if line.strip().startswith("az keyvault key import ")]
        self.assertEqual(len(lines), 1, stdout)
        return lines[0]

    def assert_private_and_alone(self, path):
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual([n for n in os.listdir(os.path.dirname(path)) if ".tmp." in n], [])

    # ---- the blob opens, and holds the token's key ------------------------------------------

    def test_rsa_key_unwraps_to_the_tokens_key(self):
        out, p = self.export_ok("rsa1", "--label", "rsa1")
        blob, plain = self.open_blob(out)
        self.assertEqual(blob["header"]["kid"], VAULT_KID)
        self.assert_pkcs8(plain)
        key = serialization.load_der_private_key(plain, password=None)
        self.assertIsInstance(key, rsa.RSAPrivateKey)
        self.assertEqual(key.key_size, 2048)
        self.assertEqual(spki(key.public_key()), spki(self.token_public("01")))
        self.assert_private_and_alone(out)
        cmd = self.az_command(p.stdout)
        self.assertTrue(cmd.startswith("az keyvault key import --vault-name contoso-prem --name rsa1 --byok-file %s "
                                       "--kty RSA " % out), cmd)
        self.assertNotIn("-HSM", cmd)
        self.assertNotIn("--curve", cmd)
        self.assertIn(" --ops sign verify", cmd)
        self.assertRegex(cmd, r" --tags cdcp11-uid=[0-9a-f]+ cdcp11-group=byok cdcp11-id=01$")
        self.assertIn("Wrote %s: RSA-2048 key 'rsa1' of group 'byok'" % out, p.stdout)

    def test_ec_keys_unwrap_to_the_tokens_keys(self):
        for label, key_id, curve, crv in (("ec256", "02", ec.SECP256R1, "P-256"), ("ec384", "03", ec.SECP384R1, "P-384")):
            with self.subTest(label):
                out, p = self.export_ok(label, "--id", key_id)
                _, plain = self.open_blob(out)
                self.assert_pkcs8(plain)
                key = serialization.load_der_private_key(plain, password=None)
                self.assertIsInstance(key.curve, curve)
                self.assertEqual(spki(key.public_key()), spki(self.token_public(key_id, curve)))
                cmd = self.az_command(p.stdout)
                self.assertIn(" --name %s --byok-file %s --kty EC --curve %s --ops sign verify " % (label, out, crv), cmd)
                self.assert_private_and_alone(out)

    def test_extractable_aes_key_unwraps_to_its_value(self):
        out, p = self.export_ok("aes-x", "--label", "aes-x", kid=HSM_KID)
        blob, plain = self.open_blob(out)
        self.assertEqual(blob["header"]["kid"], HSM_KID)
        raw = os.path.join(self.dir, "aes-x.bin")
        self.p11("--read-object", "--type", "secrkey", "--id", "04", "-o", raw)
        with open(raw, "rb") as f:
            self.assertEqual(plain, f.read())
        cmd = self.az_command(p.stdout)
        self.assertTrue(cmd.startswith("az keyvault key import --hsm-name contoso-mhsm --name aes-x --byok-file %s "
                                       "--kty oct " % out), cmd)

    def test_sensitive_aes_key_decrypts_what_the_token_encrypted(self):
        out, _ = self.export_ok("aes-n", "--label", "aes-n", kid=HSM_KID)
        _, plain = self.open_blob(out)
        self.assertEqual(len(plain), 32)
        msg = os.path.join(self.dir, "msg.bin")
        enc = os.path.join(self.dir, "msg.enc")
        with open(msg, "wb") as f:
            f.write(b"offline BYOK, checked without the project's code")
        iv = bytes(range(16))
        self.p11("--encrypt", "--mechanism", "AES-CBC-PAD", "--iv", iv.hex(), "--id", "05", "-i", msg, "-o", enc)
        with open(enc, "rb") as f:
            d = Cipher(algorithms.AES(plain), modes.CBC(iv)).decryptor()
            padded = d.update(f.read()) + d.finalize()
        u = sympadding.PKCS7(128).unpadder()
        self.assertEqual(u.update(padded) + u.finalize(), b"offline BYOK, checked without the project's code")

    def test_json_output(self):
        out, p = self.export_ok("ec384-json", "--label", "ec384", json_out=True, extra=("--name", "signing-key"))
        doc = json.loads(p.stdout)
        self.assertEqual({k: doc[k] for k in ("file", "kty", "crv", "kek_kid")},
                         {"file": out, "kty": "EC", "crv": "P-384", "kek_kid": VAULT_KID})
        self.assertIn("--vault-name contoso-prem --name signing-key --byok-file", doc["az_command"])
        self.open_blob(out)
        out, p = self.export_ok("rsa-json", "--id", "01", kid=HSM_KID, json_out=True)
        doc = json.loads(p.stdout)
        self.assertEqual((doc["kty"], doc["crv"], doc["kek_kid"]), ("RSA", None, HSM_KID))
        self.assertTrue(doc["az_command"].startswith("az keyvault key import --hsm-name contoso-mhsm "))

    def test_an_existing_file_is_replaced_and_made_private(self):
        path = os.path.join(self.out_dir, "again.byok")
        with open(path, "w") as f:
            f.write("old")
        os.chmod(path, 0o644)
        self.export_ok("again", "--label", "rsa1")
        self.open_blob(path)
        self.assert_private_and_alone(path)

    def test_quoted_path_in_the_printed_command(self):
        sub = os.path.join(self.out_dir, "with space")
        os.makedirs(sub, exist_ok=True)
        out, p = self.export_ok(os.path.join("with space", "k"), "--label", "rsa1")
        self.assertIn(" --byok-file '%s' --kty RSA" % out, self.az_command(p.stdout))
        self.assert_private_and_alone(out)

    def test_help(self):
        p = self.cdcctl("byok", "export", "--help")
        self.assertEqual(p.returncode, 0)
        for opt in ("--label", "--id", "--kek-pem", "--kek-kid", "--out", "--pin-env", "--name"):
            self.assertIn(opt, p.stdout)

    # ---- refusals -----------------------------------------------------------------------------

    def test_ec_kek_is_refused(self):
        self.assertEqual(self.refused("--label", "rsa1", kek=self.kek_ec_pem),
                         "cdcctl: The KEK in %s is an EC key; Azure BYOK needs an RSA key-exchange key of 2048, "
                         "3072 or 4096 bits." % self.kek_ec_pem)

    def test_rsa_1024_kek_is_refused(self):
        self.assertEqual(self.refused("--label", "rsa1", kek=self.kek_1024_pem),
                         "cdcctl: The KEK in %s is RSA-1024; Azure BYOK needs an RSA key-exchange key of 2048, "
                         "3072 or 4096 bits." % self.kek_1024_pem)

    def test_a_file_without_a_public_key_is_refused(self):
        self.assertEqual(self.refused("--label", "rsa1", kek=self.conf),
                         "cdcctl: The KEK file %s holds no public key; give the KEK's public key as PEM "
                         "(BEGIN PUBLIC KEY), as az keyvault key download --encoding PEM writes it." % self.conf)

    def test_malformed_kids_are_refused(self):
        for kid in ("https://contoso-prem.vault.azure.net/keys/kek-4096",           # no version
                    "https://contoso-prem.vault.azure.net/keys/kek-4096/" + VERSION[:-1],  # 31 hex digits
                    "https://contoso-prem.vault.azure.net/keys/kek-4096/" + "g" * 32,
                    "https://contoso-prem.vault.azure.net/secrets/kek-4096/" + VERSION,
                    "https://contoso-prem.example.com/keys/kek-4096/" + VERSION,
                    "http://contoso-prem.vault.azure.net/keys/kek-4096/" + VERSION,
                    "https://contoso-prem.vault.azure.net/keys/kek_4096/" + VERSION,
                    "kek-4096"):
            with self.subTest(kid):
                self.assertEqual(self.refused("--label", "rsa1", kid=kid),
                                 "cdcctl: The KEK id '%s' is not a versioned Key Vault key id; expected "
                                 "https://VAULT.vault.azure.net/keys/NAME/VERSION (or https://HSM.managedhsm.azure.net/"
                                 "keys/NAME/VERSION) with a 32-hex-digit VERSION." % kid)

    def test_wrong_pin_is_refused(self):
        _, p = self.export("refused", "--label", "rsa1", pin_env="WRONG_PIN")
        self.assertEqual(p.returncode, 1)
        self.assertTrue(p.stderr.strip().splitlines()[-1].startswith(
            "cdcctl: Login to group 'byok' failed: wrong user PIN"), p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.out_dir, "refused.byok")))
        self.export_ok("after-wrong-pin", "--label", "rsa1")  # a good PIN still works

    def test_unset_pin_variable_is_refused(self):
        self.assertEqual(self.refused("--label", "rsa1", pin_env="NO_SUCH_VARIABLE_HERE"),
                         "cdcctl: The environment variable NO_SUCH_VARIABLE_HERE (--pin-env) is not set.")

    def test_missing_and_ambiguous_keys_are_refused(self):
        self.assertEqual(self.refused("--label", "nope"),
                         "cdcctl: Group 'byok' has no private or secret key labelled 'nope'.")
        self.assertEqual(self.refused("--id", "0A"), "cdcctl: Group 'byok' has no private or secret key with CKA_ID 0a.")
        self.assertEqual(self.refused("--label", "dup", kid=HSM_KID),
                         "cdcctl: Group 'byok' has 2 keys labelled 'dup'; choose one with --id.")

    def test_aes_key_for_a_vault_kek_is_refused(self):
        self.assertEqual(self.refused("--label", "aes-n"),
                         "cdcctl: AES keys can only be imported into a Managed HSM; the KEK belongs to vault "
                         "'contoso-prem', which holds RSA and EC keys only.")

    def test_json_errors(self):
        _, p = self.export("refused", "--label", "rsa1", kek=self.kek_ec_pem, json_out=True)
        self.assertEqual(p.returncode, 1)
        self.assertTrue(json.loads(p.stdout)["error"].startswith("The KEK in "))

    def test_zz_no_temp_files_anywhere(self):
        leftovers = [os.path.join(d, n) for d, _, names in os.walk(self.dir) for n in names if ".tmp." in n]
        self.assertEqual(leftovers, [])


if __name__ == "__main__":
    unittest.main()
