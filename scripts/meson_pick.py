#!/usr/bin/env python3
"""meson_pick.py DIR targets|tests SELECTOR...: the tests of a configured build directory that
the selectors choose, or the build targets those tests need (so that a phase builds only those).
A selector NAME takes the tests named NAME or in suite NAME; -NAME then drops the tests named
NAME or in suite NAME."""
import json
import os
import subprocess
import sys

d, what, args = sys.argv[1], sys.argv[2], sys.argv[3:]
take = {a for a in args if not a.startswith("-")}
drop = {a[1:] for a in args if a.startswith("-")}


def intro(kind):
    return json.loads(subprocess.check_output(["meson", "introspect", "--" + kind, d]))


def chosen(t, names):
    return t["name"] in names or names & {s.split(":")[-1] for s in t["suite"]}


targets = {t["id"]: t for t in intro("targets")}
tests = [t for t in intro("tests") if chosen(t, take) and not chosen(t, drop)]
if what == "tests":
    print(" ".join(t["name"] for t in tests))
else:
    # meson compile's target form: the defining subdirectory (mirrored in the build tree) / name
    print(" ".join(sorted({os.path.relpath(os.path.dirname(targets[dep]["filename"][0]), d) + "/" +
                           targets[dep]["name"] for t in tests for dep in t["depends"] if dep in targets})))
