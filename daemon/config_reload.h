#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "config/cluster_config.h"
#include "joule/v1/joule.pb.h"

namespace joule::daemon {

class ClusterManager;

struct CapChange {
  std::string domain;
  int64_t old_mw = 0, new_mw = 0;
};

// What changes from `current` to `next` that a running jouled can apply:
// the caps of domains. FAILED_PRECONDITION naming the first other
// difference (domains, nodes, GPU or node models, scheduler, tenants,
// billing settings), which needs a restart. Pure.
absl::StatusOr<std::vector<CapChange>> DiffConfig(
    const config::ClusterConfig& current, const config::ClusterConfig& next);

// Reloads jouled's --config file on SIGHUP or ReloadConfig: parses and
// checks it (INVALID_ARGUMENT with file, line and field on a bad file),
// diffs it against the config in force (DiffConfig), applies each cap
// change through ClusterManager::SetPowerCap (reason "config reload": a cap
// event each), records a "config" event with the result and logs it. A bad
// file or a change that needs a restart changes nothing. Owns the config in
// force; the manager is borrowed. Thread-safe (one reload at a time).
class ConfigReloader {
 public:
  ConfigReloader(std::string path, config::ClusterConfig current,
                 ClusterManager* manager);
  absl::StatusOr<v1::ReloadConfigResponse> Reload();

 private:
  const std::string path_;
  ClusterManager* const manager_;
  absl::Mutex mu_;
  config::ClusterConfig current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule::daemon
