"""cdcctl group test NAME against the akv-emulator: Connected with a secret and with a
certificate, the vault table by type, the mirror permissions an application lacks, and every
Not Connected reason produced by a real failure (the sentence is Error::describe()'s, pinned
from a run). No secret may appear in anything cdcctl or the emulator writes.

Run with Debian's /usr/bin/python3 (the emulator needs its python3-cryptography)."""
import datetime
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "emulator"))

from azhelpers import (ADMIN_HEADER, CERT_APP, READER_APP, READER_SECRET, SECRET, SECRET_APP,  # noqa: E402
                       SUBSCRIPTION, TENANT, Emulator)

CDCCTL = os.environ["CDCCTL"]
WRONG_SECRET = "wrong-secret-value-do-not-leak"
SECRETS = (SECRET, READER_SECRET, WRONG_SECRET)
DEMO_VAULTS = {
    "Standard": ["demo-nosoftdelete", "demo-standard"],
    "Premium": ["demo-premium", "demo-protected", "demo-rbac", "demo-usgov"],
    "Managed HSM": ["demo-mhsm"],
}
MIRROR_PERMISSIONS = "get, list, create, import, delete, purge, recover, update"


def make_foreign_ca(path):
    """A CA certificate that did not issue the emulator's server certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cdcctl test foreign CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


class EmulatorCase(unittest.TestCase):
    """One emulator and one configuration file per class; every cdcctl run is recorded."""

    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator.start()
        cls.dir = tempfile.TemporaryDirectory()
        cls.conf = os.path.join(cls.dir.name, "cdcp11.json")
        cls.captured = []
        cls.secret_file = cls.write_private("mirror.secret", SECRET)
        cls.reader_file = cls.write_private("reader.secret", READER_SECRET)
        cls.wrong_file = cls.write_private("wrong.secret", WRONG_SECRET)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()
        cls.dir.cleanup()

    @classmethod
    def write_private(cls, name, text):
        path = os.path.join(cls.dir.name, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def cdcctl(self, *args, env=None):
        p = subprocess.run([CDCCTL, "--config", self.conf, *args], capture_output=True, text=True, timeout=120,
                           env={**os.environ, **(env or {})})
        self.captured.append(("cdcctl " + " ".join(args), p.stdout, p.stderr))
        for s in SECRETS:
            self.assertNotIn(s, p.stdout + p.stderr, "secret leaked by cdcctl %s" % " ".join(args))
        return p

    def add(self, name, client=SECRET_APP, secret_file=None, vault="demo-premium", vault_type="premium",
            ca=None, tenant=TENANT, extra=()):
        cred = (["--certificate-file", self.emu.cert_path(), "--key-file", self.emu.cert_path()]
                if client == CERT_APP else ["--secret-file", secret_file or self.secret_file])
        p = self.cdcctl("group", "add", name, "--tenant-id", tenant, "--client-id", client,
                        "--subscription-id", SUBSCRIPTION, *cred, "--ca-file", ca or self.emu.ca,
                        "--connect-to", "::127.0.0.1:%d" % self.emu.port, "--vault", vault,
                        "--vault-type", vault_type, *extra)
        self.assertEqual(p.returncode, 0, p.stderr)

    def connected(self, name, *args, env=None):
        p = self.cdcctl("group", "test", name, *args, env=env)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return p.stdout

    def not_connected(self, name, *args):
        p = self.cdcctl("group", "test", name, *args)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        return p.stdout

    def reason(self, name):
        """The one-line reason, from both the human and the JSON output (they must agree)."""
        first = self.not_connected(name).splitlines()[0]
        prefix = "Group '%s': Not Connected \u2014 " % name
        self.assertTrue(first.startswith(prefix), first)
        p = self.cdcctl("--json", "group", "test", name)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        doc = json.loads(p.stdout)
        self.assertFalse(doc["connected"])
        self.assertEqual(doc["reason"], first[len(prefix):])
        return first[len(prefix):]

    def vault_rows(self, out):
        """(marker, TYPE, NAME) of the vault table."""
        lines = out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["TYPE", "NAME"])
        rows = []
        for line in lines[start + 1:]:
            if not line.strip() or line.startswith("("):
                break
            marker = line[:3].strip()
            cells = line[3:].split("  ")
            cells = [c.strip() for c in cells if c.strip()]
            rows.append((marker, cells[0], cells[1]))
        return rows

    def admin(self, method, path, body=None):
        # verify= on the request: requests lets REQUESTS_CA_BUNDLE from the environment override a
        # session's verify, so Emulator.admin() fails where that variable is set.
        r = self.emu.session().request(method, "https://127.0.0.1:%d%s" % (self.emu.port, path),
                                       headers=ADMIN_HEADER, json=body, verify=self.emu.ca, timeout=30)
        r.raise_for_status()
        return r

    def assert_no_secret_anywhere(self):
        self.assertTrue(self.captured)
        for what, out, err in self.captured:
            for s in SECRETS:
                self.assertNotIn(s, out, what)
                self.assertNotIn(s, err, what)
        log = self.emu.log()
        with open(self.conf) as f:
            conf = f.read()
        for s in SECRETS:
            self.assertNotIn(s, log)
            self.assertNotIn(s, conf)


class Connected(EmulatorCase):
    def test_secret_connects_and_lists_every_vault_by_type(self):
        self.add("payments")
        out = self.connected("payments", env={"CDCP11_LOG_LEVEL": "debug"})
        lines = out.splitlines()
        self.assertEqual(lines[0], "Group 'payments': Connected (tenant %s, client %s, cloud global)"
                         % (TENANT, SECRET_APP))
        rows = self.vault_rows(out)
        self.assertEqual([(t, n) for _, t, n in rows],
                         [(t, n) for t, names in DEMO_VAULTS.items() for n in names])
        self.assertEqual([n for m, _, n in rows if m == "*"], ["demo-premium"])
        self.assertIn("demo-protected     https://demo-protected.vault.azure.net      yes (90 days)  yes  ", out)
        self.assertEqual(lines[-1], "Chosen vault 'demo-premium' (premium): the application has every permission "
                                    "the mirror needs (%s)" % MIRROR_PERMISSIONS)

    def test_certificate_connects(self):
        self.add("cert", client=CERT_APP, vault="demo-standard", vault_type="standard")
        out = self.connected("cert", "--verbose")
        self.assertTrue(out.startswith("Group 'cert': Connected (tenant %s, client %s, cloud global)\n"
                                       % (TENANT, CERT_APP)), out)
        self.assertEqual(len(self.vault_rows(out)), 7)
        self.assertIn("Chosen vault 'demo-standard' (standard): the application has every permission", out)

    def test_reader_app_lacks_exactly_the_write_permissions(self):
        self.add("reader", client=READER_APP, secret_file=self.reader_file)
        out = self.connected("reader")
        self.assertEqual(out.splitlines()[-1], "Chosen vault 'demo-premium' (premium): the application lacks: "
                                               "create, import, delete, purge, recover, update")
        doc = json.loads(self.cdcctl("--json", "group", "test", "reader").stdout)
        self.assertEqual(doc["missing_permissions"], ["create", "import", "delete", "purge", "recover", "update"])
        self.assertEqual(doc["chosen_vault"]["permissions"], ["get", "list"])

    def test_json_shape(self):
        self.add("js")
        p = self.cdcctl("--json", "group", "test", "js")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        doc = json.loads(p.stdout)
        self.assertEqual(doc["group"], "js")
        self.assertIs(doc["connected"], True)
        self.assertIsNone(doc["reason"])
        self.assertEqual((doc["cloud"], doc["tenant_id"], doc["client_id"], doc["subscription_id"]),
                         ("global", TENANT, SECRET_APP, SUBSCRIPTION))
        self.assertEqual(doc["missing_permissions"], [])
        self.assertEqual(doc["warnings"], [])
        by_name = {v["name"]: v for v in doc["vaults"]}
        self.assertEqual(sorted(by_name), sorted(n for names in DEMO_VAULTS.values() for n in names))
        for v in doc["vaults"]:
            self.assertEqual(set(v), {"name", "type", "uri", "location", "resource_group", "soft_delete",
                                      "retention_days", "purge_protection", "rbac", "permissions"})
        self.assertEqual(by_name["demo-mhsm"]["type"], "managed_hsm")
        self.assertEqual(by_name["demo-standard"]["type"], "standard")
        self.assertFalse(by_name["demo-nosoftdelete"]["soft_delete"])
        self.assertTrue(by_name["demo-protected"]["purge_protection"])
        self.assertTrue(by_name["demo-rbac"]["rbac"])
        self.assertIsNone(by_name["demo-rbac"]["permissions"])
        self.assertEqual(doc["chosen_vault"]["name"], "demo-premium")
        self.assertEqual(doc["chosen_vault"]["uri"], "https://demo-premium.vault.azure.net")
        self.assertIn("purge", doc["chosen_vault"]["permissions"])

    def test_rbac_vault_and_managed_hsm_permissions_are_not_invented(self):
        self.add("rbac", vault="demo-rbac")
        out = self.connected("rbac")
        self.assertIn("Chosen vault 'demo-rbac' (premium): permissions not checked: the vault uses Azure RBAC, "
                      "so the application's permissions can't be read from ARM", out)
        # The advice names the data actions purge and recover really are (there is no
        # vaults/deletedKeys/... action), and the role that has them.
        self.assertIn("Microsoft.KeyVault/vaults/keys/purge/action and Microsoft.KeyVault/vaults/keys/recover/action", out)
        self.assertIn("Key Vault Crypto Officer has every one", out)
        self.assertNotIn("deletedKeys", out)
        self.add("hsm", vault="demo-mhsm", vault_type="managed_hsm")
        out = self.connected("hsm")
        self.assertIn("Chosen vault 'demo-mhsm' (managed_hsm): permissions not checked: a managed HSM has no "
                      "access policies in ARM; its local RBAC applies", out)
        self.assertIn("Managed HSM Crypto Officer for purge and recover (Microsoft.KeyVault/managedHsm/keys/"
                      "deletedKeys/delete and .../keys/deletedKeys/recover/action)", out)
        doc = json.loads(self.cdcctl("--json", "group", "test", "hsm").stdout)
        self.assertIsNone(doc["missing_permissions"])
        self.assertTrue(doc["permissions_note"])

    def test_vault_type_mismatch_is_a_warning(self):
        self.add("mistyped", vault="demo-standard", vault_type="premium")
        out = self.connected("mistyped")
        self.assertIn("Warning: the group says the vault is premium but ARM reports standard: fix it with "
                      "cdcctl group edit mistyped --vault-type standard\n", out)

    def test_usgov_group_uses_the_us_government_endpoints(self):
        self.add("gov", vault="demo-usgov", extra=("--cloud", "usgov"))
        before = len(self.emu.log())
        out = self.connected("gov")
        self.assertTrue(out.startswith("Group 'gov': Connected (tenant %s, client %s, cloud usgov)\n"
                                       % (TENANT, SECRET_APP)), out)
        self.assertIn("the application has every permission the mirror needs", out)
        log = self.emu.log()[before:]
        self.assertIn("POST login.microsoftonline.us/%s/oauth2/v2.0/token 200" % TENANT, log)
        self.assertIn("GET management.usgovcloudapi.net/subscriptions/%s/providers/Microsoft.KeyVault/vaults 200"
                      % SUBSCRIPTION, log)
        self.assertIn("GET demo-usgov.vault.usgovcloudapi.net/keys 200", log)
        for public in ("login.microsoftonline.com", "management.azure.com", ".vault.azure.net"):
            self.assertNotIn(public, log)

    def test_arm_failure_alone_is_a_warning(self):
        # The mirror needs the vault, not ARM: an ARM outage leaves the group Connected, with the
        # vault list and the permissions unknown.
        self.add("armdown")
        rule = self.admin("POST", "/_admin/faults", {"match": {"service": "arm"}, "action": "status",
                                                     "status": 503, "retryAfter": 0}).json()
        try:
            out = self.connected("armdown")
        finally:
            self.admin("DELETE", "/_admin/faults/%d" % rule["id"])
        self.assertIn("Warning: the subscription's vaults could not be listed: management.azure.com failed with a "
                      "server error (HTTP 503 ServiceUnavailable) after 6 attempts: try again later.\n", out)
        self.assertNotIn("TYPE", out)
        self.assertEqual(out.splitlines()[-1], "Chosen vault 'demo-premium' (premium): permissions not checked: the "
                                               "vault list could not be read, so the application's permissions are "
                                               "unknown")

    def test_help(self):
        p = self.cdcctl("group", "test", "--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("Test connection", p.stdout)
        self.assertIn("--verbose", p.stdout)

    def test_zz_no_secret_in_any_output(self):
        self.assert_no_secret_anywhere()


class NotConnected(EmulatorCase):
    def test_wrong_secret(self):
        self.add("badsecret", secret_file=self.wrong_file)
        self.assertEqual(self.reason("badsecret"),
                         "Entra ID rejected the client secret of application %s (AADSTS7000215): configure the "
                         "secret's value (not its ID) and check that it has not expired." % SECRET_APP)
        p = self.cdcctl("group", "test", "badsecret", "--verbose", env={"CDCP11_LOG_LEVEL": "debug"})
        self.assertIn("kind=bad_secret", p.stderr)

    def test_unknown_tenant(self):
        self.add("badtenant", tenant="7e57a000-0000-4000-8000-0000000000ff")
        self.assertEqual(self.reason("badtenant"),
                         "Entra ID does not know tenant 7e57a000-0000-4000-8000-0000000000ff (AADSTS90002): check "
                         "the tenant ID and that the right cloud is configured.")

    def test_wrong_ca(self):
        ca = os.path.join(self.dir.name, "foreign-ca.pem")
        make_foreign_ca(ca)
        self.add("badca", ca=ca)
        self.assertEqual(self.reason("badca"),
                         "The TLS certificate of login.microsoftonline.com is not trusted (unable to get local "
                         "issuer certificate): configure the CA file that issued it, or check for a "
                         "TLS-intercepting proxy.")

    def test_host_name_not_covered_by_the_certificate(self):
        # A custom cloud whose vault suffix the emulator's certificate does not cover: login and
        # ARM are the real names, the vault is demo-premium.vault.example.net.
        self.add("wronghost")
        with open(self.conf) as f:
            conf = json.load(f)
        g = next(g for g in conf["groups"] if g["name"] == "wronghost")
        g["azure"]["cloud"] = {"authority_host": "login.microsoftonline.com",
                               "arm_endpoint": "https://management.azure.com",
                               "vault_suffix": ".vault.example.net", "mhsm_suffix": ".managedhsm.example.net"}
        with open(self.conf, "w") as f:
            json.dump(conf, f)
        self.assertEqual(self.reason("wronghost"),
                         "The TLS certificate presented for demo-premium.vault.example.net does not match that "
                         "host name: check the host name, any connect-to mapping and the proxy.")
        self.assertIn("Warning: ARM gives the vault's URI as https://demo-premium.vault.azure.net but the group "
                      "uses https://demo-premium.vault.example.net", self.not_connected("wronghost"))

    def test_vault_not_in_the_subscription(self):
        self.add("nope", vault="demo-nope")
        self.assertEqual(self.reason("nope"),
                         "Vault 'demo-nope' was not found in subscription %s: check the vault name, the "
                         "subscription ID and the cloud." % SUBSCRIPTION)
        # The subscription's vaults are still shown, to choose from.
        self.assertEqual(len(self.vault_rows(self.not_connected("nope"))), 7)

    def test_vault_host_that_does_not_exist(self):
        # demo-mhsm is a managed HSM; configured as a vault its name points at a vault host that
        # does not exist (ARM's listing says what it really is).
        self.add("hsmasvault", vault="demo-mhsm", vault_type="premium")
        self.assertEqual(self.reason("hsmasvault"),
                         "Key vault demo-mhsm.vault.azure.net does not exist (no vault answers at this name: HTTP "
                         "404 to an unauthenticated request): check the vault name and the cloud.")
        self.assertIn("Warning: the group says the vault is premium but ARM reports managed_hsm",
                      self.not_connected("hsmasvault"))

    def test_missing_permission(self):
        # The reader app has no access policy on demo-protected: the vault refuses the list.
        self.add("readerprot", client=READER_APP, secret_file=self.reader_file, vault="demo-protected")
        self.assertEqual(self.reason("readerprot"),
                         "The application is missing the 'list' permission on demo-protected.vault.azure.net: add "
                         "it to the vault's access policy for this application.")

    def test_token_endpoint_down(self):
        self.add("outage")
        # An Entra outage (503 AADSTS90033); Retry-After: 0 keeps the six attempts fast.
        rule = self.admin("POST", "/_admin/faults", {"match": {"service": "entra"}, "action": "status",
                                                         "status": 503, "retryAfter": 0}).json()
        try:
            self.assertEqual(self.reason("outage"),
                             "The Entra ID token endpoint login.microsoftonline.com is unavailable (HTTP 503, "
                             "AADSTS90033) after 6 attempts: try again later.")
        finally:
            self.admin("DELETE", "/_admin/faults/%d" % rule["id"])
        self.connected("outage")

    def test_local_only_and_unknown_group(self):
        p = self.cdcctl("group", "add", "local")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.reason("local"),
                         "The group is local only (no Azure connection): add one with cdcctl group edit local.")
        p = self.cdcctl("group", "test", "absent")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no group named 'absent'", p.stderr)
        self.assertEqual(set(json.loads(self.cdcctl("--json", "group", "test", "absent").stdout)), {"error"})

    def test_zz_no_secret_in_any_output(self):
        self.assert_no_secret_anywhere()


if __name__ == "__main__":
    unittest.main()
