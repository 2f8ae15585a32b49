"""Faults on demand (admin endpoint and config) and the per-vault rate limit."""
import time
import unittest

import requests
from cryptography.hazmat.primitives.asymmetric import ec
from azure.core.exceptions import ClientAuthenticationError
from azure.keyvault.keys import KeyClient

import azhelpers as az

PREMIUM = az.Emulator.vault_url("demo-premium")
STANDARD = az.Emulator.vault_url("demo-standard")
MHSM = az.Emulator.vault_url("demo-mhsm", hsm=True)


def ec_jwk():
    n = ec.generate_private_key(ec.SECP256R1()).private_numbers()
    return {"kty": "EC-HSM", "crv": "P-256", "d": az.b64url(n.private_value.to_bytes(32, "big")),
            "x": az.b64url(n.public_numbers.x.to_bytes(32, "big")),
            "y": az.b64url(n.public_numbers.y.to_bytes(32, "big"))}


class FaultTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = az.Emulator.start()
        cls.emu.map_hosts()
        cls.tok = cls.emu.token()
        r = cls.emu.rest("POST", PREMIUM + "/keys/f-key/create", cls.tok, {"kty": "EC", "crv": "P-256"})
        assert r.status_code == 200, r.text

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def tearDown(self):
        self.assertEqual(self.emu.admin("DELETE", "/_admin/faults").status_code, 204)
        self.emu.admin("PUT", "/_admin/ratelimit", {"enabled": False, "retryAfter": None, "scale": 1.0})

    def fault(self, **rule):
        r = self.emu.admin("POST", "/_admin/faults", rule)
        self.assertEqual(r.status_code, 201, r.text)
        return r.json()

    def names(self, vault=PREMIUM):
        r = self.emu.rest("GET", vault + "/keys", self.tok)
        self.assertEqual(r.status_code, 200, r.text)
        return sorted(i["kid"].rsplit("/", 1)[1] for i in r.json()["value"])

    def test_429_with_and_without_retry_after(self):
        self.fault(match={"service": "keyvault", "path": "/keys/f-key"}, status=429, retryAfter=3, count=1)
        r = self.emu.rest("GET", PREMIUM + "/keys/f-key", self.tok)
        self.assertEqual(r.status_code, 429)
        self.assertEqual(r.headers["Retry-After"], "3")
        self.assertEqual(r.json()["error"]["code"], "Throttled")
        self.assertEqual(self.emu.rest("GET", PREMIUM + "/keys/f-key", self.tok).status_code, 200)  # count=1
        self.fault(match={"path": "/keys/f-key"}, status=429, count=1)
        r = self.emu.rest("GET", PREMIUM + "/keys/f-key", self.tok)
        self.assertEqual(r.status_code, 429)
        self.assertNotIn("Retry-After", r.headers)

    def test_sdk_retries_after_429(self):
        self.fault(match={"method": "GET", "path": "/keys/f-key*"}, status=429, retryAfter=1, count=1)
        client = KeyClient(PREMIUM, self.emu.secret_credential(), **self.emu.client_kwargs())
        t0 = time.time()
        self.assertEqual(client.get_key("f-key").name, "f-key")
        self.assertGreaterEqual(time.time() - t0, 1.0)   # honoured Retry-After
        self.assertIn("GET demo-premium.vault.azure.net/keys/f-key 429", self.emu.log())

    def test_500_and_503(self):
        for status, code in ((500, "InternalServerError"), (503, "ServiceUnavailable")):
            self.fault(match={"host": "demo-premium.*", "method": "POST"}, status=status, count=1)
            before = self.names()
            r = self.emu.rest("POST", PREMIUM + "/keys/f-5xx/create", self.tok, {"kty": "EC"})
            self.assertEqual(r.status_code, status)
            self.assertEqual(r.json()["error"]["code"], code)
            self.assertEqual(self.names(), before)   # not applied

    def test_latency(self):
        self.fault(action="latency", delayMs=500, match={"path": "/keys/f-key"}, count=1)
        t0 = time.time()
        self.assertEqual(self.emu.rest("GET", PREMIUM + "/keys/f-key", self.tok).status_code, 200)
        self.assertGreaterEqual(time.time() - t0, 0.5)

    def test_drop_before_is_not_applied(self):
        self.fault(action="drop_before", match={"path": "/keys/f-drop1/create"}, count=1)
        with self.assertRaises(requests.exceptions.ConnectionError):
            self.emu.rest("POST", PREMIUM + "/keys/f-drop1/create", self.tok, {"kty": "EC"})
        self.assertNotIn("f-drop1", self.names())

    def test_drop_after_is_applied(self):
        self.fault(action="drop_after", match={"path": "/keys/f-drop2/create"}, count=1)
        with self.assertRaises(requests.exceptions.ConnectionError):
            self.emu.rest("POST", PREMIUM + "/keys/f-drop2/create", self.tok, {"kty": "EC"})
        self.assertIn("f-drop2", self.names())

    def test_token_endpoint_outage(self):
        rule = self.fault(match={"service": "entra", "path": "*/oauth2/v2.0/token"}, status=503)
        r = self.emu.session().post("https://login.microsoftonline.com/%s/oauth2/v2.0/token" % az.TENANT,
                                    data={"client_id": az.SECRET_APP, "client_secret": az.SECRET,
                                          "grant_type": "client_credentials",
                                          "scope": "https://vault.azure.net/.default"})
        self.assertEqual(r.status_code, 503)
        self.assertEqual(r.json()["error"], "temporarily_unavailable")
        self.assertEqual(r.json()["error_codes"], [90033])
        self.assertNotIn("access_token", r.json())
        self.emu.admin("DELETE", "/_admin/faults/%d" % rule["id"])
        # A one-shot outage: the credential (azure-core retry) still gets its token.
        self.fault(match={"service": "entra", "path": "*/oauth2/v2.0/token"}, status=503, count=1)
        tok = self.emu.secret_credential().get_token("https://vault.azure.net/.default")
        self.assertEqual(az.jwt_claims(tok.token)["appid"], az.SECRET_APP)

    def test_token_endpoint_outage_fails_credential(self):
        self.fault(match={"service": "entra", "path": "*/oauth2/v2.0/token"}, action="drop_before")
        with self.assertRaises(ClientAuthenticationError):
            self.emu.secret_credential().get_token("https://vault.azure.net/.default")

    def test_rate_limit_hsm_create(self):
        r = self.emu.admin("PUT", "/_admin/ratelimit", {"enabled": True})
        self.assertTrue(r.json()["enabled"])
        before = self.names()
        for i in range(10):   # published limit: 10 HSM CREATE per 10 s per vault
            r = self.emu.rest("POST", PREMIUM + "/keys/rl-%d/create" % i, self.tok, {"kty": "EC-HSM"})
            self.assertEqual(r.status_code, 200, r.text)
        r = self.emu.rest("POST", PREMIUM + "/keys/rl-x/create", self.tok, {"kty": "EC-HSM"})
        self.assertEqual(r.status_code, 429)
        self.assertEqual(r.json()["error"]["message"],
                         "Request was not processed because too many requests were received. "
                         "Reason: VaultRequestTypeLimitReached")
        self.assertNotIn("Retry-After", r.headers)   # as recorded from the real service
        self.assertEqual(self.names(), sorted(before + ["rl-%d" % i for i in range(10)]))
        # Software creates have their own (higher) limit; reads are unaffected.
        self.assertEqual(self.emu.rest("POST", PREMIUM + "/keys/rl-sw/create", self.tok,
                                       {"kty": "EC"}).status_code, 200)

    def test_rate_limit_software_create_with_retry_after(self):
        self.emu.admin("PUT", "/_admin/ratelimit", {"enabled": True, "retryAfter": 10})
        codes = [self.emu.rest("POST", STANDARD + "/keys/rls-%d/create" % i, self.tok, {"kty": "EC"}).status_code
                 for i in range(21)]
        self.assertEqual(codes[:20], [200] * 20)   # 20 software CREATE per 10 s
        r = self.emu.rest("POST", STANDARD + "/keys/rls-x/create", self.tok, {"kty": "EC"})
        self.assertEqual((codes[20], r.status_code), (429, 429))
        self.assertEqual(r.headers["Retry-After"], "10")

    def test_rate_limit_weights_rsa_4096(self):
        # Scaled down 100x: 'other' HSM limit 2000 -> 20 units; RSA-4096 costs 8.
        self.emu.rest("POST", PREMIUM + "/keys/rl-4k/create", self.tok, {"kty": "RSA-HSM", "key_size": 4096})
        self.emu.admin("PUT", "/_admin/ratelimit", {"enabled": True, "scale": 0.01})
        codes = [self.emu.rest("GET", PREMIUM + "/keys/rl-4k", self.tok).status_code for _ in range(3)]
        self.assertEqual(codes, [200, 200, 429])

    def test_rate_limit_import_has_its_own_bucket(self):
        # Key IMPORT counts in the 300-per-10-s bucket it shares with secret CREATE, not in the key
        # CREATE buckets (reference §11). Scaled 100x down: HSM CREATE 1, IMPORT 3 per 10 s.
        self.emu.admin("PUT", "/_admin/ratelimit", {"enabled": True, "scale": 0.01})
        self.assertEqual(self.emu.rest("POST", PREMIUM + "/keys/ri-c1/create", self.tok, {"kty": "EC-HSM"}).status_code,
                         200)
        self.assertEqual(self.emu.rest("POST", PREMIUM + "/keys/ri-c2/create", self.tok, {"kty": "EC-HSM"}).status_code,
                         429)
        codes = [self.emu.rest("PUT", PREMIUM + "/keys/ri-i%d" % i, self.tok, {"key": ec_jwk()}).status_code
                 for i in range(4)]
        self.assertEqual(codes, [200, 200, 200, 429])

    def test_managed_hsm_is_limited_per_second_not_per_10_s(self):
        htok = self.emu.token(resource="https://managedhsm.azure.net")
        self.emu.admin("PUT", "/_admin/ratelimit", {"enabled": True})
        # Create key: 1 per second per HSM (scaling guidance); a vault would refuse for 10 s.
        self.assertEqual(self.emu.rest("POST", MHSM + "/keys/rl-h1/create", htok, {"kty": "EC-HSM"}).status_code, 200)
        r = self.emu.rest("POST", MHSM + "/keys/rl-h2/create", htok, {"kty": "EC-HSM"})
        self.assertEqual(r.status_code, 429)
        self.assertEqual(r.json()["error"]["code"], "Throttled")
        time.sleep(1.05)
        self.assertEqual(self.emu.rest("POST", MHSM + "/keys/rl-h2/create", htok, {"kty": "EC-HSM"}).status_code, 200)
        # Cryptographic operations are not throttled: past capacity they wait for the HSM.
        # Scaled 100x down: EC P-256 sign 330 -> 3 per second.
        self.emu.admin("PUT", "/_admin/ratelimit", {"enabled": True, "scale": 0.01})
        body = {"alg": "ES256", "value": az.b64url(b"\x01" * 32)}
        t0 = time.time()
        codes = [self.emu.rest("POST", MHSM + "/keys/rl-h1/sign", htok, body).status_code for _ in range(7)]
        self.assertEqual(codes, [200] * 7)
        self.assertGreaterEqual(time.time() - t0, 1.9)   # 3 + 3 + 1: two waits of about a second

    def test_request_counter_counts_by_vault_operation_and_status(self):
        # Tests and benchmarks count what a client sent: per vault, operation and answer, 429s included.
        self.assertEqual(self.emu.admin("DELETE", "/_admin/requests").status_code, 204)
        self.emu.rest("GET", PREMIUM + "/keys/f-key", self.tok)
        self.emu.rest("GET", PREMIUM + "/keys/f-key", self.tok)
        self.emu.rest("GET", PREMIUM + "/keys/no-such-key", self.tok)
        self.emu.rest("GET", PREMIUM + "/keys", self.tok)
        self.fault(match={"path": "/keys/f-key"}, status=429, count=1)
        self.emu.rest("GET", PREMIUM + "/keys/f-key", self.tok)   # an injected fault is no request served
        self.emu.admin("PUT", "/_admin/ratelimit", {"enabled": True, "scale": 0.01})
        codes = [self.emu.rest("POST", STANDARD + "/keys/rc-%d/create" % i, self.tok, {"kty": "EC"}).status_code
                 for i in range(2)]
        self.assertEqual(codes, [200, 429])
        r = self.emu.admin("GET", "/_admin/requests")
        self.assertEqual(r.status_code, 200, r.text)
        got = {(c["vault"], c["op"], c["status"]): c["count"] for c in r.json()["value"]}
        self.assertEqual(got, {("demo-premium", "get", 200): 2, ("demo-premium", "get", 404): 1,
                               ("demo-premium", "list", 200): 1, ("demo-standard", "create", 200): 1,
                               ("demo-standard", "create", 429): 1})
        self.assertEqual(r.json()["maxInFlight"], 1)   # one after the other
        self.assertEqual(self.emu.admin("DELETE", "/_admin/requests").status_code, 204)
        self.assertEqual(self.emu.admin("GET", "/_admin/requests").json()["value"], [])

    def test_admin_endpoint_is_not_azure(self):
        r = self.emu.session().get("https://127.0.0.1:%d/_admin/faults" % self.emu.port)
        self.assertEqual(r.status_code, 403)   # no admin header
        r = self.emu.rest("GET", PREMIUM + "/_admin/faults", self.tok, headers=az.ADMIN_HEADER)
        self.assertEqual(r.status_code, 404)   # on an Azure name it is just an unknown Key Vault path
        self.assertEqual(r.json()["error"]["code"], "NotFound")
        self.assertEqual(self.emu.admin("POST", "/_admin/faults", {"action": "explode"}).status_code, 400)


class ConfigFaultTest(unittest.TestCase):
    def test_rsa_key_pool_hands_out_the_same_few_keys_in_turn(self):
        # Benchmarks only ("rsaKeyPool"): RSA keys come from a pool made once, so that the emulator's
        # key generation does not set the pace of many RSA-HSM creates.
        def n_of(emu, tok, name):
            r = emu.rest("POST", PREMIUM + "/keys/%s/create" % name, tok, {"kty": "RSA-HSM", "key_size": 2048})
            self.assertEqual(r.status_code, 200, r.text)
            return r.json()["key"]["n"]
        pooled = az.Emulator.start(modify=lambda c: c["emulator"].update(rsaKeyPool=2))
        try:
            pooled.map_hosts()
            tok = pooled.token()
            n = [n_of(pooled, tok, "pool-%d" % i) for i in range(5)]
            self.assertNotEqual(n[0], n[1])
            self.assertEqual(n[2:], [n[0], n[1], n[0]])
            r = pooled.rest("POST", PREMIUM + "/keys/pool-bad/create", tok, {"kty": "RSA-HSM", "key_size": 1024})
            self.assertEqual(r.status_code, 400, r.text)
        finally:
            pooled.stop()
        fresh = az.Emulator.start()
        try:
            fresh.map_hosts()
            tok = fresh.token()
            self.assertNotEqual(n_of(fresh, tok, "fresh-1"), n_of(fresh, tok, "fresh-2"))
        finally:
            fresh.stop()

    def test_faults_and_rate_limit_from_config(self):
        def modify(c):
            c["emulator"]["faults"] = [{"match": {"service": "entra"}, "status": 503, "count": 1}]
            c["emulator"]["rateLimit"] = {"enabled": True, "scale": 0.1}
        emu = az.Emulator.start(modify=modify)
        try:
            emu.map_hosts()
            with self.assertRaises(requests.HTTPError):
                emu.token()
            tok = emu.token()
            codes = [emu.rest("POST", PREMIUM + "/keys/c-%d/create" % i, tok, {"kty": "EC-HSM"}).status_code
                     for i in range(2)]
            self.assertEqual(codes, [200, 429])   # 10 * 0.1 = 1 HSM create per 10 s
        finally:
            emu.stop()


if __name__ == "__main__":
    unittest.main()
