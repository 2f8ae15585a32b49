// cdcctl key list|mirror: the group's keys, local and in the vault, side by side; mirroring on
// request. Runs the same core Library the PKCS#11 module runs, in this process.
#include "tools/cdcctl/key_commands.h"

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "cdcp11/cdcp11.h"
#include "core/library.h"
#include "softtoken/factory.h"
#include "tools/cdcctl/table.h"

namespace cdcp11::cdcctl {

namespace {

using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

struct KeyState {
  std::string group, pin_env, label, id_hex;
  bool pin_stdin = false, all = false;
};

struct LocalKey {
  CK_OBJECT_HANDLE handle = 0;
  std::string uid, label, id_hex, type, azure_kid, error;
  CK_ULONG state = CDC_MIRROR_STATE_NONE;
};

const char* state_name(CK_ULONG s) {
  switch (s) {
    case CDC_MIRROR_STATE_PENDING: return "pending";
    case CDC_MIRROR_STATE_MIRRORED: return "mirrored";
    case CDC_MIRROR_STATE_FAILED: return "failed";
  }
  return "none";
}

std::string key_type_name(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, std::size_t modulus_len) {
  switch (kt) {
    case CKK_RSA: return "RSA-" + std::to_string(modulus_len * 8);
    case CKK_EC: return "EC";
    case CKK_EC_EDWARDS: return "Ed25519";
    case CKK_AES: return "AES";
  }
  return cls == CKO_SECRET_KEY ? "secret" : "?";
}

std::string read_pin(const KeyState& st) {
  if (!st.pin_env.empty()) {
    const char* v = std::getenv(st.pin_env.c_str());
    return v ? v : "";
  }
  std::string pin;
  termios old{};
  const bool tty = ::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &old) == 0;
  if (tty) {
    std::cerr << "User PIN of group '" << st.group << "': " << std::flush;
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

// One logged-in session on the group's slot, closed (and the library finalised) on scope exit.
class GroupSession {
 public:
  static Result<std::unique_ptr<GroupSession>, std::string> open(const std::string& config, const KeyState& st) {
    auto g = std::unique_ptr<GroupSession>(new GroupSession);
    if (auto r = g->lib_.initialize(config, softtoken::make_token_backend); !r) return fail(r.error().message);
    for (auto id : g->lib_.slot_ids()) {
      auto slot = g->lib_.slot(id);
      if (slot && (*slot)->cfg.name == st.group) g->slot_ = *slot;
    }
    if (!g->slot_) return fail("no group named '" + st.group + "' in " + config);
    auto h = g->lib_.open_session(g->slot_->id, CKF_SERIAL_SESSION | CKF_RW_SESSION);
    if (!h) return fail(h.error().message);
    g->session_ = *h;
    std::string pin = read_pin(st);
    auto r = g->lib_.login(g->session_, CKU_USER, view(pin));
    secure_zero(pin.data(), pin.size());
    if (!r) return fail("login to group '" + st.group + "' failed: " + r.error().message);
    return g;
  }
  ~GroupSession() {
    if (session_) (void)lib_.close_session(session_);
    lib_.finalize();
  }

  core::Library& lib() { return lib_; }
  core::Slot& slot() { return *slot_; }
  CK_SESSION_HANDLE session() const { return session_; }

  std::vector<LocalKey> keys() {
    std::vector<LocalKey> out;
    for (CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_SECRET_KEY}) {
      core::AttrMap t;
      t.set_ulong(CKA_CLASS, cls);
      t.set_bool(CKA_TOKEN, true);
      if (!lib_.find_init(session_, t)) continue;
      CK_OBJECT_HANDLE hs[64];
      std::vector<CK_OBJECT_HANDLE> all;
      for (CK_ULONG n; (n = lib_.find(session_, hs, 64).value()) > 0;) all.insert(all.end(), hs, hs + n);
      (void)lib_.find_final(session_);
      for (auto h : all) out.push_back(read(h, cls));
    }
    return out;
  }

 private:
  GroupSession() = default;

  Bytes attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
    CK_ATTRIBUTE a{type, nullptr, 0};
    if (!lib_.get_attributes(session_, h, &a, 1) || a.ulValueLen == CK_UNAVAILABLE_INFORMATION) return {};
    Bytes v(a.ulValueLen);
    a.pValue = v.data();
    if (!lib_.get_attributes(session_, h, &a, 1)) return {};
    return v;
  }
  CK_ULONG ulong_attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
    Bytes v = attr(h, type);
    CK_ULONG r = 0;
    if (v.size() == sizeof r) std::memcpy(&r, v.data(), sizeof r);
    return r;
  }
  LocalKey read(CK_OBJECT_HANDLE h, CK_OBJECT_CLASS cls) {
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
    return k;
  }

  core::Library lib_;
  core::Slot* slot_ = nullptr;
  CK_SESSION_HANDLE session_ = 0;
};

int error_out(const GlobalOptions& global, const std::string& msg) {
  if (global.json) std::cout << "{\"error\": \"" << msg << "\"}\n";  // messages hold no quotes of their own
  else std::cerr << "cdcctl: " << msg << '\n';
  return 1;
}

}  // namespace

void add_key_commands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto st = std::make_shared<KeyState>();
  auto* key = app.add_subcommand("key", "The keys of a group, locally and in its vault");
  key->require_subcommand(1);
  auto common = [&](CLI::App* c) {
    c->add_option("GROUP", st->group, "Group name")->required();
    c->add_option("--pin-env", st->pin_env, "Read the user PIN from this environment variable (default: ask)");
  };

  auto* list = key->add_subcommand("list", "Local keys with their mirror state, and the vault's keys");
  common(list);
  list->callback([&, st] {
    auto g = GroupSession::open(global.config, *st);
    if (!g) {
      exit_code = error_out(global, g.error());
      return;
    }
    auto keys = (*g)->keys();
    // The vault's side: keys not linked to a local key are listed as remote only.
    std::vector<std::string> remote_only;
    std::string remote_error;
    if (auto* eng = (*g)->slot().mirror.get()) {
      auto items = eng->connection()->vault().list_keys();
      if (!items) {
        remote_error = items.error().describe();
      } else {
        std::set<std::string> linked;
        for (auto& k : keys) linked.insert(k.uid);
        for (auto& it : *items) {
          auto uid = it.tags.find("cdcp11-uid");
          if (it.tags.count("cdcp11-kek-for")) continue;
          if (uid == it.tags.end() || !linked.count(uid->second)) remote_only.push_back(it.kid);
        }
      }
    }
    if (global.json) {
      rapidjson::StringBuffer sb;
      Writer w(sb);
      w.StartObject();
      w.Key("group"); w.String(st->group.c_str());
      w.Key("keys");
      w.StartArray();
      for (auto& k : keys) {
        w.StartObject();
        w.Key("label"); w.String(k.label.c_str());
        w.Key("id"); w.String(k.id_hex.c_str());
        w.Key("type"); w.String(k.type.c_str());
        w.Key("unique_id"); w.String(k.uid.c_str());
        w.Key("mirror"); w.String(state_name(k.state));
        w.Key("azure_key_id"); k.azure_kid.empty() ? w.Null() : w.String(k.azure_kid.c_str());
        w.Key("error"); k.error.empty() ? w.Null() : w.String(k.error.c_str());
        w.EndObject();
      }
      w.EndArray();
      w.Key("remote_only");
      w.StartArray();
      for (auto& r : remote_only) w.String(r.c_str());
      w.EndArray();
      w.Key("remote_error"); remote_error.empty() ? w.Null() : w.String(remote_error.c_str());
      w.EndObject();
      std::cout << sb.GetString() << '\n';
      return;
    }
    Table t({"LABEL", "ID", "TYPE", "MIRROR", "AZURE KEY"});
    for (auto& k : keys) t.add({k.label, k.id_hex, k.type, state_name(k.state), k.azure_kid.empty() ? "-" : k.azure_kid});
    for (auto& r : remote_only) t.add({"-", "-", "-", "remote only", r});
    t.print(std::cout);
    for (auto& k : keys)
      if (!k.error.empty()) std::cout << "  " << (k.label.empty() ? k.uid : k.label) << ": " << k.error << '\n';
    if (!remote_error.empty()) std::cout << "Vault not listed: " << remote_error << '\n';
  });

  auto* mirror = key->add_subcommand("mirror", "Mirror keys into the group's vault now (or finish a failed mirror)");
  common(mirror);
  mirror->add_option("--label", st->label, "The key with this CKA_LABEL");
  mirror->add_option("--id", st->id_hex, "The key with this CKA_ID (hex)");
  mirror->add_flag("--all", st->all, "Every key not mirrored yet (none, pending or failed)");
  mirror->callback([&, st] {
    if (st->label.empty() && st->id_hex.empty() && !st->all) {
      exit_code = error_out(global, "say which keys: --label, --id or --all");
      return;
    }
    auto g = GroupSession::open(global.config, *st);
    if (!g) {
      exit_code = error_out(global, g.error());
      return;
    }
    int done = 0, failed = 0;
    for (auto& k : (*g)->keys()) {
      const bool chosen = st->all ? k.state != CDC_MIRROR_STATE_MIRRORED
                                  : (!st->label.empty() && k.label == st->label) || (!st->id_hex.empty() && k.id_hex == st->id_hex);
      if (!chosen) continue;
      auto r = (*g)->lib().mirror_key((*g)->session(), k.handle);
      if (r) {
        ++done;
        auto s = (*g)->lib().mirror_status((*g)->session(), k.handle);
        if (!global.json) std::cout << (k.label.empty() ? k.uid : k.label) << ": mirrored as " << (s ? s->second : "") << '\n';
      } else {
        ++failed;
        if (!global.json) std::cout << (k.label.empty() ? k.uid : k.label) << ": FAILED: " << r.error().message << '\n';
      }
    }
    if (global.json) std::cout << "{\"mirrored\": " << done << ", \"failed\": " << failed << "}\n";
    if (done + failed == 0) exit_code = error_out(global, "no key of group '" + st->group + "' matches");
    else if (failed) exit_code = 1;
  });
}

}  // namespace cdcp11::cdcctl
