// Typed client for the Key Vault / Managed HSM keys REST API (reference §3), api-version 7.4
// by default.
//
// Retry rule per operation (see retry.h for what "may have been applied" means):
//   get, list, versions, get/list deleted, update, backup, sign, verify, encrypt, decrypt,
//   wrap, unwrap ........ idempotent: repeated freely.
//   create .............. not idempotent (every call adds a version). Before repeating, GET the
//                         key: a version created since the first attempt with the requested
//                         kty, key_ops and tags is taken as ours and returned.
//   import .............. not idempotent. Before repeating, GET the key and compare its public
//                         part with ImportKeyOptions::expected_public (always known for a JWK
//                         import; the caller should fill it for BYOK); without one, a version
//                         created since the first attempt with the same kty is taken as ours.
//   delete .............. before repeating, GET /deletedkeys/{n} (or GET /keys/{n} when soft
//                         delete is off): already deleted = done.
//   purge ............... before repeating, GET /deletedkeys/{n}: gone = done.
//   recover ............. before repeating, GET /deletedkeys/{n}: gone = done (the key is then
//                         fetched with GET /keys/{n}).
//   restore ............. only with RestoreOptions::expected_name: GET /keys/{name} exists =
//                         done; without it a possibly applied restore is reported, not repeated.
//   rotate .............. not idempotent (every call adds a version). Before repeating, GET the
//                         key: a version created since the first attempt is taken as ours.
//   get/set rotation policy: idempotent (the PUT replaces the whole policy).
// A nextLink is followed verbatim when it names the vault's host. When the vault was reached
// under another name (a custom domain in front of a private endpoint), Azure still builds it on
// the vault's own host (*.vault.azure.net:443); it is then followed on the name we were given,
// so requests and the token never go to a host we were not configured for.
// Requests of the non-idempotent operations use a fresh connection (http.h explains why).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "azure/challenge.h"
#include "azure/error.h"
#include "azure/http.h"
#include "azure/limiter.h"
#include "azure/rotation_policy.h"
#include "common/bytes.h"
#include "common/result.h"

namespace cdcp11::azure {

class Connection;

struct KeyId {
  std::string vault_url;  // https://host (no trailing slash, no port 443)
  std::string name;
  std::string version;    // empty for a base id
};
std::optional<KeyId> parse_key_id(std::string_view kid);

// Public JWK as Key Vault returns it; private parts only ever go out (import).
struct JsonWebKey {
  std::string kid;
  std::string kty;  // RSA, RSA-HSM, EC, EC-HSM, oct, oct-HSM
  std::vector<std::string> key_ops;
  Bytes n, e;       // RSA
  std::string crv;  // EC
  Bytes x, y;
  int rsa_bits() const;
};

struct KeyAttributes {
  std::optional<bool> enabled, exportable;
  std::optional<int64_t> nbf, exp, created, updated;
  std::optional<int> recoverable_days;
  std::string recovery_level;  // Purgeable, Recoverable+Purgeable, Recoverable, ...
  std::string hsm_platform;
};

using Tags = std::map<std::string, std::string>;

struct KeyBundle {
  JsonWebKey key;
  KeyAttributes attributes;
  Tags tags;
  bool managed = false;
  // Set on DeletedKeyBundle answers (delete, get deleted).
  std::string recovery_id;
  std::optional<int64_t> deleted_date, scheduled_purge_date;

  std::string name() const;
  std::string version() const;
};
using DeletedKeyBundle = KeyBundle;

struct KeyItem {
  std::string kid;
  KeyAttributes attributes;
  Tags tags;
  bool managed = false;
  std::string recovery_id;
  std::optional<int64_t> deleted_date, scheduled_purge_date;
  std::string name() const;
};

struct CreateKeyOptions {
  std::string kty;                 // RSA, RSA-HSM, EC, EC-HSM, oct-HSM
  std::optional<int> key_size;     // RSA bits / oct bits
  std::optional<int> public_exponent;
  std::string crv;                 // P-256, P-384, P-521, P-256K
  std::vector<std::string> key_ops;
  KeyAttributes attributes;        // enabled, nbf, exp, exportable
  Tags tags;
};

// Private key in JWK form for a plain import. All values big-endian, unpadded as per §2
// (d/x/y are padded to the field length by the caller or by to_json).
struct PrivateJwk {
  std::string kty;  // RSA, EC, oct (or -HSM)
  std::string crv;
  Bytes n, e, x, y;
  SecureBytes d, p, q, dp, dq, qi, k;
};

struct PublicKeyMaterial {
  Bytes n, e;        // RSA
  std::string crv;   // EC
  Bytes x, y;
  bool empty() const { return n.empty() && x.empty(); }
};

struct ImportKeyOptions {
  // Exactly one of:
  std::optional<PrivateJwk> jwk;     // plain (software) import
  Bytes byok_blob;                   // BYOK: the transfer blob from build_byok_blob()
  std::string byok_kty;              // with byok_blob: RSA-HSM, EC-HSM or oct-HSM
  std::string byok_crv;              // with byok_blob and EC-HSM
  std::vector<std::string> key_ops;
  std::optional<bool> hsm;           // top-level "Hsm" flag, sent only when set
  KeyAttributes attributes;
  Tags tags;
  // Public part of the key being imported, for the duplicate check before a repeat.
  PublicKeyMaterial expected_public;
};

struct UpdateKeyOptions {
  std::optional<std::vector<std::string>> key_ops;
  KeyAttributes attributes;
  std::optional<Tags> tags;
};

struct CryptoResult {
  std::string kid;
  Bytes value;
  Bytes iv, tag;
};

struct CryptoParams {
  std::string alg;   // RSA-OAEP, RSA-OAEP-256, RSA1_5, A256GCM, A256KW, ...
  Bytes iv, aad, tag;
};

struct RestoreOptions {
  std::string expected_name;  // enables the duplicate check (see above)
};

class KeyVaultClient {
 public:
  // vault_url: https://NAME.vault.azure.net or https://NAME.managedhsm.azure.net
  KeyVaultClient(std::shared_ptr<Connection> conn, std::string vault_url);

  const std::string& vault_url() const { return vault_url_; }
  const std::string& host() const { return host_; }
  bool is_managed_hsm() const { return mhsm_; }

  Result<KeyBundle, Error> create_key(const std::string& name, const CreateKeyOptions& o);
  Result<KeyBundle, Error> import_key(const std::string& name, const ImportKeyOptions& o);
  Result<KeyBundle, Error> get_key(const std::string& name, const std::string& version = "");
  Result<std::vector<KeyItem>, Error> list_keys(int max_results = 25);
  Result<std::vector<KeyItem>, Error> list_key_versions(const std::string& name, int max_results = 25);
  Result<KeyBundle, Error> update_key(const std::string& name, const std::string& version, const UpdateKeyOptions& o);
  Result<DeletedKeyBundle, Error> delete_key(const std::string& name);
  Result<DeletedKeyBundle, Error> get_deleted_key(const std::string& name);
  Result<std::vector<KeyItem>, Error> list_deleted_keys(int max_results = 25);
  Result<void, Error> purge_deleted_key(const std::string& name);
  Result<KeyBundle, Error> recover_deleted_key(const std::string& name);
  Result<Bytes, Error> backup_key(const std::string& name);
  Result<KeyBundle, Error> restore_key(ByteView backup, const RestoreOptions& o = {});

  // Rotation (API 7.3+): a new version of the same type, size and curve, per the key's policy.
  Result<KeyBundle, Error> rotate_key(const std::string& name);
  // A key that never had a policy set answers the service's default (Notify 30 days before expiry).
  Result<RotationPolicy, Error> get_rotation_policy(const std::string& name);
  Result<RotationPolicy, Error> set_rotation_policy(const std::string& name, const RotationPolicy& p);

  // digest: the hash (RS/PS/ES algorithms sign a digest; ECDSA results are raw r||s).
  Result<CryptoResult, Error> sign(const std::string& name, const std::string& version, const std::string& alg,
                                   ByteView digest);
  Result<bool, Error> verify(const std::string& name, const std::string& version, const std::string& alg,
                             ByteView digest, ByteView signature);
  Result<CryptoResult, Error> encrypt(const std::string& name, const std::string& version, const CryptoParams& p,
                                      ByteView plaintext);
  // The plaintext comes back in zeroizing memory.
  Result<SecureBytes, Error> decrypt(const std::string& name, const std::string& version, const CryptoParams& p,
                                     ByteView ciphertext);
  Result<CryptoResult, Error> wrap_key(const std::string& name, const std::string& version, const std::string& alg,
                                       ByteView key);
  Result<SecureBytes, Error> unwrap_key(const std::string& name, const std::string& version, const std::string& alg,
                                        ByteView wrapped);

  // One cheap authenticated request (list keys, one item) to check that the vault is reachable
  // and we may list it: the Not-Connected reason when it fails.
  Result<void, Error> check_access();

 private:
  struct Op;
  Result<HttpResponse, Error> send(const Op& op);
  Result<HttpResponse, Error> attempt(const Op& op, const std::string& url);
  Result<std::optional<Challenge>, Error> discover(const Op& op, const std::string& url,
                                                  std::optional<HttpResponse>& answer);
  Result<std::vector<KeyItem>, Error> list_paged(const std::string& first_path, const std::string& what,
                                                 const std::string& permission);
  Result<KeyBundle, Error> bundle_from(const HttpResponse& r, const std::string& operation);
  Result<CryptoResult, Error> crypto(KeyOp kop, const std::string& what, const std::string& name,
                                     const std::string& version, const std::string& permission, SecureBytes body,
                                     bool secret_result, SecureBytes* plain_out);
  Result<RotationPolicy, Error> policy_from(const HttpResponse& r, const std::string& operation);
  // The next page's URL, or an error when the nextLink may not be followed (see above).
  Result<std::string, Error> next_page_url(const std::string& next_link, const std::string& what) const;
  std::string key_url(const std::string& name, const std::string& version, const std::string& suffix) const;
  std::string deleted_key_url(const std::string& name, const std::string& suffix) const;
  // GET the key to learn whether a request whose answer was lost already happened: its answer
  // when the key exists, nullopt when it does not (404), an error otherwise.
  Result<std::optional<HttpResponse>, Error> probe_key(const std::string& name, const std::string& why);
  std::int64_t now_seconds() const;
  void remember(const KeyBundle& b);
  // The published limit a request counts against: the vault's or the Managed HSM's model, for
  // the key's remembered shape (or the one given).
  Limit limit_for(KeyOp op, const std::string& name);
  Limit limit_for(KeyOp op, const KeyShape& shape) const;
  Error map_error(const HttpResponse& r, const Op& op, int attempts) const;

  std::shared_ptr<Connection> conn_;
  std::string vault_url_, host_;
  bool mhsm_ = false;
  std::mutex mu_;
  std::map<std::string, KeyShape> shapes_;
};

// JSON (keyvault_json.cpp).
SecureBytes create_key_body(const CreateKeyOptions& o);
Result<SecureBytes, Error> import_key_body(const ImportKeyOptions& o);
SecureBytes update_key_body(const UpdateKeyOptions& o);
// why, if given, gets the reason text that is not JSON was refused (see parse_json).
bool parse_key_bundle(std::string_view json, KeyBundle& out, std::string* why = nullptr);
bool parse_key_items(std::string_view json, std::vector<KeyItem>& out, std::string& next_link,
                     std::string* why = nullptr);
bool public_material_matches(const JsonWebKey& k, const PublicKeyMaterial& m);

}  // namespace cdcp11::azure
