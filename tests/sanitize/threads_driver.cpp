// Calls the built module from several threads at once, for ThreadSanitizer (and ASan) builds; in
// an ordinary build it is a quick concurrency smoke test. Slots:
//   sign   : three threads sign with one EC key (own sessions), find objects, read attributes
//   churn  : one thread opens sessions, logs in and out, creates and destroys objects
//   mirror : (with --emulator) two threads generate key pairs on an async mirroring group; while
//            the group's background worker mirrors them into the Key Vault emulator, another
//            thread signs with them
// and one thread reads slot, token and session information throughout. Every call must return
// one of the codes the situation allows; at the end every mirrored key must be mirrored.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cdcp11/cdcp11.h"
#include "tests/unit/azure/support.h"

extern "C" CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR);

namespace {

CK_FUNCTION_LIST* p11 = nullptr;
std::atomic<int> failures{0};
std::mutex out_mu;

constexpr int kSignRounds = 150, kChurnRounds = 60, kInfoRounds = 300, kMirrorKeys = 1;
CK_UTF8CHAR kSoPin[] = "12345678", kUserPin[] = "1234";
CK_BYTE kP256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

bool expect(CK_RV rv, std::initializer_list<CK_RV> allowed, const char* what) {
  for (CK_RV a : allowed)
    if (rv == a) return rv == CKR_OK;
  std::lock_guard lk(out_mu);
  std::fprintf(stderr, "FAIL: %s returned 0x%lx\n", what, static_cast<unsigned long>(rv));
  ++failures;
  return false;
}
bool ok(CK_RV rv, const char* what) { return expect(rv, {CKR_OK}, what); }

CK_SLOT_ID slot_named(const char* label) {
  CK_SLOT_ID slots[8];
  CK_ULONG n = 8;
  ok(p11->C_GetSlotList(CK_FALSE, slots, &n), "C_GetSlotList");
  for (CK_ULONG i = 0; i < n; ++i) {
    CK_TOKEN_INFO ti;
    ok(p11->C_GetTokenInfo(slots[i], &ti), "C_GetTokenInfo");
    if (std::strncmp(reinterpret_cast<char*>(ti.label), label, std::strlen(label)) == 0 &&
        ti.label[std::strlen(label)] == ' ')
      return slots[i];
  }
  std::fprintf(stderr, "FAIL: no slot %s\n", label);
  std::exit(1);
}

CK_SESSION_HANDLE init_token(CK_SLOT_ID slot, const char* label) {
  CK_UTF8CHAR l[32];
  std::memset(l, ' ', sizeof l);
  std::memcpy(l, label, std::strlen(label));
  ok(p11->C_InitToken(slot, kSoPin, 8, l), "C_InitToken");
  CK_SESSION_HANDLE s;
  ok(p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s), "C_OpenSession");
  ok(p11->C_Login(s, CKU_SO, kSoPin, 8), "C_Login(SO)");
  ok(p11->C_InitPIN(s, kUserPin, 4), "C_InitPIN");
  ok(p11->C_Logout(s), "C_Logout(SO)");
  ok(p11->C_Login(s, CKU_USER, kUserPin, 4), "C_Login(user)");
  return s;
}

bool ec_pair(CK_SESSION_HANDLE s, const std::string& label, CK_OBJECT_HANDLE* pub, CK_OBJECT_HANDLE* priv) {
  CK_BBOOL yes = CK_TRUE;
  CK_MECHANISM m{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  CK_ATTRIBUTE pt[] = {{CKA_TOKEN, &yes, 1}, {CKA_EC_PARAMS, kP256, sizeof kP256},
                       {CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
  CK_ATTRIBUTE kt[] = {{CKA_TOKEN, &yes, 1}, {CKA_SIGN, &yes, 1}, {CKA_SENSITIVE, &yes, 1},
                       {CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
  return ok(p11->C_GenerateKeyPair(s, &m, pt, 3, kt, 4, pub, priv), "C_GenerateKeyPair");
}

void signer(CK_SLOT_ID slot, CK_OBJECT_HANDLE key) {
  CK_SESSION_HANDLE s;
  if (!ok(p11->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &s), "C_OpenSession(sign)")) return;
  for (int i = 0; i < kSignRounds; ++i) {
    CK_MECHANISM m{CKM_ECDSA_SHA256, nullptr, 0};
    CK_BYTE data[] = "message", sig[128];
    CK_ULONG sig_len = sizeof sig;
    if (ok(p11->C_SignInit(s, &m, key), "C_SignInit")) ok(p11->C_Sign(s, data, 7, sig, &sig_len), "C_Sign");
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t{CKA_CLASS, &cls, sizeof cls};
    CK_OBJECT_HANDLE found[4];
    CK_ULONG n = 0;
    if (ok(p11->C_FindObjectsInit(s, &t, 1), "C_FindObjectsInit")) {
      ok(p11->C_FindObjects(s, found, 4, &n), "C_FindObjects");
      ok(p11->C_FindObjectsFinal(s), "C_FindObjectsFinal");
    }
    char label[64];
    CK_ATTRIBUTE a{CKA_LABEL, label, sizeof label};
    ok(p11->C_GetAttributeValue(s, key, &a, 1), "C_GetAttributeValue");
    CK_BYTE rnd[32];
    ok(p11->C_GenerateRandom(s, rnd, sizeof rnd), "C_GenerateRandom");
  }
  ok(p11->C_CloseSession(s), "C_CloseSession(sign)");
}

// Signs with the keys being mirrored until told to stop: the worker reads the same objects.
void sign_while_mirroring(CK_SLOT_ID slot, std::vector<CK_OBJECT_HANDLE> keys, std::atomic<bool>& stop) {
  CK_SESSION_HANDLE s;
  if (!ok(p11->C_OpenSession(slot, CKF_SERIAL_SESSION, nullptr, nullptr, &s), "C_OpenSession(mirror sign)")) return;
  while (!stop) {
    for (CK_OBJECT_HANDLE k : keys) {
      CK_MECHANISM m{CKM_ECDSA_SHA256, nullptr, 0};
      CK_BYTE data[] = "message", sig[128];
      CK_ULONG sig_len = sizeof sig;
      if (ok(p11->C_SignInit(s, &m, k), "C_SignInit(mirror)")) ok(p11->C_Sign(s, data, 7, sig, &sig_len), "C_Sign(mirror)");
    }
  }
  ok(p11->C_CloseSession(s), "C_CloseSession(mirror sign)");
}

void churn(CK_SLOT_ID slot) {
  for (int i = 0; i < kChurnRounds; ++i) {
    CK_SESSION_HANDLE s;
    if (!ok(p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s), "C_OpenSession"))
      continue;
    expect(p11->C_Login(s, CKU_USER, kUserPin, 4), {CKR_OK, CKR_USER_ALREADY_LOGGED_IN}, "C_Login(churn)");
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_BBOOL token = i % 2 ? CK_TRUE : CK_FALSE, priv = CK_TRUE;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_TOKEN, &token, 1}, {CKA_PRIVATE, &priv, 1},
                        {CKA_VALUE, const_cast<char*>("data"), 4}};
    CK_OBJECT_HANDLE o;
    if (ok(p11->C_CreateObject(s, t, 4, &o), "C_CreateObject")) ok(p11->C_DestroyObject(s, o), "C_DestroyObject");
    ok(p11->C_Logout(s), "C_Logout(churn)");
    ok(p11->C_CloseSession(s), "C_CloseSession(churn)");
  }
}

void info(std::vector<CK_SLOT_ID> slots, std::atomic<bool>& stop) {
  for (int i = 0; i < kInfoRounds || !stop; ++i) {
    CK_SLOT_ID list[8];
    CK_ULONG n = 8;
    ok(p11->C_GetSlotList(CK_TRUE, list, &n), "C_GetSlotList");
    for (CK_SLOT_ID s : slots) {
      CK_TOKEN_INFO ti;
      ok(p11->C_GetTokenInfo(s, &ti), "C_GetTokenInfo");
      CK_ULONG mechs = 0;
      ok(p11->C_GetMechanismList(s, nullptr, &mechs), "C_GetMechanismList");
    }
    if (i >= kInfoRounds) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void mirror_keys(CK_SLOT_ID slot, int t, std::vector<CK_OBJECT_HANDLE>& out) {
  CK_SESSION_HANDLE s;
  if (!ok(p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s), "C_OpenSession"))
    return;
  for (int i = 0; i < kMirrorKeys; ++i) {
    CK_OBJECT_HANDLE pub, priv;
    if (ec_pair(s, "m-" + std::to_string(t) + "-" + std::to_string(i), &pub, &priv)) out.push_back(priv);
  }
}

CK_ULONG mirror_state(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, std::string& error) {
  CK_ULONG state = ~0UL;
  char err[512];
  CK_ATTRIBUTE a[] = {{CKA_CDC_MIRROR_STATE, &state, sizeof state}, {CKA_CDC_MIRROR_ERROR, err, sizeof err}};
  ok(p11->C_GetAttributeValue(s, k, a, 2), "C_GetAttributeValue(mirror state)");
  error.assign(err, a[1].ulValueLen == CK_UNAVAILABLE_INFORMATION ? 0 : a[1].ulValueLen);
  return state;
}

std::string write_config(const std::string& dir, const cdcp11::azure::test::Emulator* emu) {
  std::string groups = R"({"name":"sign","token":{"dir":"sign","kdf_scrypt_log2_n":10}},
                           {"name":"churn","token":{"dir":"churn","kdf_scrypt_log2_n":10}})";
  if (emu) {
    cdcp11::azure::test::write_file(dir + "/secret", cdcp11::azure::test::kSecret);
    groups += R"(,{"name":"mirror","token":{"dir":"mirror","kdf_scrypt_log2_n":10},
      "azure":{"tenant_id":")" + std::string(cdcp11::azure::test::kTenant) + R"(","client_id":")" +
              cdcp11::azure::test::kSecretApp + R"(","subscription_id":")" + cdcp11::azure::test::kSubscription +
              R"(","credential":{"type":"secret","secret_file":"secret"},
        "tls":{"ca_file":")" + emu->ca() + R"(","connect_to":["::127.0.0.1:)" + std::to_string(emu->port()) +
              R"("]},"vault":{"name":"demo-premium","type":"premium"}},
      "mirror":{"trigger":"on_generate","mode":"async"}})";
  }
  const std::string conf = dir + "/cdcp11.json";
  cdcp11::azure::test::write_file(conf, R"({"version":1,"groups":[)" + groups + "]}");
  return conf;
}

}  // namespace

int main(int argc, char** argv) {
  const bool with_emulator = argc > 1 && std::string(argv[1]) == "--emulator";
  std::unique_ptr<cdcp11::azure::test::Emulator> emu;
  if (with_emulator) emu = cdcp11::azure::test::Emulator::start();
  const std::string dir = cdcp11::azure::test::make_temp_dir("cdcp11-threads-");
  const std::string conf = write_config(dir, emu.get());
  if (!std::getenv("CDCP11_LOG_FILE")) ::setenv("CDCP11_LOG_FILE", (dir + "/module.log").c_str(), 1);

  ok(C_GetFunctionList(&p11), "C_GetFunctionList");
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  args.pReserved = const_cast<char*>(conf.c_str());
  if (!ok(p11->C_Initialize(&args), "C_Initialize")) return 1;

  const CK_SLOT_ID sign_slot = slot_named("sign"), churn_slot = slot_named("churn");
  std::vector<CK_SLOT_ID> slots{sign_slot, churn_slot};
  const CK_SESSION_HANDLE sign_s = init_token(sign_slot, "sign");
  ok(p11->C_CloseSession(init_token(churn_slot, "churn")), "C_CloseSession");
  CK_OBJECT_HANDLE pub, key;
  if (!ec_pair(sign_s, "signer", &pub, &key)) return 1;
  CK_SLOT_ID mirror_slot = 0;
  CK_SESSION_HANDLE mirror_s = CK_INVALID_HANDLE;
  if (emu) {
    mirror_slot = slot_named("mirror");
    slots.push_back(mirror_slot);
    mirror_s = init_token(mirror_slot, "mirror");
  }

  std::atomic<bool> stop{false};
  std::vector<std::vector<CK_OBJECT_HANDLE>> mirrored(2);
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i) ts.emplace_back(signer, sign_slot, key);
  ts.emplace_back(churn, churn_slot);
  std::thread info_thread(info, slots, std::ref(stop));
  if (emu)
    for (int t = 0; t < 2; ++t) ts.emplace_back(mirror_keys, mirror_slot, t, std::ref(mirrored[t]));
  for (auto& t : ts) t.join();

  if (emu) {
    // The worker mirrors in the background; wait for every key (the info thread keeps running).
    std::set<CK_OBJECT_HANDLE> waiting;
    for (auto& v : mirrored) waiting.insert(v.begin(), v.end());
    std::atomic<bool> mirrored_all{false};
    std::thread mirror_signer(sign_while_mirroring, mirror_slot,
                              std::vector<CK_OBJECT_HANDLE>(waiting.begin(), waiting.end()), std::ref(mirrored_all));
    if (waiting.size() != 2 * kMirrorKeys) ++failures;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!waiting.empty() && std::chrono::steady_clock::now() < deadline) {
      for (auto it = waiting.begin(); it != waiting.end();) {
        std::string error;
        const CK_ULONG st = mirror_state(mirror_s, *it, error);
        if (st == CDC_MIRROR_STATE_FAILED) {
          std::fprintf(stderr, "FAIL: a key's mirror failed: %s\n", error.c_str());
          ++failures;
        }
        it = st == CDC_MIRROR_STATE_PENDING || st == CDC_MIRROR_STATE_NONE ? std::next(it) : waiting.erase(it);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    mirrored_all = true;
    mirror_signer.join();
    if (!waiting.empty()) {
      std::fprintf(stderr, "FAIL: %zu keys were not mirrored within 120 s\n", waiting.size());
      ++failures;
    }
  }
  stop = true;
  info_thread.join();
  ok(p11->C_Finalize(nullptr), "C_Finalize");
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::printf("%s: %d failure(s)\n", failures ? "FAIL" : "OK", failures.load());
  return failures ? 1 : 0;
}
