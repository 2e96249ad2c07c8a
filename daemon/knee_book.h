#pragma once

// The efficiency knees jouled learns from telemetry (issue 16): one
// scheduler::KneeEstimator per workload, fed by every report of every GPU a
// job of that workload runs on, read when an efficiency job of the
// workload is scheduled (docs/scheduling.md, "Energy mode").

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "scheduler/efficiency_knee.h"

namespace joule::daemon {

// Owns: the estimators, keyed by workload "tenant/name/model" (a job's
// tenant, its spec name and the GPU model it runs on; unnamed jobs of a
// tenant on one model share one). Not persisted: after a restart every
// workload falls back to the configured knee until it has enough samples
// again.
// Invariants: at most kMaxWorkloads keys (samples of a new workload beyond
// that are dropped; its jobs use the configured knee); each estimator is
// bounded (scheduler/efficiency_knee.h).
// Thread-safety: none; guarded by the ClusterManager's mu_ like the other
// owners.
class KneeBook {
 public:
  static constexpr size_t kMaxWorkloads = 10000;

  static std::string Key(const std::string& tenant, const std::string& name,
                         const std::string& model) {
    return absl::StrCat(tenant, "/", name, "/", model);
  }

  // One GPU report: its limit, idle and highest limit (for the share of the
  // range over idle), its draw and utilisation.
  void Add(const std::string& key, int64_t limit_mw, int64_t idle_mw,
           int64_t max_mw, int64_t draw_mw, uint32_t util_pct) {
    auto it = book_.find(key);
    if (it == book_.end()) {
      if (book_.size() >= kMaxWorkloads) return;
      it = book_.emplace(key, scheduler::KneeEstimator{}).first;
    }
    it->second.Add(
        scheduler::KneeEstimator::SharePermille(limit_mw, idle_mw, max_mw),
        draw_mw, util_pct, config_);
  }

  // The learned knee (permille of the range over idle), or 0 = none yet
  // (the policy then uses the configured knee).
  int64_t KneePermille(const std::string& key) const {
    auto it = book_.find(key);
    return scheduler::LearnedKneePermille(
        it == book_.end() ? nullptr : &it->second, config_, 0);
  }

 private:
  scheduler::KneeEstimatorConfig config_;
  absl::flat_hash_map<std::string, scheduler::KneeEstimator> book_;
};

}  // namespace joule::daemon
