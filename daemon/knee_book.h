#pragma once

// The efficiency knees jouled learns from telemetry (issue 16): one
// scheduler::KneeEstimator per workload, fed by every report of every GPU a
// job of that workload runs on, read when an efficiency job of the
// workload is scheduled (docs/scheduling.md, "Energy mode"), and persisted
// so that a restarted jouled keeps what it learned.

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "joule/v1/joule.pb.h"
#include "scheduler/efficiency_knee.h"
#include "storage/store.h"

namespace joule::daemon {

// Owns: the estimators, keyed by workload "tenant/name/model" (a job's
// tenant, its spec name and the GPU model it runs on; unnamed jobs of a
// tenant on one model share one), and which of them changed since they
// were last written.
// Persistence: one kMeta record per workload ("knee/" + key,
// v1::records::KneeEstimate), written by Flush into the caller's batch, at
// most once per kMinWriteInterval per workload and at most
// kMaxFlushRecords per call; Load reads them all at start. What was
// learned since a workload's last write (under a minute of samples) is lost
// on a crash.
// Invariants: at most kMaxWorkloads keys (samples of a new workload beyond
// that are dropped; its jobs use the configured knee); each estimator is
// bounded (scheduler/efficiency_knee.h); every dirty key is a key.
// Thread-safety: none; guarded by the ClusterManager's mu_ like the other
// owners.
class KneeBook {
 public:
  static constexpr size_t kMaxWorkloads = 10000;
  static constexpr absl::Duration kMinWriteInterval = absl::Minutes(1);
  static constexpr size_t kMaxFlushRecords = 100;

  static std::string Key(const std::string& tenant, const std::string& name,
                         const std::string& model) {
    return absl::StrCat(tenant, "/", name, "/", model);
  }

  // One GPU report: its limit, idle and highest limit (for the share of the
  // range over idle), its draw and utilisation.
  void Add(const std::string& key, int64_t limit_mw, int64_t idle_mw,
           int64_t max_mw, int64_t draw_mw, uint32_t util_pct);

  // The learned knee (permille of the range over idle), or 0 = none yet
  // (the policy then uses the configured knee).
  int64_t KneePermille(const std::string& key) const;

  // What `job show` prints for a workload: the learned knee, or
  // `config_permille` (the config's efficiency_knee) with learned false.
  v1::EfficiencyKnee Describe(const std::string& key,
                              int64_t config_permille) const;

  // Reads every persisted estimator (at start, before any Add). A record
  // that cannot be parsed or restored is DATA_LOSS naming its key.
  absl::Status Load(storage::Store* store);

  // Puts into `batch` the changed estimators not written within
  // kMinWriteInterval before `now`, at most kMaxFlushRecords of them;
  // returns how many. The caller writes the batch (and calls again later
  // for the rest).
  size_t Flush(absl::Time now, storage::WriteBatch* batch);

  size_t size() const { return book_.size(); }

 private:
  struct Entry {
    scheduler::KneeEstimator estimator;
    absl::Time written = absl::InfinitePast();
  };
  scheduler::KneeEstimatorConfig config_;
  absl::flat_hash_map<std::string, Entry> book_;
  absl::flat_hash_set<std::string> dirty_;
};

}  // namespace joule::daemon
