#include "bench/p11.h"

#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

namespace cdcp11::bench {
namespace {

constexpr std::uint8_t kP256Oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
constexpr std::uint8_t kF4[] = {0x01, 0x00, 0x01};

SecureBytes pin_from_env(const char* var, std::string_view fallback) {
  const char* v = std::getenv(var);
  return to_secure(view(v && *v ? std::string_view(v) : fallback));
}

template <class T>
BR<T> lift(hsm::R<T>&& r) {
  if (!r) return fail(describe(r.error()));
  if constexpr (std::is_void_v<T>)
    return {};
  else
    return std::move(r).value();
}

class P11Worker : public Worker {
 protected:
  explicit P11Worker(hsm::Session s)
      : s_(std::move(s)), f_(s_.module().functions()), h_(s_.handle()) {}
  bool check(CK_RV rv, const char* fn) {
    return rv == CKR_OK || failed(std::string(fn) + ": " + hsm::rv_name(rv));
  }

  hsm::Session s_;
  const CK_FUNCTION_LIST* f_;
  CK_SESSION_HANDLE h_;
};

// C_EncryptInit + C_Encrypt with AES-GCM, a fresh 96-bit IV each call (a counter), no AAD,
// a 128-bit tag.
class AesGcmWorker final : public P11Worker {
 public:
  AesGcmWorker(hsm::Session s, CK_OBJECT_HANDLE key, std::size_t n)
      : P11Worker(std::move(s)), key_(key), in_(payload(n)), out_(n + 16) {
    const std::uint32_t id = iv_prefix();
    std::memcpy(iv_, &id, sizeof id);
  }
  bool call() noexcept override {
    ++counter_;
    std::memcpy(iv_ + 4, &counter_, sizeof counter_);
    CK_GCM_PARAMS p{iv_, sizeof iv_, 8 * sizeof iv_, nullptr, 0, 128};
    CK_MECHANISM m{CKM_AES_GCM, &p, sizeof p};
    if (!check(f_->C_EncryptInit(h_, &m, key_), "C_EncryptInit")) return false;
    CK_ULONG len = out_.size();
    if (!check(f_->C_Encrypt(h_, in_.data(), in_.size(), out_.data(), &len), "C_Encrypt"))
      return false;
    return len == out_.size() || failed("C_Encrypt: " + std::to_string(len) + " bytes out");
  }

 private:
  CK_OBJECT_HANDLE key_;
  Bytes in_, out_;
  CK_BYTE iv_[12] = {};
  std::uint64_t counter_ = 0;
};

class SignWorker final : public P11Worker {
 public:
  SignWorker(hsm::Session s, CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE key, ByteView data)
      : P11Worker(std::move(s)), mech_(mech), key_(key), data_(to_bytes(data)), sig_(512) {}
  bool call() noexcept override {
    CK_MECHANISM m{mech_, nullptr, 0};
    if (!check(f_->C_SignInit(h_, &m, key_), "C_SignInit")) return false;
    CK_ULONG len = sig_.size();
    return check(f_->C_Sign(h_, data_.data(), data_.size(), sig_.data(), &len), "C_Sign");
  }

 private:
  CK_MECHANISM_TYPE mech_;
  CK_OBJECT_HANDLE key_;
  Bytes data_, sig_;
};

class VerifyWorker final : public P11Worker {
 public:
  VerifyWorker(hsm::Session s, CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE key, ByteView data,
               ByteView sig)
      : P11Worker(std::move(s)), mech_(mech), key_(key), data_(to_bytes(data)), sig_(to_bytes(sig)) {}
  bool call() noexcept override {
    CK_MECHANISM m{mech_, nullptr, 0};
    if (!check(f_->C_VerifyInit(h_, &m, key_), "C_VerifyInit")) return false;
    return check(f_->C_Verify(h_, data_.data(), data_.size(), sig_.data(), sig_.size()), "C_Verify");
  }

 private:
  CK_MECHANISM_TYPE mech_;
  CK_OBJECT_HANDLE key_;
  Bytes data_, sig_;
};

Tmpl rsa_public_tmpl(bool token) {
  Tmpl t;
  t.ul(CKA_CLASS, CKO_PUBLIC_KEY).ul(CKA_KEY_TYPE, CKK_RSA).ul(CKA_MODULUS_BITS, 2048)
      .bytes(CKA_PUBLIC_EXPONENT, kF4).b(CKA_TOKEN, token).b(CKA_VERIFY, true)
      .str(CKA_LABEL, "cdcbench-rsa");
  return t;
}

Tmpl private_tmpl(CK_KEY_TYPE type, std::string_view label, bool token) {
  Tmpl t;
  t.ul(CKA_CLASS, CKO_PRIVATE_KEY).ul(CKA_KEY_TYPE, type).b(CKA_TOKEN, token).b(CKA_PRIVATE, true)
      .b(CKA_SENSITIVE, true).b(CKA_EXTRACTABLE, false).b(CKA_SIGN, true).str(CKA_LABEL, label);
  return t;
}

// C_GenerateKeyPair of an RSA-2048 pair (kept: a temporary token).
class KeygenWorker final : public P11Worker {
 public:
  KeygenWorker(hsm::Session s, bool token)
      : P11Worker(std::move(s)), pub_(rsa_public_tmpl(token)),
        priv_(private_tmpl(CKK_RSA, "cdcbench-rsa", token)), pub_ck_(pub_.map()),
        priv_ck_(priv_.map()) {}
  bool call() noexcept override {
    CK_MECHANISM m{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    return check(f_->C_GenerateKeyPair(h_, &m, pub_ck_.data(), pub_ck_.size(), priv_ck_.data(),
                                       priv_ck_.size(), &pub, &priv),
                 "C_GenerateKeyPair");
  }

 private:
  Tmpl pub_, priv_;
  hsm::CkTemplate pub_ck_, priv_ck_;
};

class P11Column final : public Column {
 public:
  P11Column(P11Token t, bool token_keys) : t_(std::move(t)), token_(token_keys) {}
  const std::string& name() const override { return t_.spec.name; }

  BR<void> make_keys() {
    hsm::Session& s = *t_.session;
    Tmpl aes;
    aes.ul(CKA_CLASS, CKO_SECRET_KEY).ul(CKA_KEY_TYPE, CKK_AES).ul(CKA_VALUE_LEN, 32)
        .b(CKA_TOKEN, token_).b(CKA_PRIVATE, true).b(CKA_SENSITIVE, true).b(CKA_EXTRACTABLE, false)
        .b(CKA_ENCRYPT, true).b(CKA_DECRYPT, true).str(CKA_LABEL, "cdcbench-aes");
    CDC_ASSIGN(aes_, lift(s.generate_key(hsm::Mechanism(CKM_AES_KEY_GEN), aes.map())));
    CDC_ASSIGN(rsa_, lift(s.generate_key_pair(hsm::Mechanism(CKM_RSA_PKCS_KEY_PAIR_GEN),
                                              rsa_public_tmpl(token_).map(),
                                              private_tmpl(CKK_RSA, "cdcbench-rsa", token_).map())));
    Tmpl ec_pub;
    ec_pub.ul(CKA_CLASS, CKO_PUBLIC_KEY).ul(CKA_KEY_TYPE, CKK_EC).bytes(CKA_EC_PARAMS, kP256Oid)
        .b(CKA_TOKEN, token_).b(CKA_VERIFY, true).str(CKA_LABEL, "cdcbench-ec");
    CDC_ASSIGN(ec_, lift(s.generate_key_pair(hsm::Mechanism(CKM_EC_KEY_PAIR_GEN), ec_pub.map(),
                                             private_tmpl(CKK_EC, "cdcbench-ec", token_).map())));
    CDC_ASSIGN(rsa_sig_, lift(s.sign(hsm::Mechanism(CKM_RSA_PKCS), rsa_.private_key, rsa_digest_info())));
    CDC_ASSIGN(ec_sig_, lift(s.sign(hsm::Mechanism(CKM_ECDSA), ec_.private_key, digest32())));
    return {};
  }

  BR<std::unique_ptr<Worker>> worker(Op op) override {
    CDC_ASSIGN(hsm::Session s, t_.new_session());
    std::unique_ptr<Worker> w;
    switch (op) {
      case Op::aes_gcm_16: w = std::make_unique<AesGcmWorker>(std::move(s), aes_, 16); break;
      case Op::aes_gcm_1k: w = std::make_unique<AesGcmWorker>(std::move(s), aes_, 1024); break;
      case Op::aes_gcm_16k: w = std::make_unique<AesGcmWorker>(std::move(s), aes_, 16384); break;
      case Op::rsa2048_verify:
        w = std::make_unique<VerifyWorker>(std::move(s), CKM_RSA_PKCS, rsa_.public_key,
                                           rsa_digest_info(), rsa_sig_);
        break;
      case Op::ecdsa_p256_sign:
        w = std::make_unique<SignWorker>(std::move(s), CKM_ECDSA, ec_.private_key, digest32());
        break;
      case Op::ecdsa_p256_verify:
        w = std::make_unique<VerifyWorker>(std::move(s), CKM_ECDSA, ec_.public_key, digest32(), ec_sig_);
        break;
      case Op::rsa2048_sign:
        w = std::make_unique<SignWorker>(std::move(s), CKM_RSA_PKCS, rsa_.private_key, rsa_digest_info());
        break;
      case Op::rsa2048_keygen: w = std::make_unique<KeygenWorker>(std::move(s), token_); break;
    }
    return w;
  }

 private:
  P11Token t_;
  bool token_;
  CK_OBJECT_HANDLE aes_ = CK_INVALID_HANDLE;
  hsm::KeyPair rsa_, ec_;
  Bytes rsa_sig_, ec_sig_;
};

}  // namespace

std::string describe(const hsm::Error& e) { return e.message; }

SecureBytes user_pin() { return pin_from_env("CDCBENCH_USER_PIN", "bench-user-1234"); }
SecureBytes so_pin() { return pin_from_env("CDCBENCH_SO_PIN", "bench-so-5678"); }

BR<ModuleSpec> parse_module_spec(std::string_view s) {
  ModuleSpec spec;
  while (!s.empty()) {
    const auto comma = s.find(',');
    const std::string_view item = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view{} : s.substr(comma + 1);
    const auto eq = item.find('=');
    if (eq == std::string_view::npos)
      return fail("module spec: '" + std::string(item) + "' is not key=value");
    const std::string_view k = item.substr(0, eq), v = item.substr(eq + 1);
    if (k == "name") spec.name = v;
    else if (k == "path") spec.path = v;
    else if (k == "token") spec.token = v;
    else if (k == "args") spec.args = std::string(v);
    else return fail("module spec: unknown key '" + std::string(k) + "' (name, path, token, args)");
  }
  if (spec.path.empty() || spec.token.empty())
    return fail(std::string("module spec: path= and token= are required"));
  if (spec.name.empty()) spec.name = spec.path.substr(spec.path.find_last_of('/') + 1);
  return spec;
}

BR<P11Token> P11Token::open(const ModuleSpec& spec) {
  P11Token t;
  t.spec = spec;
  CDC_ASSIGN(t.module, lift(hsm::Module::load(spec.path, spec.args)));
  CDC_ASSIGN(t.slot, lift(t.module->find_token(hsm::TokenSelector::label(spec.token))));
  CDC_ASSIGN(hsm::Session s, t.new_session());
  const SecureBytes pin = user_pin();
  CDC_TRY(lift(s.login(hsm::UserType::user, pin)));
  t.session.emplace(std::move(s));
  return t;
}

BR<hsm::Session> P11Token::new_session() const { return lift(module->open_session(slot, true)); }

std::string P11Token::module_info() const {
  auto i = module->info();
  if (!i) return "?";
  return i->manufacturer + " " + i->description + " " + std::to_string(i->library_version.major) +
         "." + std::to_string(i->library_version.minor);
}

BR<void> init_token(const ModuleSpec& spec) {
  CDC_ASSIGN(auto module, lift(hsm::Module::load(spec.path, spec.args)));
  CDC_ASSIGN(auto slots, lift(module->slots(true)));
  std::optional<CK_SLOT_ID> target;
  for (CK_SLOT_ID s : slots) {
    CDC_ASSIGN(auto ti, lift(module->token_info(s)));
    const bool initialised = ti.flags & CKF_TOKEN_INITIALIZED;
    if (ti.label == spec.token && initialised) return {};
    if (!initialised && (!target || ti.label == spec.token)) target = s;
  }
  if (!target) return fail(spec.name + ": no token '" + spec.token + "' and no free token to initialise");
  const SecureBytes so = so_pin(), user = user_pin();
  CDC_TRY(lift(module->init_token(*target, so, spec.token)));
  // SoftHSM2 moves an initialised token to a new slot.
  CDC_ASSIGN(CK_SLOT_ID slot, lift(module->find_token(hsm::TokenSelector::label(spec.token))));
  CDC_ASSIGN(hsm::Session s, lift(module->open_session(slot, true)));
  CDC_TRY(lift(s.login(hsm::UserType::so, so)));
  CDC_TRY(lift(s.init_pin(user)));
  return lift(s.logout());
}

BR<std::unique_ptr<Column>> make_p11_column(const ModuleSpec& spec, bool token_keys) {
  CDC_ASSIGN(P11Token t, P11Token::open(spec));
  auto c = std::make_unique<P11Column>(std::move(t), token_keys);
  CDC_TRY(c->make_keys());
  return std::unique_ptr<Column>(std::move(c));
}

}  // namespace cdcp11::bench
