#include "core/mirror/engine.h"

#include <chrono>
#include <cstring>
#include <ctime>
#include <thread>

#include "azure/byok_blob.h"
#include "cdcp11/cdcp11.h"
#include "common/log.h"
#include "core/cloud/jwk.h"
#include "core/mirror/byok.h"
#include "core/mirror/naming.h"
#include "core/mirror/rotation.h"

namespace cdcp11::core::mirror {

namespace {

constexpr const char* kLog = "mirror";
constexpr unsigned kMaxNameCandidates = 50;
// How long a mirror waits for another process working on the same key: its retries with
// backoff (30 s a request at worst) and the wait for a KEK's purge fit well within.
constexpr std::chrono::milliseconds kLockWait{300'000};

Unexpected<Error> remote(const azure::Error& e) {
  return err(Errc::function_failed, e.describe());
}

bool is(const azure::Error& e, azure::ErrorKind k) { return e.kind == k; }

// The name of the job's KEK; records written before kek_name existed only have its id.
std::string kek_name_of(const Job& job) {
  if (!job.kek_name.empty()) return job.kek_name;
  auto id = azure::parse_key_id(job.kek_kid);
  return id ? id->name : std::string();
}

}  // namespace

std::string public_hash_input(const azure::PublicKeyMaterial& m) {
  const std::string kty = m.n.empty() ? "EC" : "RSA";
  return kty + "|" + m.crv + "|" + to_hex(m.n) + "|" + to_hex(m.e) + "|" + to_hex(m.x) + "|" + to_hex(m.y);
}

std::string public_hash(Backend& backend, const azure::PublicKeyMaterial& m) {
  Mechanism sha{find_mechanism(CKM_SHA256), {}};
  auto op = backend.begin_digest(sha);
  if (!op) return {};
  (void)(*op)->update(view(public_hash_input(m)));
  auto d = (*op)->finish();
  return d ? to_hex(Bytes(d->begin(), d->end())) : std::string();
}

std::string check_value_mismatch(const AttrMap& key, const azure::Tags& tags) {
  auto want = tags.find("cdcp11-kcv");
  if (want == tags.end() || want->second.empty()) return {};
  const Bytes* kcv = key.find(CKA_CHECK_VALUE);
  if (!kcv || kcv->empty())
    return "the backend reports no CKA_CHECK_VALUE for the local key to compare with its cdcp11-kcv";
  if (to_hex(*kcv) != want->second) return "its check value (cdcp11-kcv) differs from the local key's";
  return {};
}

std::vector<std::string> azure_key_ops(const AttrMap& a) {
  const auto cls = a.ulong(CKA_CLASS).value_or(CKO_DATA);
  const auto kt = a.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  std::vector<std::string> ops;
  auto add = [&](CK_ATTRIBUTE_TYPE t, std::initializer_list<const char*> names) {
    if (a.bool_or(t, false))
      for (auto* n : names) ops.emplace_back(n);
  };
  if (cls == CKO_SECRET_KEY) {
    add(CKA_ENCRYPT, {"encrypt"});
    add(CKA_DECRYPT, {"decrypt"});
    add(CKA_WRAP, {"wrapKey"});
    add(CKA_UNWRAP, {"unwrapKey"});
    return ops;
  }
  add(CKA_SIGN, {"sign", "verify"});
  if (kt == CKK_RSA) {
    add(CKA_DECRYPT, {"decrypt", "encrypt"});
    add(CKA_UNWRAP, {"unwrapKey", "wrapKey"});
  }
  return ops;
}

Engine::Engine(std::string group, AzureConfig azure, std::shared_ptr<azure::Connection> conn,
               std::unique_ptr<Journal> journal, MirrorConfig policy)
    : group_(std::move(group)),
      azure_(std::move(azure)),
      conn_(std::move(conn)),
      journal_(std::move(journal)),
      policy_(policy) {}

R<bool> Engine::plain_export_of_non_extractable(const AttrMap& key) const {
  if (azure_.vault_type != VaultType::standard || key.ulong(CKA_CLASS) != CKO_PRIVATE_KEY ||
      key.bool_or(CKA_EXTRACTABLE, false))
    return false;
  if (policy_.allow_plain_export_of_non_extractable) return true;
  return err(Errc::key_unextractable,
             "the key is not extractable (CKA_EXTRACTABLE false) and vault '" + azure_.vault_name +
                 "' is a Standard vault, which takes keys only as a plain JWK export; the group's "
                 "mirror.allow_plain_export_of_non_extractable is off. Mirror into a Premium vault or Managed HSM "
                 "(BYOK keeps the key non-exportable), or turn that setting on (the key's CKA_NEVER_EXTRACTABLE "
                 "then becomes false)");
}

R<void> Engine::check_target(const AzureConfig& a, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, std::size_t rsa_bits) {
  const std::string vault = "'" + a.vault_name + "' (" + vault_type_name(a.vault_type) + ")";
  if (a.vault_name.empty())
    return err(Errc::function_failed, "no vault is chosen for this group (cdcctl group edit --vault)");
  if (cls == CKO_SECRET_KEY) {
    if (kt != CKK_AES)
      return err(Errc::key_type_inconsistent, "Key Vault holds no generic secret or HMAC keys; only AES keys "
                                               "can be mirrored, into a Managed HSM");
    if (a.vault_type != VaultType::managed_hsm)
      return err(Errc::key_type_inconsistent,
                 "AES keys can only be mirrored into a Managed HSM; vault " + vault + " holds RSA and EC keys only");
    return {};
  }
  if (cls != CKO_PRIVATE_KEY) return err(Errc::key_type_inconsistent, "only private and secret keys are mirrored");
  if (kt == CKK_EC_EDWARDS)
    return err(Errc::key_type_inconsistent, "Azure Key Vault has no Ed25519 keys; this key cannot be mirrored");
  if (kt == CKK_RSA && rsa_bits && rsa_bits != 2048 && rsa_bits != 3072 && rsa_bits != 4096)
    return err(Errc::key_size_range, "Key Vault imports RSA keys of 2048, 3072 or 4096 bits; this key has " +
                                         std::to_string(rsa_bits));
  if (kt != CKK_RSA && kt != CKK_EC) return err(Errc::key_type_inconsistent, "this key type cannot be mirrored");
  return {};
}

R<azure::KeyBundle> Engine::obtain_kek(azure::KeyVaultClient& kv, Job& job, const std::string& uid) {
  if (const std::string name = kek_name_of(job); !name.empty()) {
    auto got = kv.get_key(name);
    if (got) {
      auto tag = got->tags.find("cdcp11-kek-for");
      if (tag != got->tags.end() && tag->second == uid) {
        if (job.kek_kid != got->key.kid) {  // the create's answer was lost, not the KEK
          job.kek_kid = got->key.kid;
          job.step = Step::kek_created;
          CDC_TRY(journal_->put(job));
        }
        return std::move(*got);
      }
    } else if (!is(got.error(), azure::ErrorKind::not_found)) {
      // It may well exist: making another now would leave one behind.
      return remote(got.error());
    }
    // Gone (deleted; or its create never happened): a new one, under a new name, since a deleted
    // KEK may hold the old name while it waits to be purged.
  }
  azure::CreateKeyOptions ko;
  ko.kty = "RSA-HSM";
  ko.key_size = kek_bits_;
  ko.key_ops = {"import"};
  ko.tags = {{"cdcp11-kek-for", uid}};
  job.kek_name = "cdcp11-kek-" + uid.substr(0, 16) + "-" + std::to_string(job.attempts);
  job.kek_kid.clear();
  CDC_TRY(journal_->put(job));
  auto made = kv.create_key(job.kek_name, ko);
  if (!made) return remote(made.error());
  job.kek_kid = made->key.kid;
  job.step = Step::kek_created;
  CDC_TRY(journal_->put(job));
  return std::move(*made);
}

R<void> Engine::recover_own_key(azure::KeyVaultClient& kv, Job& job, const azure::Error& conflict,
                                const azure::PublicKeyMaterial& expected, bool is_secret) {
  const std::string name = "'" + job.azure_name + "'";
  const std::string vault = "vault '" + azure_.vault_name + "'";
  const std::string rename = "name this key otherwise with CKA_CDC_AZURE_KEY_NAME";
  if (conflict.inner_code != "ObjectIsDeletedButRecoverable")
    return err(Errc::function_failed, "the name " + name + " is being deleted or recovered in " + vault +
                                          "; try again shortly (" + conflict.describe() + ")");
  if (!policy_.recover_soft_deleted)
    return err(Errc::function_failed, "the name " + name + " is held by a soft-deleted key in " + vault +
                                          ": purge or recover it, or " + rename +
                                          " (with the group's mirror.recover_soft_deleted, a soft-deleted copy of "
                                          "this same key is recovered)");
  auto deleted = kv.get_deleted_key(job.azure_name);
  if (!deleted)
    return err(Errc::function_failed, "the name " + name + " is held by a soft-deleted key in " + vault +
                                          " that could not be read to compare it with this key: " +
                                          deleted.error().describe());
  // Recovering is only right when it brings back this very key: anything else would make a
  // different key this key's mirror, and importing over it would mix two keys under one name.
  if (is_secret)
    return err(Errc::function_failed, "the name " + name + " is held by a soft-deleted key in " + vault +
                                          "; Key Vault never shows an AES key's material, so it cannot be proven "
                                          "to be this key and was not recovered: purge it, or " + rename);
  if (!azure::public_material_matches(deleted->key, expected))
    return err(Errc::function_failed, "the soft-deleted key holding the name " + name + " in " + vault +
                                          " is a different key (its public key is not this token key's): it was "
                                          "not recovered; purge it, or " + rename);
  if (auto rec = kv.recover_deleted_key(job.azure_name); !rec) return remote(rec.error());
  // Recovered, the deleted version is the mirror again: nothing is imported.
  job.key_kid = deleted->key.kid;
  job.step = Step::imported;
  CDC_TRY(journal_->put(job));
  log::info(kLog, "group '" + group_ + "': the soft-deleted copy " + job.key_kid + " of key " + job.object_uid +
                      " is recovered");
  // Recovery completes asynchronously (reference §4); the mirror is usable once the key is back.
  for (int i = 0; i < 60; ++i) {
    auto got = kv.get_key(job.azure_name);
    if (got) return {};
    if (!is(got.error(), azure::ErrorKind::not_found)) return remote(got.error());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return err(Errc::function_failed, "the soft-deleted key " + name + " was recovered but is not back yet");
}

R<void> Engine::clean_up_kek(azure::KeyVaultClient& kv, const std::string& name, std::string& note) {
  auto del = kv.delete_key(name);
  std::string level;
  bool soft_deleted = false;
  if (del) {
    level = del->attributes.recovery_level;
    soft_deleted = !del->recovery_id.empty();
  } else if (is(del.error(), azure::ErrorKind::not_found)) {
    // Deleted by an earlier attempt; it may still wait in the deleted-keys list to be purged.
    auto gone = kv.get_deleted_key(name);
    if (gone) {
      level = gone->attributes.recovery_level;
      soft_deleted = true;
    } else if (!is(gone.error(), azure::ErrorKind::not_found) && !is(gone.error(), azure::ErrorKind::bad_request)) {
      // (400: the vault has no soft delete, so nothing waits to be purged.)
      return err(Errc::function_failed, "was deleted but could not be checked for a purge: " + gone.error().describe());
    }
  } else {
    return err(Errc::function_failed, "could not be deleted: " + del.error().describe());
  }
  const bool recoverable = level.find("Recoverable") != std::string::npos;
  const bool purgeable = level.find("Purgeable") != std::string::npos;
  if (!soft_deleted || !recoverable) return {};
  if (!purgeable) {
    note = "the KEK is soft-deleted and left there: purge protection is on in vault '" + azure_.vault_name +
           "', so Key Vault purges it when the retention period ends";
    return {};
  }
  // Deletion completes asynchronously; purge needs it finished (reference §4).
  for (int i = 0; i < 60; ++i) {
    auto g = kv.get_deleted_key(name);
    if (!g) {
      if (!is(g.error(), azure::ErrorKind::not_found))
        return err(Errc::function_failed, "was deleted and not purged: " + g.error().describe());
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      continue;
    }
    auto p = kv.purge_deleted_key(name);
    if (p || is(p.error(), azure::ErrorKind::not_found)) return {};
    if (is(p.error(), azure::ErrorKind::forbidden) || is(p.error(), azure::ErrorKind::purge_protected)) {
      // Not ours to purge (no purge permission): retrying would not change that, and Key Vault
      // purges it when the retention period ends.
      note = "the KEK was deleted but may not be purged: " + p.error().describe();
      return {};
    }
    return err(Errc::function_failed, "was deleted and not purged: " + p.error().describe());
  }
  return err(Errc::function_failed, "was deleted and its deletion did not complete in time to purge it");
}

void Engine::abandon(const std::string& uid) {
  auto held = journal_->lock(uid, kLockWait);
  if (!held) {
    log::warn(kLog, "group '" + group_ + "': the mirror job of destroyed key " + uid + " is left: " +
                        held.error().message);
    return;
  }
  auto found = journal_->get(uid);
  if (!found || !*found) return;
  const Job& job = **found;
  if (const std::string kek = kek_name_of(job); job.step != Step::done && !kek.empty()) {
    auto kv = conn_->vault();
    std::string note;
    if (auto cleaned = clean_up_kek(kv, kek, note); !cleaned)
      log::warn(kLog, "group '" + group_ + "': key " + uid + " was destroyed mid-mirror and its KEK " + kek + " " +
                          cleaned.error().message + "; delete it in vault '" + azure_.vault_name + "' by hand");
    else if (!note.empty())
      log::info(kLog, "group '" + group_ + "': " + note);
  }
  if (auto r = journal_->remove(uid); !r)
    log::warn(kLog, "group '" + group_ + "': the mirror job of destroyed key " + uid + " could not be removed: " +
                        r.error().message);
}

R<Job> Engine::job_for(const StoredObject& key, bool& existed) {
  CDC_ASSIGN(auto found, journal_->get(key.uid));
  existed = found.has_value();
  if (found) return std::move(*found);
  const AttrMap& a = key.attrs;
  Job job;
  job.object_uid = key.uid;
  const std::string label = a.string_or(CKA_LABEL, "");
  const std::string id_hex = a.find(CKA_ID) ? to_hex(*a.find(CKA_ID)) : "";
  const std::string wanted = a.string_or(CKA_CDC_AZURE_KEY_NAME, "");
  if (!wanted.empty() && !valid_key_name(wanted))
    return err(Errc::attribute_value_invalid, "CKA_CDC_AZURE_KEY_NAME '" + wanted +
                                                   "' is not a valid Key Vault key name (letters, digits, '-', 1-127)");
  job.azure_name = wanted.empty()
                       ? key_name_from_label(label, "key-" + (id_hex.empty() ? key.uid.substr(0, 12) : id_hex))
                       : wanted;
  job.step = Step::pending;
  return job;
}

R<void> Engine::enqueue(const StoredObject& key) {
  CDC_ASSIGN(auto held, journal_->lock(key.uid, kLockWait));
  bool existed = false;
  CDC_ASSIGN(Job job, job_for(key, existed));
  if (existed && job.step != Step::failed) return {};
  return journal_->put(job);
}

R<Outcome> Engine::mirror(Backend& backend, const StoredObject& key) {
  const AttrMap& a = key.attrs;
  const auto cls = a.ulong(CKA_CLASS).value_or(CKO_DATA);
  const auto kt = a.ulong(CKA_KEY_TYPE).value_or(CK_UNAVAILABLE_INFORMATION);
  std::size_t rsa_bits = 0;
  if (auto* n = a.find(CKA_MODULUS)) {
    std::size_t i = 0;
    while (i < n->size() && (*n)[i] == 0) ++i;
    rsa_bits = (n->size() - i) * 8;
  }
  CDC_TRY(check_target(azure_, cls, kt, rsa_bits));
  CDC_TRY(check_exportable(backend, group_, key, azure_.vault_type == VaultType::standard,
                           policy_.allow_plain_export_from_hsm));
  // Before anything goes to Azure; the caller records a plain export on the key first.
  CDC_ASSIGN(const bool plain, plain_export_of_non_extractable(a));
  if (plain && a.bool_or(CKA_NEVER_EXTRACTABLE, true))
    return err(Errc::function_failed, "the key's CKA_NEVER_EXTRACTABLE must be made false before its plain export");
  const bool is_secret = cls == CKO_SECRET_KEY;
  const bool standard = azure_.vault_type == VaultType::standard;
  azure::PublicKeyMaterial expected;
  if (!is_secret) {
    CDC_ASSIGN(expected, cloud::public_jwk_of(backend, key));
  }
  const std::string pub_hash = is_secret ? std::string() : public_hash(backend, expected);

  // From here to the end this process owns the job; one that waited for it re-reads the job
  // and finds done whatever the other did.
  CDC_ASSIGN(auto held, journal_->lock(key.uid, kLockWait));
  bool existing = false;
  CDC_ASSIGN(Job job, job_for(key, existing));
  if (job.step == Step::done) return Outcome{job.key_kid, "already mirrored"};
  ++job.attempts;
  job.error.clear();
  CDC_TRY(journal_->put(job));

  auto kv = conn_->vault();
  auto fail_job = [&](Error e) -> R<Outcome> {
    job.error = e.message;
    if (job.step != Step::imported) job.step = Step::failed;
    (void)journal_->put(job);
    log::warn(kLog, "group '" + group_ + "': mirroring key " + key.uid + " as '" + job.azure_name +
                        "' failed: " + e.message);
    return fail(std::move(e));
  };

  azure::Tags tags{{"cdcp11-uid", key.uid}, {"cdcp11-group", group_}};
  if (auto* id = a.find(CKA_ID); id && !id->empty()) tags["cdcp11-id"] = to_hex(*id);
  if (auto label = a.string_or(CKA_LABEL, ""); !label.empty()) tags["cdcp11-label"] = label.substr(0, 256);
  if (!pub_hash.empty()) tags["cdcp11-pub-sha256"] = pub_hash;
  if (auto hsm = backend.shared_identity(); !hsm.empty()) tags["cdcp11-hsm"] = hsm.substr(0, 256);
  // A secret key's PKCS#11 check value (CKA_CHECK_VALUE, public) lets another host sharing the
  // backend tell it is the same key before linking it (core/cloud/sync.h).
  if (auto* kcv = a.find(CKA_CHECK_VALUE); is_secret && kcv && !kcv->empty()) tags["cdcp11-kcv"] = to_hex(*kcv);

  // A vault key tagged with this key's uid is an earlier attempt's import only when it is this key:
  // the same public key, or for a secret key the same check value.
  auto is_copy = [&](const azure::KeyBundle& got, const std::string& name) {
    auto uid = got.tags.find("cdcp11-uid");
    if (uid == got.tags.end() || uid->second != key.uid) return false;
    if (!is_secret) return azure::public_material_matches(got.key, expected);
    const std::string why = check_value_mismatch(a, got.tags);
    if (!why.empty())
      log::warn(kLog, "group '" + group_ + "': vault key '" + name + "' is tagged as a copy of key " + key.uid +
                          " but " + why + "; not taken as its mirror");
    return why.empty();
  };

  // 1. Not imported yet: settle the name. A key already holding it that is ours (a previous
  //    attempt that imported before the process died) ends the search without a second import.
  if (job.step != Step::imported && !job.new_version_of.empty()) {
    // A rotation's new key: the name is the rotated key's. Its latest version tagged with this
    // key's uid means an earlier attempt imported it already (its answer lost, or the process
    // killed): taken as imported, never imported twice.
    auto got = kv.get_key(job.azure_name);
    if (!got) {
      if (is(got.error(), azure::ErrorKind::not_found))
        return fail_job(Error{Errc::function_failed, "the vault key '" + job.azure_name +
                                                         "' this key is to be the next version of is gone from vault '" +
                                                         azure_.vault_name + "'"});
      return fail_job(remote(got.error()).error);
    }
    if (is_copy(*got, job.azure_name)) {
      job.key_kid = got->key.kid;
      job.step = Step::imported;
    }
    CDC_TRY(journal_->put(job));
  } else if (job.step != Step::imported) {
    const std::string base = job.azure_name;
    bool settled = false;
    for (unsigned n = 1; n <= kMaxNameCandidates && !settled; ++n) {
      const std::string cand = candidate_name(base, n);
      auto got = kv.get_key(cand);
      if (!got) {
        if (!is(got.error(), azure::ErrorKind::not_found)) return fail_job(remote(got.error()).error);
        job.azure_name = cand;
        settled = true;
        break;
      }
      if (is_copy(*got, cand)) {
        job.azure_name = cand;
        job.key_kid = got->key.kid;
        job.step = Step::imported;
        settled = true;
      }
    }
    if (!settled) return fail_job(Error{Errc::function_failed, "no free key name found for '" + base + "'"});
    CDC_TRY(journal_->put(job));
  }

  // 2. Import.
  if (job.step != Step::imported) {
    azure::ImportKeyOptions o;
    o.key_ops = azure_key_ops(a);
    o.attributes.enabled = true;
    o.attributes.nbf = date_value(a, CKA_START_DATE);
    o.attributes.exp = date_value(a, CKA_END_DATE);
    o.tags = tags;
    o.expected_public = expected;
    if (standard) {
      // Standard vaults take no BYOK: a plain (software) JWK import over TLS.
      if (const Capabilities caps = backend.capabilities(); !caps.plain_export)
        log::warn(kLog, "group '" + group_ + "': key " + key.uid + " (label '" + a.string_or(CKA_LABEL, "") +
                            "') leaves " + caps.holder + " in clear for a plain JWK import into Standard vault '" +
                            azure_.vault_name + "', as the group's mirror.allow_plain_export_from_hsm allows");
      CDC_ASSIGN(auto material, backend.export_plain(key));
      CDC_ASSIGN(auto j, cloud::jwk_private(a, material));
      o.jwk = std::move(j);
    } else {
      auto kek = obtain_kek(kv, job, key.uid);
      if (!kek) return fail_job(kek.error());
      auto ciphertext = wrap_for_byok(backend, group_, key, kek->key.n, kek->key.e);
      if (!ciphertext) return fail_job(ciphertext.error());
      auto blob = azure::build_byok_blob(job.kek_kid, *ciphertext);
      if (!blob) return fail_job(remote(blob.error()).error);
      o.byok_blob = std::move(*blob);
      o.byok_kty = is_secret ? "oct-HSM" : kt == CKK_RSA ? "RSA-HSM" : "EC-HSM";
      o.byok_crv = expected.crv;
    }
    auto imported = kv.import_key(job.azure_name, o);
    if (!imported && is(imported.error(), azure::ErrorKind::conflict)) {
      if (auto back = recover_own_key(kv, job, imported.error(), expected, is_secret); !back)
        return fail_job(back.error());
    } else {
      if (!imported) return fail_job(remote(imported.error()).error);
      if (!is_secret && !azure::public_material_matches(imported->key, expected))
        return fail_job(Error{Errc::function_failed, "the public key Key Vault returned for '" + job.azure_name +
                                                         "' differs from the token's; the mirror is not trusted"});
      job.key_kid = imported->key.kid;
      job.step = Step::imported;
      CDC_TRY(journal_->put(job));
    }
  }

  // 3. Clean up the KEK. Until that is done the job stays open (step imported), so the next
  //    attempt or login finishes it; the key itself is mirrored and usable already.
  Outcome out{job.key_kid, {}};
  if (const std::string kek_name = kek_name_of(job); !kek_name.empty()) {
    if (auto cleaned = clean_up_kek(kv, kek_name, out.note); !cleaned) {
      job.error = "the key is mirrored but its KEK " + kek_name + " " + cleaned.error().message +
                  "; the cleanup is retried at the next login or mirror request";
      CDC_TRY(journal_->put(job));
      out.note = job.error;
      out.cleanup_pending = true;
      log::warn(kLog, "group '" + group_ + "': " + job.error);
      return out;
    }
    if (!out.note.empty()) log::info(kLog, "group '" + group_ + "': " + out.note);
  }
  job.step = Step::done;
  job.error.clear();
  CDC_TRY(journal_->put(job));
  log::info(kLog, "group '" + group_ + "': key " + key.uid + " mirrored as " + job.key_kid);
  return out;
}

}  // namespace cdcp11::core::mirror
