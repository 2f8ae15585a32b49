// The mirror engine of one CDC group: puts a key of the local token into the group's Key Vault
// through Azure BYOK (reference §1) — or a plain JWK import for Standard vaults — as a journaled
// state machine, so a process killed at any step resumes without importing twice.
//
//   pending -> KEK created (RSA-HSM, key_ops [import]) -> key wrapped in the backend
//   (CKM_RSA_AES_KEY_WRAP, core/mirror/byok.h) and imported with key_hsm -> public key compared -> KEK deleted and,
//   where soft delete is on and purge allowed, purged -> done
#pragma once

#include <memory>
#include <string>

#include "azure/connection.h"
#include "core/config.h"
#include "core/mirror/journal.h"
#include "core/backend.h"

namespace cdcp11::core::mirror {

// The Key Vault key_ops a mirrored key gets, from its PKCS#11 usage attributes (CKA_SIGN,
// CKA_DECRYPT, CKA_UNWRAP, ...). The vault holds the private key and serves the public operations.
std::vector<std::string> azure_key_ops(const AttrMap& key);

// How many keys one process mirrors at once (cdcctl key mirror --all, async mode's worker). A
// mirror mostly waits for the vault (the KEK's creation, the deletion before the purge), so with
// one at a time a vault's HSM CREATE limit (10 per 10 s, one KEK per key) is far from used; more
// than the window holds would only queue in the rate limiter.
inline constexpr unsigned kParallelMirrors = 8;
// The public-key hash tagged on a mirrored key's vault key (cdcp11-pub-sha256): it names the key to
// people and tools on every host, so the input must not depend on the host, its module's encoding
// or this build: it is the key's public JWK
// (cloud::jwk_public of Backend::public_key's attributes), written as
//   "RSA||<n>|<e>||"  or  "EC|<crv>|||<x>|<y>"
// with crv the JWK curve name (P-256, P-384, P-521, P-256K), n and e big-endian without leading
// zero bytes, x and y big-endian at the curve's field size, each in lower-case hex. Changing this
// changes the tag of every key mirrored after.
std::string public_hash_input(const azure::PublicKeyMaterial& m);
// The hex SHA-256 of public_hash_input, digested by the backend; empty when it cannot digest.
std::string public_hash(Backend& backend, const azure::PublicKeyMaterial& m);

// Whether the vault key tagged `tags` can be the copy of the secret key `key` by its check value
// (tag cdcp11-kcv = CKA_CHECK_VALUE, written by the mirror; a secret key has no public key to
// compare): empty when it can — the tags match, or the vault key has no such tag (mirrored
// before it existed); otherwise why not, as a clause ("its check value ... differs ...").
std::string check_value_mismatch(const AttrMap& key, const azure::Tags& tags);

struct Outcome {
  std::string key_kid;   // versioned Azure key id
  std::string note;      // e.g. why the KEK was left soft-deleted
  // The key is mirrored, but its KEK is not cleaned up yet (note says why); the job stays open
  // and the next attempt or login finishes the cleanup.
  bool cleanup_pending = false;
};

class Engine {
 public:
  Engine(std::string group, AzureConfig azure, std::shared_ptr<azure::Connection> conn,
         std::unique_ptr<Journal> journal, MirrorConfig policy);

  // Whether the group's vault can hold a key of this class, type and size, with a precise error
  // (key_type_inconsistent, key_size_range) when it cannot. rsa_bits is 0 when unknown.
  static R<void> check_target(const AzureConfig& azure, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, std::size_t rsa_bits);

  // The export policy for a key that is not extractable. BYOK (Premium vault, Managed HSM) wraps
  // it inside the token to an HSM key and the vault keeps it non-exportable: always allowed. A
  // Standard vault takes it only as a plain JWK, which the group must allow
  // (mirror.allow_plain_export_of_non_extractable); otherwise key_unextractable, with a sentence
  // naming the setting and the alternatives. True when the mirror will be such a plain export:
  // the key's CKA_NEVER_EXTRACTABLE must then be made false before anything is sent.
  R<bool> plain_export_of_non_extractable(const AttrMap& key) const;

  // Mirrors the key (a private or secret key object) or resumes its journaled job. The journal
  // holds the outcome either way; the error is a sentence for people.
  R<Outcome> mirror(Backend& backend, const StoredObject& key);

  // Writes the key's job (pending) to the journal, for a mirror that runs later (async mode): a
  // process that exits before the worker gets to it leaves a job the next login resumes.
  R<void> enqueue(const StoredObject& key);

  // The local key is gone: its job ends. A KEK an unfinished job made is deleted (and purged as
  // the vault allows); what cannot be cleaned up is logged by name. Makes remote calls only when
  // such a KEK exists.
  void abandon(const std::string& object_uid);

  Journal& journal() { return *journal_; }
  const AzureConfig& azure_config() const { return azure_; }
  std::shared_ptr<azure::Connection> connection() { return conn_; }

  // Kept small in tests; Azure's own BYOK guide uses 4096.
  void set_kek_bits(int bits) { kek_bits_ = bits; }

 private:
  // The key's journaled job, or a new pending one (not yet written) with its Azure name chosen.
  R<Job> job_for(const StoredObject& key, bool& existed);
  // The job's KEK: the one it recorded, while that exists, or a new one. Journals as it goes;
  // the KEK's name is written before its create request is sent.
  R<azure::KeyBundle> obtain_kek(azure::KeyVaultClient& kv, Job& job, const std::string& uid);
  // The import found the name held by a key that is not live (a 409): soft-deleted, or being
  // deleted or recovered. With recover_soft_deleted, a soft-deleted copy of this very key (same
  // public key) is recovered and becomes the mirror (job imported); otherwise an error that
  // says what holds the name.
  R<void> recover_own_key(azure::KeyVaultClient& kv, Job& job, const azure::Error& conflict,
                          const azure::PublicKeyMaterial& expected, bool is_secret);
  // Deletes the KEK and purges it where soft delete is on and purge allowed. The error says what
  // is left to do (a phrase following "its KEK <name>"); note gets what needs no action.
  R<void> clean_up_kek(azure::KeyVaultClient& kv, const std::string& name, std::string& note);

  std::string group_;
  AzureConfig azure_;
  std::shared_ptr<azure::Connection> conn_;
  std::unique_ptr<Journal> journal_;
  MirrorConfig policy_;
  int kek_bits_ = 4096;
};

}  // namespace cdcp11::core::mirror
