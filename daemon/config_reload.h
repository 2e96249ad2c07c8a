#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "config/cluster_config.h"
#include "joule/v1/joule.pb.h"

namespace joule::daemon {

class ClusterManager;

struct CapChange {
  std::string domain;
  int64_t old_mw = 0, new_mw = 0;
};

// One changed setting other than a cap: its path in the file
// ("scheduler.stop_grace", "tenant[acme].quota.max_pending_jobs") and its
// old and new values as text ("none" for no limit).
struct SettingChange {
  std::string field;
  std::string old_value, new_value;
  std::string Text() const;  // "scheduler.stop_grace 5s -> 2s"
};

// What a reload changes, and the values it installs (those of the new
// file). Applied as one unit by ClusterManager::ApplyConfigReload.
struct ReloadPlan {
  std::vector<CapChange> caps;
  std::vector<SettingChange> settings;
  config::SchedulerSettings scheduler;
  absl::flat_hash_map<std::string, scheduler::TenantQuota> tenant_quotas;
  absl::flat_hash_map<std::string, uint32_t> tenant_weights;
  std::string log_level;
  bool empty() const { return caps.empty() && settings.empty(); }
};

// What changes from `current` to `next`, if a running jouled can apply all
// of it: domain caps; tenant weights and quotas (tenants added or changed);
// every scheduler setting but admission, default_node_model and
// default_domain; log.level. FAILED_PRECONDITION naming the first other
// difference (domains, nodes, GPU or node models, those three scheduler
// settings, a tenant removed, billing), which needs a restart. Pure.
absl::StatusOr<ReloadPlan> DiffConfig(const config::ClusterConfig& current,
                                      const config::ClusterConfig& next);

// Reloads jouled's --config file on SIGHUP or ReloadConfig: parses and
// checks it (INVALID_ARGUMENT with file, line and field on a bad file),
// diffs it against the config in force (DiffConfig) and applies the whole
// plan at once through ClusterManager::ApplyConfigReload (one write: a
// `cap` event per cap, a `config` event per other setting, each also a log
// line), sets the log level, then records a `config` event and a
// `config-reload` log line with the result. A bad file, a change that
// needs a restart or a failed write changes nothing. Owns the config in
// force and the --log-level jouled started with (the level when the file
// sets none); the manager is borrowed. Thread-safe (one reload at a time).
class ConfigReloader {
 public:
  // Applies `current`'s log.level, if any (the level before is the flag's).
  ConfigReloader(std::string path, config::ClusterConfig current,
                 ClusterManager* manager);
  absl::StatusOr<v1::ReloadConfigResponse> Reload();

 private:
  const std::string path_;
  ClusterManager* const manager_;
  const log::Level flag_level_;
  absl::Mutex mu_;
  config::ClusterConfig current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule::daemon
