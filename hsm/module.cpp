#include "hsm/module.h"

#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <new>
#include <thread>

#include "common/log.h"
#include "hsm/buffers.h"
#include "hsm/session.h"

namespace cdcp11::hsm {
namespace {

// Loaded modules by dlopen handle. Leaked on purpose: a Module may be destroyed during static
// destruction at exit. Recursive: a Module's destructor runs under it when a load fails late.
struct Registry {
  std::recursive_mutex mu;
  std::map<void*, std::weak_ptr<Module>> loaded;
};
Registry& registry() {
  static auto* r = new Registry;
  return *r;
}

// Fork and module calls. A thread inside a module call may hold the module's own locks (SoftHSM2
// 2.6.1's C_Login holds a mutex of its token); a child forked then inherits them held by a thread
// it does not have, and its C_Finalize (in Module::load) waits on one for ever. So a fork waits,
// in a pthread_atfork prepare handler, until no thread is inside a module call or in load/~Module
// (the registry lock), and calls that begin meanwhile wait for the fork to end (writer
// preference). A thread that forks from inside a module call (a module that forks) is not made to
// wait: it would wait on itself.
pthread_rwlock_t g_calls = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
thread_local int t_calls = 0;          // module calls this thread is inside
thread_local bool t_quiesced = false;  // this thread's prepare handler holds the locks

void before_fork() {
  if (t_calls > 0) return;
  registry().mu.lock();
  pthread_rwlock_wrlock(&g_calls);
  t_quiesced = true;
}

void after_fork_in_parent() {
  if (!t_quiesced) return;
  t_quiesced = false;
  pthread_rwlock_unlock(&g_calls);
  registry().mu.unlock();
}

// The locks are made anew: their owner, the forking thread, has another thread id in the child.
void after_fork_in_child() {
  if (!t_quiesced) return;
  t_quiesced = false;
  pthread_rwlock_t fresh = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
  g_calls = fresh;
  new (&registry().mu) std::recursive_mutex;
}

void watch_forks() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child); });
}

std::string pad_field(std::string_view s, std::size_t n) {
  std::string out(s.substr(0, n));
  out.resize(n, ' ');
  return out;
}


// This process's id without a getpid() system call on every HSM call (usable()): cached, and
// renewed in a forked child by an atfork handler, as p11module/state.cpp does.
std::atomic<pid_t> g_pid{0};
void renew_pid() noexcept { g_pid.store(::getpid(), std::memory_order_relaxed); }
pid_t current_pid() noexcept {
  static const bool hooked = [] {
    renew_pid();
    return ::pthread_atfork(nullptr, nullptr, renew_pid) == 0;
  }();
  return hooked ? g_pid.load(std::memory_order_relaxed) : ::getpid();
}

}  // namespace

ModuleCall::ModuleCall() noexcept {
  if (t_calls++ == 0) pthread_rwlock_rdlock(&g_calls);
}

ModuleCall::~ModuleCall() {
  if (--t_calls == 0) pthread_rwlock_unlock(&g_calls);
}

std::string trim_padded(const CK_UTF8CHAR* p, std::size_t n) {
  std::string s(reinterpret_cast<const char*>(p), n);
  auto end = s.find_last_not_of(std::string_view(" \0", 2));
  s.erase(end == std::string::npos ? 0 : end + 1);
  return s;
}

std::string TokenSelector::describe() const {
  switch (by) {
    case By::label: return "token label '" + text + "'";
    case By::serial: return "token serial '" + text + "'";
    case By::slot_id: return "slot id " + std::to_string(slot);
  }
  return "?";
}

R<std::shared_ptr<Module>> Module::load(const std::string& path,
                                        std::optional<std::string> module_args) {
  return guarded([&]() -> R<std::shared_ptr<Module>> {
    watch_forks();
    auto& reg = registry();
    std::lock_guard lk(reg.mu);
    if (path.find('/') != std::string::npos && access(path.c_str(), F_OK) != 0)
      return local_failure(CKR_LIBRARY_LOAD_FAILED, "HSM module " + path + ": no such file");
    void* dl = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
      const char* why = dlerror();
      return local_failure(CKR_LIBRARY_LOAD_FAILED,
                           "HSM module " + path + ": cannot be loaded: " + (why ? why : "?"));
    }
    // A forked child's copy of the module state this process's parent initialised (its sessions,
    // handles and login): finalised and initialised anew, as the parent's are not the child's.
    bool parents_state = false;
    if (auto it = reg.loaded.find(dl); it != reg.loaded.end()) {
      auto existing = it->second.lock();
      parents_state = existing && !existing->usable() && existing->we_initialized_;
      if (existing && existing->usable()) {
        dlclose(dl);  // drop the reference this dlopen added; the Module holds its own
        if (existing->args_ != module_args)
          return local_failure(CKR_ARGUMENTS_BAD, "HSM module " + path +
                                                      " is already loaded with other module_args");
        return existing;
      }
    }
    std::shared_ptr<Module> m(new Module());
    m->path_ = path;
    m->args_ = std::move(module_args);
    m->dl_ = dl;
    m->pid_ = current_pid();

    if (auto get_iface = reinterpret_cast<CK_C_GetInterface>(dlsym(dl, "C_GetInterface"))) {
      CK_INTERFACE* iface = nullptr;
      char name[] = "PKCS 11";
      CK_RV rv = get_iface(reinterpret_cast<CK_UTF8CHAR*>(name), nullptr, &iface, 0);
      if (rv == CKR_OK && iface && iface->pFunctionList) {
        m->fl_ = static_cast<CK_FUNCTION_LIST*>(iface->pFunctionList);
        m->via_get_interface_ = true;
      } else {
        log::debug("hsm", "HSM module " + path + ": C_GetInterface(\"PKCS 11\"): " + rv_name(rv) +
                              "; using C_GetFunctionList");
      }
    }
    if (!m->fl_) {
      auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(dl, "C_GetFunctionList"));
      if (!get_list)
        return local_failure(CKR_LIBRARY_LOAD_FAILED,
                             "HSM module " + path +
                                 " is not a PKCS#11 module: it exports neither C_GetInterface "
                                 "nor C_GetFunctionList");
      CK_RV rv = get_list(&m->fl_);
      if (rv != CKR_OK || !m->fl_)
        return local_failure(rv == CKR_OK ? CKR_GENERAL_ERROR : rv,
                             "HSM module " + path + ": C_GetFunctionList: " +
                                 rv_name(rv == CKR_OK ? CKR_GENERAL_ERROR : rv));
    }
    m->iface_version_ = m->fl_->version;
    if (m->iface_version_.major >= 3) m->fl3_ = reinterpret_cast<CK_FUNCTION_LIST_3_0*>(m->fl_);

    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    // PKCS#11 types pReserved as non-const; modules that take a string only read it.
    args.pReserved = m->args_ ? const_cast<char*>(m->args_->c_str()) : nullptr;
    CK_RV rv = invoke(m->fl_->C_Initialize, static_cast<CK_VOID_PTR>(&args));
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED && parents_state) {
      log::info("hsm", "HSM module " + path + " kept the parent process's state across fork; finalising it "
                                              "and initialising it again in this process");
      if (CK_RV fin = invoke(m->fl_->C_Finalize, static_cast<CK_VOID_PTR>(nullptr)); fin != CKR_OK)
        log::warn("hsm", "HSM module " + path + ": C_Finalize in the forked child: " + rv_name(fin));
      rv = invoke(m->fl_->C_Initialize, static_cast<CK_VOID_PTR>(&args));
    }
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      log::info("hsm", "HSM module " + path +
                           " was already initialised by another part of this process; using it "
                           "as it is and leaving C_Finalize to that part");
    } else if (rv != CKR_OK) {
      return local_failure(rv, "HSM module " + path + ": C_Initialize failed: " + rv_name(rv));
    } else {
      m->we_initialized_ = true;
    }
    reg.loaded[dl] = m;
    log::info("hsm", "loaded HSM module " + path + " (interface " +
                         std::to_string(m->iface_version_.major) + "." +
                         std::to_string(m->iface_version_.minor) + ")");
    return m;
  });
}

Module::~Module() {
  auto& reg = registry();
  std::lock_guard lk(reg.mu);
  if (we_initialized_ && usable()) invoke(fl_->C_Finalize, static_cast<CK_VOID_PTR>(nullptr));
  if (auto it = reg.loaded.find(dl_); it != reg.loaded.end() && it->second.expired())
    reg.loaded.erase(it);
  if (dl_) dlclose(dl_);
}

bool Module::usable() const { return current_pid() == pid_; }

R<void> Module::check_usable(std::string_view fn) const {
  if (usable()) return {};
  return local_failure(CKR_CRYPTOKI_NOT_INITIALIZED,
                       std::string(fn) + ": HSM module " + path_ + " was initialised in process " +
                           std::to_string(pid_) + "; a forked child must load it again");
}

R<ModuleInfo> Module::info() const {
  return guarded([&]() -> R<ModuleInfo> {
    CDC_TRY(check_usable("C_GetInfo"));
    CK_INFO ci{};
    if (CK_RV rv = invoke(fl_->C_GetInfo, &ci); rv != CKR_OK) return call_failed("C_GetInfo", rv);
    ModuleInfo mi;
    mi.cryptoki_version = ci.cryptokiVersion;
    mi.manufacturer = trim_padded(ci.manufacturerID, sizeof ci.manufacturerID);
    mi.description = trim_padded(ci.libraryDescription, sizeof ci.libraryDescription);
    mi.library_version = ci.libraryVersion;
    return mi;
  });
}

R<std::vector<CK_SLOT_ID>> Module::slots(bool token_present) const {
  return guarded([&]() -> R<std::vector<CK_SLOT_ID>> {
    CDC_TRY(check_usable("C_GetSlotList"));
    return fetch_list<CK_SLOT_ID>("C_GetSlotList", [&](CK_SLOT_ID* p, CK_ULONG* n) {
      return invoke(fl_->C_GetSlotList, static_cast<CK_BBOOL>(token_present ? CK_TRUE : CK_FALSE),
                    p, n);
    });
  });
}

R<TokenInfo> Module::token_info(CK_SLOT_ID slot) const {
  return guarded([&]() -> R<TokenInfo> {
    CDC_TRY(check_usable("C_GetTokenInfo"));
    CK_TOKEN_INFO ti{};
    if (CK_RV rv = invoke(fl_->C_GetTokenInfo, slot, &ti); rv != CKR_OK)
      return call_failed("C_GetTokenInfo", rv, "slot " + std::to_string(slot));
    TokenInfo t;
    t.slot = slot;
    t.label = trim_padded(ti.label, sizeof ti.label);
    t.manufacturer = trim_padded(ti.manufacturerID, sizeof ti.manufacturerID);
    t.model = trim_padded(ti.model, sizeof ti.model);
    t.serial = trim_padded(ti.serialNumber, sizeof ti.serialNumber);
    t.flags = ti.flags;
    t.min_pin_len = ti.ulMinPinLen;
    t.max_pin_len = ti.ulMaxPinLen;
    t.max_session_count = ti.ulMaxSessionCount;
    t.session_count = ti.ulSessionCount;
    t.hardware_version = ti.hardwareVersion;
    t.firmware_version = ti.firmwareVersion;
    return t;
  });
}

R<CK_SLOT_ID> Module::find_token(const TokenSelector& sel) const {
  return guarded([&]() -> R<CK_SLOT_ID> {
    if (sel.by == TokenSelector::By::label && sel.text.size() > 32)
      return local_failure(CKR_ARGUMENTS_BAD, "token label '" + sel.text +
                                                  "' is longer than the 32 bytes a label has");
    if (sel.by == TokenSelector::By::serial && sel.text.size() > 16)
      return local_failure(CKR_ARGUMENTS_BAD, "token serial '" + sel.text +
                                                  "' is longer than the 16 bytes a serial has");
    CDC_ASSIGN(auto present, slots(true));
    if (sel.by == TokenSelector::By::slot_id) {
      if (std::find(present.begin(), present.end(), sel.slot) != present.end()) return sel.slot;
      CDC_ASSIGN(auto all, slots(false));
      bool exists = std::find(all.begin(), all.end(), sel.slot) != all.end();
      return local_failure(exists ? CKR_TOKEN_NOT_PRESENT : CKR_SLOT_ID_INVALID,
                           "HSM module " + path_ + ": " + sel.describe() +
                               (exists ? " holds no token" : " does not exist"));
    }
    std::vector<CK_SLOT_ID> hits;
    std::string unread;  // slots whose token info could not be read, and why
    for (CK_SLOT_ID s : present) {
      // SoftHSM2 fails C_GetTokenInfo with CKR_GENERAL_ERROR while another process rewrites the
      // token's file: a few tries before the slot is passed over.
      auto ti = token_info(s);
      for (int i = 0; i < 5 && !ti && ti.error().rv == CKR_GENERAL_ERROR; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        ti = token_info(s);
      }
      if (!ti) {  // also a token removed since C_GetSlotList
        if (ti.error().rv != CKR_TOKEN_NOT_PRESENT && ti.error().rv != CKR_SLOT_ID_INVALID)
          unread += (unread.empty() ? " (" : "; ") + std::string("the token info of slot ") + std::to_string(s) +
                    " could not be read: " + ti.error().message;
        continue;
      }
      const std::string& field = sel.by == TokenSelector::By::label ? ti->label : ti->serial;
      if (field == sel.text) hits.push_back(s);
    }
    if (hits.empty())
      return local_failure(CKR_TOKEN_NOT_PRESENT, "HSM module " + path_ + ": no token with " + sel.describe() +
                                                      (unread.empty() ? "" : unread + ")"));
    if (hits.size() > 1) {
      std::string list;
      for (CK_SLOT_ID s : hits) list += (list.empty() ? "" : ", ") + std::to_string(s);
      return local_failure(CKR_ARGUMENTS_BAD, "HSM module " + path_ + ": " + sel.describe() +
                                                  " matches the tokens in slots " + list +
                                                  "; select by serial or slot id");
    }
    return hits.front();
  });
}

R<std::vector<CK_MECHANISM_TYPE>> Module::mechanisms(CK_SLOT_ID slot) const {
  return guarded([&]() -> R<std::vector<CK_MECHANISM_TYPE>> {
    CDC_TRY(check_usable("C_GetMechanismList"));
    return fetch_list<CK_MECHANISM_TYPE>("C_GetMechanismList",
                                         [&](CK_MECHANISM_TYPE* p, CK_ULONG* n) {
                                           return invoke(fl_->C_GetMechanismList, slot, p, n);
                                         });
  });
}

R<MechanismInfo> Module::mechanism_info(CK_SLOT_ID slot, CK_MECHANISM_TYPE type) const {
  return guarded([&]() -> R<MechanismInfo> {
    CDC_TRY(check_usable("C_GetMechanismInfo"));
    CK_MECHANISM_INFO mi{};
    if (CK_RV rv = invoke(fl_->C_GetMechanismInfo, slot, type, &mi); rv != CKR_OK)
      return call_failed("C_GetMechanismInfo", rv, "mechanism " + std::to_string(type));
    return MechanismInfo{type, mi.ulMinKeySize, mi.ulMaxKeySize, mi.flags};
  });
}

R<std::vector<MechanismInfo>> Module::mechanism_infos(CK_SLOT_ID slot) const {
  return guarded([&]() -> R<std::vector<MechanismInfo>> {
    CDC_ASSIGN(auto types, mechanisms(slot));
    std::vector<MechanismInfo> out;
    out.reserve(types.size());
    for (CK_MECHANISM_TYPE t : types) {
      CDC_ASSIGN(auto mi, mechanism_info(slot, t));
      out.push_back(mi);
    }
    return out;
  });
}

R<void> Module::init_token(CK_SLOT_ID slot, ByteView so_pin, std::string_view label) const {
  return guarded([&]() -> R<void> {
    CDC_TRY(check_usable("C_InitToken"));
    if (label.size() > 32)
      return local_failure(CKR_ARGUMENTS_BAD, "token label is longer than 32 bytes");
    std::string padded = pad_field(label, 32);
    CK_RV rv = invoke(fl_->C_InitToken, slot, const_cast<CK_UTF8CHAR*>(so_pin.data()),
                      static_cast<CK_ULONG>(so_pin.size()),
                      reinterpret_cast<CK_UTF8CHAR*>(padded.data()));
    if (rv != CKR_OK) return call_failed("C_InitToken", rv, "slot " + std::to_string(slot));
    return {};
  });
}

R<Session> Module::open_session(CK_SLOT_ID slot, bool read_write) {
  return guarded([&]() -> R<Session> {
    CDC_TRY(check_usable("C_OpenSession"));
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    CK_FLAGS flags = CKF_SERIAL_SESSION | (read_write ? CKF_RW_SESSION : 0);
    CK_RV rv = invoke(fl_->C_OpenSession, slot, flags, static_cast<CK_VOID_PTR>(nullptr),
                      static_cast<CK_NOTIFY>(nullptr), &h);
    if (rv != CKR_OK) return call_failed("C_OpenSession", rv, "slot " + std::to_string(slot));
    return Session(shared_from_this(), slot, h);
  });
}

}  // namespace cdcp11::hsm
