"""Every error case: the status, the error code, and that no state changed.

Raw REST (requests) is used so that status, body and headers can be checked
exactly; tokens come from the emulator's real token endpoint.
"""
import hashlib
import json
import os
import time
import unittest
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

import azhelpers as az
from byok import byok_blob, pkcs8

PREMIUM = az.Emulator.vault_url("demo-premium")
STANDARD = az.Emulator.vault_url("demo-standard")
PROTECTED = az.Emulator.vault_url("demo-protected")
NOSOFT = az.Emulator.vault_url("demo-nosoftdelete")
RBAC = az.Emulator.vault_url("demo-rbac")
MHSM = az.Emulator.vault_url("demo-mhsm", hsm=True)
TOKEN_URL = "https://login.microsoftonline.com/%s/oauth2/v2.0/token" % az.TENANT


class ErrorTestBase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = az.Emulator.start()
        cls.emu.map_hosts()
        cls.tok = cls.emu.token()
        cls.hsm_tok = cls.emu.token(resource="https://managedhsm.azure.net")
        cls.reader_tok = cls.emu.token(az.READER_APP, az.READER_SECRET)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def call(self, method, url, body=None, token="default", **kw):
        if token == "default":
            token = self.hsm_tok if ".managedhsm." in url else self.tok
        return self.emu.rest(method, url, token, body, **kw)

    def assertError(self, r, status, code, inner=None, contains=None):
        self.assertEqual(r.status_code, status, r.text)
        err = r.json()["error"]
        self.assertEqual(err["code"], code, r.text)
        if inner is not None:
            self.assertEqual(err.get("innererror", {}).get("code"), inner, r.text)
        if contains:
            self.assertIn(contains, err["message"])

    def names(self, vault):
        """Active key names in a vault: the state we check did not change."""
        r = self.call("GET", vault + "/keys?maxresults=25")
        self.assertEqual(r.status_code, 200, r.text)
        out, nxt = [], r.json()
        while True:
            out += [i["kid"].rsplit("/", 1)[1] for i in nxt["value"]]
            if not nxt.get("nextLink"):
                return sorted(out)
            nxt = self.call("GET", nxt["nextLink"], api=None).json()

    def versions(self, vault, name):
        r = self.call("GET", vault + "/keys/%s/versions" % name)
        return sorted(i["kid"] for i in r.json()["value"]) if r.status_code == 200 else None

    def deleted(self, vault):
        r = self.call("GET", vault + "/deletedkeys")
        return sorted(i["recoveryId"].rsplit("/", 1)[1] for i in r.json()["value"])

    def create(self, vault, name, body=None, **kw):
        r = self.call("POST", vault + "/keys/%s/create" % name, body or {"kty": "EC", "crv": "P-256"}, **kw)
        return r

    def wait_deleted(self, vault, name, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.call("GET", vault + "/deletedkeys/" + name).status_code == 200:
                return
            time.sleep(0.1)
        self.fail("deletion of %s did not complete" % name)


class AuthErrors(ErrorTestBase):
    def test_challenge_without_token_vault(self):
        before = self.names(PREMIUM)
        r = self.call("POST", PREMIUM + "/keys/nt/create", {"kty": "EC"}, token=None)
        self.assertError(r, 401, "Unauthorized", contains="Request is missing a Bearer or PoP token.")
        self.assertEqual(r.headers["WWW-Authenticate"],
                         'Bearer authorization="https://login.windows.net/%s", resource="https://vault.azure.net"'
                         % az.TENANT)
        self.assertEqual(self.names(PREMIUM), before)

    def test_challenge_without_token_managed_hsm_has_empty_body(self):
        r = self.call("GET", MHSM + "/keys", token=None)
        self.assertEqual(r.status_code, 401)
        self.assertEqual(r.content, b"")
        self.assertEqual(r.headers["WWW-Authenticate"],
                         'Bearer authorization="https://login.microsoftonline.com/%s", '
                         'resource="https://managedhsm.azure.net"' % az.TENANT)

    def test_expired_token(self):
        expired = self.emu.mint_token(lifetime=-60)
        before = self.names(PREMIUM)
        r = self.call("POST", PREMIUM + "/keys/exp/create", {"kty": "EC"}, token=expired)
        self.assertError(r, 401, "Unauthorized", contains="expired")
        self.assertIn("WWW-Authenticate", r.headers)
        self.assertEqual(self.names(PREMIUM), before)

    def test_wrong_audience_token(self):
        arm_tok = self.emu.token(resource="https://management.azure.com")
        r = self.call("GET", PREMIUM + "/keys", token=arm_tok)
        self.assertError(r, 401, "Unauthorized", contains="Invalid audience")
        # A vault token is not good for a managed HSM either.
        self.assertEqual(self.call("GET", MHSM + "/keys", token=self.tok).status_code, 401)

    def test_forged_token(self):
        h, p, s = self.tok.split(".")
        claims = az.jwt_claims(self.tok)
        claims["oid"] = str(uuid.uuid4())
        forged = h + "." + az.b64url(json.dumps(claims).encode()) + "." + s
        self.assertError(self.call("GET", PREMIUM + "/keys", token=forged), 401, "Unauthorized")

    def test_missing_and_unknown_api_version(self):
        self.assertError(self.call("GET", PREMIUM + "/keys", api=None), 400, "BadParameter", contains="api-version")
        self.assertError(self.call("GET", PREMIUM + "/keys", api="1.0"), 400, "BadParameter")
        self.assertEqual(self.call("GET", PREMIUM + "/keys", api="7.6").status_code, 200)
        self.assertEqual(self.call("GET", PREMIUM + "/keys", api="2025-07-01").status_code, 200)


class EntraErrors(ErrorTestBase):
    def token_request(self, **form):
        base = {"client_id": az.SECRET_APP, "client_secret": az.SECRET, "grant_type": "client_credentials",
                "scope": "https://vault.azure.net/.default"}
        base.update(form)
        return self.emu.session().post(TOKEN_URL, data={k: v for k, v in base.items() if v is not None})

    def assertAad(self, r, status, error, code):
        self.assertEqual(r.status_code, status, r.text)
        body = r.json()
        self.assertEqual(body["error"], error)
        self.assertEqual(body["error_codes"], [code])
        self.assertTrue(body["error_description"].startswith("AADSTS%d:" % code), body)
        for k in ("timestamp", "trace_id", "correlation_id"):
            self.assertIn(k, body)
        self.assertNotIn("access_token", body)

    def test_bad_secret(self):
        self.assertAad(self.token_request(client_secret="wrong"), 401, "invalid_client", 7000215)

    def test_unknown_client(self):
        self.assertAad(self.token_request(client_id=str(uuid.uuid4())), 400, "unauthorized_client", 700016)

    def test_unknown_tenant(self):
        r = self.emu.session().post("https://login.microsoftonline.com/%s/oauth2/v2.0/token" % uuid.uuid4(),
                                    data={"client_id": az.SECRET_APP, "client_secret": az.SECRET,
                                          "grant_type": "client_credentials",
                                          "scope": "https://vault.azure.net/.default"})
        self.assertAad(r, 400, "invalid_tenant", 90002)

    def test_wrong_scope(self):
        self.assertAad(self.token_request(scope="https://vault.azure.net/keys.read"), 400, "invalid_scope", 70011)
        self.assertAad(self.token_request(scope="https://vault.azure.net/.default https://management.azure.com/.default"),
                       400, "invalid_scope", 70011)
        self.assertAad(self.token_request(scope="https://unknown.example.com/.default"), 400, "invalid_resource",
                       500011)

    # -------------------------------------------------- certificate assertions
    def assertion(self, alg="PS256", aud=TOKEN_URL, iss=az.CERT_APP, exp_delta=600, nbf_delta=0, key=None,
                  cert=None, thumb="x5t#S256"):
        with open(self.emu.cert_path(), "rb") as f:
            pem = f.read()
        key = key or serialization.load_pem_private_key(pem, None)
        cert = cert or x509.load_pem_x509_certificate(pem)
        der = cert.public_bytes(serialization.Encoding.DER)
        digest = hashlib.sha256(der).digest() if thumb == "x5t#S256" else hashlib.sha1(der).digest()
        header = {"alg": alg, "typ": "JWT", thumb: az.b64url(digest)}
        now = int(time.time())
        claims = {"aud": aud, "iss": iss, "sub": iss, "jti": str(uuid.uuid4()), "iat": now + nbf_delta,
                  "nbf": now + nbf_delta, "exp": now + exp_delta}
        si = (az.b64url(json.dumps(header).encode()) + "." + az.b64url(json.dumps(claims).encode())).encode()
        if alg == "PS256":
            sig = key.sign(si, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
        else:
            sig = key.sign(si, padding.PKCS1v15(), hashes.SHA256())
        return si.decode() + "." + az.b64url(sig)

    def cert_request(self, assertion):
        return self.token_request(client_id=az.CERT_APP, client_secret=None, client_assertion=assertion,
                                  client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer")

    def test_valid_assertions_both_thumbprint_forms(self):
        for alg, thumb in (("PS256", "x5t#S256"), ("RS256", "x5t")):
            r = self.cert_request(self.assertion(alg=alg, thumb=thumb))
            self.assertEqual(r.status_code, 200, r.text)
            self.assertEqual(az.jwt_claims(r.json()["access_token"])["appid"], az.CERT_APP)

    def test_expired_assertion(self):
        self.assertAad(self.cert_request(self.assertion(exp_delta=-60, nbf_delta=-700)), 401, "invalid_client",
                       700024)

    def test_not_yet_valid_assertion(self):
        self.assertAad(self.cert_request(self.assertion(nbf_delta=300, exp_delta=900)), 401, "invalid_client",
                       700024)

    def test_assertion_wrong_audience(self):
        self.assertAad(self.cert_request(self.assertion(aud="https://login.microsoftonline.com/other/oauth2/v2.0/token")),
                       401, "invalid_client", 700023)

    def test_assertion_wrong_issuer(self):
        self.assertAad(self.cert_request(self.assertion(iss=az.SECRET_APP)), 401, "invalid_client", 700021)

    def test_assertion_bad_signature(self):
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.assertAad(self.cert_request(self.assertion(key=other)), 401, "invalid_client", 700027)

    def test_assertion_unregistered_certificate(self):
        import datetime
        from cryptography.x509.oid import NameOID
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        n = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue")])
        now = datetime.datetime.now(datetime.timezone.utc)
        c = (x509.CertificateBuilder().subject_name(n).issuer_name(n).public_key(k.public_key())
             .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
             .sign(k, hashes.SHA256()))
        self.assertAad(self.cert_request(self.assertion(key=k, cert=c)), 401, "invalid_client", 700027)

    def test_secret_app_cannot_use_certificate_and_vice_versa(self):
        self.assertAad(self.token_request(client_id=az.CERT_APP, client_secret="anything"), 401,
                       "invalid_client", 7000215)


class DataPlaneErrors(ErrorTestBase):
    def test_tier_standard_vault_rejects_hsm_keys(self):
        before = self.names(STANDARD)
        for kty in ("RSA-HSM", "EC-HSM", "oct-HSM", "oct"):
            self.assertError(self.create(STANDARD, "tier-x", {"kty": kty}), 400, "BadParameter")
        self.assertEqual(self.names(STANDARD), before)

    def test_tier_premium_rejects_oct_and_mhsm_makes_software_types_hsm(self):
        self.assertError(self.create(PREMIUM, "tier-oct", {"kty": "oct-HSM"}), 400, "BadParameter")
        self.assertNotIn("tier-oct", self.names(PREMIUM))
        # A managed HSM accepts RSA / EC and makes them RSA-HSM / EC-HSM (reference §11).
        for name, body, kty in (("tier-rsa", {"kty": "RSA", "key_size": 2048}, "RSA-HSM"),
                                ("tier-ec", {"kty": "EC", "crv": "P-384"}, "EC-HSM")):
            r = self.create(MHSM, name, body)
            self.assertEqual(r.status_code, 200, r.text)
            self.assertEqual(r.json()["key"]["kty"], kty)
            self.assertEqual(self.call("GET", MHSM + "/keys/" + name).json()["key"]["kty"], kty)
        self.assertError(self.create(MHSM, "tier-bad", {"kty": "RSA", "key_size": 1024}), 400, "BadParameter")

    def test_import_op_is_exclusive(self):
        before = self.names(PREMIUM)
        self.assertError(self.create(PREMIUM, "kek-bad", {"kty": "RSA-HSM", "key_ops": ["import", "sign"]}),
                         400, "BadParameter", contains="mutually exclusive")
        self.assertError(self.create(PREMIUM, "kek-bad", {"kty": "EC-HSM", "key_ops": ["import"]}),
                         400, "BadParameter")
        self.assertEqual(self.names(PREMIUM), before)

    def test_invalid_names_and_sizes(self):
        self.assertError(self.create(PREMIUM, "bad_name"), 400, "BadParameter")
        self.assertError(self.create(PREMIUM, "rsa1", {"kty": "RSA", "key_size": 1000}), 400, "BadParameter")
        self.assertError(self.create(PREMIUM, "ec1", {"kty": "EC", "crv": "P-192"}), 400, "BadParameter")
        self.assertError(self.call("GET", PREMIUM + "/keys?maxresults=26"), 400, "BadParameter")
        self.assertError(self.call("GET", PREMIUM + "/keys?maxresults=0"), 400, "BadParameter")

    def test_key_not_found(self):
        self.assertError(self.call("GET", PREMIUM + "/keys/nope"), 404, "KeyNotFound",
                         contains="A key with (name/id) nope was not found in this key vault.")
        self.assertError(self.call("GET", PREMIUM + "/keys/nope/" + "0" * 32), 404, "KeyNotFound")
        self.assertError(self.call("DELETE", PREMIUM + "/keys/nope"), 404, "KeyNotFound")
        self.assertError(self.call("POST", PREMIUM + "/keys/nope/backup"), 404, "KeyNotFound")

    def test_soft_delete_lifecycle_errors(self):
        self.assertEqual(self.create(PREMIUM, "sd-key").status_code, 200)
        r = self.call("DELETE", PREMIUM + "/keys/sd-key")
        self.assertEqual(r.status_code, 200)
        body = r.json()
        self.assertEqual(body["recoveryId"], PREMIUM + "/deletedkeys/sd-key")
        self.assertEqual(body["scheduledPurgeDate"] - body["deletedDate"], 7 * 86400)
        self.assertEqual(body["attributes"]["recoveryLevel"], "CustomizedRecoverable+Purgeable")
        # While the deletion runs (1 s in the demo config): 404 on the deleted
        # key, 409 on reuse of the name, 404 on a second delete.
        self.assertError(self.call("GET", PREMIUM + "/deletedkeys/sd-key"), 404, "KeyNotFound")
        self.assertError(self.create(PREMIUM, "sd-key"), 409, "Conflict", inner="ObjectIsBeingDeleted",
                         contains="currently being deleted")
        self.assertError(self.call("DELETE", PREMIUM + "/deletedkeys/sd-key"), 409, "Conflict",
                         inner="ObjectIsBeingDeleted", contains="Key is currently being deleted.")
        self.assertError(self.call("DELETE", PREMIUM + "/keys/sd-key"), 404, "KeyNotFound")
        self.assertNotIn("sd-key", self.deleted(PREMIUM))
        self.wait_deleted(PREMIUM, "sd-key")
        self.assertError(self.create(PREMIUM, "sd-key"), 409, "Conflict", inner="ObjectIsDeletedButRecoverable")
        imp = self.call("PUT", PREMIUM + "/keys/sd-key", {"key": {"kty": "oct", "k": az.b64url(b"x" * 16)}})
        self.assertIn(imp.status_code, (400, 409))   # (oct is not allowed in a vault at all)
        self.assertNotIn("sd-key", self.names(PREMIUM))
        self.assertIn("sd-key", self.deleted(PREMIUM))
        # Purge frees the name.
        r = self.call("DELETE", PREMIUM + "/deletedkeys/sd-key")
        self.assertEqual(r.status_code, 204)
        self.assertEqual(r.content, b"")
        self.assertError(self.call("DELETE", PREMIUM + "/deletedkeys/sd-key"), 404, "KeyNotFound")
        self.assertNotIn("sd-key", self.deleted(PREMIUM))
        self.assertEqual(self.create(PREMIUM, "sd-key").status_code, 200)

    def test_name_being_recovered_is_409_object_is_being_deleted(self):
        self.assertEqual(self.create(PREMIUM, "rc-key").status_code, 200)
        self.call("DELETE", PREMIUM + "/keys/rc-key")
        self.wait_deleted(PREMIUM, "rc-key")
        self.assertEqual(self.call("POST", PREMIUM + "/deletedkeys/rc-key/recover").status_code, 200)
        # While the recovery runs (1 s in the demo config) the name is still taken.
        self.assertError(self.create(PREMIUM, "rc-key"), 409, "Conflict", inner="ObjectIsBeingDeleted")
        self.assertError(self.call("PUT", PREMIUM + "/keys/rc-key", {"key": {"kty": "EC", "crv": "P-256",
                                                                            "d": az.b64url(b"\x01" * 32)}}),
                         409, "Conflict", inner="ObjectIsBeingDeleted")

    def test_purge_protection(self):
        self.assertEqual(self.create(PROTECTED, "pp-key").status_code, 200)
        r = self.call("GET", PROTECTED + "/keys/pp-key")
        self.assertEqual(r.json()["attributes"]["recoveryLevel"], "Recoverable")
        self.call("DELETE", PROTECTED + "/keys/pp-key")
        self.wait_deleted(PROTECTED, "pp-key")
        self.assertError(self.call("DELETE", PROTECTED + "/deletedkeys/pp-key"), 403, "Forbidden",
                         contains='Operation "purge" is not allowed because purge protection is enabled')
        self.assertIn("pp-key", self.deleted(PROTECTED))
        # Recover still works, and the name is usable again.
        self.assertEqual(self.call("POST", PROTECTED + "/deletedkeys/pp-key/recover").status_code, 200)

    def test_vault_without_soft_delete(self):
        r = self.create(NOSOFT, "ns-key")
        self.assertEqual(r.json()["attributes"]["recoveryLevel"], "Purgeable")
        self.assertNotIn("recoverableDays", r.json()["attributes"])
        r = self.call("DELETE", NOSOFT + "/keys/ns-key")
        self.assertEqual(r.status_code, 200)
        self.assertNotIn("recoveryId", r.json())
        self.assertNotIn("ns-key", self.names(NOSOFT))
        self.assertError(self.call("GET", NOSOFT + "/deletedkeys/ns-key"), 400, "BadParameter")
        self.assertError(self.call("DELETE", NOSOFT + "/deletedkeys/ns-key"), 400, "BadParameter")
        self.assertEqual(self.create(NOSOFT, "ns-key").status_code, 200)   # name free at once

    def test_access_policy_denied(self):
        before = self.names(PREMIUM)
        r = self.create(PREMIUM, "ap-key", token=self.reader_tok)
        self.assertError(r, 403, "Forbidden", inner="AccessDenied",
                         contains="does not have keys create permission on key vault 'demo-premium;location=westeurope'")
        self.assertIn("appid=%s" % az.READER_APP, r.json()["error"]["message"])
        self.assertEqual(self.names(PREMIUM), before)
        # The reader may list and get.
        self.assertEqual(self.call("GET", PREMIUM + "/keys", token=self.reader_tok).status_code, 200)
        # The certificate app has no 'rotate' on demo-premium.
        self.create(PREMIUM, "ap-rot")
        cert_tok = self.emu.mint_token(az.CERT_APP)
        self.assertError(self.call("POST", PREMIUM + "/keys/ap-rot/rotate", token=cert_tok), 403, "Forbidden",
                         inner="AccessDenied", contains="keys rotate permission")
        self.assertEqual(len(self.versions(PREMIUM, "ap-rot")), 1)

    def test_rbac_denied(self):
        before = self.names(RBAC)
        r = self.create(RBAC, "rb-key", token=self.reader_tok)   # Crypto User cannot create
        self.assertError(r, 403, "Forbidden", inner="ForbiddenByRbac",
                         contains="Action: 'Microsoft.KeyVault/vaults/keys/create/action'")
        self.assertEqual(self.names(RBAC), before)
        self.assertEqual(self.create(RBAC, "rb-key").status_code, 200)          # Crypto Officer can
        digest = az.b64url(hashlib.sha256(b"x").digest())
        r = self.call("POST", RBAC + "/keys/rb-key/sign", {"alg": "ES256", "value": digest}, token=self.reader_tok)
        self.assertEqual(r.status_code, 200, r.text)                           # Crypto User can sign
        r = self.call("DELETE", RBAC + "/keys/rb-key", token=self.reader_tok)
        self.assertError(r, 403, "Forbidden", inner="ForbiddenByRbac")
        self.assertIn("rb-key", self.names(RBAC))
        # Purge and recover are keys/purge/action and keys/recover/action; there is no
        # vaults/deletedKeys/... data action (reference §11). Reading a deleted key is keys/read.
        self.assertEqual(self.call("DELETE", RBAC + "/keys/rb-key").status_code, 200)
        self.wait_deleted(RBAC, "rb-key")
        self.assertEqual(self.call("GET", RBAC + "/deletedkeys/rb-key", token=self.reader_tok).status_code, 200)
        self.assertError(self.call("DELETE", RBAC + "/deletedkeys/rb-key", token=self.reader_tok), 403, "Forbidden",
                         inner="ForbiddenByRbac", contains="Action: 'Microsoft.KeyVault/vaults/keys/purge/action'")
        self.assertError(self.call("POST", RBAC + "/deletedkeys/rb-key/recover", token=self.reader_tok), 403,
                         "Forbidden", contains="Action: 'Microsoft.KeyVault/vaults/keys/recover/action'")
        self.assertEqual(self.call("DELETE", RBAC + "/deletedkeys/rb-key").status_code, 204)   # Crypto Officer

    def test_managed_hsm_crypto_user_cannot_purge(self):
        reader_hsm = self.emu.token(az.READER_APP, az.READER_SECRET, resource="https://managedhsm.azure.net")
        self.assertEqual(self.create(MHSM, "mh-key", {"kty": "EC-HSM"}, token=reader_hsm).status_code, 200)
        self.call("DELETE", MHSM + "/keys/mh-key", token=reader_hsm)
        self.wait_deleted(MHSM, "mh-key")
        self.assertError(self.call("DELETE", MHSM + "/deletedkeys/mh-key", token=reader_hsm), 403, "Forbidden",
                         inner="ForbiddenByRbac")
        self.assertError(self.call("POST", MHSM + "/deletedkeys/mh-key/recover", token=reader_hsm), 403,
                         "Forbidden")
        self.assertIn("mh-key", self.deleted(MHSM))
        self.assertEqual(self.call("DELETE", MHSM + "/deletedkeys/mh-key").status_code, 204)   # Officer can

    def test_disabled_key_and_key_ops(self):
        r = self.create(PREMIUM, "dis-key", {"kty": "EC", "crv": "P-256", "attributes": {"enabled": False}})
        kid = r.json()["key"]["kid"]
        body = {"alg": "ES256", "value": az.b64url(hashlib.sha256(b"d").digest())}
        self.assertError(self.call("POST", kid + "/sign", body), 403, "Forbidden", contains="disabled")
        self.create(PREMIUM, "ops-key", {"kty": "EC", "crv": "P-256", "key_ops": ["verify"]})
        self.assertError(self.call("POST", PREMIUM + "/keys/ops-key/sign", body), 403, "Forbidden")
        self.assertError(self.call("POST", PREMIUM + "/keys/ops-key/sign", {"alg": "ES256", "value": "AAAA"}),
                         403, "Forbidden")
        r = self.create(PREMIUM, "alg-key", {"kty": "EC", "crv": "P-256"})
        self.assertError(self.call("POST", PREMIUM + "/keys/alg-key/sign", {"alg": "ES384", "value": body["value"]}),
                         400, "BadParameter")
        self.assertError(self.call("POST", PREMIUM + "/keys/alg-key/sign", {"alg": "ES256", "value": "AAAA"}),
                         400, "BadParameter", contains="digest length")

    def test_exportable_needs_release_policy(self):
        self.assertError(self.create(PREMIUM, "exp-key", {"kty": "RSA-HSM", "attributes": {"exportable": True}}),
                         400, "BadParameter", contains="AKV.SKR.1004")
        self.assertNotIn("exp-key", self.names(PREMIUM))

    def test_restore_errors(self):
        self.create(PREMIUM, "rs-key")
        blob = self.call("POST", PREMIUM + "/keys/rs-key/backup").json()["value"]
        self.assertError(self.call("POST", PREMIUM + "/keys/restore", {"value": blob}), 409, "Conflict")
        self.assertError(self.call("POST", PREMIUM + "/keys/restore", {"value": az.b64url(b"garbage")}), 400,
                         "BadParameter")
        self.assertError(self.call("POST", MHSM + "/keys/restore", {"value": blob}), 400, "BadParameter")
        self.assertEqual(len(self.versions(PREMIUM, "rs-key")), 1)


class GrantPropagation(ErrorTestBase):
    """Grants made at run time (own emulator: they would change what other classes see)."""

    def test_grant_propagation(self):
        # A role assignment made at run time takes effect after its propagation delay; until then
        # the RBAC 403 is the one Azure sends, whose message asks to observe propagation time.
        r = self.emu.admin("POST", "/_admin/grants", {"vault": "demo-rbac", "principalId": az.READER_APP,
                                                      "role": "Key Vault Crypto Officer", "propagationSeconds": 1.5})
        self.assertEqual(r.status_code, 201, r.text)
        r = self.create(RBAC, "pg-key", token=self.reader_tok)
        self.assertError(r, 403, "Forbidden", inner="ForbiddenByRbac",
                         contains="If role assignments, deny assignments or role definitions were changed recently, "
                                  "please observe propagation time.")
        time.sleep(1.6)
        self.assertEqual(self.create(RBAC, "pg-key", token=self.reader_tok).status_code, 200)
        # An access policy propagates the same way; its 403 carries no propagation hint.
        r = self.emu.admin("POST", "/_admin/grants", {"vault": "demo-standard", "objectId": "0b1ec700-0000-4000-8000-"
                                                      "000000000003", "permissions": {"keys": ["create"]},
                                                      "propagationSeconds": 1.0})
        self.assertEqual(r.status_code, 201, r.text)
        r = self.create(STANDARD, "pg-ap", token=self.reader_tok)
        self.assertError(r, 403, "Forbidden", inner="AccessDenied")
        self.assertNotIn("propagation", r.json()["error"]["message"])
        time.sleep(1.1)
        self.assertEqual(self.create(STANDARD, "pg-ap", token=self.reader_tok).status_code, 200)
        self.assertEqual(self.emu.admin("POST", "/_admin/grants", {"vault": "nope", "principalId": "x",
                                                                   "role": "Key Vault Reader"}).status_code, 404)
        self.assertEqual(self.emu.admin("POST", "/_admin/grants", {"vault": "demo-rbac", "principalId": "x",
                                                                   "role": "No Such Role"}).status_code, 400)


class ByokErrors(ErrorTestBase):
    def kek(self, vault, name, ops=("import",)):
        r = self.create(vault, name, {"kty": "RSA-HSM", "key_size": 2048, "key_ops": list(ops)})
        self.assertEqual(r.status_code, 200, r.text)
        k = r.json()["key"]
        pub = rsa.RSAPublicNumbers(int.from_bytes(az.b64url_decode(k["e"]), "big"),
                                   int.from_bytes(az.b64url_decode(k["n"]), "big")).public_key()
        return k["kid"], pub

    def import_blob(self, vault, name, blob, kty="EC-HSM", crv="P-256", encode=az.b64url):
        key = {"kty": kty, "key_hsm": encode(blob), "key_ops": ["sign", "verify"]}
        if crv:
            key["crv"] = crv
        return self.call("PUT", vault + "/keys/" + name, {"key": key})

    def test_byok_errors_leave_no_key(self):
        kid, pub = self.kek(PREMIUM, "bk-kek")
        target = pkcs8(ec.generate_private_key(ec.SECP256R1()))
        before = self.names(PREMIUM)
        # kty does not match the wrapped key
        self.assertError(self.import_blob(PREMIUM, "bk-t", byok_blob(kid, pub, target), kty="RSA-HSM", crv=None),
                         400, "BadParameter")
        # curve does not match
        self.assertError(self.import_blob(PREMIUM, "bk-t", byok_blob(kid, pub, target), crv="P-384"),
                         400, "BadParameter")
        # corrupted ciphertext (AES-KWP integrity)
        blob = json.loads(byok_blob(kid, pub, target))
        ct = bytearray(az.b64url_decode(blob["ciphertext"]))
        ct[-1] ^= 1
        blob["ciphertext"] = az.b64url(bytes(ct))
        self.assertError(self.import_blob(PREMIUM, "bk-t", json.dumps(blob).encode()), 400, "BadParameter")
        # wrapped with another RSA key than the KEK
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        self.assertError(self.import_blob(PREMIUM, "bk-t", byok_blob(kid, other, target)), 400, "BadParameter")
        # KEK that is not import-only
        kid2, pub2 = self.kek(PREMIUM, "bk-notkek", ops=("wrapKey", "unwrapKey"))
        self.assertError(self.import_blob(PREMIUM, "bk-t", byok_blob(kid2, pub2, target)), 400, "BadParameter",
                         contains="key exchange key")
        # KEK in another vault
        kid3, pub3 = self.kek(az.Emulator.vault_url("demo-protected"), "bk-kek-other")
        self.assertError(self.import_blob(PREMIUM, "bk-t", byok_blob(kid3, pub3, target)), 400, "BadParameter",
                         contains="same")
        # Standard vault: no BYOK
        self.assertError(self.import_blob(STANDARD, "bk-t", byok_blob(kid, pub, target)), 400, "BadParameter")
        self.assertEqual(self.names(PREMIUM), sorted(before + ["bk-notkek"]))
        self.assertNotIn("bk-t", self.names(STANDARD))
        # ... and the correct blob works, in every base64 form.
        for i, enc in enumerate((az.b64url, lambda b: __import__("base64").b64encode(b).decode())):
            r = self.import_blob(PREMIUM, "bk-ok%d" % i, byok_blob(kid, pub, target), encode=enc)
            self.assertEqual(r.status_code, 200, r.text)
            self.assertEqual(r.json()["key"]["kty"], "EC-HSM")

    def test_standard_vault_cannot_hold_a_kek(self):
        self.assertError(self.create(STANDARD, "std-kek", {"kty": "RSA-HSM", "key_ops": ["import"]}), 400,
                         "BadParameter")


class ArmErrors(ErrorTestBase):
    URL = "https://management.azure.com/subscriptions/%s/providers/Microsoft.KeyVault/vaults" % az.SUBSCRIPTION

    def test_arm_errors(self):
        arm_tok = self.emu.token(resource="https://management.azure.com")
        r = self.emu.rest("GET", self.URL, None, api="2024-11-01")
        self.assertError(r, 401, "AuthenticationFailed")
        self.assertIn("WWW-Authenticate", r.headers)
        self.assertError(self.emu.rest("GET", self.URL, self.tok, api="2024-11-01"), 401,
                         "InvalidAuthenticationTokenAudience")
        self.assertError(self.emu.rest("GET", self.URL, self.emu.mint_token(resource="https://management.azure.com",
                                                                            lifetime=-5), api="2024-11-01"),
                         401, "ExpiredAuthenticationToken")
        self.assertError(self.emu.rest("GET", self.URL, arm_tok, api=None), 400, "MissingApiVersionParameter")
        self.assertError(self.emu.rest("GET", self.URL.replace(az.SUBSCRIPTION, str(uuid.uuid4())), arm_tok,
                                       api="2024-11-01"), 404, "SubscriptionNotFound")
        r = self.emu.rest("GET", self.URL + "?$top=2", arm_tok, api="2024-11-01")
        self.assertEqual(r.status_code, 200)
        self.assertEqual(len(r.json()["value"]), 2)
        self.assertIn("$skiptoken=", r.json()["nextLink"])
        self.assertTrue(r.json()["nextLink"].startswith("https://management.azure.com/subscriptions/"))
        # Also accepted: the az CLI's ARM resource.
        cli_tok = self.emu.token(resource="https://management.core.windows.net/")
        self.assertEqual(self.emu.rest("GET", self.URL, cli_tok, api="2024-11-01").status_code, 200)

    def test_generic_resource_list_as_az_keyvault_list_calls_it(self):
        arm_tok = self.emu.token(resource="https://management.azure.com")
        base = "https://management.azure.com/subscriptions/%s/resources" % az.SUBSCRIPTION
        r = self.emu.rest("GET", base + "?$filter=resourceType eq 'Microsoft.KeyVault/vaults'", arm_tok,
                          api="2015-11-01")
        self.assertEqual(r.status_code, 200, r.text)
        items = r.json()["value"]
        self.assertEqual(sorted(i["name"] for i in items), ["demo-nosoftdelete", "demo-premium", "demo-protected",
                                                            "demo-rbac", "demo-standard", "demo-usgov"])
        first = [i for i in items if i["name"] == "demo-premium"][0]
        self.assertEqual(first["type"], "Microsoft.KeyVault/vaults")
        self.assertEqual(first["id"], "/subscriptions/%s/resourceGroups/rg-demo/providers/Microsoft.KeyVault/vaults/"
                                      "demo-premium" % az.SUBSCRIPTION)
        self.assertNotIn("properties", first)   # the generic list carries no properties
        r = self.emu.rest("GET", base + "?$filter=resourceType eq 'Microsoft.KeyVault/managedHSMs'", arm_tok,
                          api="2015-11-01")
        self.assertEqual([i["name"] for i in r.json()["value"]], ["demo-mhsm"])
        # Paging keeps the filter.
        r = self.emu.rest("GET", base + "?$filter=resourceType eq 'Microsoft.KeyVault/vaults'&$top=4", arm_tok,
                          api="2015-11-01")
        nxt = r.json()["nextLink"]
        self.assertIn("$filter=", nxt)
        self.assertEqual(len(self.emu.rest("GET", nxt, arm_tok, api=None).json()["value"]), 2)
        self.assertError(self.emu.rest("GET", base + "?$filter=name eq 'x'", arm_tok, api="2015-11-01"), 400,
                         "InvalidFilterInQueryString")
        self.assertError(self.emu.rest("GET", base, self.tok, api="2015-11-01"), 401,
                         "InvalidAuthenticationTokenAudience")


if __name__ == "__main__":
    unittest.main()
