"""The emulator as a program: start line, CA and certificate, TLS versions,
Host routing, persistence across restarts, file modes, the request log,
clean SIGTERM, and a bounded load test (200 concurrent requests)."""
import concurrent.futures
import hashlib
import ipaddress
import os
import re
import socket
import ssl
import stat
import threading
import unittest

from cryptography import x509

import azhelpers as az

PREMIUM = az.Emulator.vault_url("demo-premium")


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = az.Emulator.start()
        cls.emu.map_hosts()
        cls.tok = cls.emu.token()

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def test_start_line_and_ca(self):
        with open(os.path.join(self.emu.workdir, "stdout.txt")) as f:
            line = f.readline().strip()
        self.assertRegex(line, r"^akv-emulator listening on https://127\.0\.0\.1:\d+ ca=/\S+/ca\.pem$")
        self.assertEqual(int(re.search(r":(\d+) ", line).group(1)), self.emu.port)
        with open(self.emu.ca, "rb") as f:
            ca = x509.load_pem_x509_certificate(f.read())
        self.assertTrue(ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)

    def test_server_certificate_names(self):
        ctx = ssl.create_default_context(cafile=self.emu.ca)
        for host in ("login.microsoftonline.com", "login.microsoftonline.us", "management.azure.com",
                     "management.usgovcloudapi.net", "x.vault.azure.net", "x.vault.usgovcloudapi.net",
                     "x.managedhsm.azure.net", "x.managedhsm.usgovcloudapi.net", "localhost"):
            with socket.create_connection(("127.0.0.1", self.emu.port)) as s, \
                    ctx.wrap_socket(s, server_hostname=host) as t:   # verifies the name
                der = t.getpeercert(binary_form=True)
        san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        self.assertIn(ipaddress.ip_address("127.0.0.1"), san.get_values_for_type(x509.IPAddress))

    def test_tls_1_1_refused_tls_1_2_accepted(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.emu.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection(("127.0.0.1", self.emu.port)) as s, \
                ctx.wrap_socket(s, server_hostname="localhost") as t:
            self.assertEqual(t.version(), "TLSv1.2")
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        try:
            old.set_ciphers("ALL:@SECLEVEL=0")
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        except (ssl.SSLError, ValueError):
            self.skipTest("this OpenSSL cannot even offer TLS 1.1")
        with socket.create_connection(("127.0.0.1", self.emu.port)) as s:
            with self.assertRaises((ssl.SSLError, ConnectionError)):
                old.wrap_socket(s, server_hostname="localhost").close()

    def test_routing_by_host_header(self):
        r = self.emu.session().get("https://127.0.0.1:%d/keys" % self.emu.port)
        self.assertEqual(r.status_code, 404)   # the bare address is not an Azure service
        r = self.emu.rest("GET", "https://unknownvault.vault.azure.net/keys", self.tok)
        self.assertEqual(r.status_code, 404)
        self.assertIn("no service, vault or managed HSM", r.json()["error"]["message"])
        r = self.emu.rest("GET", PREMIUM + "/keys", self.tok)
        self.assertEqual(r.status_code, 200)

    def test_openid_and_instance_discovery_point_back(self):
        s = self.emu.session()
        d = s.get("https://login.microsoftonline.com/%s/v2.0/.well-known/openid-configuration" % az.TENANT).json()
        self.assertEqual(d["token_endpoint"],
                         "https://login.microsoftonline.com/%s/oauth2/v2.0/token" % az.TENANT)
        self.assertEqual(d["issuer"], "https://login.microsoftonline.com/%s/v2.0" % az.TENANT)
        d = s.get("https://login.microsoftonline.us/cdcp11-demo.onmicrosoft.com/v2.0/.well-known/openid-configuration").json()
        self.assertEqual(d["token_endpoint"], "https://login.microsoftonline.us/%s/oauth2/v2.0/token" % az.TENANT)
        d = s.get("https://login.microsoftonline.com/common/discovery/instance", params={
            "api-version": "1.1",
            "authorization_endpoint": "https://login.microsoftonline.us/%s/oauth2/v2.0/authorize" % az.TENANT}).json()
        self.assertEqual(d["tenant_discovery_endpoint"],
                         "https://login.microsoftonline.us/%s/v2.0/.well-known/openid-configuration" % az.TENANT)

    def test_request_log_has_no_secrets(self):
        self.emu.token()
        log = self.emu.log()
        line = [l for l in log.splitlines() if "oauth2/v2.0/token" in l][-1]
        self.assertRegex(line, r"^\S+ POST login\.microsoftonline\.com/\S+/oauth2/v2\.0/token 200 client=%s \d+ms$"
                         % az.SECRET_APP)
        self.assertNotIn(az.SECRET, log)
        self.assertNotIn(self.tok, log)
        self.assertNotIn(self.tok.split(".")[2], log)

    def test_load_200_concurrent_requests(self):
        r = self.emu.rest("POST", PREMIUM + "/keys/load-ec/create", self.tok, {"kty": "EC-HSM", "crv": "P-256"})
        kid = r.json()["key"]["kid"]
        n = 200
        barrier = threading.Barrier(n, timeout=60)
        digest = az.b64url(hashlib.sha256(b"load").digest())

        def one(i):
            s = self.emu.session(new=True)   # own connection per request
            try:
                barrier.wait()
                if i % 2:
                    resp = self.emu.rest("GET", kid, self.tok, timeout=60)
                else:
                    resp = s.post(kid + "/sign?api-version=7.4", json={"alg": "ES256", "value": digest},
                                  headers={"Authorization": "Bearer " + self.tok}, timeout=60)
                return resp.status_code
            finally:
                s.close()

        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
            codes = list(pool.map(one, range(n)))
        self.assertEqual(codes, [200] * n)


class PersistenceTest(unittest.TestCase):
    def test_restart_keeps_keys_and_files_are_private(self):
        emu = az.Emulator.start()
        try:
            emu.map_hosts()
            tok = emu.token()
            r = emu.rest("POST", PREMIUM + "/keys/keep/create", tok, {"kty": "RSA-HSM", "key_size": 2048})
            n = r.json()["key"]["n"]
            emu.rest("POST", PREMIUM + "/keys/gone/create", tok, {"kty": "EC"})
            emu.rest("DELETE", PREMIUM + "/keys/gone", tok)
            ca_before = open(emu.ca, "rb").read()
            old_port = emu.port
            emu.restart()
            self.assertEqual(open(emu.ca, "rb").read(), ca_before)   # same CA after restart
            tok = emu.token()   # the token signing key persists too: old tokens stay valid
            self.assertEqual(emu.rest("GET", PREMIUM + "/keys/keep", tok).json()["key"]["n"], n)
            self.assertEqual(emu.rest("GET", PREMIUM + "/keys/gone", tok).status_code, 404)
            self.assertNotEqual(old_port, None)
            # Private material: state dir 0700, key files 0600.
            self.assertEqual(stat.S_IMODE(os.stat(emu.state).st_mode), 0o700)
            for rel in ("vaults/demo-premium.json", "ca.key", "server.key", "token-signing.key",
                        "backup.key", "demo-app-cert.pem"):
                self.assertEqual(stat.S_IMODE(os.stat(os.path.join(emu.state, rel)).st_mode), 0o600, rel)
            self.assertFalse([f for f in os.listdir(os.path.join(emu.state, "vaults")) if f.startswith(".tmp")])
        finally:
            rc = emu.stop()
        self.assertEqual(rc, 0)   # clean exit on SIGTERM

    def test_bad_config_fails_at_start(self):
        with self.assertRaises(RuntimeError) as ctx:
            az.Emulator.start(modify=lambda c: c["subscriptions"][0]["vaults"][0].update(name="x"))
        self.assertIn("configuration error", str(ctx.exception))


if __name__ == "__main__":
    unittest.main()
