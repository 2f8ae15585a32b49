"""Microsoft's Azure SDK for Python (Debian python3-azure) against the
emulator, with the real credential classes: tokens (secret and certificate),
key lifecycle, crypto, JWK and BYOK import, ARM discovery.

The Key Vault SDK's challenge-resource check stays ON: thanks to the host
mapping in azhelpers the request host really is *.vault.azure.net, so the
check passes as it would against Azure.
"""
import hashlib
import os
import time
import unittest

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.keys import JsonWebKey, KeyClient
from azure.keyvault.keys.crypto import (CryptographyClient, EncryptionAlgorithm, KeyWrapAlgorithm,
                                        SignatureAlgorithm)

import azhelpers as az
from byok import byok_blob, kek_public_key, pkcs8


def ec_public_from(jwk):
    curve = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}[jwk.crv]
    return ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"),
                                         curve).public_key()


def raw_to_der(sig):
    h = len(sig) // 2
    return utils.encode_dss_signature(int.from_bytes(sig[:h], "big"), int.from_bytes(sig[h:], "big"))


class SdkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = az.Emulator.start()
        cls.emu.map_hosts()
        cls.cred = cls.emu.secret_credential()
        cls.cert_cred = cls.emu.cert_credential()
        kw = cls.emu.client_kwargs()
        cls.premium = KeyClient(az.Emulator.vault_url("demo-premium"), cls.cred, **kw)
        cls.standard = KeyClient(az.Emulator.vault_url("demo-standard"), cls.cert_cred, **kw)
        cls.mhsm = KeyClient(az.Emulator.vault_url("demo-mhsm", hsm=True), cls.cred, **kw)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    @staticmethod
    def done(poller):
        """This SDK's result() does not wait; wait() polls until the service
        finished (get_deleted_key / get_key stop answering 404)."""
        poller.wait()
        return poller.result()

    def crypto(self, key, cred=None):
        return CryptographyClient(key, cred or self.cred, **self.emu.client_kwargs())

    # ------------------------------------------------------------ tokens
    def test_token_with_client_secret(self):
        tok = self.emu.secret_credential().get_token("https://vault.azure.net/.default")
        c = az.jwt_claims(tok.token)
        self.assertEqual(c["aud"], "https://vault.azure.net")
        self.assertEqual(c["tid"], az.TENANT)
        self.assertEqual(c["appid"], az.SECRET_APP)
        self.assertEqual(c["oid"], az.SECRET_APP_OID)
        self.assertGreater(tok.expires_on, time.time() + 3000)
        log = self.emu.log()
        self.assertIn("/v2.0/.well-known/openid-configuration 200", log)   # MSAL's discovery
        self.assertIn("oauth2/v2.0/token 200 client=" + az.SECRET_APP, log)
        self.assertNotIn(az.SECRET, log)

    def test_token_with_certificate(self):
        cred = self.emu.cert_credential()
        tok = cred.get_token("https://managedhsm.azure.net/.default")
        c = az.jwt_claims(tok.token)
        self.assertEqual(c["aud"], "https://managedhsm.azure.net")
        self.assertEqual(c["appid"], az.CERT_APP)
        self.assertEqual(c["appidacr"], "2")     # certificate credential
        # The same credential drives the data plane.
        k = KeyClient(az.Emulator.vault_url("demo-standard"), cred, **self.emu.client_kwargs())
        key = k.create_ec_key("cert-cred-key", curve="P-256")
        self.assertEqual(key.key_type, "EC")

    def test_token_with_certificate_and_x5c_chain(self):
        # send_certificate_chain makes MSAL add x5c; the RS256/x5t form is
        # exercised by test_errors with a hand-built assertion.
        cred = self.emu.cert_credential(send_certificate_chain=True)
        self.assertEqual(az.jwt_claims(cred.get_token("https://vault.azure.net/.default").token)["appid"],
                         az.CERT_APP)

    # ------------------------------------------------------------ lifecycle
    def test_create_get_versions_update(self):
        k1 = self.premium.create_rsa_key("life-rsa", size=2048, hardware_protected=True, tags={"a": "1"})
        self.assertEqual(k1.key_type, "RSA-HSM")
        self.assertEqual(len(k1.key.n), 256)
        self.assertTrue(k1.id.startswith("https://demo-premium.vault.azure.net/keys/life-rsa/"))
        self.assertEqual(k1.properties.recovery_level, "CustomizedRecoverable+Purgeable")
        self.assertEqual(k1.properties.recoverable_days, 7)
        k2 = self.premium.create_rsa_key("life-rsa", size=3072)
        self.assertNotEqual(k1.properties.version, k2.properties.version)
        latest = self.premium.get_key("life-rsa")
        self.assertEqual(latest.properties.version, k2.properties.version)
        old = self.premium.get_key("life-rsa", k1.properties.version)
        self.assertEqual(old.key.n, k1.key.n)
        self.assertIsNone(old.key.d)   # never private material
        versions = {p.version for p in self.premium.list_properties_of_key_versions("life-rsa")}
        self.assertEqual(versions, {k1.properties.version, k2.properties.version})
        upd = self.premium.update_key_properties("life-rsa", k1.properties.version, enabled=False,
                                                 tags={"b": "2"}, key_operations=["verify"])
        self.assertFalse(upd.properties.enabled)
        self.assertEqual(upd.properties.tags, {"b": "2"})
        self.assertEqual(upd.key_operations, ["verify"])
        self.assertFalse(self.premium.get_key("life-rsa", k1.properties.version).properties.enabled)
        self.assertTrue(self.premium.get_key("life-rsa").properties.enabled)

    def test_list_with_paging(self):
        names = ["page-%d" % i for i in range(7)]
        for n in names:
            self.standard.create_ec_key(n, curve="P-256")
        before = self.emu.log().count("GET demo-standard.vault.azure.net/keys 200")
        listed = [p.name for p in self.standard.list_properties_of_keys(max_page_size=3)]
        for n in names:
            self.assertIn(n, listed)
        self.assertEqual(len(listed), len(set(listed)))
        pages = self.emu.log().count("GET demo-standard.vault.azure.net/keys 200") - before
        self.assertGreaterEqual(pages, 3)   # followed nextLink

    def test_next_link_is_built_on_the_vault_host(self):
        # Reached under another name (a custom domain in front of the vault), the service still
        # builds nextLink on the vault's own host name, with :443 (reference §11).
        for i in range(3):
            self.premium.create_ec_key("alias-page-%d" % i, curve="P-256")
        alias = "https://demo-premium.kv.cdcp11.test"
        r = self.emu.rest("GET", alias + "/keys?maxresults=2", self.emu.token())
        self.assertEqual(r.status_code, 200, r.text)
        self.assertTrue(r.json()["nextLink"].startswith("https://demo-premium.vault.azure.net:443/keys?api-version="),
                        r.json()["nextLink"])
        self.assertTrue(r.json()["value"][0]["kid"].startswith("https://demo-premium.vault.azure.net/keys/"))
        # The SDK follows it verbatim (its challenge check is off for a custom domain).
        client = KeyClient(alias, self.cred, verify_challenge_resource=False, **self.emu.client_kwargs())
        before = self.emu.log().count("GET demo-premium.vault.azure.net/keys 200")
        names = [p.name for p in client.list_properties_of_keys(max_page_size=2)]
        self.assertTrue({"alias-page-0", "alias-page-1", "alias-page-2"} <= set(names))
        self.assertIn("GET demo-premium.kv.cdcp11.test/keys 200", self.emu.log())
        self.assertGreater(self.emu.log().count("GET demo-premium.vault.azure.net/keys 200"), before)

    def test_delete_recover_purge(self):
        c = self.premium
        key = c.create_ec_key("life-del", curve="P-384", hardware_protected=True)
        deleted = self.done(c.begin_delete_key("life-del", _polling_interval=0.3))
        self.assertEqual(deleted.recovery_id, "https://demo-premium.vault.azure.net/deletedkeys/life-del")
        self.assertIsNotNone(deleted.scheduled_purge_date)
        self.assertEqual(c.get_deleted_key("life-del").key.x, key.key.x)
        self.assertIn("life-del", [d.name for d in c.list_deleted_keys()])
        with self.assertRaises(ResourceNotFoundError):
            c.get_key("life-del")
        with self.assertRaises(ResourceExistsError) as ctx:
            c.create_ec_key("life-del", curve="P-256", hardware_protected=True)
        self.assertIn("ObjectIsDeletedButRecoverable", str(ctx.exception))
        recovered = self.done(c.begin_recover_deleted_key("life-del", _polling_interval=0.3))
        self.assertEqual(recovered.key.x, key.key.x)
        self.assertEqual(c.get_key("life-del").key.x, key.key.x)
        self.done(c.begin_delete_key("life-del", _polling_interval=0.3))
        c.purge_deleted_key("life-del")
        with self.assertRaises(ResourceNotFoundError):
            c.get_deleted_key("life-del")
        self.assertEqual(c.create_ec_key("life-del", curve="P-256", hardware_protected=True).key.crv, "P-256")

    def test_backup_restore(self):
        c = self.premium
        key = c.create_rsa_key("life-bak", size=2048, hardware_protected=True)
        blob = c.backup_key("life-bak")
        self.assertIsInstance(blob, bytes)
        with self.assertRaises(ResourceExistsError):
            c.restore_key_backup(blob)   # name in use
        self.done(c.begin_delete_key("life-bak", _polling_interval=0.3))
        c.purge_deleted_key("life-bak")
        restored = c.restore_key_backup(blob)
        self.assertEqual(restored.name, "life-bak")
        self.assertEqual(restored.key.n, key.key.n)
        self.assertEqual(restored.properties.version, key.properties.version)

    # ------------------------------------------------------------ crypto
    def test_sign_remotely_verify_locally(self):
        for curve, alg, h in (("P-256", SignatureAlgorithm.es256, hashes.SHA256),
                              ("P-384", SignatureAlgorithm.es384, hashes.SHA384),
                              ("P-521", SignatureAlgorithm.es512, hashes.SHA512)):
            key = self.premium.create_ec_key("sig-" + curve, curve=curve, hardware_protected=True)
            digest = hashlib.new(h.name, b"hello " + curve.encode()).digest()
            res = self.crypto(key).sign(alg, digest)
            ec_public_from(key.key).verify(raw_to_der(res.signature), digest, ec.ECDSA(utils.Prehashed(h())))
        rkey = self.premium.create_rsa_key("sig-rsa", size=2048)
        pub = rsa.RSAPublicNumbers(int.from_bytes(rkey.key.e, "big"), int.from_bytes(rkey.key.n, "big")).public_key()
        digest = hashlib.sha256(b"x").digest()
        sig = self.crypto(rkey).sign(SignatureAlgorithm.rs256, digest).signature
        pub.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        sig = self.crypto(rkey).sign(SignatureAlgorithm.ps256, digest).signature
        pub.verify(sig, digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32), utils.Prehashed(hashes.SHA256()))

    def test_verify_in_emulator(self):
        key = self.premium.create_ec_key("ver-ec", curve="P-256")
        digest = hashlib.sha256(b"v").digest()
        sig = self.crypto(key).sign(SignatureAlgorithm.es256, digest).signature
        tok = self.emu.token()
        url = "%s/keys/ver-ec/%s/verify" % (az.Emulator.vault_url("demo-premium"), key.properties.version)
        r = self.emu.rest("POST", url, tok, {"alg": "ES256", "digest": az.b64url(digest), "value": az.b64url(sig)})
        self.assertEqual(r.json(), {"value": True})
        bad = bytes([sig[0] ^ 1]) + sig[1:]
        r = self.emu.rest("POST", url, tok, {"alg": "ES256", "digest": az.b64url(digest), "value": az.b64url(bad)})
        self.assertEqual(r.json(), {"value": False})

    def test_encrypt_decrypt_wrap_unwrap(self):
        key = self.premium.create_rsa_key("enc-rsa", size=2048, hardware_protected=True)
        cc = self.crypto(key.id)
        for alg in (EncryptionAlgorithm.rsa_oaep, EncryptionAlgorithm.rsa_oaep_256, EncryptionAlgorithm.rsa1_5):
            ct = cc.encrypt(alg, b"secret data").ciphertext
            self.assertEqual(cc.decrypt(alg, ct).plaintext, b"secret data")
        wrapped = cc.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32).encrypted_key
        self.assertEqual(cc.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped).key, b"k" * 32)
        # Encryption done by the emulator (raw REST), decrypted by the SDK.
        url = "%s/keys/enc-rsa/%s/encrypt" % (az.Emulator.vault_url("demo-premium"), key.properties.version)
        r = self.emu.rest("POST", url, self.emu.token(), {"alg": "RSA-OAEP", "value": az.b64url(b"remote")})
        self.assertEqual(cc.decrypt(EncryptionAlgorithm.rsa_oaep, az.b64url_decode(r.json()["value"])).plaintext,
                         b"remote")

    def test_managed_hsm_aes(self):
        key = self.mhsm.create_oct_key("hsm-aes", size=256, hardware_protected=True)
        self.assertEqual(key.key_type, "oct-HSM")
        self.assertIsNone(key.key.k)
        cc = self.crypto(key)
        res = cc.encrypt(EncryptionAlgorithm.a256_gcm, b"plain", additional_authenticated_data=b"aad")
        self.assertEqual(cc.decrypt(EncryptionAlgorithm.a256_gcm, res.ciphertext, iv=res.iv,
                                    authentication_tag=res.tag, additional_authenticated_data=b"aad").plaintext,
                         b"plain")
        w = cc.wrap_key(KeyWrapAlgorithm.aes_256, b"0123456789abcdef").encrypted_key
        self.assertEqual(cc.unwrap_key(KeyWrapAlgorithm.aes_256, w).key, b"0123456789abcdef")

    # ------------------------------------------------------------ import
    def test_import_plain_jwk_rsa_and_ec(self):
        priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pn = priv.private_numbers()
        i2b = lambda v: v.to_bytes((v.bit_length() + 7) // 8, "big")
        jwk = JsonWebKey(kty="RSA", key_ops=["sign", "verify"], n=i2b(pn.public_numbers.n),
                         e=i2b(pn.public_numbers.e), d=i2b(pn.d), p=i2b(pn.p), q=i2b(pn.q),
                         dp=i2b(pn.dmp1), dq=i2b(pn.dmq1), qi=i2b(pn.iqmp))
        imported = self.standard.import_key("imp-rsa", jwk)
        self.assertEqual(imported.key_type, "RSA")
        self.assertEqual(int.from_bytes(imported.key.n, "big"), pn.public_numbers.n)
        digest = hashlib.sha256(b"same key").digest()
        sig = self.crypto(imported, self.cert_cred).sign(SignatureAlgorithm.rs256, digest).signature
        priv.public_key().verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))

        epriv = ec.generate_private_key(ec.SECP384R1())
        en = epriv.private_numbers()
        ejwk = JsonWebKey(kty="EC", crv="P-384", key_ops=["sign", "verify"], d=en.private_value.to_bytes(48, "big"),
                          x=en.public_numbers.x.to_bytes(48, "big"), y=en.public_numbers.y.to_bytes(48, "big"))
        eimp = self.premium.import_key("imp-ec", ejwk, hardware_protected=True)
        self.assertEqual(eimp.key_type, "EC-HSM")
        digest = hashlib.sha384(b"ec").digest()
        sig = self.crypto(eimp).sign(SignatureAlgorithm.es384, digest).signature
        epriv.public_key().verify(raw_to_der(sig), digest, ec.ECDSA(utils.Prehashed(hashes.SHA384())))

    def _kek(self, client, name):
        kek = client.create_rsa_key(name, size=2048, hardware_protected=True, key_operations=["import"])
        self.assertEqual(kek.key_operations, ["import"])
        return kek

    def test_byok_import_ec_and_rsa(self):
        kek = self._kek(self.premium, "byok-kek")
        target = ec.generate_private_key(ec.SECP256R1())
        blob = byok_blob(kek.id, kek_public_key(kek.key), pkcs8(target))
        imported = self.premium.import_key("byok-ec", JsonWebKey(kty="EC-HSM", crv="P-256", t=blob,
                                                                 key_ops=["sign", "verify"]))
        self.assertEqual(imported.key_type, "EC-HSM")
        self.assertIsNone(imported.key.d)
        self.assertEqual(int.from_bytes(imported.key.x, "big"), target.public_key().public_numbers().x)
        digest = hashlib.sha256(b"byok proves the same key").digest()
        sig = self.crypto(imported).sign(SignatureAlgorithm.es256, digest).signature
        target.public_key().verify(raw_to_der(sig), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))

        rtarget = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        blob = byok_blob(kek.id, kek_public_key(kek.key), pkcs8(rtarget))
        rimp = self.premium.import_key("byok-rsa", JsonWebKey(kty="RSA-HSM", t=blob, key_ops=["sign", "verify"]))
        self.assertEqual(rimp.key_type, "RSA-HSM")
        digest = hashlib.sha512(b"r").digest()
        sig = self.crypto(rimp).sign(SignatureAlgorithm.rs512, digest).signature
        rtarget.public_key().verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA512()))

    def test_byok_import_aes_into_managed_hsm(self):
        kek = self._kek(self.mhsm, "byok-hsm-kek")
        aes = os.urandom(32)
        blob = byok_blob(kek.id, kek_public_key(kek.key), aes)
        imp = self.mhsm.import_key("byok-aes", JsonWebKey(kty="oct-HSM", t=blob,
                                                          key_ops=["encrypt", "decrypt"]))
        self.assertEqual(imp.key_type, "oct-HSM")
        res = self.crypto(imp).encrypt(EncryptionAlgorithm.a256_gcm, b"aes proof")
        self.assertEqual(AESGCM(aes).decrypt(res.iv, res.ciphertext + res.tag, None), b"aes proof")

    # ------------------------------------------------------------ clouds
    def test_us_government_cloud(self):
        cred = self.emu.secret_credential(authority="login.microsoftonline.us")
        c = KeyClient(az.Emulator.vault_url("demo-usgov", "AzureUSGovernment"), cred, **self.emu.client_kwargs())
        key = c.create_ec_key("gov-key", curve="P-256", hardware_protected=True)
        self.assertTrue(key.id.startswith("https://demo-usgov.vault.usgovcloudapi.net/keys/gov-key/"))
        tok = cred.get_token("https://vault.usgovcloudapi.net/.default")
        self.assertEqual(az.jwt_claims(tok.token)["aud"], "https://vault.usgovcloudapi.net")
        self.assertEqual(az.jwt_claims(tok.token)["iss"], "https://login.microsoftonline.us/%s/" % az.TENANT)


class ArmSdkTest(unittest.TestCase):
    """The key vault management client, if Debian ships it."""

    @classmethod
    def setUpClass(cls):
        try:
            from azure.mgmt.keyvault import KeyVaultManagementClient
        except ImportError:
            raise unittest.SkipTest("azure.mgmt.keyvault not installed")
        cls.emu = az.Emulator.start(modify=lambda c: c["emulator"].update(armPageSize=2))
        cls.emu.map_hosts()
        cls.client = KeyVaultManagementClient(cls.emu.secret_credential(), az.SUBSCRIPTION,
                                              **cls.emu.client_kwargs())

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def test_list_vaults_with_paging(self):
        vaults = {v.name: v for v in self.client.vaults.list_by_subscription()}
        self.assertEqual(set(vaults), {"demo-standard", "demo-premium", "demo-protected", "demo-nosoftdelete",
                                       "demo-rbac", "demo-usgov"})
        self.assertGreaterEqual(self.emu.log().count("providers/Microsoft.KeyVault/vaults 200"), 3)
        p = vaults["demo-premium"].properties
        self.assertEqual(p.sku.name, "premium")
        self.assertEqual(p.vault_uri, "https://demo-premium.vault.azure.net/")
        self.assertTrue(p.enable_soft_delete)
        self.assertEqual(p.soft_delete_retention_in_days, 7)
        self.assertFalse(p.enable_rbac_authorization)
        self.assertEqual(p.access_policies[0].object_id, az.SECRET_APP_OID)
        self.assertIn("all", p.access_policies[0].permissions.keys)
        self.assertTrue(vaults["demo-protected"].properties.enable_purge_protection)
        self.assertFalse(vaults["demo-nosoftdelete"].properties.enable_soft_delete)
        self.assertTrue(vaults["demo-rbac"].properties.enable_rbac_authorization)
        self.assertEqual(vaults["demo-standard"].properties.sku.name, "standard")
        self.assertEqual(vaults["demo-usgov"].properties.vault_uri, "https://demo-usgov.vault.usgovcloudapi.net/")

    def test_list_managed_hsms(self):
        hsms = list(self.client.managed_hsms.list_by_subscription())
        self.assertEqual([h.name for h in hsms], ["demo-mhsm"])
        self.assertEqual(hsms[0].properties.hsm_uri, "https://demo-mhsm.managedhsm.azure.net/")
        self.assertEqual(hsms[0].sku.name, "Standard_B1")

    def test_list_by_resource_group(self):
        names = {v.name for v in self.client.vaults.list_by_resource_group("rg-legacy")}
        self.assertEqual(names, {"demo-nosoftdelete"})

    def test_generic_resource_list_as_az_keyvault_list(self):
        # az keyvault list: the generic resource list filtered by resource type.
        try:
            from azure.mgmt.resource import ResourceManagementClient
        except ImportError:
            raise unittest.SkipTest("azure.mgmt.resource not installed")
        client = ResourceManagementClient(self.emu.secret_credential(), az.SUBSCRIPTION, **self.emu.client_kwargs())
        found = list(client.resources.list(filter="resourceType eq 'Microsoft.KeyVault/vaults'"))
        self.assertEqual(sorted(r.name for r in found), ["demo-nosoftdelete", "demo-premium", "demo-protected",
                                                         "demo-rbac", "demo-standard", "demo-usgov"])
        self.assertEqual({r.type for r in found}, {"Microsoft.KeyVault/vaults"})
        hsms = list(client.resources.list(filter="resourceType eq 'Microsoft.KeyVault/managedHSMs'"))
        self.assertEqual([h.name for h in hsms], ["demo-mhsm"])


if __name__ == "__main__":
    unittest.main()
