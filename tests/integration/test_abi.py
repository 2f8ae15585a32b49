"""The C ABI edge: every function of the 2.40 and 3.0 function lists (and the vendor interface)
returns CKR_CRYPTOKI_NOT_INITIALIZED outside C_Initialize/C_Finalize; no C++ exception leaves
C_Initialize (the host process gets a CKR, it is not terminated); a child forked while another
thread is inside a call can C_Initialize and C_Finalize.

Each case runs in a child process of its own (this file, run with --child), so a crash or a hang
is seen from outside and the module starts uninitialised."""
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

import p11helpers as h

CKR_OK, CKR_GENERAL_ERROR = 0x0, 0x5
CKR_NOT_INIT, CKR_NO_EVENT = 0x190, 0x8
CKF_DONT_BLOCK = 1

FUNCTIONS_240 = """C_Initialize C_Finalize C_GetInfo C_GetFunctionList C_GetSlotList C_GetSlotInfo C_GetTokenInfo
C_GetMechanismList C_GetMechanismInfo C_InitToken C_InitPIN C_SetPIN C_OpenSession C_CloseSession C_CloseAllSessions
C_GetSessionInfo C_GetOperationState C_SetOperationState C_Login C_Logout C_CreateObject C_CopyObject
C_DestroyObject C_GetObjectSize C_GetAttributeValue C_SetAttributeValue C_FindObjectsInit C_FindObjects
C_FindObjectsFinal C_EncryptInit C_Encrypt C_EncryptUpdate C_EncryptFinal C_DecryptInit C_Decrypt C_DecryptUpdate
C_DecryptFinal C_DigestInit C_Digest C_DigestUpdate C_DigestKey C_DigestFinal C_SignInit C_Sign C_SignUpdate
C_SignFinal C_SignRecoverInit C_SignRecover C_VerifyInit C_Verify C_VerifyUpdate C_VerifyFinal C_VerifyRecoverInit
C_VerifyRecover C_DigestEncryptUpdate C_DecryptDigestUpdate C_SignEncryptUpdate C_DecryptVerifyUpdate
C_GenerateKey C_GenerateKeyPair C_WrapKey C_UnwrapKey C_DeriveKey C_SeedRandom C_GenerateRandom
C_GetFunctionStatus C_CancelFunction C_WaitForSlotEvent""".split()
FUNCTIONS_30 = FUNCTIONS_240 + """C_GetInterfaceList C_GetInterface C_LoginUser C_SessionCancel C_MessageEncryptInit
C_EncryptMessage C_EncryptMessageBegin C_EncryptMessageNext C_MessageEncryptFinal C_MessageDecryptInit
C_DecryptMessage C_DecryptMessageBegin C_DecryptMessageNext C_MessageDecryptFinal C_MessageSignInit C_SignMessage
C_SignMessageBegin C_SignMessageNext C_MessageSignFinal C_MessageVerifyInit C_VerifyMessage C_VerifyMessageBegin
C_VerifyMessageNext C_MessageVerifyFinal""".split()
VENDOR = ["C_CDC_MirrorKey", "C_CDC_GetMirrorStatus", "C_CDC_SyncKeys", "C_CDC_RotateKey"]
# Callable before C_Initialize by the spec (5.4.4-5.4.6), and C_Initialize itself.
BEFORE_INIT = {"C_Initialize", "C_GetFunctionList", "C_GetInterfaceList", "C_GetInterface"}
ANY = ctypes.CFUNCTYPE(ctypes.c_ulong, *([ctypes.c_ulong] * 10))  # zero/NULL arguments (x86-64: extras ignored)


def function_table(lib, name, version, count):
    """The entries of the interface `name` with `version` (major, minor): a list of raw pointers."""
    iface = ctypes.POINTER(h.CK_INTERFACE)()
    ver = h.CK_VERSION(*version) if version else None
    lib.C_GetInterface.restype = ctypes.c_ulong
    rv = lib.C_GetInterface(name, ctypes.byref(ver) if ver else None, ctypes.byref(iface), ctypes.c_ulong(0))
    assert rv == CKR_OK, "C_GetInterface(%r): 0x%x" % (name, rv)
    table = ctypes.cast(iface.contents.pFunctionList, ctypes.POINTER(ctypes.c_void_p))
    return [table[1 + i] for i in range(count)]  # entry 0 holds the CK_VERSION (padded to a pointer)


def not_initialized_report(lib):
    """{"list:function": rv} for every function that must say CKR_CRYPTOKI_NOT_INITIALIZED now."""
    out = {}
    for label, name, version, names in (("2.40", b"PKCS 11", (2, 40), FUNCTIONS_240),
                                        ("3.0", b"PKCS 11", (3, 0), FUNCTIONS_30),
                                        ("vendor", b"Vendor cdcp11", None, VENDOR)):
        for fname, ptr in zip(names, function_table(lib, name, version, len(names))):
            if fname in BEFORE_INIT:
                continue
            out["%s:%s" % (label, fname)] = ANY(ptr)(*([0] * 10))
    for fname in FUNCTIONS_30:  # the exported symbols too
        if fname not in BEFORE_INIT:
            out["symbol:" + fname] = ANY(ctypes.cast(getattr(lib, fname), ctypes.c_void_p).value)(*([0] * 10))
    return out


# ---------------------------------------------------------------- children

def child(mode, *args):
    lib = ctypes.CDLL(h.MODULE)
    lib.C_Initialize.restype = ctypes.c_ulong
    lib.C_Finalize.restype = ctypes.c_ulong
    if mode == "not-initialized":
        before = not_initialized_report(lib)
        assert lib.C_Initialize(None) == CKR_OK
        slot = ctypes.c_ulong(0)
        lib.C_WaitForSlotEvent.restype = ctypes.c_ulong
        no_event = lib.C_WaitForSlotEvent(ctypes.c_ulong(CKF_DONT_BLOCK), ctypes.byref(slot), None)
        bad_finalize = lib.C_Finalize(ctypes.c_void_p(8))  # pReserved must be NULL
        assert lib.C_Finalize(None) == CKR_OK
        print(json.dumps({"before": before, "after": not_initialized_report(lib), "no_event": no_event,
                          "bad_finalize": bad_finalize}))
    elif mode == "initialize":
        args_ = h.CK_C_INITIALIZE_ARGS()
        path = ctypes.create_string_buffer(args[0].encode())
        args_.pReserved = ctypes.cast(path, ctypes.c_void_p)
        rv = lib.C_Initialize(ctypes.byref(args_))
        present = []
        if rv == CKR_OK:
            present = h.c_slots(lib)[1]
            lib.C_Finalize(None)
        print(json.dumps({"rv": rv, "slots_with_token": len(present)}))
    elif mode == "fork":
        fork_while_busy(lib, int(args[0]), args[1])
    sys.stdout.flush()


def hung_child_report(pid):
    """What a hung child is doing, for the failure report: the kernel's word for what each thread
    waits on, then (where gdb is installed) their stacks. gdb gets 30 s; the caller kills the
    child whether or not it answered."""
    out = ["child %d hung:" % pid]
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError as e:
        tids = []
        out.append("no /proc entry: %s" % e)
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/wchan" % (pid, tid)) as f:
                wchan = f.read()
            with open("/proc/%d/task/%s/syscall" % (pid, tid)) as f:
                call = f.read().split()[0]
        except OSError as e:
            wchan, call = str(e), "?"
        out.append("thread %s waits in %s (system call %s)" % (tid, wchan, call))
    if shutil.which("gdb"):
        try:
            # Not under the sanitizer runtime the tests preload: gdb hangs with it.
            env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
            r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-iex", "set debuginfod enabled off",
                                "-ex", "thread apply all bt"], capture_output=True, timeout=30, env=env)
            out.append(r.stdout.decode(errors="replace")[-12000:])
        except subprocess.TimeoutExpired:
            out.append("gdb gave no stacks within 30 s")
    return "\n".join(out) + "\n"


RUNTIME_FRAME = re.compile(r"/libsanitizer/|libasan\.so|\b__sanitizer::|\b__asan(::|_)")
RUNTIME_LOCK = re.compile(r"Mutex::Lock|SpinMutex|LockSlow")


def hung_in_sanitizer_allocator(report):
    """Whether every thread of a hung child (a report of hung_child_report) waits on a lock of the
    sanitizer runtime, entered from the program: the frames above the program's own are the
    runtime's, and one takes a lock. GCC 12's libasan takes none of its locks around fork (later
    LLVM releases lock the allocator in a pthread_atfork handler), so a child can inherit an
    allocator lock another thread of the parent held, and wait on it forever at its first
    malloc. The program cannot reach that lock; with glibc's malloc, which is locked across
    fork, the child runs."""
    threads = re.split(r"^Thread \d+ ", report, flags=re.M)[1:]
    if not threads:
        return False
    for t in threads:
        frames = [line for line in t.splitlines() if line.startswith("#")]
        top = []
        for f in frames:
            if not RUNTIME_FRAME.search(f):
                break
            top.append(f)
        if len(top) == len(frames) or not any(RUNTIME_LOCK.search(f) for f in top):
            return False
    return True


def fork_while_busy(lib, forks, busy):
    """A thread keeps calling into the module while the main thread forks; each child must
    C_Initialize, list its slots and C_Finalize on its own within 15 s (forking stops at the first
    that does not). busy: "login" (C_Login
    with a wrong PIN, a slow scrypt each time) or "logging" (failing calls, one log line each)."""
    assert h.c_init(lib)[0] == CKR_OK
    rv, slots = h.c_slots(lib)
    sess = ctypes.c_ulong(0)
    lib.C_OpenSession.restype = ctypes.c_ulong
    assert lib.C_OpenSession(ctypes.c_ulong(slots[0]), ctypes.c_ulong(h.CKF_SERIAL_SESSION), None, None,
                             ctypes.byref(sess)) == CKR_OK
    stop = threading.Event()
    calls = []

    def work():
        wrong = b"00000000"  # max_pin_retries 0: never locks
        info = ctypes.create_string_buffer(256)
        while not stop.is_set():
            if busy == "login":
                calls.append(lib.C_Login(sess, ctypes.c_ulong(h.CKU_USER), wrong, ctypes.c_ulong(len(wrong))))
            else:
                calls.append(lib.C_GetSlotInfo(ctypes.c_ulong(0xBAD), info))

    t = threading.Thread(target=work)
    t.start()
    results = []
    try:
        for _ in range(forks):
            time.sleep(0.3 if busy == "login" else 0.01)  # a C_Login takes about a second
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    ok = lib.C_Initialize(None) == CKR_OK
                    ok = ok and h.c_slots(lib)[0] == CKR_OK
                    ok = ok and lib.C_Finalize(None) == CKR_OK
                    code = 0 if ok else 2
                finally:
                    os._exit(code)
            deadline = time.time() + 15
            status = "hung"
            while time.time() < deadline:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = os.waitstatus_to_exitcode(st)
                    break
                time.sleep(0.02)
            if status == "hung":
                try:
                    report = hung_child_report(pid)
                finally:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                sys.stderr.write(report)
                if hung_in_sanitizer_allocator(report):
                    status = "hung in the sanitizer's allocator"
                    results.append(status)
                    continue
            results.append(status)
            if status != 0:
                break
    finally:
        stop.set()
        t.join()
    print(json.dumps({"children": results, "calls": len(calls)}))


def run_child(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *args], capture_output=True,
                          env=env, timeout=timeout)


# ---------------------------------------------------------------- tests

class NotInitializedTest(unittest.TestCase):
    def test_every_function_before_initialize_and_after_finalize(self):
        tok = h.TempToken()
        try:
            r = run_child("not-initialized", env=tok.env(CDCP11_LOG_LEVEL="info"))
            self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
            rep = json.loads(r.stdout)
            for phase in ("before", "after"):
                wrong = {f: hex(rv) for f, rv in rep[phase].items() if rv != CKR_NOT_INIT}
                self.assertEqual(wrong, {}, "%s C_Initialize: not CKR_CRYPTOKI_NOT_INITIALIZED" % phase)
            self.assertEqual(len([f for f in rep["before"] if f.startswith("3.0:")]), len(FUNCTIONS_30) - len(BEFORE_INIT))
            # and once initialised, a poll says no event (the slots never change)
            self.assertEqual(rep["no_event"], CKR_NO_EVENT)
            self.assertEqual(rep["bad_finalize"], 0x7)  # CKR_ARGUMENTS_BAD, and said why
            self.assertIn("C_Finalize: CKR_ARGUMENTS_BAD: pReserved must be NULL", tok.read_log())
        finally:
            tok.cleanup()


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


# Thread 1 of a child that hung in the ASan phase of a CI run, trimmed.
ALLOCATOR_HANG = """child 7728 hung:
thread 7728 waits in futex_do_wait (system call 202)
Thread 1 (Thread 0x7f2e8a2a8e80 (LWP 7728) "python3"):
#0  0x00007f2e89cd251e in __sanitizer::FutexWait (p=0x640000000208, cmp=0) at \
../../../../src/libsanitizer/sanitizer_common/sanitizer_linux.cpp:672
#1  0x00007f2e89cd4e0b in __sanitizer::Semaphore::Wait (this=0x640000000208) at \
../../../../src/libsanitizer/sanitizer_common/sanitizer_mutex.cpp:35
#2  0x00007f2e89c2ab6d in __sanitizer::Mutex::Lock (this=0x640000000200) at \
../../../../src/libsanitizer/sanitizer_common/sanitizer_mutex.h:194
#4  __sanitizer::SizeClassAllocator64<__asan::AP64<__sanitizer::LocalAddressSpaceView> >::GetFromAllocator (...)
#8  0x00007f2e89c2b26e in __asan::Allocator::Allocate (this=0x7f2e89d3bdc0 <__asan::instance>, size=37, ...)
#10 0x00007f2e89cb9495 in operator new (size=37) at ../../../../src/libsanitizer/asan/asan_new_delete.cpp:95
#11 0x00007f2e843769ef in std::__new_allocator<char>::allocate (this=0x7ffdbbe82fd0, __n=37) at \
/usr/include/c++/12/bits/new_allocator.h:137
#18 0x00007f2e844bab32 in cdcp11::core::MetadataStore::open (dir="/tmp/t/tokens/demo") at \
../core/token/metadata_store.cpp:119
#26 0x00007f2e842eabdd in C_Initialize (pInitArgs=0x0) at ../p11module/entry.cpp:78
"""


class HangReportTest(unittest.TestCase):
    def test_a_child_waiting_on_the_sanitizer_allocators_lock_is_told_apart(self):
        self.assertTrue(hung_in_sanitizer_allocator(ALLOCATOR_HANG))

    def test_a_child_waiting_on_a_lock_of_the_program_is_not(self):
        ours = ALLOCATOR_HANG.replace("#0  0x00007f2e89cd251e in __sanitizer::FutexWait",
                                      "#0  0x00007f2e89cd251e in __lll_lock_wait (futex=0x7f2e, private=0) at \
lowlevellock.c:49\n#1  0x1 in cdcp11::log::write")
        self.assertFalse(hung_in_sanitizer_allocator(ours))
        # Only the runtime's frames, no lock among them: not a lock the parent's thread held.
        self.assertFalse(hung_in_sanitizer_allocator(re.sub(r"Mutex::Lock", "Mutex::CheckLocked", ALLOCATOR_HANG)))
        # No stacks (gdb absent or silent): a hang, never excused.
        self.assertFalse(hung_in_sanitizer_allocator(ALLOCATOR_HANG.split("Thread 1")[0]))
        # A second thread that is somewhere else.
        self.assertFalse(hung_in_sanitizer_allocator(
            ALLOCATOR_HANG + "Thread 2 (LWP 7729):\n#0  0x1 in __lll_lock_wait ()\n#1  0x2 in cdcp11::x ()\n"))


class ForkTest(unittest.TestCase):
    def run_forks(self, busy, forks, **tok):
        t = h.TempToken(retries=0, **tok)
        try:
            t.init()
            r = run_child("fork", str(forks), busy, env=t.env(CDCP11_LOG_LEVEL="info"), timeout=240)
            self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
            rep = json.loads(r.stdout)
            # A child may hang in the ASan build's allocator (hung_in_sanitizer_allocator): that
            # one says nothing of the module, and the forks go on. Any other hang or failure fails.
            runtime = "hung in the sanitizer's allocator"
            ours = [c for c in rep["children"] if c != runtime]
            self.assertEqual(ours, [0] * (forks - (len(rep["children"]) - len(ours))),
                             "children's exit status (or hung), up to the first failure\n" +
                             r.stderr.decode(errors="replace")[-16000:])
            self.assertLessEqual(len(rep["children"]) - len(ours), forks // 4, "too few children ran")
            self.assertGreater(rep["calls"], 0)
        finally:
            t.cleanup()

    # On the HSM backend the login thread is inside SoftHSM2's C_Login, holding its mutexes: the
    # fork must wait for it (hsm/module.cpp), or the child's C_Finalize of SoftHSM2 hangs.
    def test_child_forked_during_a_login_can_initialize(self):
        self.run_forks("login", 3, log2n=17)

    def test_child_forked_while_another_thread_logs_can_initialize(self):
        self.run_forks("logging", 40)

    def test_a_hung_child_is_reported_with_what_its_threads_wait_on(self):
        pid = os.fork()
        if pid == 0:
            try:
                time.sleep(60)
            finally:
                os._exit(0)
        try:
            report = hung_child_report(pid)
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.assertIn("child %d hung:" % pid, report)
        self.assertIn("thread %d waits in " % pid, report)
        if shutil.which("gdb"):
            self.assertIn("sleep", report)  # the child's stack (clock_nanosleep)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        h.main()
