// The durable mirror journal of one token: a job per key, written before any remote step and
// updated after each, so a process killed anywhere resumes the job where it stood. Kept in its
// own durable store beside the token (<token dir>.mirror), shared by every process.
// Thread-safe: application threads (enqueue, abandon) and the mirror worker share one Journal.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/errors.h"
#include "softtoken/store/unique_fd.h"

namespace cdcp11::store {
class ObjectStore;
}

namespace cdcp11::core::mirror {

enum class Step {
  pending,      // written; nothing done remotely yet
  kek_created,  // the KEK exists in the vault (kek_kid set)
  imported,     // the key is in the vault (key_kid set); KEK still to clean up
  done,         // mirrored and cleaned up
  failed,       // gave up for now; error says why; a retry starts over from what is recorded
};
const char* step_name(Step s);

// A rotation in progress, kept on the job of the key it replaces (core/mirror/rotation.h).
enum class RotationStep {
  none,     // no rotation under way
  planned,  // the key's label, id and version are recorded; the new key may not exist yet
  made,     // the new key exists (new_uid), under the temporary label
  mirrored, // the new key is the Azure key's next version; the labels are still to switch
};
const char* rotation_step_name(RotationStep s);

struct Rotation {
  RotationStep step = RotationStep::none;
  std::string label;    // CKA_LABEL of the key before the rotation
  std::string id_hex;   // its CKA_ID
  unsigned long version = 1;  // its version number
  std::string new_uid;  // the new key's CKA_UNIQUE_ID, once made
  std::string error;    // why the last attempt failed
  // Being abandoned (cdcctl key rotate --abandon): it is never resumed, only abandoned to the end.
  bool abandoning = false;
};

struct Job {
  std::string object_uid;   // CKA_UNIQUE_ID of the local key
  std::string azure_name;   // the key name in the vault
  Step step = Step::pending;
  std::string kek_kid;      // versioned id of the ephemeral KEK, once created
  // Name of the job's KEK, journaled before the create request goes out: a create whose answer
  // is lost is then found by name instead of being left behind in the vault.
  std::string kek_name;
  std::string key_kid;      // versioned id of the imported key, once imported
  std::string error;        // last failure, for people
  // A rotation's new key: its import is the next version of azure_name, whose current version is
  // the key with this uid (core/mirror/rotation.h). Empty for a first mirror.
  std::string new_version_of;
  // On the job of a key being rotated: the rotation's progress, journaled before each step.
  Rotation rotation;
  unsigned attempts = 0;
  std::int64_t updated = 0;  // unix seconds
};

std::string encode_job(const Job& j);
R<Job> decode_job(const std::string& json);

class Journal {
 public:
  // Exclusive hold on one key's job across processes (an flock of <dir>/locks/<uid>), released
  // when destroyed. Each process serialises its own mirrors, but two processes logging in at
  // once would both resume the same job: whoever works on a job remotely holds this.
  class JobLock {
   public:
    JobLock(JobLock&&) = default;
    JobLock& operator=(JobLock&&) = default;

   private:
    friend class Journal;
    explicit JobLock(store::UniqueFd fd) : fd_(std::move(fd)) {}
    store::UniqueFd fd_;  // closing it releases the flock
  };

  static R<std::unique_ptr<Journal>> open(const std::string& dir);
  ~Journal();

  // Waits up to `wait` for the job's lock; after that, an error saying another process holds it.
  R<JobLock> lock(const std::string& object_uid, std::chrono::milliseconds wait);

  R<void> put(const Job& j);
  R<std::optional<Job>> get(const std::string& object_uid);
  R<void> remove(const std::string& object_uid);
  // Every job not done (pending, part-way or failed). A record that cannot be read as a job is
  // logged (once per record) and skipped, so one bad record does not hold up the others.
  R<std::vector<Job>> unfinished();

  // Vault keys the last vault sync skipped (core/cloud/sync.h), by lower-case name, each with the
  // stamp of what it saw (version times, tags): the next sync reads such a key again only once its
  // stamp changed. Kept as the store's meta blob, beside the jobs; unreadable, it is empty.
  using SyncSkips = std::map<std::string, std::string>;
  R<SyncSkips> sync_skips();
  R<void> set_sync_skips(const SyncSkips& skips);

 private:
  Journal(std::unique_ptr<store::ObjectStore> s, std::string locks_dir);
  R<std::optional<Job>> get_locked(const std::string& object_uid);

  // The store is not thread-safe (its flock depth and refresh state are per instance): every
  // use of it, and known_, is under mu_.
  std::mutex mu_;
  std::unique_ptr<store::ObjectStore> store_;
  std::string locks_dir_;
  std::set<std::string> known_;         // uids seen through refresh()
  std::set<std::string> reported_bad_;  // undecodable records already logged
};

}  // namespace cdcp11::core::mirror
