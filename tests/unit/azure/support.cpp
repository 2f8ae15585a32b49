#include "support.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/log.h"

extern char** environ;

namespace cdcp11::azure::test {

std::string source_root() { return CDCP11_SOURCE_ROOT; }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& data, int mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error("cannot write " + path);
  ::fchmod(fd, static_cast<mode_t>(mode));
  if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    ::close(fd);
    throw std::runtime_error("short write " + path);
  }
  ::close(fd);
}

std::string make_temp_dir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

std::unique_ptr<Emulator> Emulator::start(const std::vector<std::pair<std::string, std::string>>& edits) {
  std::unique_ptr<Emulator> e(new Emulator());
  e->dir_ = make_temp_dir("cdcp11-azure-emu-");
  e->state_ = e->dir_ + "/state";
  e->log_path_ = e->dir_ + "/requests.log";
  std::string cfg = read_file(source_root() + "/tools/akv-emulator/demo-config.json");
  for (const auto& [from, to] : edits) {
    auto p = cfg.find(from);
    if (p == std::string::npos) throw std::runtime_error("config edit not found: " + from);
    cfg.replace(p, from.size(), to);
  }
  const std::string cfg_path = e->dir_ + "/config.json";
  write_file(cfg_path, cfg);
  const std::string out_path = e->dir_ + "/stdout.txt";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, e->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  const std::string exe = source_root() + "/tools/akv-emulator/akv-emulator";
  std::vector<std::string> args = {"/usr/bin/python3", exe, "--config", cfg_path, "--port", "0", "--state", e->state_};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (posix_spawn(&e->pid_, argv[0], &fa, nullptr, argv.data(), environ) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    throw std::runtime_error("cannot start the emulator");
  }
  posix_spawn_file_actions_destroy(&fa);
  static const std::regex start_line(R"(^akv-emulator listening on https://127\.0\.0\.1:(\d+) ca=(\S+))");
  for (int i = 0; i < 600; ++i) {
    std::string out = read_file(out_path);
    std::smatch m;
    if (std::regex_search(out, m, start_line) && out.find('\n') != std::string::npos) {
      e->port_ = std::stoi(m[1]);
      e->ca_ = m[2];
      HttpConfig hc;
      hc.ca_file = e->ca_;
      e->admin_http_ = std::make_shared<HttpClient>(hc);
      return e;
    }
    int status = 0;
    if (waitpid(e->pid_, &status, WNOHANG) == e->pid_) {
      e->pid_ = -1;
      throw std::runtime_error("emulator exited: " + read_file(e->log_path_));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("emulator did not start");
}

Emulator::~Emulator() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 200; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
  }
  if (!dir_.empty() && !std::getenv("CDCP11_KEEP_EMULATOR_STATE")) {
    std::string cmd = "rm -rf '" + dir_ + "'";
    if (std::system(cmd.c_str()) != 0) {
    }
  }
}

HttpConfig Emulator::http() const {
  HttpConfig h;
  h.ca_file = ca_;
  h.connect_to = {"::127.0.0.1:" + std::to_string(port_)};
  h.connect_timeout = std::chrono::milliseconds(5000);
  h.total_timeout = std::chrono::milliseconds(30000);
  return h;
}

ConnectionConfig Emulator::config(const std::string& vault) const {
  ConnectionConfig c;
  c.cloud = "global";
  c.tenant_id = kTenant;
  c.client_id = kSecretApp;
  c.client_secret = Secret(std::string_view(kSecret));
  c.vault_url = "https://" + vault + ".vault.azure.net";
  c.subscription_id = kSubscription;
  c.http = http();
  c.retry.base_delay = std::chrono::milliseconds(50);
  c.retry.max_delay = std::chrono::milliseconds(400);
  c.retry.max_retries = 4;
  return c;
}

std::shared_ptr<Connection> Emulator::connect(ConnectionConfig cfg, ConnectionHooks hooks) const {
  auto c = Connection::open(std::move(cfg), std::move(hooks));
  if (!c) throw std::runtime_error("Connection::open: " + c.error().describe());
  return *c;
}

long Emulator::admin(const std::string& method, const std::string& path, const std::string& body) const {
  HttpRequest r;
  r.method = method;
  r.url = "https://127.0.0.1:" + std::to_string(port_) + path;
  r.headers = {{"X-AKV-Emulator-Admin", "1"}, {"Content-Type", "application/json"}};
  r.body.assign(body.begin(), body.end());
  auto resp = admin_http_->perform(r, "emulator admin");
  if (!resp) throw std::runtime_error("admin call failed: " + resp.error().describe());
  return resp->status;
}

std::vector<std::string> Emulator::log_lines() const {
  std::vector<std::string> out;
  std::istringstream in(read_file(log_path_));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line[0] >= '0' && line[0] <= '9') out.push_back(line);
  return out;
}

std::vector<std::string> Emulator::log_since(std::size_t mark) const {
  auto all = log_lines();
  if (mark >= all.size()) return {};
  return std::vector<std::string>(all.begin() + static_cast<long>(mark), all.end());
}

namespace {

pid_t spawn(std::vector<std::string> args, const std::string& out, const std::string& err) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot start " + args[1]);
  return pid;
}

void terminate(pid_t& pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  int status = 0;
  for (int i = 0; i < 200; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      pid = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  pid = -1;
}

}  // namespace

std::unique_ptr<Proxy> Proxy::start(bool deny_all, const std::string& auth) {
  std::unique_ptr<Proxy> p(new Proxy());
  p->dir_ = make_temp_dir("cdcp11-azure-proxy-");
  std::vector<std::string> args = {"/usr/bin/python3", source_root() + "/tests/unit/azure/connect_proxy.py"};
  if (deny_all) args.push_back("--deny-all");
  if (!auth.empty()) {
    args.push_back("--auth");
    args.push_back(auth);
  }
  p->pid_ = spawn(args, p->dir_ + "/out.txt", p->dir_ + "/err.txt");
  static const std::regex line(R"(^proxy listening on (\d+))");
  for (int i = 0; i < 200; ++i) {
    std::smatch m;
    std::string out = read_file(p->dir_ + "/out.txt");
    if (std::regex_search(out, m, line)) {
      p->port_ = std::stoi(m[1]);
      return p;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("proxy did not start: " + read_file(p->dir_ + "/err.txt"));
}

Proxy::~Proxy() {
  terminate(pid_);
  if (!dir_.empty()) {
    std::string cmd = "rm -rf '" + dir_ + "'";
    if (std::system(cmd.c_str()) != 0) {
    }
  }
}

std::vector<std::string> Proxy::log_lines() const {
  std::vector<std::string> out;
  std::istringstream in(read_file(dir_ + "/out.txt"));
  for (std::string l; std::getline(in, l);)
    if (l.rfind("CONNECT ", 0) == 0) out.push_back(l);
  return out;
}

Emulator& shared_emulator() {
  static std::unique_ptr<Emulator> emu = Emulator::start();
  return *emu;
}

std::string captured_log() {
  const char* f = std::getenv("CDCP11_LOG_FILE");
  return f ? read_file(f) : std::string();
}

TestCert make_test_cert(const std::string& cn) {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 12345);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_sign(x, key, EVP_sha256());
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, x);
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  TestCert tc;
  tc.cert_pem.assign(data, static_cast<std::size_t>(n));
  BIO_free(b);
  b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  n = BIO_get_mem_data(b, &data);
  tc.key_pem.assign(data, static_cast<std::size_t>(n));
  BIO_free(b);
  X509_free(x);
  EVP_PKEY_free(key);
  return tc;
}

std::string encrypt_key_pem(const std::string& key_pem, const std::string& passphrase) {
  BIO* in = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  if (!key) throw std::runtime_error("encrypt_key_pem: no key");
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(out, key, EVP_aes_256_cbc(), reinterpret_cast<const unsigned char*>(passphrase.data()),
                           static_cast<int>(passphrase.size()), nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(out, &data);
  std::string pem(data, static_cast<std::size_t>(n));
  BIO_free(out);
  EVP_PKEY_free(key);
  return pem;
}

double log_time(const std::string& line) {
  // 2026-01-01T10:00:00.12Z
  auto t = line.find('T');
  if (t == std::string::npos) return -1;
  int h = std::stoi(line.substr(t + 1, 2)), m = std::stoi(line.substr(t + 4, 2));
  double s = std::stod(line.substr(t + 7, line.find('Z', t) - t - 7));
  return h * 3600 + m * 60 + s;
}

double log_arrival(const std::string& line) {
  const auto end = line.rfind("ms");
  const auto sp = line.rfind(' ', end);
  if (end == std::string::npos || sp == std::string::npos) return log_time(line);
  return log_time(line) - std::stod(line.substr(sp + 1, end - sp - 1)) / 1000.0;
}

std::string log_request(const std::string& line) {
  auto sp = line.find(' ');
  auto client = line.find(" client=");
  if (sp == std::string::npos || client == std::string::npos) return line;
  return line.substr(sp + 1, client - sp - 1);
}

std::string unique_name(const std::string& prefix) {
  static std::atomic<int> n{0};
  return prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
}

}  // namespace cdcp11::azure::test
