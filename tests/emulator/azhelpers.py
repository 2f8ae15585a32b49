"""Helpers to run the akv-emulator and talk to it from Python tests.

Reusable by any test (the C++ team's Python-driven tests too):

    emu = Emulator.start()                  # demo config, port 0, temp state
    emu.map_hosts()                         # route Azure host names to it
    cred = emu.secret_credential()          # real azure-identity credential
    client = KeyClient(emu.vault_url("demo-premium"), cred, **emu.client_kwargs())
    ...
    emu.stop()

Host mapping: the emulator listens on 127.0.0.1:PORT, but clients must keep
the real host name in the URL, in TLS SNI and in the Host header (that is
what the emulator routes on and what its certificate covers). In this
process we do that by wrapping urllib3's create_connection (used by
requests and so by azure-core's RequestsTransport): a connection to
(<Azure host>, 443) goes to (127.0.0.1, PORT) instead; nothing else about
the request changes. libcurl's equivalent is CURLOPT_CONNECT_TO
"::127.0.0.1:PORT" (or CURLOPT_RESOLVE with the port in the URL).
"""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import urllib3.util.connection

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EMULATOR = os.path.join(REPO, "tools", "akv-emulator", "akv-emulator")
DEMO_CONFIG = os.path.join(REPO, "tools", "akv-emulator", "demo-config.json")

# Demo identities (tools/akv-emulator/demo-config.json).
TENANT = "7e57a000-0000-4000-8000-000000000001"
SUBSCRIPTION = "5ab5c000-0000-4000-8000-000000000001"
SECRET_APP = "c1e47000-0000-4000-8000-000000000001"
SECRET_APP_OID = "0b1ec700-0000-4000-8000-000000000001"
SECRET = "demo-secret-not-real"
CERT_APP = "c1e47000-0000-4000-8000-000000000002"
CERT_APP_OID = "0b1ec700-0000-4000-8000-000000000002"
READER_APP = "c1e47000-0000-4000-8000-000000000003"
READER_SECRET = "demo-reader-secret-not-real"
ADMIN_HEADER = {"X-AKV-Emulator-Admin": "1"}
API = "7.4"

AZURE_SUFFIXES = (".vault.azure.net", ".vault.usgovcloudapi.net", ".managedhsm.azure.net",
                  ".managedhsm.usgovcloudapi.net")
AZURE_HOSTS = ("login.microsoftonline.com", "login.microsoftonline.us", "login.windows.net",
               "management.azure.com", "management.usgovcloudapi.net")

_orig_create_connection = urllib3.util.connection.create_connection
_mapped_port = {"port": None, "aliases": set()}


def _is_azure_host(host):
    host = host.lower().rstrip(".")
    return host in AZURE_HOSTS or host.endswith(AZURE_SUFFIXES) or host in _mapped_port["aliases"]


def _create_connection(address, *args, **kwargs):
    host, port = address
    if _mapped_port["port"] and port == 443 and _is_azure_host(host):
        address = ("127.0.0.1", _mapped_port["port"])
    return _orig_create_connection(address, *args, **kwargs)


urllib3.util.connection.create_connection = _create_connection


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_claims(token):
    return json.loads(b64url_decode(token.split(".")[1]))


class Emulator:
    """One emulator process with its own temp state directory."""

    def __init__(self, config, workdir, proc, port, ca, log_path):
        self.config = config
        self.workdir = workdir
        self.state = os.path.join(workdir, "state")
        self.proc = proc
        self.port = port
        self.ca = ca
        self.log_path = log_path
        self.config_path = os.path.join(workdir, "config.json")

    @classmethod
    def start(cls, config=None, modify=None, workdir=None, timeout=30):
        """Start on port 0. `config` is a dict (default: the demo config);
        `modify(cfg)` may edit it first."""
        if config is None:
            with open(DEMO_CONFIG) as f:
                config = json.load(f)
        if modify:
            modify(config)
        workdir = workdir or tempfile.mkdtemp(prefix="akvemu-test-")
        cfg_path = os.path.join(workdir, "config.json")
        with open(cfg_path, "w") as f:
            json.dump(config, f)
        try:
            return cls._launch(config, workdir, timeout)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    @classmethod
    def _launch(cls, config, workdir, timeout=30):
        out_path = os.path.join(workdir, "stdout.txt")
        log_path = os.path.join(workdir, "requests.log")
        with open(out_path, "wb") as out, open(log_path, "ab") as err:
            proc = subprocess.Popen([EMULATOR, "--config", os.path.join(workdir, "config.json"),
                                     "--port", "0", "--state", os.path.join(workdir, "state")],
                                    stdout=out, stderr=err)
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(out_path) as f:
                line = f.readline()
            m = re.match(r"^akv-emulator listening on https://127\.0\.0\.1:(\d+) ca=(\S+)$", line.strip())
            if m:
                return cls(config, workdir, proc, int(m.group(1)), m.group(2), log_path)
            if proc.poll() is not None:
                raise RuntimeError("emulator exited: " + open(log_path).read())
            time.sleep(0.05)
        proc.kill()
        raise RuntimeError("emulator did not start")

    def stop(self, cleanup=True):
        """SIGTERM and wait; returns the exit code."""
        rc = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        else:
            rc = self.proc.returncode
        if getattr(self, "_session", None) is not None:
            self._session.close()
            self._session = None
        if _mapped_port["port"] == self.port:
            _mapped_port["port"] = None
        if cleanup:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return rc

    def restart(self):
        """Stop and start again on the same state (a new port)."""
        was_mapped = _mapped_port["port"] == self.port
        self.stop(cleanup=False)
        new = self._launch(self.config, self.workdir)
        new._session = None
        self.__dict__.update(new.__dict__)
        if was_mapped:
            self.map_hosts()
        return self

    # ---------------------------------------------------------------- clients
    def map_hosts(self):
        """Route Azure host names to this emulator in this process."""
        _mapped_port["port"] = self.port
        _mapped_port["aliases"] = {str(a).lower() for s in self.config.get("subscriptions", [])
                                   for v in s.get("vaults", []) + s.get("managedHsms", [])
                                   for a in v.get("aliases", [])}
        os.environ["REQUESTS_CA_BUNDLE"] = self.ca

    def client_kwargs(self):
        return {"connection_verify": self.ca}

    @staticmethod
    def vault_url(name, cloud="AzureCloud", hsm=False):
        suffix = {("AzureCloud", False): "vault.azure.net", ("AzureCloud", True): "managedhsm.azure.net",
                  ("AzureUSGovernment", False): "vault.usgovcloudapi.net",
                  ("AzureUSGovernment", True): "managedhsm.usgovcloudapi.net"}[(cloud, hsm)]
        return "https://%s.%s" % (name, suffix)

    def secret_credential(self, client_id=SECRET_APP, secret=SECRET, authority="login.microsoftonline.com"):
        from azure.identity import ClientSecretCredential
        return ClientSecretCredential(TENANT, client_id, secret, authority="https://" + authority,
                                      connection_verify=self.ca)

    def cert_credential(self, client_id=CERT_APP, authority="login.microsoftonline.com", **kw):
        from azure.identity import CertificateCredential
        return CertificateCredential(TENANT, client_id, certificate_path=self.cert_path(),
                                     authority="https://" + authority, connection_verify=self.ca, **kw)

    def cert_path(self):
        return os.path.join(self.state, "demo-app-cert.pem")

    def session(self, new=False):
        """A requests session trusting the emulator CA (shared unless new=True;
        a requests Session is not safe to share across threads)."""
        import requests
        if new or getattr(self, "_session", None) is None:
            s = requests.Session()
            s.verify = self.ca
            if new:
                return s
            self._session = s
        return self._session

    def token(self, client_id=SECRET_APP, secret=SECRET, resource="https://vault.azure.net",
              host="login.microsoftonline.com"):
        """A real token from the emulator's token endpoint (client secret)."""
        r = self.session().post("https://%s/%s/oauth2/v2.0/token" % (host, TENANT), data={
            "client_id": client_id, "client_secret": secret, "grant_type": "client_credentials",
            "scope": resource + "/.default"})
        r.raise_for_status()
        return r.json()["access_token"]

    def mint_token(self, client_id=SECRET_APP, resource="https://vault.azure.net", lifetime=3599):
        """A token minted through the admin endpoint (e.g. already expired)."""
        r = self.admin("POST", "/_admin/token", {"tenantId": TENANT, "clientId": client_id,
                                                "resource": resource, "lifetime": lifetime})
        return r.json()["access_token"]

    def rest(self, method, url, token=None, body=None, api=API, **kw):
        """A raw data-plane/ARM call; `api` is appended unless None."""
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = "Bearer " + token
        if api is not None and "api-version=" not in url:
            url += ("&" if "?" in url else "?") + "api-version=" + api
        return self.session().request(method, url, headers=headers,
                                      data=json.dumps(body) if body is not None else None,
                                      **({"timeout": 30} | kw))

    def admin(self, method, path, body=None):
        # verify on the request itself: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        return self.session().request(method, "https://127.0.0.1:%d%s" % (self.port, path),
                                      headers=ADMIN_HEADER, json=body, timeout=30, verify=self.ca)

    def log(self):
        with open(self.log_path) as f:
            return f.read()
