"""The C ABI edge: no C++ exception leaves C_Initialize (the host process gets a CKR, it is not
terminated).

Each case runs in a child process of its own (this file, run with --child), so a crash or a hang
is seen from outside and the module starts uninitialised."""
import ctypes
import json
import os
import subprocess
import sys
import unittest

import p11helpers as h

CKR_OK, CKR_GENERAL_ERROR = 0x0, 0x5


# ---------------------------------------------------------------- children

def child(mode, *args):
    lib = ctypes.CDLL(h.MODULE)
    lib.C_Initialize.restype = ctypes.c_ulong
    lib.C_Finalize.restype = ctypes.c_ulong
    if mode == "initialize":
        args_ = h.CK_C_INITIALIZE_ARGS()
        path = ctypes.create_string_buffer(args[0].encode())
        args_.pReserved = ctypes.cast(path, ctypes.c_void_p)
        rv = lib.C_Initialize(ctypes.byref(args_))
        present = []
        if rv == CKR_OK:
            present = h.c_slots(lib)[1]
            lib.C_Finalize(None)
        print(json.dumps({"rv": rv, "slots_with_token": len(present)}))
    sys.stdout.flush()


def run_child(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *args], capture_output=True,
                          env=env, timeout=timeout)


# ---------------------------------------------------------------- tests

class InitializeNeverThrowsTest(unittest.TestCase):
    """Paths the filesystem refuses in ways std::filesystem reports by throwing: a symlink loop
    (ELOOP) and a name longer than NAME_MAX (ENAMETOOLONG). Root cannot bypass either."""

    def setUp(self):
        self.tok = h.TempToken()
        os.symlink("loop", self.tok.path("loop"))

    def tearDown(self):
        self.tok.cleanup()

    def run_init(self):
        r = run_child("initialize", self.tok.conf, env=self.tok.env(CDCP11_LOG_LEVEL="info"))
        self.assertEqual(r.returncode, 0, "the host process died (%d): %s" % (r.returncode, r.stderr.decode(errors="replace")))
        return json.loads(r.stdout)

    def test_azure_secret_file_path_that_cannot_be_checked(self):
        for name, path in (("ELOOP", self.tok.path("loop", "secret")),
                           ("ENAMETOOLONG", self.tok.path("x" * 300, "secret"))):
            with self.subTest(errno=name):
                self.tok.groups[0]["azure"] = {
                    "tenant_id": "00000000-0000-0000-0000-000000000001",
                    "client_id": "00000000-0000-0000-0000-000000000002",
                    "subscription_id": "00000000-0000-0000-0000-000000000003",
                    "credential": {"type": "secret", "secret_file": path},
                    "vault": {"name": "kv", "type": "premium"}}
                self.tok.write_conf()
                rep = self.run_init()
                # A CKR, not a dead process: the group serves without Azure, or the load fails and says so.
                self.assertIn(rep["rv"], (CKR_OK, CKR_GENERAL_ERROR), hex(rep["rv"]))
                if rep["rv"] == CKR_GENERAL_ERROR:
                    self.assertIn("C_Initialize", self.tok.read_log())

    def test_token_directory_that_cannot_be_opened(self):
        for name, d in (("ELOOP", "loop/tok"), ("ENAMETOOLONG", "y" * 300 + "/tok")):
            with self.subTest(errno=name):
                self.tok.groups[0]["token"]["dir"] = d
                self.tok.write_conf()
                rep = self.run_init()
                self.assertEqual(rep["rv"], CKR_OK)
                self.assertEqual(rep["slots_with_token"], 0)
                self.assertIn("token unavailable", self.tok.read_log())


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        h.main()
