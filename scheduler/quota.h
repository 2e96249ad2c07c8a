#pragma once

// Tenant quotas (as Kueue's ClusterQueues): most GPUs running per class and
// most jobs pending. Pure; used by the policy (policy.h rule 3a) and by
// jouled at submit.
//
// Running GPUs count by effective class (a reserved job beyond its
// tenant's contract runs, and counts, as on-demand). A job whose GPUs would
// take its tenant over max_running_gpus of its class waits with a reason
// naming the quota; it takes no reservation and does not hold back other
// jobs. Example: tenant acme, max_running_gpus on-demand 16, running 12
// on-demand GPUs; an 8-GPU on-demand job waits "over quota: tenant acme runs
// 12 on-demand GPUs + 8 needed > max_running_gpus 16", while acme's 4-GPU
// job starts (12 + 4 <= 16).

#include <cstdint>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "scheduler/types.h"

namespace joule::scheduler {

// OK, or RESOURCE_EXHAUSTED naming max_pending_jobs when a tenant that has
// `pending_now` pending jobs may not submit one more.
absl::Status CheckPendingQuota(const std::string& tenant, int64_t pending_now,
                               const TenantQuota& quota);

// "on-demand 16, spot unlimited; pending 100" for displays.
std::string QuotaText(const TenantQuota& quota);

// Running GPUs per (tenant, effective class) during one Schedule call:
// starts from the snapshot's running jobs and grows with each placement.
// The snapshot's jobs are counted at the first Check that meets a limit (a
// cluster without quotas never counts them).
// Not thread-safe; one Schedule call owns one.
class QuotaLedger {
 public:
  explicit QuotaLedger(const ClusterSnapshot& snapshot);

  // Empty when `gpus` more of class `cls` fit the tenant's quota, else the
  // wait reason.
  std::string Check(const std::string& tenant, ServiceClass cls,
                    int64_t gpus) const;
  void Add(const std::string& tenant, ServiceClass cls, int64_t gpus);

 private:
  // Adds the snapshot's running jobs to running_, once.
  void CountRunning() const;

  const ClusterSnapshot& snapshot_;
  mutable bool counted_ = false;
  mutable absl::flat_hash_map<std::pair<std::string, int>, int64_t> running_;
};

}  // namespace joule::scheduler
