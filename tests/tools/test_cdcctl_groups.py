"""cdcctl group add/edit/show/list/remove: config edits are validated, atomic, keep secrets out
of the config file, and every command speaks JSON with --json."""
import json
import os
import stat
import subprocess
import tempfile
import unittest

CDCCTL = os.environ["CDCCTL"]
TENANT = "7e57a000-0000-4000-8000-000000000001"
CLIENT = "c1e47000-0000-4000-8000-000000000001"
SUB = "5ab5c000-0000-4000-8000-000000000001"


class GroupCommands(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.conf = os.path.join(self.dir.name, "cdcp11.json")

    def tearDown(self):
        self.dir.cleanup()

    def run_cdcctl(self, *args, stdin=None, ok=True):
        p = subprocess.run([CDCCTL, "--config", self.conf, *args], input=stdin, capture_output=True, text=True)
        if ok:
            self.assertEqual(p.returncode, 0, p.stderr)
        else:
            self.assertNotEqual(p.returncode, 0, p.stdout)
        return p

    def config(self):
        with open(self.conf) as f:
            return json.load(f)

    def add_azure_group(self, name="payments"):
        self.run_cdcctl("group", "add", name, "--tenant-id", TENANT, "--client-id", CLIENT,
                        "--subscription-id", SUB, "--secret-stdin", "--vault", "demo-premium",
                        "--vault-type", "premium", stdin="s3cr3t-do-not-leak\n")

    def test_add_creates_a_private_config_with_the_secret_kept_out(self):
        self.add_azure_group()
        self.assertEqual(stat.S_IMODE(os.stat(self.conf).st_mode), 0o600)
        with open(self.conf) as f:
            text = f.read()
        self.assertNotIn("s3cr3t-do-not-leak", text)
        cred = self.config()["groups"][0]["azure"]["credential"]
        self.assertEqual(cred["type"], "secret")
        secret_path = os.path.join(self.dir.name, cred["secret_file"])
        self.assertEqual(stat.S_IMODE(os.stat(secret_path).st_mode), 0o600)
        with open(secret_path) as f:
            self.assertEqual(f.read(), "s3cr3t-do-not-leak")
        leftovers = [n for n in os.listdir(self.dir.name) if ".tmp." in n]
        self.assertEqual(leftovers, [])

    def test_a_new_secret_replaces_a_world_readable_secret_file_with_a_private_one(self):
        secrets = os.path.join(self.dir.name, "secrets")
        os.makedirs(secrets)
        old = os.path.join(secrets, "payments.secret")
        with open(old, "w") as f:
            f.write("old-secret")
        os.chmod(old, 0o644)
        self.add_azure_group()
        self.assertEqual(stat.S_IMODE(os.stat(old).st_mode), 0o600)
        with open(old) as f:
            self.assertEqual(f.read(), "s3cr3t-do-not-leak")
        # Editing keeps a config's own mode (it holds no secret), and a new secret is private again.
        os.chmod(self.conf, 0o640)
        os.chmod(old, 0o644)
        self.run_cdcctl("group", "edit", "payments", "--secret-stdin", stdin="n3w-s3cr3t\n")
        self.assertEqual(stat.S_IMODE(os.stat(self.conf).st_mode), 0o640)
        self.assertEqual(stat.S_IMODE(os.stat(old).st_mode), 0o600)

    def test_a_proxy_password_is_refused_inline_and_kept_in_a_private_file(self):
        bad = self.run_cdcctl("group", "add", "payments", "--tenant-id", TENANT, "--client-id", CLIENT,
                              "--subscription-id", SUB, "--secret-env", "PAY_SECRET",
                              "--proxy", "http://alice:pr0xy-pw-do-not-leak@proxy.example:3128", ok=False)
        self.assertIn("azure.tls.proxy: a proxy password may not be written in the configuration; use "
                      "proxy_password_file (mode 0600) or proxy_password_env, and proxy_user", bad.stderr)
        self.assertNotIn("pr0xy-pw-do-not-leak", bad.stdout + bad.stderr)
        self.assertFalse(os.path.exists(self.conf) and "pr0xy-pw" in open(self.conf).read())

        self.run_cdcctl("group", "add", "payments", "--tenant-id", TENANT, "--client-id", CLIENT,
                        "--subscription-id", SUB, "--secret-env", "PAY_SECRET", "--proxy", "http://proxy.example:3128",
                        "--proxy-user", "alice", "--proxy-password-stdin", stdin="pr0xy-pw-do-not-leak\n")
        with open(self.conf) as f:
            self.assertNotIn("pr0xy-pw-do-not-leak", f.read())
        tls = self.config()["groups"][0]["azure"]["tls"]
        self.assertEqual((tls["proxy"], tls["proxy_user"], tls["proxy_password_file"]),
                         ("http://proxy.example:3128", "alice", "secrets/payments.proxy-password"))
        pw_file = os.path.join(self.dir.name, tls["proxy_password_file"])
        self.assertEqual(stat.S_IMODE(os.stat(pw_file).st_mode), 0o600)
        with open(pw_file) as f:
            self.assertEqual(f.read(), "pr0xy-pw-do-not-leak")
        shown = self.run_cdcctl("group", "show", "payments").stdout
        self.assertIn("http://proxy.example:3128 as alice, password in file " + pw_file, shown)
        shown_json = json.loads(self.run_cdcctl("--json", "group", "show", "payments").stdout)
        self.assertEqual((shown_json["azure"]["proxy"], shown_json["azure"]["proxy_user"]),
                         ("http://proxy.example:3128", "alice"))
        self.assertNotIn("pr0xy-pw", shown + json.dumps(shown_json))

        # From the environment instead: the file setting goes.
        self.run_cdcctl("group", "edit", "payments", "--proxy-password-env", "PROXY_PW")
        tls = self.config()["groups"][0]["azure"]["tls"]
        self.assertEqual(tls.get("proxy_password_env"), "PROXY_PW")
        self.assertNotIn("proxy_password_file", tls)

    def test_list_and_show_human_and_json(self):
        self.add_azure_group()
        self.run_cdcctl("group", "add", "local", "--description", "no cloud")
        out = self.run_cdcctl("group", "list").stdout.splitlines()
        self.assertEqual(out[0].split(), ["SLOT", "NAME", "CLOUD", "VAULT", "TYPE", "MIRROR", "AZURE"])
        rows = {line.split()[1]: line for line in out[1:]}
        self.assertIn("demo-premium", rows["payments"])
        self.assertIn("local only", rows["local"])
        groups = json.loads(self.run_cdcctl("--json", "group", "list").stdout)
        self.assertEqual([g["name"] for g in groups], ["payments", "local"])
        self.assertEqual(groups[0]["azure"]["vault_type"], "premium")
        self.assertIsNone(groups[1]["azure"])
        shown = json.loads(self.run_cdcctl("--json", "group", "show", "payments").stdout)
        self.assertEqual(shown["azure"]["tenant_id"], TENANT)
        self.assertNotIn("s3cr3t", json.dumps(shown))
        self.assertNotIn("s3cr3t", self.run_cdcctl("group", "show", "payments").stdout)

    def test_edit_changes_only_what_is_given(self):
        self.add_azure_group()
        self.run_cdcctl("group", "edit", "payments", "--mirror", "on_generate", "--mirror-mode", "async",
                        "--no-validate-host")
        g = self.config()["groups"][0]
        self.assertEqual(g["mirror"], {"trigger": "on_generate", "mode": "async"})
        self.assertFalse(g["azure"]["tls"]["validate_host"])
        self.assertEqual(g["azure"]["vault"]["name"], "demo-premium")
        self.run_cdcctl("group", "edit", "payments", "--local-only")
        self.assertNotIn("azure", self.config()["groups"][0])

    def test_plain_export_of_non_extractable_keys_is_a_group_setting(self):
        self.add_azure_group()
        shown = json.loads(self.run_cdcctl("--json", "group", "show", "payments").stdout)
        self.assertFalse(shown["mirror"]["allow_plain_export_of_non_extractable"])
        self.run_cdcctl("group", "edit", "payments", "--allow-plain-export-of-non-extractable", "true")
        self.assertTrue(self.config()["groups"][0]["mirror"]["allow_plain_export_of_non_extractable"])
        self.assertIn("plain export", self.run_cdcctl("group", "show", "payments").stdout)
        self.run_cdcctl("group", "edit", "payments", "--allow-plain-export-of-non-extractable", "maybe", ok=False)
        self.run_cdcctl("group", "edit", "payments", "--allow-plain-export-of-non-extractable", "false")
        self.assertFalse(self.config()["groups"][0]["mirror"]["allow_plain_export_of_non_extractable"])

    def test_rotation_policy_is_edited_and_shown(self):
        self.add_azure_group()
        shown = json.loads(self.run_cdcctl("--json", "group", "show", "payments").stdout)
        self.assertEqual(shown["mirror"]["rotation"],
                         {"every_days": 0, "retire_former": "keep", "retire_former_after_days": 0})
        self.run_cdcctl("group", "edit", "payments", "--rotate-every-days", "90", "--retire-former", "disable",
                        "--retire-former-after-days", "30")
        self.assertEqual(self.config()["groups"][0]["mirror"]["rotation"],
                         {"every_days": 90, "retire_former": "disable", "retire_former_after_days": 30})
        self.assertIn("every 90 days; former versions: disable after 30 days",
                      self.run_cdcctl("group", "show", "payments").stdout)
        self.run_cdcctl("group", "edit", "payments", "--retire-former", "shred", ok=False)
        self.run_cdcctl("group", "edit", "payments", "--rotate-every-days", "40000", ok=False)
        self.assertEqual(self.config()["groups"][0]["mirror"]["rotation"]["every_days"], 90)

    def test_invalid_edits_are_refused_and_leave_the_file_unchanged(self):
        self.add_azure_group()
        with open(self.conf, "rb") as f:
            before = f.read()
        p = self.run_cdcctl("group", "edit", "payments", "--tenant-id", "not-a-guid", ok=False)
        self.assertEqual(p.stderr.strip(),
                         "cdcctl: %s: group 'payments': azure.tenant_id: must be a GUID "
                         "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)" % self.conf)
        p = self.run_cdcctl("group", "edit", "payments", "--vault", "bad_name", ok=False)
        self.assertIn("azure.vault.name: must be 3 to 24 letters, digits or hyphens", p.stderr)
        p = self.run_cdcctl("group", "add", "payments", ok=False)
        self.assertEqual(p.stderr.strip(), "cdcctl: a group named 'payments' already exists")
        p = self.run_cdcctl("--json", "group", "edit", "nope", "--description", "x", ok=False)
        self.assertEqual(json.loads(p.stdout), {"error": "no group named 'nope' in %s" % self.conf})
        p = self.run_cdcctl("group", "edit", "payments", "--vault-type", "basic", ok=False)
        self.assertIn("basic", p.stderr)
        with open(self.conf, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_a_world_readable_secret_file_is_refused(self):
        secret = os.path.join(self.dir.name, "s.txt")
        with open(secret, "w") as f:
            f.write("x")
        os.chmod(secret, 0o644)
        p = self.run_cdcctl("group", "add", "g", "--tenant-id", TENANT, "--client-id", CLIENT,
                            "--subscription-id", SUB, "--secret-file", "s.txt", ok=False)
        self.assertIn("azure.credential.secret_file: %s is readable by group or others; chmod 600 it" % secret,
                      p.stderr)
        self.assertFalse(os.path.exists(self.conf))

    def test_remove_and_slot_ids(self):
        self.run_cdcctl("group", "add", "a")
        self.run_cdcctl("group", "add", "b", "--slot-id", "42")
        groups = json.loads(self.run_cdcctl("--json", "group", "list").stdout)
        self.assertEqual(groups[1]["slot_id"], 42)
        p = self.run_cdcctl("group", "add", "c", "--slot-id", "42", ok=False)
        self.assertIn("slot_id: is used by another group", p.stderr)
        self.run_cdcctl("group", "remove", "a")
        self.assertEqual([g["name"] for g in self.config()["groups"]], ["b"])
        self.run_cdcctl("group", "remove", "a", ok=False)

    def test_help_everywhere(self):
        for args in ([], ["group"], ["group", "list"], ["group", "add"], ["group", "edit"], ["group", "show"],
                     ["group", "remove"]):
            p = subprocess.run([CDCCTL, *args, "--help"], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, args)
            self.assertIn("Usage:", p.stdout)


if __name__ == "__main__":
    unittest.main()
