#include "tools/cdcctl/group_session.h"

#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "backends/factory.h"
#include "core/cloud/key_attrs.h"
#include "core/mirror/rotation.h"

namespace cdcp11::cdcctl {

namespace {

std::string read_pin(const std::string& group, const std::string& pin_env) {
  if (!pin_env.empty()) {
    const char* v = std::getenv(pin_env.c_str());
    return v ? v : "";
  }
  std::string pin;
  termios old{};
  const bool tty = ::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &old) == 0;
  if (tty) {
    std::cerr << "User PIN of group '" << group << "': " << std::flush;
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  std::getline(std::cin, pin);
  if (tty) {
    ::tcsetattr(STDIN_FILENO, TCSANOW, &old);
    std::cerr << '\n';
  }
  return pin;
}

}  // namespace

std::string key_type_name(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, std::size_t modulus_len) {
  switch (kt) {
    case CKK_RSA: return "RSA-" + std::to_string(modulus_len * 8);
    case CKK_EC: return "EC";
    case CKK_EC_EDWARDS: return "Ed25519";
    case CKK_AES: return "AES";
  }
  return cls == CKO_SECRET_KEY ? "secret" : "?";
}

Result<std::unique_ptr<GroupSession>, std::string> GroupSession::open(const std::string& config,
                                                                      const std::string& group,
                                                                      const std::string& pin_env) {
  auto g = std::unique_ptr<GroupSession>(new GroupSession);
  g->group_ = group;
  if (auto r = g->provider_.initialize(config, backends::make_token_backend); !r) return fail(r.error().message);
  for (auto id : g->provider_.slot_ids()) {
    auto t = g->provider_.token(id);
    if (t && (*t)->name() == group) g->token_ = *t;
  }
  if (!g->token_) return fail("no group named '" + group + "' in " + config);
  auto h = g->provider_.open_session(g->token_->id(), CKF_SERIAL_SESSION | CKF_RW_SESSION);
  if (!h) return fail(h.error().message);
  g->session_ = *g->provider_.session(*h);
  std::string pin = read_pin(group, pin_env);
  auto r = g->provider_.login(*g->session_, CKU_USER, view(pin));
  secure_zero(pin.data(), pin.size());
  if (!r) return fail("login to group '" + group + "' failed: " + r.error().message);
  return g;
}

GroupSession::~GroupSession() {
  if (session_) (void)provider_.close_session(session_->handle());
  session_.reset();
  provider_.finalize();
}

std::string GroupSession::unavailable() const {
  if (auto* m = token_->mirror()) return m->unavailable();
  return "the group's mirror could not be opened";
}

Result<core::StoredObject, std::string> GroupSession::object(CK_OBJECT_HANDLE h) {
  auto t = token_->lock();
  auto o = t.visible(h);
  if (!o) return fail(o.error().message);
  return (*o)->obj;
}

std::vector<LocalKey> GroupSession::keys() {
  std::vector<LocalKey> out;
  for (CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_SECRET_KEY}) {
    core::AttrMap t;
    t.set_ulong(CKA_CLASS, cls);
    t.set_bool(CKA_TOKEN, true);
    auto found = token_->find(*session_, t);
    if (!found) continue;
    for (auto h : *found) out.push_back(read(h, cls));
  }
  return out;
}

Result<LocalKey, std::string> GroupSession::find_key(const std::string& label, const std::string& id_hex) {
  std::string wanted_id = id_hex;
  std::transform(wanted_id.begin(), wanted_id.end(), wanted_id.begin(), [](unsigned char c) { return std::tolower(c); });
  std::vector<LocalKey> chosen;
  for (auto& k : keys())
    if (label.empty() ? k.id_hex == wanted_id : k.label == label) chosen.push_back(k);
  const std::string which = label.empty() ? "with CKA_ID " + wanted_id : "labelled '" + label + "'";
  if (chosen.empty()) return fail("Group '" + group_ + "' has no private or secret key " + which + ".");
  if (chosen.size() > 1)
    return fail("Group '" + group_ + "' has " + std::to_string(chosen.size()) + " keys " + which + "; choose one with " +
                (label.empty() ? "--label." : "--id."));
  return std::move(chosen.front());
}

Bytes GroupSession::attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
  CK_ATTRIBUTE a{type, nullptr, 0};
  if (!token_->get_attributes(*session_, h, &a, 1) || a.ulValueLen == CK_UNAVAILABLE_INFORMATION) return {};
  Bytes v(a.ulValueLen);
  a.pValue = v.data();
  if (!token_->get_attributes(*session_, h, &a, 1)) return {};
  return v;
}

CK_ULONG GroupSession::ulong_attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
  Bytes v = attr(h, type);
  CK_ULONG r = 0;
  if (v.size() == sizeof r) std::memcpy(&r, v.data(), sizeof r);
  return r;
}

LocalKey GroupSession::read(CK_OBJECT_HANDLE h, CK_OBJECT_CLASS cls) {
  LocalKey k;
  k.handle = h;
  auto s = [&](CK_ATTRIBUTE_TYPE t) {
    Bytes v = attr(h, t);
    return std::string(v.begin(), v.end());
  };
  k.uid = s(CKA_UNIQUE_ID);
  k.label = s(CKA_LABEL);
  k.id_hex = to_hex(attr(h, CKA_ID));
  k.type = key_type_name(cls, ulong_attr(h, CKA_KEY_TYPE), cls == CKO_PRIVATE_KEY ? attr(h, CKA_MODULUS).size() : 0);
  k.state = ulong_attr(h, CKA_CDC_MIRROR_STATE);
  k.azure_kid = s(CKA_CDC_AZURE_KEY_ID);
  k.error = s(CKA_CDC_MIRROR_ERROR);
  k.azure_resident = cls == CKO_PRIVATE_KEY && ulong_attr(h, CKA_CDC_ORIGIN) == CDC_ORIGIN_AZURE;
  k.rotation_error = s(CKA_CDC_ROTATION_ERROR);
  if (auto o = object(h)) {
    const auto v = core::mirror::version_of(o->attrs);
    k.version = v.version;
    k.version_state = v.state;
    k.since = v.since;
    k.former_since = v.former_since;
    // Key Vault rotates an Azure-resident key (its own policy); the token's schedule skips it.
    if (!core::cloud::azure_resident(o->attrs))
      k.next_rotation = core::mirror::next_rotation(core::mirror::policy_for(token_->config().mirror.rotation, o->attrs), v);
    k.expires = core::mirror::date_value(o->attrs, CKA_END_DATE);
  }
  return k;
}

}  // namespace cdcp11::cdcctl
