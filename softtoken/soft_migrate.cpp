// SoftToken: moving the vendor attributes out of the records of an earlier format.
//
// Records of store format 1 may hold their objects' vendor attributes (CKA_CDC_*), which core
// now keeps in the token's metadata store (core/token/vendor_state.h). At the first refresh
// with the token key known (a login: a private record's attributes are sealed, and only a
// logged-in token writes records), under the store's lock:
//   1. every record's vendor attributes (those other than core's defaults) are copied into the
//      metadata store, under its lock, for each object that has no entry there yet (an entry is
//      newer: the store wins), authenticated (a private object's sealed) as core writes them
//      (core::seal_entry under the record keys), and the store is synced (written to a temp
//      file, fsynced, renamed);
//   2. only then is each record rewritten without them;
//   3. the store's format becomes 2, which ends it: an older build refuses the token from then on.
// A crash at any point leaves the state either in the records or in the store (which wins), and
// the next login does what is left; with nothing left it only sets the format.
#include <unistd.h>

#include <cstdlib>
#include <ctime>

#include "common/log.h"
#include "core/token/metadata_store.h"
#include "core/token/vendor_state.h"
#include "softtoken/soft_token.h"

namespace cdcp11::softtoken {

using core::Errc;
using core::err;

namespace {

constexpr const char* kLog = "softtoken";
constexpr int kVendorInStoreFormat = 2;

// Tests only: the process exits at this step (1: the metadata store written; 2: the first record
// rewritten; 3: every record rewritten; 4: the format set), as a SIGKILL there would leave it.
void crash_point(int step) {
  const char* at = std::getenv("CDCP11_TEST_VENDOR_MOVE_EXIT_AT");
  if (at && std::atoi(at) == step) ::_exit(86);
}

}  // namespace

core::R<void> SoftToken::move_vendor_state() {
  struct Move {
    std::string uid;
    core::AttrMap rest;
    core::MetaEntry entry;  // the vendor attributes, as the store keeps them
    Secrets secrets;
  };
  VendorKeysSeal seal(crypto_, keys_, keys_token_id_);
  std::optional<core::Error> failure;
  std::size_t moved = 0;
  auto r = store_->locked([&]() -> store::R<void> {
    auto format = store_->read_format();
    if (!format) return fail(format.error());
    if (*format >= kVendorInStoreFormat) return {};
    // The records as they are now, under the lock.
    std::vector<Move> moves;
    for (auto& [uid, tr] : token_objs_) {
      if (tr.trust != Trust::verified) continue;  // refused records are not served: nothing to keep
      auto raw = store_->get(uid);
      if (!raw) {
        if (raw.error().code == store::Error::Code::not_found) continue;
        return fail(raw.error());
      }
      auto rec = parse_record(std::move(*raw));
      if (!rec || rec->pending || rec->token_id != keys_token_id_ || !verify_record(crypto_, keys_, uid, *rec))
        continue;
      auto opened = open_record(crypto_, keys_, uid, *rec);
      if (!opened) continue;
      Move m{uid, {}, {}, std::move(opened->secrets)};
      const core::AttrMap vendor = core::split_vendor(rec->is_private ? opened->attrs : rec->attrs, m.rest);
      if (vendor.empty()) continue;
      // Core's defaults (which every key of an earlier build recorded) need no entry.
      const core::AttrMap own = core::non_default_vendor(m.rest.ulong(CKA_CLASS).value_or(CKO_DATA), vendor);
      if (!own.empty()) {
        auto e = core::seal_entry(&seal, uid, rec->is_private, own);
        if (!e) {
          failure = e.error();
          return {};
        }
        m.entry = std::move(*e);
      }
      moves.push_back(std::move(m));
    }
    if (!moves.empty()) {
      auto ms = core::MetadataStore::open(cfg_.dir);
      if (!ms) {
        failure = ms.error();
        return {};
      }
      auto u = (*ms)->update([&](core::MetaChange& c) -> core::R<void> {
        for (auto& m : moves) {
          if ((m.entry.vendor.empty() && m.entry.sealed.empty()) || c.before().objects.count(m.uid)) continue;
          core::MetaEntry e = m.entry;
          e.created = static_cast<std::int64_t>(std::time(nullptr));
          c.put(m.uid, std::move(e));
        }
        return {};
      });
      if (!u) {
        failure = u.error();
        return {};
      }
      crash_point(1);
      for (auto& m : moves) {
        auto rec = seal_record(crypto_, keys_, m.uid, keys_token_id_, m.rest, m.secrets);
        if (!rec) {
          failure = rec.error();
          return {};
        }
        if (auto p = store_->put(m.uid, rec->raw); !p) return p;
        key_cache_.erase(m.uid);
        token_objs_[m.uid] = TokenRecord{std::move(*rec), Trust::verified, true};
        dirty_.insert(m.uid);
        settled_.store(false, std::memory_order_release);
        ++moved;
        crash_point(2);
      }
    }
    crash_point(3);
    if (auto s = store_->set_format(kVendorInStoreFormat); !s) return s;
    crash_point(4);
    return {};
  });
  if (!r) failure = from_store(r.error());
  if (failure)
    return err(failure->code, "the vendor attributes cannot be moved into the metadata store now (" +
                                  failure->message + "): the records keep them and the next login tries again");
  log::info(kLog, "token '" + cfg_.dir + "': store format " + std::to_string(kVendorInStoreFormat) + ": " +
                      std::to_string(moved) + " object record(s) had vendor attributes, now in the metadata store of " + cfg_.dir);
  return {};
}

}  // namespace cdcp11::softtoken
