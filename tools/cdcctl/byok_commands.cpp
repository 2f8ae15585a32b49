// cdcctl byok export: the BYOK transfer file for hosts that cannot reach Azure. The token wraps
// the key (CKM_RSA_AES_KEY_WRAP, reference §1.3) under the KEK's public key; the clear key never
// leaves it. The file goes to a connected host, where `az keyvault key import --byok-file` sends
// it to the vault that holds the KEK.
#include "core/mirror/engine.h"
#include "tools/cdcctl/output.h"
#include "tools/cdcctl/byok_commands.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>

#include "azure/byok_blob.h"
#include "cdcp11/cdcp11.h"
#include "core/cloud/jwk.h"
#include "core/config.h"
#include "core/mirror/byok.h"
#include "core/mirror/naming.h"
#include "tools/cdcctl/group_session.h"

#ifndef CDCP11_VERSION
#define CDCP11_VERSION "0"
#endif

namespace cdcp11::cdcctl {

namespace {

struct ByokState {
  std::string group, pin_env, label, id_hex, kek_file, kek_kid, out, name;
};


// ---- The KEK -----------------------------------------------------------------------------------

struct Kek {
  Bytes n, e;
  int bits = 0;
};

std::string key_kind(EVP_PKEY* pk) {
  switch (EVP_PKEY_get_base_id(pk)) {
    case EVP_PKEY_EC: return "an EC key";
    case EVP_PKEY_ED25519: return "an Ed25519 key";
    case EVP_PKEY_ED448: return "an Ed448 key";
    case EVP_PKEY_RSA_PSS: return "an RSA-PSS key";
    case EVP_PKEY_DSA: return "a DSA key";
    case EVP_PKEY_DH: return "a DH key";
  }
  const char* name = EVP_PKEY_get0_type_name(pk);
  return std::string("a ") + (name ? name : "non-RSA") + " key";
}

Bytes bn_param(EVP_PKEY* pk, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(pk, name, &bn) != 1 || !bn) return {};
  Bytes out(static_cast<std::size_t>(BN_num_bytes(bn)));
  BN_bn2bin(bn, out.data());
  BN_free(bn);
  return out;
}

// The KEK's public key from a file: PEM "PUBLIC KEY" (SubjectPublicKeyInfo, as
// `az keyvault key download --encoding PEM` writes it) or the same in DER.
Result<Kek, std::string> read_kek(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return fail("Cannot read the KEK file " + path + ": " + std::strerror(errno) + ".");
  std::ostringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
  using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
  PkeyPtr pk(nullptr, EVP_PKEY_free);
  {
    BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), BIO_free);
    if (bio) pk.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  }
  if (!pk) {
    BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), BIO_free);
    if (bio) pk.reset(d2i_PUBKEY_bio(bio.get(), nullptr));
  }
  ERR_clear_error();
  if (!pk)
    return fail("The KEK file " + path +
                " holds no public key; give the KEK's public key as PEM (BEGIN PUBLIC KEY), as "
                "az keyvault key download --encoding PEM writes it.");
  if (EVP_PKEY_get_base_id(pk.get()) != EVP_PKEY_RSA)
    return fail("The KEK in " + path + " is " + key_kind(pk.get()) +
                "; Azure BYOK needs an RSA key-exchange key of 2048, 3072 or 4096 bits.");
  Kek k;
  k.bits = EVP_PKEY_get_bits(pk.get());
  if (k.bits != 2048 && k.bits != 3072 && k.bits != 4096)
    return fail("The KEK in " + path + " is RSA-" + std::to_string(k.bits) +
                "; Azure BYOK needs an RSA key-exchange key of 2048, 3072 or 4096 bits.");
  k.n = bn_param(pk.get(), OSSL_PKEY_PARAM_RSA_N);
  k.e = bn_param(pk.get(), OSSL_PKEY_PARAM_RSA_E);
  if (k.n.empty() || k.e.empty()) return fail("The RSA KEK in " + path + " cannot be read (no modulus or exponent).");
  return k;
}

// ---- The KEK id ----------------------------------------------------------------------------------

struct KekId {
  std::string vault;  // vault or Managed HSM name
  bool managed_hsm = false;
};

bool all_of_set(std::string_view s, const char* extra) {
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || (c && std::strchr(extra, c));
  });
}

// https://<vault><vault suffix>/keys/<name>/<32 hex> or https://<hsm><mhsm suffix>/keys/..., with
// the suffixes of the known clouds (.vault.azure.net, .managedhsm.azure.net, ...).
std::optional<KekId> parse_kek_kid(const std::string& kid) {
  constexpr std::string_view scheme = "https://";
  if (kid.rfind(scheme, 0) != 0) return std::nullopt;
  const std::string rest = kid.substr(scheme.size());
  const auto slash = rest.find('/');
  if (slash == std::string::npos) return std::nullopt;
  std::string host = rest.substr(0, slash);
  std::transform(host.begin(), host.end(), host.begin(), [](unsigned char c) { return std::tolower(c); });
  const std::string path = rest.substr(slash);  // /keys/<name>/<version>
  constexpr std::string_view keys = "/keys/";
  if (path.rfind(keys, 0) != 0) return std::nullopt;
  const std::string tail = path.substr(keys.size());
  const auto sep = tail.find('/');
  if (sep == std::string::npos) return std::nullopt;
  const std::string name = tail.substr(0, sep), version = tail.substr(sep + 1);
  if (!core::mirror::valid_key_name(name)) return std::nullopt;
  if (version.size() != 32 || !std::all_of(version.begin(), version.end(), [](unsigned char c) { return std::isxdigit(c); }))
    return std::nullopt;
  for (const char* cloud : {"global", "usgov", "china"}) {
    auto c = core::known_cloud(cloud);
    if (!c) continue;
    for (const auto& [suffix, mhsm] : {std::pair{c->vault_suffix, false}, std::pair{c->mhsm_suffix, true}}) {
      if (suffix.empty() || host.size() <= suffix.size() ||
          host.compare(host.size() - suffix.size(), suffix.size(), suffix) != 0)
        continue;
      std::string vault = host.substr(0, host.size() - suffix.size());
      if (vault.size() < 3 || vault.size() > 24 || !all_of_set(vault, "-")) return std::nullopt;
      return KekId{vault, mhsm};
    }
  }
  return std::nullopt;
}

// ---- The az command ------------------------------------------------------------------------------

std::string shell_quote(const std::string& s) {
  if (!s.empty() && all_of_set(s, "_-./=:+,@%")) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::size_t rsa_bits_of(const core::AttrMap& a) {
  const Bytes* n = a.find(CKA_MODULUS);
  if (!n) return 0;
  std::size_t i = 0;
  while (i < n->size() && (*n)[i] == 0) ++i;
  return (n->size() - i) * 8;
}

// ---- The command ---------------------------------------------------------------------------------

int run_export(const GlobalOptions& global, const ByokState& st) {
  if (st.label.empty() == st.id_hex.empty()) return error_out(global, "Say which key to export: --label or --id.");
  auto kek_id = parse_kek_kid(st.kek_kid);
  if (!kek_id)
    return error_out(global, "The KEK id '" + st.kek_kid +
                                 "' is not a versioned Key Vault key id; expected "
                                 "https://VAULT.vault.azure.net/keys/NAME/VERSION (or https://HSM.managedhsm.azure.net/"
                                 "keys/NAME/VERSION) with a 32-hex-digit VERSION.");
  if (!st.name.empty() && !core::mirror::valid_key_name(st.name))
    return error_out(global, "'" + st.name + "' is not a valid Key Vault key name (letters, digits and '-', 1 to 127).");
  auto kek = read_kek(st.kek_file);
  if (!kek) return error_out(global, kek.error());
  if (!st.pin_env.empty() && !std::getenv(st.pin_env.c_str()))
    return error_out(global, "The environment variable " + st.pin_env + " (--pin-env) is not set.");

  auto g = GroupSession::open(global.config, st.group, st.pin_env);
  if (!g) return error_out(global, capitalised(g.error()) + ".");
  GroupSession& gs = **g;

  auto found = gs.find_key(st.label, st.id_hex);
  if (!found) return error_out(global, found.error());
  const LocalKey& lk = *found;
  const std::string shown = lk.label.empty() ? lk.uid : lk.label;

  auto stored = gs.object(lk.handle);
  if (!stored) return error_out(global, "Key '" + shown + "' is gone from the token.");
  const core::StoredObject key = std::move(*stored);
  const core::AttrMap& a = key.attrs;
  const auto cls = a.ulong(CKA_CLASS).value_or(CKO_DATA);
  const auto kt = a.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  if (a.ulong(CKA_CDC_ORIGIN).value_or(CDC_ORIGIN_LOCAL) == CDC_ORIGIN_AZURE)
    return error_out(global, "Key '" + shown + "' lives only in Key Vault; the token holds no key material to export.");

  std::string type = lk.type;  // for people: RSA-2048, EC P-256, AES-256
  if (kt == CKK_AES) type += "-" + std::to_string(a.ulong(CKA_VALUE_LEN).value_or(0) * 8);

  const std::string where = std::string(kek_id->managed_hsm ? "Managed HSM '" : "vault '") + kek_id->vault + "'";
  std::string kty, crv;
  if (cls == CKO_SECRET_KEY) {
    if (kt != CKK_AES)
      return error_out(global, "Key '" + shown + "' is a " + lk.type +
                                   " key; Key Vault imports only AES secret keys (into a Managed HSM).");
    if (!kek_id->managed_hsm)
      return error_out(global, "AES keys can only be imported into a Managed HSM; the KEK belongs to " + where +
                                   ", which holds RSA and EC keys only.");
    kty = "oct";
  } else if (kt == CKK_RSA) {
    const std::size_t bits = rsa_bits_of(a);
    if (bits != 2048 && bits != 3072 && bits != 4096)
      return error_out(global, "Key '" + shown + "' is RSA-" + std::to_string(bits) +
                                   "; Key Vault imports RSA keys of 2048, 3072 or 4096 bits.");
    kty = "RSA";
  } else if (kt == CKK_EC) {
    auto pub = core::cloud::public_jwk_of(gs.token().backend(), key);
    if (!pub) return error_out(global, "Key '" + shown + "' cannot be read: " + pub.error().message + ".");
    kty = "EC";
    crv = pub->crv;
  } else if (kt == CKK_EC_EDWARDS) {
    return error_out(global, "Key '" + shown + "' is an Ed25519 key; Azure Key Vault has no Ed25519 keys.");
  } else {
    return error_out(global, "Key '" + shown + "' is a " + lk.type + " key, which Key Vault cannot import.");
  }

  auto ciphertext = core::mirror::wrap_for_byok(gs.token().backend(), gs.token().name(), key, kek->n, kek->e);
  if (!ciphertext) return error_out(global, "Wrapping key '" + shown + "' failed: " + ciphertext.error().message + ".");
  auto blob = azure::build_byok_blob(st.kek_kid, *ciphertext, "cdcp11 " CDCP11_VERSION " (cdcctl byok export)");
  if (!blob) return error_out(global, blob.error().message);
  if (auto w = write_private_file(st.out, std::string_view(reinterpret_cast<const char*>(blob->data()), blob->size())); !w)
    return error_out(global, w.error());

  // The name the key gets in Key Vault: --name, else as the mirror engine would name it.
  std::string name = st.name;
  if (name.empty()) name = a.string_or(CKA_CDC_AZURE_KEY_NAME, "");
  if (name.empty() || !core::mirror::valid_key_name(name))
    name = core::mirror::key_name_from_label(lk.label, "key-" + (lk.id_hex.empty() ? key.uid.substr(0, 12) : lk.id_hex));

  std::string cmd = std::string("az keyvault key import ") + (kek_id->managed_hsm ? "--hsm-name " : "--vault-name ") +
                    kek_id->vault + " --name " + name + " --byok-file " + shell_quote(st.out) + " --kty " + kty;
  if (!crv.empty()) cmd += " --curve " + crv;
  auto ops = core::mirror::azure_key_ops(a);
  if (!ops.empty()) {
    cmd += " --ops";
    for (auto& o : ops) cmd += " " + o;
  }
  cmd += " --tags " + shell_quote("cdcp11-uid=" + key.uid) + " " + shell_quote("cdcp11-group=" + st.group);
  if (!lk.id_hex.empty()) cmd += " " + shell_quote("cdcp11-id=" + lk.id_hex);

  if (global.json) {
    rapidjson::StringBuffer sb;
    rapidjson::PrettyWriter<rapidjson::StringBuffer> w(sb);
    w.StartObject();
    w.Key("file"); w.String(st.out.c_str());
    w.Key("kty"); w.String(kty.c_str());
    w.Key("crv"); crv.empty() ? w.Null() : w.String(crv.c_str());
    w.Key("kek_kid"); w.String(st.kek_kid.c_str());
    w.Key("key"); w.String(shown.c_str());
    w.Key("vault"); w.String(kek_id->vault.c_str());
    w.Key("managed_hsm"); w.Bool(kek_id->managed_hsm);
    w.Key("name"); w.String(name.c_str());
    w.Key("az_command"); w.String(cmd.c_str());
    w.EndObject();
    std::cout << sb.GetString() << '\n';
    return 0;
  }
  std::cout << "Wrote " << st.out << ": " << type << (crv.empty() ? "" : " " + crv) << " key '" << shown
            << "' of group '" << st.group << "', wrapped for the KEK " << st.kek_kid << ".\n"
            << "On a host connected to Azure, import it into " << where << " with:\n"
            << "  " << cmd << '\n';
  return 0;
}

}  // namespace

void add_byok_commands(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto st = std::make_shared<ByokState>();
  auto* byok = app.add_subcommand("byok", "Azure BYOK transfer files, for hosts that cannot reach Azure");
  byok->require_subcommand(1);
  auto* exp = byok->add_subcommand(
      "export",
      "Wrap a key of the group for a Key Vault key-exchange key (KEK) and write the .byok file that "
      "az keyvault key import --byok-file takes; prints that az command");
  exp->add_option("GROUP", st->group, "Group name")->required();
  auto* label = exp->add_option("--label", st->label, "The key with this CKA_LABEL");
  auto* id = exp->add_option("--id", st->id_hex, "The key with this CKA_ID (hex)");
  label->excludes(id);
  exp->add_option("--kek-pem", st->kek_file,
                  "The KEK's public key, PEM (az keyvault key download --encoding PEM); RSA 2048, 3072 or 4096")
      ->required();
  exp->add_option("--kek-kid", st->kek_kid,
                  "The KEK's versioned key id, https://VAULT.vault.azure.net/keys/NAME/VERSION (or .managedhsm.azure.net)")
      ->required();
  exp->add_option("--out", st->out, "The .byok file to write (mode 0600, replaced atomically)")->required();
  exp->add_option("--name", st->name, "Key name in Key Vault for the printed command (default: from the label)");
  exp->add_option("--pin-env", st->pin_env, "Read the user PIN from this environment variable (default: ask)");
  exp->add_flag("--json", global.json, "Machine-readable JSON output");
  exp->callback([&global, &exit_code, st] { exit_code = run_export(global, *st); });
}

}  // namespace cdcp11::cdcctl
