"""CDC groups served to other processes through p11-kit's RPC (README: "Serving a group to other
hosts"): `p11-kit server` on a Unix socket in a temporary directory, and the socket-activated pair
in packaging/systemd (one `p11-kit remote` per connection). Clients are pkcs11-tool processes on
p11-kit-client.so; openssl verifies what they sign, the vault shows what they mirror."""
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from mirrorhelpers import MIRRORED, Rig, h  # noqa: E402

CLIENT = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"
SPY = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so"
BUILD = os.environ.get("CDCP11_BUILD", "")
SRC = os.environ["CDCP11_SRC"]

# What p11-kit 0.24's RPC carries of the module's mechanisms (pkcs11-tool's names): the client
# lists only mechanisms whose parameters it can marshal, and refuses the others with
# CKR_MECHANISM_INVALID. README.md gives the same list.
CROSSES = {
    "RSA-PKCS-KEY-PAIR-GEN", "ECDSA-KEY-PAIR-GEN", "AES-KEY-GEN", "GENERIC-SECRET-KEY-GEN",
    "RSA-PKCS", "SHA1-RSA-PKCS", "SHA256-RSA-PKCS", "SHA384-RSA-PKCS", "SHA512-RSA-PKCS",
    "RSA-PKCS-PSS", "RSA-PKCS-OAEP", "ECDSA", "ECDSA-SHA1",
    "SHA-1-HMAC", "SHA256-HMAC", "SHA384-HMAC", "SHA512-HMAC",
    "SHA-1", "SHA256", "SHA384", "SHA512", "AES-ECB",
}

GROUPS = [("plain", "demo-premium", "premium", {"trigger": "on_request"}),
          ("mirrored", "demo-premium", "premium", {"trigger": "on_generate", "mode": "sync"})]


def mechanism_names(listing):
    return {m.group(1) for m in re.finditer(r"^\s+(\S+?),", listing, re.M)}


class P11KitRemote(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(CLIENT):
            raise AssertionError("p11-kit-client.so is missing (package p11-kit-modules)")
        cls.rig = Rig.start(GROUPS)
        t = cls.rig.tok
        for args in (("--keypairgen", "--key-type", "rsa:2048", "--label", "rsa", "--id", "01"),
                     ("--keypairgen", "--key-type", "EC:prime256v1", "--label", "ec", "--id", "02")):
            t.tool("--token-label", "plain", *args, login=True)
        cls.msg = t.path("message.txt")
        with open(cls.msg, "wb") as f:
            f.write(b"signed through p11-kit's RPC\n")

    @classmethod
    def tearDownClass(cls):
        cls.rig.stop()

    # ------------------------------------------------------------ helpers
    def start_server(self, *uris):
        """`p11-kit server` in the foreground on a socket in the test's directory."""
        n = len(os.listdir(self.rig.tok.dir))
        sock, self.spy_log = self.rig.tok.path("p11kit-%d.sock" % n), self.rig.tok.path("spy-%d.log" % n)
        # Through pkcs11-spy (opensc), which records every call the server makes into the module.
        env = self.rig.tok.env(PKCS11SPY=h.MODULE, PKCS11SPY_OUTPUT=self.spy_log)
        proc = subprocess.Popen(["p11-kit", "server", "--foreground", "--name", sock, "--provider", SPY, *uris],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(self.stop, proc)
        # It prints the address to export once the socket listens.
        line = proc.stdout.readline().decode()
        self.assertIn("P11_KIT_SERVER_ADDRESS=unix:path=%s;" % sock, line)
        self.assertTrue(os.path.exists(sock))
        return proc, "unix:path=" + sock

    @staticmethod
    def stop(proc):
        """SIGTERM, as systemd stops a service; returns what the process wrote on stderr."""
        if proc.returncode is not None:
            return ""
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        return (err or b"").decode(errors="replace")

    def client(self, address, *args, check=True):
        """pkcs11-tool on p11-kit-client.so: no CDCP11_CONF in its environment, only the address."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDCP11_")}
        env["P11_KIT_SERVER_ADDRESS"] = address
        r = subprocess.run(["pkcs11-tool", "--module", CLIENT, *args], env=env, capture_output=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError("pkcs11-tool %s through p11-kit failed (%d): %s%s" % (
                " ".join(args), r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")))
        return r

    def user(self, token):
        return ["--token-label", token, "--login", "--pin", h.USER_PIN]

    def public_pem(self, address, token, key_id):
        der, pem = self.rig.tok.path("pub-%s.der" % key_id), self.rig.tok.path("pub-%s.pem" % key_id)
        self.client(address, "--token-label", token, "--read-object", "--type", "pubkey", "--id", key_id, "-o", der)
        h.run(["openssl", "pkey", "-pubin", "-inform", "DER", "-in", der, "-out", pem])
        return pem

    def openssl_verifies(self, pem, sig):
        r = h.run(["openssl", "dgst", "-sha256", "-verify", pem, "-signature", sig, self.msg], check=False)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        self.assertIn(b"Verified OK", r.stdout)

    def sign_rsa_and_ec(self, address, token, rsa_id, ec_id):
        """SHA256-RSA-PKCS for RSA; for EC the digest is made here and CKM_ECDSA signs it (the
        RPC does not carry CKM_ECDSA_SHA256). openssl verifies both over the message."""
        rsa_sig = self.rig.tok.path("rpc-rsa-%s.sig" % rsa_id)
        self.client(address, *self.user(token), "--sign", "--id", rsa_id, "-m", "SHA256-RSA-PKCS",
                    "-i", self.msg, "-o", rsa_sig)
        self.openssl_verifies(self.public_pem(address, token, rsa_id), rsa_sig)
        digest = self.rig.tok.path("message.sha256")
        h.run(["openssl", "dgst", "-sha256", "-binary", "-out", digest, self.msg])
        ec_sig = self.rig.tok.path("rpc-ec-%s.sig" % ec_id)
        self.client(address, *self.user(token), "--sign", "--id", ec_id, "-m", "ECDSA", "--signature-format",
                    "openssl", "-i", digest, "-o", ec_sig)
        self.openssl_verifies(self.public_pem(address, token, ec_id), ec_sig)

    # ------------------------------------------------------------ p11-kit server
    def test_server_signs_with_rsa_and_ec_keys_mirrors_a_new_key_and_stops_cleanly(self):
        server, address = self.start_server("pkcs11:token=plain", "pkcs11:token=mirrored")
        slots = self.client(address, "--list-token-slots").stdout.decode()
        self.assertIn("token label        : plain", slots)
        self.assertIn("token label        : mirrored", slots)
        self.sign_rsa_and_ec(address, "plain", "01", "02")

        # A key generated through the RPC on a mirroring group is mirrored by the server's module.
        self.client(address, *self.user("mirrored"), "--keypairgen", "--key-type", "EC:prime256v1",
                    "--label", "remote-ec", "--id", "0a")
        self.client(address, *self.user("mirrored"), "--keypairgen", "--key-type", "rsa:2048",
                    "--label", "remote-rsa", "--id", "0b")
        s = self.rig.session(self, "mirrored")
        for label in ("remote-ec", "remote-rsa"):
            state, kid, error = self.rig.state(s, self.rig.find(s, self.rig.P.CKO_PRIVATE_KEY, label))
            self.assertEqual((state, error), (MIRRORED, ""), label)
            self.assertIn("/keys/remote-", kid)
            # The vault's copy signs; the public key read through the RPC verifies.
            self.rig.sign_in_vault_and_verify(kid, self.rig.token_public_key(s, label))
        self.sign_rsa_and_ec(address, "mirrored", "0b", "0a")

        stderr = self.stop(server)
        # p11-kit 0.24's server ends with status 255 on SIGTERM whatever the module (SoftHSM2's too);
        # a crash would be a negative status (the signal).
        self.assertEqual(server.returncode, 255, stderr)
        self.assertEqual(stderr, "")
        self.assertFalse(os.path.exists(address[len("unix:path="):]), "the server left its socket behind")
        # The module was finalised as often as it was initialised, last of all, and said OK.
        with open(self.spy_log) as f:
            calls = re.findall(r"^\d+: (C_\w+)\n.*\n(?:.*\n)*?Returned:\s+\d+ (CKR_\w+)", f.read(), re.M)
        names = [c for c, _ in calls]
        self.assertEqual(names.count("C_Initialize"), names.count("C_Finalize"))
        self.assertEqual(calls[-1], ("C_Finalize", "CKR_OK"))
        # After the server is gone the client cannot reach the token, and says so.
        r = self.client(address, "--list-token-slots", check=False)
        self.assertNotEqual(r.returncode, 0)

    def test_mechanisms_across_the_rpc_are_what_the_readme_says(self):
        _, address = self.start_server("pkcs11:token=plain")
        direct = mechanism_names(self.rig.tok.tool("--token-label", "plain", "-M").stdout.decode())
        remote = mechanism_names(self.client(address, "--token-label", "plain", "-M").stdout.decode())
        self.assertEqual(remote, CROSSES)
        self.assertLess(remote, direct)
        with open(os.path.join(SRC, "README.md")) as f:
            readme = f.read()
        section = re.split(r"\n##+ ", readme.split("### Serving a group to other hosts", 1)[1], maxsplit=1)[0]
        for name in direct - remote:
            self.assertIn("`%s`" % name, section, "README does not list %s among what does not cross" % name)
        # A mechanism the RPC does not carry fails at C_SignInit, as documented.
        r = self.client(address, *self.user("plain"), "--sign", "--id", "02", "-m", "ECDSA-SHA256",
                        "-i", self.msg, "-o", self.rig.tok.path("no.sig"), check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"C_SignInit failed: rv = CKR_MECHANISM_INVALID", r.stderr)

    # ------------------------------------------------------------ the systemd pair
    def unit(self, name):
        path = os.path.join(BUILD, "packaging", name) if name.endswith(".service") else \
            os.path.join(SRC, "packaging", "systemd", name)
        with open(path) as f:
            return path, f.read()

    def test_systemd_units_verify_and_their_command_serves_each_connection(self):
        socket_path, socket_unit = self.unit("cdcp11-p11kit.socket")
        service_path, service_unit = self.unit("cdcp11-p11kit@.service")
        r = h.run(["systemd-analyze", "verify", socket_path, service_path], check=False)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        self.assertIn("Accept=yes", socket_unit)
        self.assertIn("StandardInput=socket", service_unit)

        # Run the service's own ExecStart line the way systemd does for Accept=yes sockets (a
        # process per connection, the connection on stdin/stdout), with the built module and
        # the example environment file's variable.
        exec_start = re.search(r"^ExecStart=(.*)$", service_unit, re.M).group(1)
        argv = shlex.split(exec_start)
        self.assertEqual(argv[1:3], ["remote", "--provider"])
        self.assertEqual(argv[4], "$CDCP11_P11KIT_TOKENS")
        with open(os.path.join(SRC, "packaging", "systemd", "p11kit.env.example")) as f:
            self.assertIn("CDCP11_P11KIT_TOKENS=pkcs11:token=", f.read())
        tokens = "pkcs11:token=plain pkcs11:token=mirrored"
        argv = argv[:3] + [h.MODULE] + tokens.split()
        sock = self.rig.tok.path("activated.sock")
        env = self.rig.tok.env()
        activator_log = self.rig.tok.path("activator.log")
        with open(activator_log, "wb") as log:
            activator = subprocess.Popen(["systemd-socket-activate", "--listen", sock, "--accept", "--inetd",
                                          "-E", "CDCP11_CONF", "-E", "CDCP11_LOG_FILE", *argv],
                                         env=env, stdout=subprocess.DEVNULL, stderr=log)
        self.addCleanup(self.stop, activator)
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        address = "unix:path=" + sock
        # Two connections, two processes: each signs.
        self.sign_rsa_and_ec(address, "plain", "01", "02")
        self.assertIn("token label        : mirrored", self.client(address, "--list-token-slots").stdout.decode())
        self.stop(activator)
        with open(activator_log) as f:
            log = f.read()
        self.assertGreaterEqual(log.count("Spawned "), 2, log)
        self.assertNotRegex(log, r"died with code [1-9]")


if __name__ == "__main__":
    unittest.main(verbosity=2)
