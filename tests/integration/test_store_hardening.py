"""The soft token's storage hardening, end to end with real clients and processes:
- a PIN retry counter that cannot be written (full disk) fails the login with CKR_DEVICE_ERROR
  and one log line saying why, for wrong and right PINs alike;
- an attribute (CKA_TRUSTED) edited in a record file on disk (with its checksum recomputed, as an attacker
  would) is refused once the user logs in; a private data object is not on disk in clear;
- another process re-initialising the token takes the objects away from this one;
- a corrupt meta record is reported, and C_InitToken repairs the token;
- public token objects made or changed in a public session (no login) are written pending, are
  authenticated by the next login, and an edit after that is found; a pending record planted on disk
  with what a public session cannot write (CKA_TRUSTED true) is refused at the next login."""
import glob
import os
import struct
import subprocess

import p11helpers as h

WRONG_PIN = "98765432"


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def rewrite_record(path, edit):
    """Applies edit(payload) -> payload to a store record file and recomputes its checksum
    (softtoken/store/record_format.h), as anyone able to write the directory can."""
    with open(path, "rb") as f:
        data = f.read()
    name = os.path.basename(path).encode()
    payload = edit(data[20:])
    header = data[:8] + struct.pack("<Q", len(payload))
    crc = crc32c(payload, crc32c(name, crc32c(header)))
    with open(path, "wb") as f:
        f.write(header + struct.pack("<I", crc) + payload)


def set_bool_attr(payload, attr_type, value):
    """Sets a serialized CK_BBOOL attribute (type u64, length u32, value) in a record payload."""
    hdr = struct.pack("<QI", attr_type, 1)
    at = payload.find(hdr)
    assert at >= 0, "attribute 0x%x not in the record" % attr_type
    at += len(hdr)
    return payload[:at] + bytes([value]) + payload[at + 1:]


class StoreHardeningTest(h.P11Case):
    def setUp(self):
        h.require_module(self)
        self.tok = h.TempToken()
        self.mnt = None

    def tearDown(self):
        if self.mnt:
            subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        self.tok.cleanup()

    def token_dir(self):
        return self.tok.path("tokens", "demo")

    def object_files(self):
        return glob.glob(os.path.join(self.token_dir(), "objects", "*"))

    def record_kinds(self):
        """Byte 5 of each object record (softtoken/object_record.h): 0 public, 1 private, 2 pending."""
        kinds = {}
        for path in self.object_files():
            with open(path, "rb") as f:
                kinds[os.path.basename(path)] = f.read()[20:][5]
        return kinds

    def file_with(self, needle):
        found = []
        for path in self.object_files():
            with open(path, "rb") as f:
                if needle in f.read()[20:]:
                    found.append(path)
        self.assertEqual(len(found), 1, needle)
        return found[0]

    def public_session(self):
        P = h.pykcs11()
        lib = h.load_lib(self.tok)
        s = lib.openSession(h.slot_of(lib), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        self.assertEqual(s.getSessionInfo().state, P.CKS_RW_PUBLIC_SESSION)
        return P, lib, s

    def test_pin_counter_that_cannot_be_written_fails_the_login(self):
        self.mnt = self.tok.path("mnt")
        os.makedirs(self.mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", self.mnt],
                           capture_output=True)
        if r.returncode != 0:
            self.mnt = None
            self.skipTest("cannot mount a tmpfs here (needs root): " + r.stderr.decode(errors="replace"))
        self.tok.groups[0]["token"]["dir"] = os.path.join(self.mnt, "tok")
        self.tok.write_conf()
        self.tok.init()
        filler = os.path.join(self.mnt, "filler")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"x" * 65536)
                    f.flush()
            except OSError:
                pass
        for p in (WRONG_PIN, h.USER_PIN):
            out = self.tok.tool("--login", "--pin", p, "-O", check=False)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn(b"CKR_DEVICE_ERROR", out.stdout + out.stderr)
        log = self.tok.read_log()
        lines = [l for l in log.splitlines() if "retry counter cannot be written" in l]
        self.assertTrue(lines, log)
        self.assertIn("No space left on device", lines[0])
        self.assertNotIn(WRONG_PIN, log)

        os.unlink(filler)
        # nothing was counted while the disk was full: one wrong PIN now is the first
        out = self.tok.tool("--login", "--pin", WRONG_PIN, "-O", check=False)
        self.assertIn(b"CKR_PIN_INCORRECT", out.stdout + out.stderr)
        self.tok.tool("-O", login=True)
        self.assertNotIn(WRONG_PIN, self.tok.read_log())

    def test_edited_record_refused_after_login(self):
        self.tok.init()
        self.tok.tool("--keypairgen", "--key-type", "rsa:2048", "--label", "k", "--id", "01", login=True)
        listed = self.tok.tool("-O", "--type", "pubkey").stdout.decode()
        self.assertIn("label:      k", listed)
        edited = 0
        for path in self.object_files():
            with open(path, "rb") as f:
                payload = f.read()[20:]
            # the public key's record: CKA_CLASS CKO_PUBLIC_KEY and CKA_TRUSTED (0x86) false, in clear
            if struct.pack("<QIQ", 0, 8, 2) in payload and struct.pack("<QI", 0x86, 1) + b"\x00" in payload:
                rewrite_record(path, lambda p: set_bool_attr(p, 0x86, 1))
                edited += 1
        self.assertEqual(edited, 1)
        # before a login public objects are unauthenticated, as the spec's public objects are
        self.assertIn("label:      k", self.tok.tool("-O", "--type", "pubkey").stdout.decode())
        # from the login on the edit is found, and the key is not served
        after = self.tok.tool("-O", "--type", "pubkey", login=True).stdout.decode()
        self.assertNotIn("label:      k", after)
        self.assertIn("fails authentication", self.tok.read_log())
        # its private half is untouched
        self.assertIn("label:      k", self.tok.tool("-O", "--type", "privkey", login=True).stdout.decode())

    def test_public_session_objects_are_pending_until_a_login(self):
        self.tok.init()
        P, lib, s = self.public_session()
        key = s.createObject([(P.CKA_CLASS, P.CKO_SECRET_KEY), (P.CKA_KEY_TYPE, P.CKK_AES), (P.CKA_TOKEN, True),
                              (P.CKA_PRIVATE, False), (P.CKA_LABEL, "pub-key"), (P.CKA_VALUE, bytes(range(16))),
                              (P.CKA_ENCRYPT, True), (P.CKA_DECRYPT, True)])
        data = s.createObject([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, False),
                               (P.CKA_LABEL, "pub-data"), (P.CKA_VALUE, b"v")])
        s.setAttributeValue(data, [(P.CKA_LABEL, "pub-dat2")])
        gone = s.createObject([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, False),
                               (P.CKA_LABEL, "gone")])
        s.destroyObject(gone)
        self.assertEqual(sorted(self.record_kinds().values()), [2, 2])
        # served without a login, to this process and to others
        self.assertIn("pub-dat2", self.tok.tool("-O").stdout.decode())
        # the next login, in another process, authenticates them
        self.assertIn("pub-dat2", self.tok.tool("-O", login=True).stdout.decode())
        self.assertEqual(sorted(self.record_kinds().values()), [0, 0])
        iv = bytes(16)
        ct = bytes(s.encrypt(key, b"x" * 16, P.Mechanism(P.CKM_AES_CBC_PAD, iv)))
        self.assertEqual(bytes(s.decrypt(key, ct, P.Mechanism(P.CKM_AES_CBC_PAD, iv))), b"x" * 16)
        # from now on an edit on disk is found, as for records written while logged in
        rewrite_record(self.file_with(b"pub-dat2"), lambda p: p.replace(b"pub-dat2", b"pub-datX"))
        self.assertNotIn("pub-dat", self.tok.tool("-O", login=True).stdout.decode())
        self.assertIn("fails authentication", self.tok.read_log())
        s.closeSession()

    def test_planted_pending_record_refused_at_login(self):
        self.tok.init()
        P, lib, s = self.public_session()
        s.generateKeyPair(
            [(P.CKA_TOKEN, True), (P.CKA_PRIVATE, False), (P.CKA_EC_PARAMS, bytes.fromhex("06082a8648ce3d030107")),
             (P.CKA_VERIFY, True), (P.CKA_LABEL, "planted")],
            [(P.CKA_TOKEN, True), (P.CKA_PRIVATE, False), (P.CKA_SIGN, True), (P.CKA_LABEL, "planted")],
            P.MechanismECGENERATEKEYPAIR)
        s.closeSession()
        # the public key's pending record: CKA_CLASS CKO_PUBLIC_KEY and CKA_TRUSTED (0x86) false
        rewrite_record(self.file_with(struct.pack("<QIQ", 0, 8, 2)), lambda p: set_bool_attr(p, 0x86, 1))
        # before a login it is served, unauthenticated, as public objects are
        self.assertIn("label:      planted", self.tok.tool("-O", "--type", "pubkey").stdout.decode())
        # the next login refuses it: only the SO may set CKA_TRUSTED
        self.assertNotIn("label:      planted", self.tok.tool("-O", "--type", "pubkey", login=True).stdout.decode())
        self.assertIn("CKA_TRUSTED can only be set to true by the SO: the object is refused", self.tok.read_log())
        # its untouched private half is authenticated
        self.assertIn("label:      planted", self.tok.tool("-O", "--type", "privkey", login=True).stdout.decode())

    def test_private_data_object_not_on_disk_in_clear(self):
        self.tok.init()
        value = self.tok.path("value.bin")
        with open(value, "wb") as f:
            f.write(b"private value 0123456789")
        self.tok.tool("--write-object", value, "--type", "data", "--label", "private-label", "--private",
                      login=True)
        files = self.object_files()
        self.assertEqual(len(files), 1)
        with open(files[0], "rb") as f:
            raw = f.read()
        self.assertNotIn(b"private value 0123456789", raw)
        self.assertNotIn(b"private-label", raw)
        out = self.tok.tool("--read-object", "--type", "data", "--label", "private-label", login=True)
        self.assertEqual(out.stdout, b"private value 0123456789")

    def test_reinitialised_by_another_process(self):
        self.tok.init()
        P = h.pykcs11()
        lib = h.load_lib(self.tok)
        s = lib.openSession(h.slot_of(lib), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION)
        s.login(h.USER_PIN)
        o = s.createObject([(P.CKA_CLASS, P.CKO_DATA), (P.CKA_TOKEN, True), (P.CKA_PRIVATE, True),
                            (P.CKA_LABEL, "mine"), (P.CKA_VALUE, b"v")])
        self.assertEqual(len(s.findObjects([(P.CKA_LABEL, "mine")])), 1)
        self.tok.init()  # pkcs11-tool, another process
        self.assertEqual(s.findObjects([(P.CKA_LABEL, "mine")]), [])
        raw = h.Raw()
        rv, _, _ = raw.get_attr(h.sh(s), h.oh(o), P.CKA_LABEL)
        self.assertRV("CKR_OBJECT_HANDLE_INVALID", rv)
        s.closeSession()

    def test_corrupt_meta_record_reported_and_repaired(self):
        self.tok.init()
        self.tok.tool("--write-object", self.tok.conf, "--type", "data", "--label", "d", login=True)
        meta = os.path.join(self.token_dir(), "meta")
        with open(meta, "r+b") as f:
            f.seek(40)
            f.write(b"#")
        listing = self.tok.tool("-L").stdout.decode()
        self.assertIn("uninitialized", listing)
        self.assertIn("meta record is corrupt", self.tok.read_log())
        out = self.tok.tool("--login", "--pin", h.USER_PIN, "-O", check=False)
        self.assertNotEqual(out.returncode, 0)
        self.tok.init()  # C_InitToken repairs it
        self.assertIn("token initialized", self.tok.tool("-L").stdout.decode())
        self.assertNotIn("label:      d", self.tok.tool("-O", login=True).stdout.decode())


if __name__ == "__main__":
    h.main()
