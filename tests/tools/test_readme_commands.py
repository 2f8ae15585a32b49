"""The README's two commands are what CI runs, and nothing in the repository asks pkcs11-tool to
pick a key by label for an operation: OpenSC 0.23's pkcs11-tool chooses the key for --sign,
--decrypt, --encrypt, --wrap, --unwrap and --derive by --id only and ignores --label there."""
import os
import re
import unittest

SRC = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
KEY_OPS = ("--sign", "--verify", "--decrypt", "--encrypt", "--wrap", "--unwrap", "--derive")


def read(*p):
    with open(os.path.join(SRC, *p)) as f:
        return f.read()


def logical_lines(text):
    """Shell lines with backslash continuations joined; Python calls with their arguments joined."""
    text = re.sub(r"\\\n", " ", text)
    out, depth, cur = [], 0, ""
    for line in text.split("\n"):
        cur += " " + line
        depth += line.count("(") - line.count(")")
        if depth <= 0:
            out.append(cur)
            cur, depth = "", 0
    return out


class ReadmeCommands(unittest.TestCase):
    def test_ci_runs_the_readme_commands_as_printed_demo_first(self):
        block = re.search(r"```sh\n(.*?)```", read("README.md"), re.S).group(1)
        commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]
        self.assertEqual(commands, ["bash scripts/demo.sh", "bash scripts/test.sh"])
        run = [line.strip() for line in read(".ci", "run").splitlines()
               if line.strip().startswith("bash scripts/")]
        self.assertEqual([r.split(" ||")[0] for r in run], commands)

    def test_no_pkcs11_tool_key_operation_picks_its_key_by_label(self):
        offenders = []
        for top in ("scripts", "tests", "README.md"):
            root = os.path.join(SRC, top)
            files = [root] if os.path.isfile(root) else [
                os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith((".sh", ".py", ".md"))]
            for path in files:
                if path == os.path.abspath(__file__):
                    continue
                with open(path, errors="replace") as f:
                    for line in logical_lines(f.read()):
                        ops = [op for op in KEY_OPS if re.search(r"""['"\s]%s['"\s]""" % op, line)]
                        is_tool = "pkcs11-tool" in line or "tool(" in line or re.search(r"\bp11 ", line)
                        if ops and is_tool and "--label" in line and "--id" not in line:
                            offenders.append("%s: %s" % (os.path.relpath(path, SRC), " ".join(line.split())[:160]))
        self.assertEqual(offenders, [], "pkcs11-tool ignores --label when it picks the key for an operation")


if __name__ == "__main__":
    unittest.main()
