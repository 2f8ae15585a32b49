"""pkcs11-tool (OpenSC 0.23) against the built module: --test, key generation for every key type,
sign/verify checked independently with the openssl CLI, encrypt/decrypt, wrap/unwrap."""
import os
import subprocess
import unittest

import p11helpers as h

DATA = b"The quick brown fox jumps over the lazy dog\n" * 7


class PkcsToolTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h.require_module(cls)
        cls.tok = h.TempToken()
        cls.tok.init()
        t = cls.tok
        cls.data = t.path("data.bin")
        with open(cls.data, "wb") as f:
            f.write(DATA)
        # One key of each kind; ids are hex.
        cls.keys = {
            "rsa2048": ("rsa:2048", "a1"), "rsa3072": ("rsa:3072", "a2"), "rsa4096": ("rsa:4096", "a3"),
            "p256": ("EC:prime256v1", "b1"), "p384": ("EC:secp384r1", "b2"), "p521": ("EC:secp521r1", "b3"),
            "k256": ("EC:secp256k1", "b4"), "ed25519": ("EC:edwards25519", "b5"),
        }
        for label, (kt, kid) in cls.keys.items():
            t.tool("--keypairgen", "--key-type", kt, "--label", label, "--id", kid, "--usage-sign",
                   *(["--usage-decrypt"] if kt.startswith("rsa") else []), login=True)

    @classmethod
    def tearDownClass(cls):
        cls.tok.cleanup()

    def p(self, name):
        return self.tok.path(name)

    def write(self, name, data):
        with open(self.p(name), "wb") as f:
            f.write(data)
        return self.p(name)

    def read(self, name):
        with open(self.p(name), "rb") as f:
            return f.read()

    def pubkey_der(self, kid, label):
        out = self.p("pub-%s.der" % label)
        if not label.startswith("rsa"):
            # pkcs11-tool 0.23 cannot export EdDSA (and fails on some EC curves: "cannot create EVP_PKEY"),
            # so build the SubjectPublicKeyInfo from CKA_EC_PARAMS and CKA_EC_POINT.
            with open(out, "wb") as f:
                f.write(h.ec_spki(self.tok, label))
        else:
            self.tok.tool("--read-object", "--type", "pubkey", "--id", kid, "-o", out)
        h.run(["openssl", "pkey", "-pubin", "-inform", "DER", "-in", out, "-noout"])
        return out

    def openssl_verify(self, pub, sig, digest, extra=()):
        return subprocess.run(["openssl", "dgst", "-" + digest, "-verify", pub, "-keyform", "DER",
                               "-signature", sig, *extra, self.data], capture_output=True).returncode == 0

    # ------------------------------------------------------------ --test

    def test_builtin_self_test_with_login(self):
        r = self.tok.tool("--test", "--login", "--pin", h.USER_PIN)
        out = r.stdout.decode(errors="replace")
        self.assertIn("No errors", out, out)
        self.assertNotIn("ERR", out)

    def test_list_objects_and_mechanisms(self):
        out = self.tok.tool("-O", login=True).stdout.decode()
        for label in self.keys:
            self.assertIn("label:      %s" % label, out)
        mechs = self.tok.tool("-M").stdout.decode()
        for m in ("RSA-PKCS-PSS", "ECDSA", "EDDSA", "AES-GCM", "AES-KEY-WRAP", "SHA256-HMAC"):
            self.assertIn(m, mechs)

    # ------------------------------------------------------------ signatures

    def sign(self, kid, mech, sig, *extra):
        self.tok.tool("--sign", "-m", mech, "--id", kid, "-i", self.data, "-o", self.p(sig), *extra, login=True)
        return self.p(sig)

    def pkcs11_verify(self, kid, mech, sig, *extra):
        r = self.tok.tool("--verify", "-m", mech, "--id", kid, "-i", self.data, "--signature-file", sig, *extra,
                          login=True, check=False)
        return r.returncode == 0 and b"Signature is valid" in r.stdout

    def test_rsa_pkcs1_and_pss_signatures(self):
        for label in ("rsa2048", "rsa3072", "rsa4096"):
            kid = self.keys[label][1]
            pub = self.pubkey_der(kid, label)
            with self.subTest(label=label, mech="SHA256-RSA-PKCS"):
                sig = self.sign(kid, "SHA256-RSA-PKCS", "sig-%s-pkcs1" % label)
                self.assertTrue(self.openssl_verify(pub, sig, "sha256"))
                self.assertTrue(self.pkcs11_verify(kid, "SHA256-RSA-PKCS", sig))
                self.assertFalse(self.openssl_verify(pub, sig, "sha384"))
            with self.subTest(label=label, mech="SHA384-RSA-PKCS-PSS"):
                sig = self.sign(kid, "SHA384-RSA-PKCS-PSS", "sig-%s-pss" % label,
                                "--mgf", "MGF1-SHA384", "--salt-len", "48")
                self.assertTrue(self.openssl_verify(pub, sig, "sha384", ["-sigopt", "rsa_padding_mode:pss",
                                                                          "-sigopt", "rsa_pss_saltlen:48",
                                                                          "-sigopt", "rsa_mgf1_md:sha384"]))
                self.assertTrue(self.pkcs11_verify(kid, "SHA384-RSA-PKCS-PSS", sig,
                                                   "--mgf", "MGF1-SHA384", "--salt-len", "48"))

    @h.soft_only("SoftHSM2 2.6.1 has CKM_ECDSA only, not ECDSA-SHA*; raw ECDSA on the HSM is checked in "
                 "test_pykcs11_crypto")
    def test_ecdsa_signatures(self):
        for label, digest in (("p256", "sha256"), ("p384", "sha384"), ("p521", "sha512"), ("k256", "sha256")):
            kid = self.keys[label][1]
            mech = "ECDSA-" + digest.upper()
            with self.subTest(label=label):
                pub = self.pubkey_der(kid, label)
                sig = self.sign(kid, mech, "sig-%s" % label, "-f", "openssl")
                self.assertTrue(self.openssl_verify(pub, sig, digest))
                raw = self.sign(kid, mech, "sig-%s.raw" % label)
                self.assertTrue(self.pkcs11_verify(kid, mech, raw))
                # a flipped bit is rejected by both
                bad = bytearray(self.read("sig-%s.raw" % label))
                bad[5] ^= 1
                self.assertFalse(self.pkcs11_verify(kid, mech, self.write("bad-%s" % label, bytes(bad))))

    def test_ed25519_signature(self):
        kid = self.keys["ed25519"][1]
        pub = self.pubkey_der(kid, "ed25519")
        sig = self.sign(kid, "EDDSA", "sig-ed25519")
        self.assertEqual(len(self.read("sig-ed25519")), 64)
        r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-keyform", "DER", "-rawin",
                            "-in", self.data, "-sigfile", sig], capture_output=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(self.pkcs11_verify(kid, "EDDSA", sig))

    def test_hmac_with_generated_generic_secret(self):
        # (pkcs11-tool 0.23 cannot import GENERIC keys; the known-answer HMAC is in test_pykcs11_crypto)
        # SoftHSM2 takes no HMAC key shorter than the hash (SHA-512: 64 bytes).
        self.tok.tool("--keygen", "--key-type", "GENERIC:%d" % h.by_backend(32, 64), "--label", "hmac2", "--id", "c2",
                      "--usage-sign", login=True)
        for mech in ("SHA256-HMAC", "SHA512-HMAC"):
            with self.subTest(mech=mech):
                sig = self.sign("c2", mech, "mac-" + mech)
                self.assertTrue(self.pkcs11_verify("c2", mech, sig))
                bad = bytearray(self.read("mac-" + mech))
                bad[0] ^= 1
                self.assertFalse(self.pkcs11_verify("c2", mech, self.write("badmac-" + mech, bytes(bad))))

    # ------------------------------------------------------------ encryption

    def test_aes_generated_keys_roundtrip(self):
        for n, kid in ((16, "d1"), (24, "d2"), (32, "d3")):
            self.tok.tool("--keygen", "--key-type", "AES:%d" % n, "--label", "aes%d" % (n * 8), "--id", kid,
                          "--usage-decrypt", login=True)
            # (pkcs11-tool 0.23 encrypts with ECB/CBC/CBC-PAD only; CTR and GCM are in test_pykcs11_crypto)
            for mech, iv in (("AES-CBC-PAD", "00112233445566778899aabbccddeeff"),):
                with self.subTest(bits=n * 8, mech=mech):
                    enc, dec = self.p("enc-%s-%d" % (mech, n)), self.p("dec-%s-%d" % (mech, n))
                    self.tok.tool("--encrypt", "-m", mech, "--iv", iv, "--id", kid, "-i", self.data, "-o", enc,
                                  login=True)
                    self.assertNotEqual(self.read(os.path.basename(enc)), DATA)
                    self.tok.tool("--decrypt", "-m", mech, "--iv", iv, "--id", kid, "-i", enc, "-o", dec,
                                  login=True)
                    self.assertEqual(self.read(os.path.basename(dec)), DATA)

    def test_aes_known_key_matches_openssl(self):
        key = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
        iv = "0f0e0d0c0b0a09080706050403020100"
        for n, kid in ((16, "e1"), (24, "e2"), (32, "e3")):
            kf = self.write("aes%d.key" % n, key[:n])
            self.tok.tool("--write-object", kf, "--type", "secrkey", "--key-type", "AES:%d" % n, "--label",
                          "known%d" % n, "--id", kid, "--usage-decrypt", login=True)
            for mech, ossl in (("AES-CBC-PAD", "cbc"),):
                with self.subTest(bits=n * 8, mech=mech):
                    enc = self.p("kenc-%s-%d" % (ossl, n))
                    self.tok.tool("--encrypt", "-m", mech, "--iv", iv, "--id", kid, "-i", self.data, "-o", enc,
                                  login=True)
                    ref = h.run(["openssl", "enc", "-aes-%d-%s" % (n * 8, ossl), "-K", key[:n].hex(), "-iv", iv,
                                 "-in", self.data]).stdout
                    self.assertEqual(self.read(os.path.basename(enc)), ref)

    def test_rsa_oaep_decrypt_of_openssl_ciphertext(self):
        for label in ("rsa2048", "rsa3072"):
            kid = self.keys[label][1]
            pub = self.pubkey_der(kid, label)
            with self.subTest(label=label):
                enc = self.p("oaep-%s" % label)
                # SoftHSM2 2.6.1 does OAEP with SHA-1 and MGF1-SHA-1 only.
                md = h.by_backend("sha256", "sha1")
                h.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", pub,
                       "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:" + md,
                       "-pkeyopt", "rsa_mgf1_md:" + md, "-in", self.write("short", b"secret"),
                       "-out", enc])
                dec = self.p("oaep-dec-%s" % label)
                self.tok.tool("--decrypt", "-m", "RSA-PKCS-OAEP", "--hash-algorithm", h.by_backend("SHA256", "SHA-1"),
                              "--mgf", h.by_backend("MGF1-SHA256", "MGF1-SHA1"), "--id", kid, "-i", enc, "-o", dec,
                              login=True)
                self.assertEqual(self.read(os.path.basename(dec)), b"secret")
                h.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", pub,
                       "-pkeyopt", "rsa_padding_mode:pkcs1", "-in", self.p("short"), "-out", enc])
                self.tok.tool("--decrypt", "-m", "RSA-PKCS", "--id", kid, "-i", enc, "-o", dec, login=True)
                self.assertEqual(self.read(os.path.basename(dec)), b"secret")

    # ------------------------------------------------------------ wrapping

    def test_aes_key_wrap_and_unwrap_match_openssl(self):
        kek = bytes.fromhex("8899aabbccddeeff0011223344556677" * 2)
        target = bytes.fromhex("00112233445566778899aabbccddeeff")
        self.tok.tool("--write-object", self.write("kek.key", kek), "--type", "secrkey", "--key-type", "AES:32",
                      "--label", "kek", "--id", "f1", "--usage-wrap", login=True)
        self.tok.tool("--write-object", self.write("tgt.key", target), "--type", "secrkey", "--key-type", "AES:16",
                      "--label", "tgt", "--id", "f2", "--extractable", login=True)
        mechs = [("AES-KEY-WRAP", "id-aes256-wrap", "A6A6A6A6A6A6A6A6", "f3"),
                 ("0x210B", "id-aes256-wrap-pad", "A65959A6", "f4")]  # CKM_AES_KEY_WRAP_KWP
        if h.HSM:  # SoftHSM2 2.6.1 has no CKM_AES_KEY_WRAP_KWP (its _PAD form is not offered as KWP)
            mechs.pop()
        for mech, ossl, iv, nid in mechs:
            with self.subTest(mech=mech):
                wrapped = self.p("wrapped-%s" % nid)
                self.tok.tool("--wrap", "-m", mech, "--id", "f1", "--application-id", "f2", "-o", wrapped,
                              login=True)
                ref = h.run(["openssl", "enc", "-" + ossl, "-K", kek.hex(), "-iv", iv, "-in", self.p("tgt.key")]).stdout
                self.assertEqual(self.read(os.path.basename(wrapped)), ref)
                self.tok.tool("--unwrap", "-m", mech, "--id", "f1", "-i", wrapped, "--key-type", "AES:16",
                              "--application-id", nid, "--application-label", "unw-" + nid, "--extractable",
                              login=True)
                out = self.tok.tool("-O", "--type", "secrkey", login=True).stdout.decode()
                block = out.split("label:      unw-" + nid)[0].rsplit("Secret Key Object", 1)[1]
                self.assertIn("VALUE:      " + target.hex(), block)
        # a wrapped key of another length than the template's CKA_VALUE_LEN does not unwrap, and
        # leaves no key behind
        r = self.tok.tool("--unwrap", "-m", "AES-KEY-WRAP", "--id", "f1", "-i", self.p("wrapped-f3"),
                          "--key-type", "AES:32", "--application-id", "f8", login=True, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn("ID:         f8", self.tok.tool("-O", "--type", "secrkey", login=True).stdout.decode())
        # a tampered wrapped key does not unwrap
        bad = bytearray(self.read("wrapped-f3"))
        bad[3] ^= 0x40
        r = self.tok.tool("--unwrap", "-m", "AES-KEY-WRAP", "--id", "f1", "-i", self.write("bad.wrap", bytes(bad)),
                          "--key-type", "AES:16", "--application-id", "f9", login=True, check=False)
        self.assertNotEqual(r.returncode, 0)


if __name__ == "__main__":
    h.main()
