#include "tools/cdcctl/group_sync.h"

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <unistd.h>

#include <iostream>
#include <memory>

#include "core/cloud/sync.h"
#include "tools/cdcctl/group_session.h"
#include "tools/cdcctl/output.h"

namespace cdcp11::cdcctl {

namespace {

struct SyncOptions {
  std::string group, pin_env;
};

// A one-line bar on stderr, redrawn in place; only when stderr is a terminal.
class ProgressBar {
 public:
  explicit ProgressBar(bool on) : on_(on) {}
  ~ProgressBar() {
    if (drawn_) std::cerr << '\n';
  }
  void operator()(std::size_t done, std::size_t total) {
    if (!on_ || total == 0) return;
    constexpr std::size_t kWidth = 30;
    const std::size_t filled = done * kWidth / total;
    std::cerr << "\rSyncing keys [" << std::string(filled, '#') << std::string(kWidth - filled, '.') << "] " << done
              << '/' << total << std::flush;
    drawn_ = true;
  }

 private:
  bool on_;
  bool drawn_ = false;
};

}  // namespace

void add_group_sync_command(CLI::App* group, GlobalOptions& global, int& exit_code) {
  auto o = std::make_shared<SyncOptions>();
  auto* sync = group->add_subcommand(
      "sync", "Bring the group's vault into its token: link mirrored keys, add keys made in Azure as "
              "Azure-resident keys (their private key operations go to Key Vault), drop those deleted there");
  sync->add_option("GROUP", o->group, "Group name")->required();
  sync->add_option("--pin-env", o->pin_env, "Read the user PIN from this environment variable (default: ask)");
  sync->callback([&, o] {
    auto g = GroupSession::open(global.config, o->group, o->pin_env);
    if (!g) {
      exit_code = error_out(global, g.error());
      return;
    }
    core::R<core::cloud::SyncReport> rep = core::cloud::SyncReport{};
    {
      ProgressBar bar(!global.json && isatty(STDERR_FILENO));
      rep = core::cloud::sync_keys((*g)->token(), (*g)->session(), [&](std::size_t d, std::size_t t) { bar(d, t); });
    }
    if (!rep) {
      exit_code = error_out(global, "sync of group '" + o->group + "' failed: " + rep.error().message);
      return;
    }
    const std::pair<const char*, std::size_t> counts[] = {
        {"linked", rep->linked},     {"added", rep->added},         {"updated", rep->updated},
        {"removed", rep->removed},   {"unchanged", rep->unchanged}, {"skipped", rep->skipped}};
    if (global.json) {
      rapidjson::StringBuffer sb;
      rapidjson::PrettyWriter<rapidjson::StringBuffer> w(sb);
      w.StartObject();
      w.Key("group");
      w.String(o->group.c_str());
      for (auto& [k, v] : counts) {
        w.Key(k);
        w.Uint64(v);
      }
      w.Key("notes");
      w.StartArray();
      for (auto& n : rep->notes) w.String(n.c_str());
      w.EndArray();
      w.EndObject();
      std::cout << sb.GetString() << '\n';
      return;
    }
    std::cout << "Group '" << o->group << "' synced:";
    for (auto& [k, v] : counts) std::cout << ' ' << k << ' ' << v << (k == counts[5].first ? "" : ",");
    std::cout << '\n';
    for (auto& n : rep->notes) std::cout << "  " << n << '\n';
  });
}

}  // namespace cdcp11::cdcctl
