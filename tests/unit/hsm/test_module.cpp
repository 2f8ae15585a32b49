// hsm::Module: loading, C_GetInterface vs C_GetFunctionList, C_Initialize, sharing, fork.
#include <dlfcn.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <chrono>
#include <cstddef>
#include <fstream>
#include <thread>

#include "tests/unit/hsm/fake_module.h"
#include "tests/unit/hsm/support.h"

namespace cdcp11::hsm::test {
namespace {

// The fake module's state; the dlopen reference keeps it loaded (and its state alive) while
// the test runs.
struct Fake {
  void* dl = dlopen(fake_module_path().c_str(), RTLD_NOW | RTLD_LOCAL);
  FakeP11State* st = nullptr;
  Fake() {
    REQUIRE_MESSAGE(dl, dlerror());
    auto fn = reinterpret_cast<FakeP11StateFn>(dlsym(dl, "fake_p11_state"));
    const bool exported = fn != nullptr;
    REQUIRE(exported);
    st = fn();
    *st = FakeP11State{};
  }
  ~Fake() { dlclose(dl); }
};

}  // namespace

TEST_CASE("load: a missing file is an error naming it") {
  Error e = err(Module::load("/nonexistent/libvendor-pkcs11.so"));
  CHECK(e.rv == CKR_LIBRARY_LOAD_FAILED);
  CHECK(contains(e.message, "/nonexistent/libvendor-pkcs11.so"));
  CHECK(contains(e.message, "no such file"));
}

TEST_CASE("load: a file that is not a shared object cannot be loaded") {
  TempDir d;
  std::string path = d.path + "/module.so";
  std::ofstream(path) << "not an ELF file\n";
  Error e = err(Module::load(path));
  CHECK(e.rv == CKR_LIBRARY_LOAD_FAILED);
  CHECK(contains(e.message, path));
  CHECK(contains(e.message, "cannot be loaded"));
}

TEST_CASE("load: a shared object without the PKCS#11 entry points is not a PKCS#11 module") {
  Error e = err(Module::load(not_pkcs11_path()));
  CHECK(e.rv == CKR_LIBRARY_LOAD_FAILED);
  CHECK(contains(e.message, "is not a PKCS#11 module"));
  CHECK(contains(e.message, "C_GetInterface"));
}

TEST_CASE("load: a failed C_Initialize keeps the module's CKR and names it") {
  Fake fake;
  fake.st->init_rv = CKR_DEVICE_ERROR;
  Error e = err(Module::load(fake_module_path()));
  CHECK(e.rv == CKR_DEVICE_ERROR);
  CHECK(e.code == core::Errc::device_error);
  CHECK(contains(e.message, "C_Initialize failed: CKR_DEVICE_ERROR"));
  CHECK(contains(e.message, fake_module_path()));
}

TEST_CASE("load: SoftHSM2 refuses module_args in pReserved with CKR_ARGUMENTS_BAD") {
  TempDir d;
  setenv("SOFTHSM2_CONF", (d.path + "/none.conf").c_str(), 1);
  // SoftHSM2 2.6.1 insists on a NULL pReserved; the string reaches it and is refused.
  Error e = err(Module::load(kSoftHsm, std::string("configdir='/etc/pki/nssdb'")));
  CHECK(e.rv == CKR_ARGUMENTS_BAD);
  CHECK(contains(e.message, "C_Initialize failed: CKR_ARGUMENTS_BAD"));
}

TEST_CASE("load: C_GetInterface is preferred, and module_args reach C_Initialize's pReserved") {
  Fake fake;
  {
    auto m = ok(Module::load(fake_module_path(), std::string("configdir='sql:/x' flags=readOnly")));
    CHECK(m->via_get_interface());
    CHECK(m->interface_version().major == 3);
    CHECK(m->functions_3_0() != nullptr);
    CHECK(fake.st->init_calls == 1);
    CHECK_FALSE(fake.st->reserved_was_null);
    CHECK(std::string(fake.st->reserved) == "configdir='sql:/x' flags=readOnly");
    auto info = ok(m->info());
    CHECK(info.manufacturer == "cdcp11 tests");
  }
  CHECK(fake.st->finalize_calls == 1);
}

TEST_CASE("find_token: a token whose info fails to read for a moment is found; one that keeps failing is named") {
  // SoftHSM2 fails C_GetTokenInfo with CKR_GENERAL_ERROR while another process rewrites its token file.
  Fake fake;
  auto m = ok(Module::load(fake_module_path()));
  fake.st->token_info_failures = 2;
  CHECK(ok(m->find_token(TokenSelector::label("fake"))) == 7);
  fake.st->token_info_failures = 1000;
  Error e = err(m->find_token(TokenSelector::label("fake")));
  CHECK(e.rv == CKR_TOKEN_NOT_PRESENT);
  CHECK(contains(e.message, "no token with token label 'fake' (the token info of slot 7 could not be read: "
                            "C_GetTokenInfo: CKR_GENERAL_ERROR"));
}

TEST_CASE("load: without module_args pReserved is NULL") {
  Fake fake;
  auto m = ok(Module::load(fake_module_path()));
  CHECK(fake.st->reserved_was_null);
}

TEST_CASE("load: SoftHSM2 2.6.1 has no C_GetInterface and is used through C_GetFunctionList") {
  SoftHsm h;
  CHECK_FALSE(h.module->via_get_interface());
  CHECK(h.module->interface_version().major == 2);
  CHECK(h.module->functions_3_0() == nullptr);
  auto info = ok(h.module->info());
  CHECK(info.manufacturer == "SoftHSM");
}

TEST_CASE("load: the same file loaded twice is one Module, initialised and finalised once") {
  Fake fake;
  {
    auto a = ok(Module::load(fake_module_path()));
    auto b = ok(Module::load(fake_module_path()));
    CHECK(a.get() == b.get());
    CHECK(fake.st->init_calls == 1);
    Error e = err(Module::load(fake_module_path(), std::string("other")));
    CHECK(e.rv == CKR_ARGUMENTS_BAD);
    CHECK(contains(e.message, "already loaded with other module_args"));
    a.reset();
    CHECK(fake.st->finalize_calls == 0);  // b still uses it
  }
  CHECK(fake.st->finalize_calls == 1);
  CHECK(fake.st->initialized == 0);
}

TEST_CASE("load: a module initialised by another part of the process is used, not finalised") {
  Fake fake;
  fake.st->initialized = 1;  // as if the application had called C_Initialize itself
  {
    auto m = ok(Module::load(fake_module_path()));
    CHECK(ok(m->slots()).size() == 1);
  }
  CHECK(fake.st->finalize_calls == 0);
  CHECK(fake.st->initialized == 1);
  fake.st->initialized = 0;
}

TEST_CASE("a function the module leaves out is CKR_FUNCTION_NOT_SUPPORTED") {
  Fake fake;
  auto m = ok(Module::load(fake_module_path()));
  Session s = ok(m->open_session(7));
  Error e = err(s.generate_random(16));  // the fake's C_GenerateRandom is NULL
  CHECK(e.rv == CKR_FUNCTION_NOT_SUPPORTED);
  CHECK(e.code == core::Errc::not_supported);
  CHECK(contains(e.message, "C_GenerateRandom: CKR_FUNCTION_NOT_SUPPORTED"));
}

TEST_CASE("fork: the parent's module is refused in the child, which loads it again") {
  SoftHsm h;
  Session parent = h.user_session();
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 0;
    {
      auto inherited = parent.generate_random(8);
      if (inherited.ok() || inherited.error().rv != CKR_CRYPTOKI_NOT_INITIALIZED) code |= 1;
      if (!inherited.ok() && !contains(inherited.error().message, "forked child")) code |= 2;
      if (h.module->open_session(h.slot).ok()) code |= 4;
      auto again = Module::load(kSoftHsm);
      if (!again || again->get() == h.module.get()) {
        code |= 8;
      } else {
        auto slot = (*again)->find_token(TokenSelector::label(h.label));
        auto s = slot ? (*again)->open_session(*slot) : R<Session>(fail(slot.error()));
        if (!s || !s->generate_random(8)) code |= 16;
        // SoftHSM2 2.6.1 is not fork-aware (its C_Initialize in the child answers
        // CKR_CRYPTOKI_ALREADY_INITIALIZED with the parent's state, login included): load
        // finalises that state and initialises the module anew, so the child logs in itself.
        auto login = s ? s->login(UserType::user, pin(kUserPin)) : R<void>(fail(s.error()));
        if (!login) code |= 32;
      }
    }
    _exit(code);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The parent is unaffected by the child.
  CHECK(ok(parent.generate_random(8)).size() == 8);
}

// A thread of the parent is inside SoftHSM2's C_Login (which holds its token's mutex) when another
// forks: the child must still load the module (C_Finalize and C_Initialize of the inherited state)
// and call it. Each child gets 10 s; a hung one is killed and counted.
TEST_CASE("fork: a child forked while another thread is inside a module call loads the module") {
  SoftHsm h;
  Session busy = h.session();
  std::atomic<bool> stop{false};
  std::atomic<int> logins{0};
  std::thread t([&] {
    while (!stop) {
      (void)busy.login(UserType::user, pin("wrong-pin"));
      ++logins;
    }
  });
  while (logins < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  int hung = 0, failed = 0;
  for (int i = 0; i < 10 && !hung; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(7 * i % 10));
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      auto again = Module::load(kSoftHsm);
      _exit(again && (*again)->slots(false) ? 0 : 1);
    }
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    pid_t done = 0;
    while ((done = waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (done == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ++hung;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++failed;
    }
  }
  stop = true;
  t.join();
  CHECK(hung == 0);
  CHECK(failed == 0);
}

// Makes getpid() fail (EPERM) in the calling thread only (a seccomp filter without TSYNC).
bool forbid_getpid_in_this_thread() {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getpid, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {static_cast<unsigned short>(sizeof f / sizeof f[0]), f};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
}

TEST_CASE("fork check: HSM calls make no getpid() system call (the process id is cached, renewed on fork)") {
#if !defined(__x86_64__)
  return;
#endif
  SoftHsm h;
  Session s = h.user_session();
  bool filtered = false;
  bool ok_in_thread = false;
  std::thread t([&] {
    filtered = forbid_getpid_in_this_thread();
    if (filtered) ok_in_thread = s.generate_random(8).ok();
  });
  t.join();
  if (!filtered) return;  // no seccomp here
  CHECK(ok_in_thread);
}

}  // namespace cdcp11::hsm::test
