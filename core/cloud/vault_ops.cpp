#include "core/cloud/vault_ops.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "azure/util.h"
#include "cdcp11/cdcp11.h"
#include "core/cloud/key_attrs.h"

namespace cdcp11::core::cloud {

namespace {

struct HashInfo {
  CK_MECHANISM_TYPE mech;
  CK_RSA_PKCS_MGF_TYPE mgf;
  std::size_t len;
  const char* suffix;  // RS256, PS384, ...
  std::array<std::uint8_t, 19> digest_info;  // DER DigestInfo prefix (RFC 8017 9.2 note 1)
};

const std::array<HashInfo, 3>& hashes() {
  static const std::array<HashInfo, 3> h = {{
      {CKM_SHA256, CKG_MGF1_SHA256, 32, "256",
       {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}},
      {CKM_SHA384, CKG_MGF1_SHA384, 48, "384",
       {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30}},
      {CKM_SHA512, CKG_MGF1_SHA512, 64, "512",
       {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40}},
  }};
  return h;
}

const HashInfo* hash_info(CK_MECHANISM_TYPE mech) {
  for (auto& h : hashes())
    if (h.mech == mech) return &h;
  return nullptr;
}

// Key Vault signs ES256 with P-256, ES384 with P-384 and ES512 with P-521: the hash follows the curve.
const HashInfo* hash_for_curve(const std::string& crv) {
  if (crv == "P-256") return hash_info(CKM_SHA256);
  if (crv == "P-384") return hash_info(CKM_SHA384);
  if (crv == "P-521") return hash_info(CKM_SHA512);
  if (crv == "P-256K") return hash_info(CKM_SHA256);
  return nullptr;
}

template <class T>
R<T> param_as(const Mechanism& m) {
  if (m.param.size() != sizeof(T))
    return err(Errc::mechanism_param_invalid, std::string(m.entry->name) + " needs its parameter structure");
  T t;
  std::memcpy(&t, m.param.data(), sizeof t);
  return t;
}

Unexpected<Error> unsupported(const Mechanism& m, const std::string& why) {
  return err(Errc::mechanism_invalid, std::string(m.entry->name) + " cannot be used with a key in Key Vault: " + why);
}

// What a sign mechanism asks of the vault: the algorithm, the digest it signs, and whether the
// caller's data is the digest itself (or DigestInfo) or must be hashed here.
struct SignPlan {
  std::string alg;
  const HashInfo* hash = nullptr;
  bool hash_here = false;
  bool digest_info = false;  // CKM_RSA_PKCS: the data is a DigestInfo naming the hash
};

R<SignPlan> sign_plan(const Mechanism& m, const VaultKey& key) {
  const MechanismEntry& e = *m.entry;
  SignPlan p;
  switch (e.family) {
    case MechFamily::rsa_pkcs1:
      if (!e.hash) {
        p.digest_info = true;
        return p;
      }
      p.hash = hash_info(e.hash);
      if (!p.hash) return unsupported(m, "Key Vault signs RSA PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512 only");
      p.alg = std::string("RS") + p.hash->suffix;
      p.hash_here = true;
      return p;
    case MechFamily::rsa_pss: {
      CDC_ASSIGN(auto pss, param_as<CK_RSA_PKCS_PSS_PARAMS>(m));
      p.hash = hash_info(pss.hashAlg);
      if (!p.hash) return unsupported(m, "Key Vault signs RSA-PSS with SHA-256, SHA-384 or SHA-512 only");
      if (e.hash && e.hash != pss.hashAlg)
        return err(Errc::mechanism_param_invalid, std::string(e.name) + ": hashAlg does not match the mechanism");
      if (pss.mgf != p.hash->mgf || pss.sLen != p.hash->len)
        return unsupported(m, std::string("Key Vault's PS") + p.hash->suffix + " uses MGF1 with the same hash and a " +
                                  std::to_string(p.hash->len) + "-byte salt");
      p.alg = std::string("PS") + p.hash->suffix;
      p.hash_here = e.hash != 0;
      return p;
    }
    case MechFamily::ecdsa: {
      p.hash = hash_for_curve(key.crv);
      if (!p.hash) return unsupported(m, "curve " + key.crv + " is not signed by Key Vault");
      // Key Vault names ECDSA over secp256k1 ES256K (RFC 8812); the NIST curves ES + hash size.
      p.alg = std::string("ES") + p.hash->suffix + (key.crv == "P-256K" ? "K" : "");
      if (e.hash && e.hash != p.hash->mech)
        return unsupported(m, "Key Vault signs a " + key.crv + " key with SHA-" + p.hash->suffix + " only (" +
                                  p.alg + ")");
      p.hash_here = e.hash != 0;
      return p;
    }
    default:
      return unsupported(m, "Key Vault signs with RSA PKCS#1 v1.5, RSA-PSS and ECDSA");
  }
}

R<std::string> decrypt_alg(const Mechanism& m) {
  const MechanismEntry& e = *m.entry;
  if (e.family == MechFamily::rsa_pkcs1 && !e.hash) return std::string("RSA1_5");
  if (e.family != MechFamily::rsa_oaep)
    return unsupported(m, "Key Vault decrypts and unwraps with RSA PKCS#1 v1.5 and RSA-OAEP");
  CDC_ASSIGN(auto oaep, param_as<CK_RSA_PKCS_OAEP_PARAMS>(m));
  if (oaep.ulSourceDataLen != 0) return unsupported(m, "Key Vault's RSA-OAEP takes no label (source data)");
  if (oaep.hashAlg == CKM_SHA_1 && oaep.mgf == CKG_MGF1_SHA1) return std::string("RSA-OAEP");
  if (oaep.hashAlg == CKM_SHA256 && oaep.mgf == CKG_MGF1_SHA256) return std::string("RSA-OAEP-256");
  return unsupported(m, "Key Vault's RSA-OAEP uses SHA-1 or SHA-256, with MGF1 of the same hash");
}

class VaultSign final : public Operation {
 public:
  VaultSign(VaultKey key, SignPlan plan, std::unique_ptr<Operation> digest)
      : key_(std::move(key)), plan_(std::move(plan)), digest_(std::move(digest)) {}

  R<SecureBytes> update(ByteView in) override {
    if (digest_) return digest_->update(in);
    data_.insert(data_.end(), in.begin(), in.end());
    return SecureBytes{};
  }

  R<SecureBytes> finish() override {
    SecureBytes digest;
    if (digest_) {
      CDC_ASSIGN(digest, digest_->finish());
    } else {
      digest = data_;
    }
    std::string alg = plan_.alg;
    const HashInfo* h = plan_.hash;
    if (plan_.digest_info) {
      h = nullptr;
      for (auto& c : hashes())
        if (digest.size() == c.digest_info.size() + c.len &&
            std::equal(c.digest_info.begin(), c.digest_info.end(), digest.begin()))
          h = &c;
      if (!h)
        return err(Errc::data_invalid, "CKM_RSA_PKCS with a key in Key Vault signs a DigestInfo of SHA-256, "
                                       "SHA-384 or SHA-512 only");
      digest.erase(digest.begin(), digest.begin() + static_cast<std::ptrdiff_t>(h->digest_info.size()));
      alg = std::string("RS") + h->suffix;
    }
    if (digest.size() != h->len)
      return err(Errc::data_len_range, alg + " signs a " + std::to_string(h->len) + "-byte digest; got " +
                                           std::to_string(digest.size()) + " bytes");
    auto r = key_.conn->vault().sign(key_.name, key_.version, alg, digest);
    if (!r) return fail(from_azure(r.error()));
    return SecureBytes(r->value.begin(), r->value.end());
  }

  R<void> verify(ByteView) override { return err(Errc::general_error, "not a verify operation"); }

 private:
  VaultKey key_;
  SignPlan plan_;
  std::unique_ptr<Operation> digest_;
  SecureBytes data_;
};

class VaultDecrypt final : public Operation {
 public:
  VaultDecrypt(VaultKey key, std::string alg) : key_(std::move(key)), alg_(std::move(alg)) {}

  R<SecureBytes> update(ByteView in) override {
    data_.insert(data_.end(), in.begin(), in.end());
    return SecureBytes{};
  }

  R<SecureBytes> finish() override {
    if (key_.modulus_bytes && data_.size() != key_.modulus_bytes)
      return err(Errc::encrypted_data_len_range, "the ciphertext must be " + std::to_string(key_.modulus_bytes) +
                                                     " bytes (the modulus size); got " + std::to_string(data_.size()));
    azure::CryptoParams p;
    p.alg = alg_;
    auto r = key_.conn->vault().decrypt(key_.name, key_.version, p, data_);
    if (!r) {
      if (r.error().kind == azure::ErrorKind::bad_request)
        return err(Errc::encrypted_data_invalid, "Key Vault could not decrypt: " + r.error().describe());
      return fail(from_azure(r.error()));
    }
    return std::move(*r);
  }

  R<void> verify(ByteView) override { return err(Errc::general_error, "not a verify operation"); }

 private:
  VaultKey key_;
  std::string alg_;
  Bytes data_;
};

}  // namespace

Error from_azure(const azure::Error& e) {
  using K = azure::ErrorKind;
  switch (e.kind) {
    case K::dns: case K::connect_refused: case K::timeout: case K::tls_ca_untrusted: case K::tls_hostname:
    case K::tls_other: case K::proxy: case K::connection_dropped: case K::throttled: case K::server_error:
    case K::token_endpoint_unavailable: case K::vault_not_found:
      return Error{Errc::device_error, e.describe()};
    default:
      return Error{Errc::function_failed, e.describe()};
  }
}

R<VaultKey> vault_key_of(std::shared_ptr<azure::Connection> conn, const AttrMap& key) {
  const std::string kid = key.string_or(CKA_CDC_AZURE_KEY_ID, "");
  auto id = azure::parse_key_id(kid);
  if (!id || id->version.empty())
    return err(Errc::function_failed, "the key lives in Key Vault but names no key version (CKA_CDC_AZURE_KEY_ID '" +
                                          kid + "')");
  const auto vault = conn->vault();
  if (!azure::iequals(id->vault_url, vault.vault_url()))
    return err(Errc::function_failed, "the key lives in " + id->vault_url + ", not in the group's vault " +
                                          vault.vault_url() + "; run a sync after changing the vault");
  VaultKey k;
  k.conn = std::move(conn);
  k.name = id->name;
  k.version = id->version;
  k.key_type = key.ulong(CKA_KEY_TYPE).value_or(CKK_RSA);
  if (k.key_type == CKK_EC) {
    auto* p = key.find(CKA_EC_PARAMS);
    auto crv = p ? curve_of(*p) : std::nullopt;
    if (!crv) return err(Errc::function_failed, "the key's CKA_EC_PARAMS names no curve Key Vault has");
    k.crv = *crv;
  } else if (auto* n = key.find(CKA_MODULUS)) {
    k.modulus_bytes = n->size();
  }
  return k;
}

R<std::unique_ptr<Operation>> begin_vault_op(Backend& digester, OpKind kind, const Mechanism& m, VaultKey key) {
  if (kind == OpKind::sign) {
    CDC_ASSIGN(auto plan, sign_plan(m, key));
    std::unique_ptr<Operation> digest;
    if (plan.hash_here) {
      CDC_ASSIGN(digest, digester.begin_digest(Mechanism{find_mechanism(plan.hash->mech), {}}));
    }
    return std::unique_ptr<Operation>(std::make_unique<VaultSign>(std::move(key), std::move(plan), std::move(digest)));
  }
  if (kind == OpKind::decrypt) {
    CDC_ASSIGN(auto alg, decrypt_alg(m));
    return std::unique_ptr<Operation>(std::make_unique<VaultDecrypt>(std::move(key), std::move(alg)));
  }
  return err(Errc::general_error, "only sign and decrypt go to Key Vault");
}

R<SecureBytes> vault_unwrap(const Mechanism& m, const VaultKey& key, ByteView wrapped) {
  CDC_ASSIGN(auto alg, decrypt_alg(m));
  if (key.modulus_bytes && wrapped.size() != key.modulus_bytes)
    return err(Errc::wrapped_key_len_range, "the wrapped key must be " + std::to_string(key.modulus_bytes) + " bytes");
  auto r = key.conn->vault().unwrap_key(key.name, key.version, alg, wrapped);
  if (!r) {
    if (r.error().kind == azure::ErrorKind::bad_request)
      return err(Errc::wrapped_key_invalid, "Key Vault could not unwrap: " + r.error().describe());
    return fail(from_azure(r.error()));
  }
  return std::move(*r);
}

}  // namespace cdcp11::core::cloud
