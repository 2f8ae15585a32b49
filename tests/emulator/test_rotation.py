"""Key rotation and rotation policies (API 7.3+), Managed HSM random bytes, and what a
managed HSM makes of a software key type: through Microsoft's Python SDK
(KeyClient.rotate_key, get/update_key_rotation_policy, get_random_bytes) and raw REST
for the rules and errors the SDK does not show.
"""
import hashlib
import time
import unittest

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils

from azure.core.exceptions import HttpResponseError
from azure.keyvault.keys import (ApiVersion, JsonWebKey, KeyClient, KeyRotationLifetimeAction, KeyRotationPolicy,
                                 KeyRotationPolicyAction)
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm

import azhelpers as az
from byok import byok_blob, kek_public_key, pkcs8

PREMIUM = az.Emulator.vault_url("demo-premium")
RBAC = az.Emulator.vault_url("demo-rbac")
MHSM = az.Emulator.vault_url("demo-mhsm", hsm=True)
DAY = 86400


class RotationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = az.Emulator.start()
        cls.emu.map_hosts()
        cls.cred = cls.emu.secret_credential()
        kw = cls.emu.client_kwargs()
        cls.premium = KeyClient(PREMIUM, cls.cred, api_version=ApiVersion.V7_3, **kw)
        cls.mhsm = KeyClient(MHSM, cls.cred, api_version=ApiVersion.V7_3, **kw)
        cls.tok = cls.emu.token()
        cls.reader_tok = cls.emu.token(az.READER_APP, az.READER_SECRET)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def rest(self, method, url, body=None, token=None, **kw):
        return self.emu.rest(method, url, token or self.tok, body, **kw)

    def assertError(self, r, status, code, inner=None, contains=None):
        self.assertEqual(r.status_code, status, r.text)
        err = r.json()["error"]
        self.assertEqual(err["code"], code, r.text)
        if inner is not None:
            self.assertEqual(err.get("innererror", {}).get("code"), inner, r.text)
        if contains:
            self.assertIn(contains, err["message"])

    # ------------------------------------------------------------ through the SDK
    def test_sdk_rotate_key_makes_a_new_version_of_the_same_shape(self):
        key = self.premium.create_rsa_key("rot-rsa", size=3072, hardware_protected=True, tags={"t": "1"})
        rotated = self.premium.rotate_key("rot-rsa")
        self.assertNotEqual(rotated.properties.version, key.properties.version)
        self.assertNotEqual(rotated.key.n, key.key.n)
        self.assertEqual(len(rotated.key.n), 384)
        self.assertEqual(rotated.key_type, "RSA-HSM")
        self.assertEqual(rotated.properties.tags, {"t": "1"})
        self.assertEqual(self.premium.get_key("rot-rsa").properties.version, rotated.properties.version)
        versions = {p.version for p in self.premium.list_properties_of_key_versions("rot-rsa")}
        self.assertEqual(versions, {key.properties.version, rotated.properties.version})
        ec_key = self.premium.create_ec_key("rot-ec", curve="P-384")
        self.assertEqual(self.premium.rotate_key("rot-ec").key.crv, "P-384")
        self.assertNotEqual(self.premium.get_key("rot-ec").key.x, ec_key.key.x)

    def test_sdk_rotation_policy_round_trip(self):
        self.premium.create_rsa_key("pol-key", size=2048)
        default = self.premium.get_key_rotation_policy("pol-key")
        self.assertEqual(default.id, PREMIUM + "/keys/pol-key/rotationpolicy")
        self.assertEqual([(a.action, a.time_before_expiry) for a in default.lifetime_actions],
                         [(KeyRotationPolicyAction.notify, "P30D")])
        # An empty policy is accepted (the SDK's own tests send one).
        self.premium.update_key_rotation_policy("pol-key", KeyRotationPolicy())
        actions = [KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P2M"),
                   KeyRotationLifetimeAction(KeyRotationPolicyAction.notify, time_before_expiry="P30D")]
        updated = self.premium.update_key_rotation_policy("pol-key", KeyRotationPolicy(), lifetime_actions=actions,
                                                          expires_in="P1Y")
        fetched = self.premium.get_key_rotation_policy("pol-key")
        for p in (updated, fetched):
            self.assertEqual(p.expires_in, "P1Y")
            self.assertEqual(sorted((a.action, a.time_after_create, a.time_before_expiry) for a in p.lifetime_actions),
                             [(KeyRotationPolicyAction.notify, None, "P30D"),
                              (KeyRotationPolicyAction.rotate, "P2M", None)])
            self.assertIsNotNone(p.created_on)
        # Rotation applies the policy's expiryTime to the new version.
        before = int(time.time())
        rotated = self.premium.rotate_key("pol-key")
        exp = int(rotated.properties.expires_on.timestamp())
        self.assertTrue(before + 365 * DAY <= exp <= int(time.time()) + 365 * DAY, exp - before)

    def test_sdk_get_random_bytes_from_a_managed_hsm(self):
        seen = set()
        for _ in range(3):
            b = self.mhsm.get_random_bytes(count=32)
            self.assertEqual(len(b), 32)
            seen.add(b)
        self.assertEqual(len(seen), 3)

    def test_sdk_managed_hsm_makes_software_key_types_as_hsm_keys(self):
        rsa_key = self.mhsm.create_rsa_key("mh-plain-rsa", size=2048)        # kty RSA, no hardware_protected
        self.assertEqual(rsa_key.key_type, "RSA-HSM")
        ec_key = self.mhsm.create_ec_key("mh-plain-ec", curve="P-256")
        self.assertEqual(ec_key.key_type, "EC-HSM")
        self.assertEqual(self.mhsm.get_key("mh-plain-ec").key_type, "EC-HSM")

    def test_sdk_secp256k1_key_signs_es256k(self):
        key = self.premium.create_ec_key("k1-sign", curve="P-256K", hardware_protected=True)
        self.assertEqual((key.key_type, key.key.crv), ("EC-HSM", "P-256K"))
        digest = hashlib.sha256(b"secp256k1").digest()
        sig = CryptographyClient(key, self.cred, **self.emu.client_kwargs()).sign(SignatureAlgorithm.es256_k,
                                                                                    digest).signature
        self.assertEqual(len(sig), 64)   # raw r||s
        pub = ec.EllipticCurvePublicNumbers(int.from_bytes(key.key.x, "big"), int.from_bytes(key.key.y, "big"),
                                            ec.SECP256K1()).public_key()
        der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        pub.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))

    # ------------------------------------------------------------ rules and errors (REST)
    def test_rotation_policy_rules(self):
        self.assertEqual(self.rest("POST", PREMIUM + "/keys/pol-rules/create", {"kty": "EC"}).status_code, 200)
        url = PREMIUM + "/keys/pol-rules/rotationpolicy"

        def put(actions, expiry=None):
            body = {"lifetimeActions": actions}
            if expiry:
                body["attributes"] = {"expiryTime": expiry}
            return self.rest("PUT", url, body)

        def act(kind, **trigger):
            return {"trigger": trigger, "action": {"type": kind}}

        bad = [
            ([act("Rotate", timeAfterCreate="P6D")], None, "at least 7 days"),
            ([act("Rotate", timeAfterCreate="PT48H")], None, "at least 7 days"),
            ([act("Rotate", timeAfterCreate="P90D")], "P27D", "at least 28 days"),
            ([act("Rotate", timeAfterCreate="P85D")], "P90D", "at least 7 days before expiry"),
            ([act("Rotate", timeBeforeExpiry="P30D")], None, "needs attributes.expiryTime"),
            ([act("Rotate", timeBeforeExpiry="P6D")], "P90D", "at least 7 days"),
            ([act("Rotate", timeBeforeExpiry="P85D")], "P90D", "at least 7 days"),
            ([act("Notify", timeAfterCreate="P30D")], "P90D", "Rotate action only"),
            ([act("Rotate", timeAfterCreate="P30D"), act("Rotate", timeAfterCreate="P60D")], None, "at most one"),
            ([act("Rotate", timeAfterCreate="P30D", timeBeforeExpiry="P30D")], "P90D", "exactly one"),
            ([act("Delete", timeAfterCreate="P30D")], None, "Rotate or Notify"),
            ([act("Rotate", timeAfterCreate="90 days")], None, "ISO 8601 duration"),
        ]
        for actions, expiry, text in bad:
            with self.subTest(actions=actions, expiry=expiry):
                self.assertError(put(actions, expiry), 400, "BadParameter", contains=text)
        # Nothing was stored: the default policy still answers.
        self.assertEqual(self.rest("GET", url).json()["lifetimeActions"][0]["action"]["type"], "Notify")
        ok = put([act("rotate", timeBeforeExpiry="P30D"), act("notify", timeBeforeExpiry="P14D")], "P90D")
        self.assertEqual(ok.status_code, 200, ok.text)
        self.assertEqual([a["action"]["type"] for a in ok.json()["lifetimeActions"]], ["Rotate", "Notify"])
        self.assertEqual(ok.json()["attributes"]["expiryTime"], "P90D")

    def test_rotation_needs_api_version_7_3(self):
        self.rest("POST", PREMIUM + "/keys/old-api/create", {"kty": "EC"})
        for method, path in (("POST", "/keys/old-api/rotate"), ("GET", "/keys/old-api/rotationpolicy")):
            self.assertError(self.rest(method, PREMIUM + path, api="7.2"), 400, "BadParameter", contains="7.3")
        self.assertEqual(len(self.rest("GET", PREMIUM + "/keys/old-api/versions").json()["value"]), 1)

    def test_rotate_refuses_a_key_imported_from_an_hsm_and_a_kek(self):
        kek = self.rest("POST", PREMIUM + "/keys/rot-kek/create",
                        {"kty": "RSA-HSM", "key_size": 2048, "key_ops": ["import"]}).json()
        target = ec.generate_private_key(ec.SECP256R1())
        pub = rsa.RSAPublicNumbers(int.from_bytes(az.b64url_decode(kek["key"]["e"]), "big"),
                                   int.from_bytes(az.b64url_decode(kek["key"]["n"]), "big")).public_key()
        blob = byok_blob(kek["key"]["kid"], pub, pkcs8(target))
        r = self.rest("PUT", PREMIUM + "/keys/rot-byok", {"key": {"kty": "EC-HSM", "crv": "P-256",
                                                                  "key_hsm": az.b64url(blob)}})
        self.assertEqual(r.status_code, 200, r.text)
        self.assertError(self.rest("POST", PREMIUM + "/keys/rot-byok/rotate"), 400, "BadParameter",
                         contains="imported from an HSM")
        self.assertError(self.rest("POST", PREMIUM + "/keys/rot-kek/rotate"), 400, "BadParameter")
        self.assertEqual(len(self.rest("GET", PREMIUM + "/keys/rot-byok/versions").json()["value"]), 1)
        # A plain (software) JWK import is the vault's own key material: it rotates.
        d = ec.generate_private_key(ec.SECP256R1()).private_numbers()
        jwk = JsonWebKey(kty="EC", crv="P-256", d=d.private_value.to_bytes(32, "big"),
                         x=d.public_numbers.x.to_bytes(32, "big"), y=d.public_numbers.y.to_bytes(32, "big"))
        self.premium.import_key("rot-jwk", jwk)
        self.assertEqual(self.rest("POST", PREMIUM + "/keys/rot-jwk/rotate").status_code, 200)

    def test_rotation_permissions(self):
        self.rest("POST", PREMIUM + "/keys/perm-rot/create", {"kty": "EC"})
        cert_tok = self.emu.mint_token(az.CERT_APP)   # demo-premium: no rotation permissions
        self.assertError(self.rest("GET", PREMIUM + "/keys/perm-rot/rotationpolicy", token=cert_tok), 403,
                         "Forbidden", inner="AccessDenied", contains="keys getrotationpolicy permission")
        self.assertError(self.rest("PUT", PREMIUM + "/keys/perm-rot/rotationpolicy", {"lifetimeActions": []},
                                   token=cert_tok), 403, "Forbidden", contains="keys setrotationpolicy permission")
        # RBAC: the Crypto User (reader app) has neither; the Crypto Officer has keyrotationpolicies/*.
        self.assertEqual(self.rest("POST", RBAC + "/keys/perm-rbac/create", {"kty": "EC"}).status_code, 200)
        self.assertError(self.rest("GET", RBAC + "/keys/perm-rbac/rotationpolicy", token=self.reader_tok), 403,
                         "Forbidden", inner="ForbiddenByRbac",
                         contains="Action: 'Microsoft.KeyVault/vaults/keyrotationpolicies/read'")
        self.assertError(self.rest("POST", RBAC + "/keys/perm-rbac/rotate", token=self.reader_tok), 403,
                         "Forbidden", contains="Action: 'Microsoft.KeyVault/vaults/keys/rotate/action'")
        self.assertEqual(self.rest("GET", RBAC + "/keys/perm-rbac/rotationpolicy").status_code, 200)
        self.assertEqual(self.rest("POST", RBAC + "/keys/perm-rbac/rotate").status_code, 200)

    def test_rng_count_and_where(self):
        htok = self.emu.token(resource="https://managedhsm.azure.net")
        for count in (0, 129, "8", None):
            with self.subTest(count=count):
                self.assertError(self.rest("POST", MHSM + "/rng", {"count": count}, token=htok), 400, "BadParameter")
        self.assertEqual(len(az.b64url_decode(self.rest("POST", MHSM + "/rng", {"count": 128},
                                                        token=htok).json()["value"])), 128)
        # [U] A key vault has no /rng: it answers like any unknown path.
        self.assertError(self.rest("POST", PREMIUM + "/rng", {"count": 8}), 404, "NotFound")
        reader_hsm = self.emu.token(az.READER_APP, az.READER_SECRET, resource="https://managedhsm.azure.net")
        self.assertEqual(self.rest("POST", MHSM + "/rng", {"count": 8}, token=reader_hsm).status_code, 200)


if __name__ == "__main__":
    unittest.main()
