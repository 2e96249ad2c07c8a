#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/cluster_config.h"
#include "joule/v1/joule.pb.h"
#include "scheduler/fair_share.h"
#include "scheduler/quota.h"
#include "scheduler/types.h"
#include "storage/store.h"

namespace joule::daemon {

// One tenant as the scheduler knows it.
struct TenantRt {
  v1::Tenant tenant;  // tenant.quota set: a run-time quota (set-quota)
  // Fair share only, never billed: the decayed GPU-seconds of its ended
  // attempts (scheduler/fair_share.h), persisted in kMeta.
  scheduler::DecayedUsage ended;
  bool ended_stored = false;  // a kMeta record exists (or was written)
};

// GPUs held by running attempts, per tenant: (GPUs, attempt start), in a
// fixed order (start, then GPUs) so that sums are the same on every read.
using HeldGpus =
    absl::flat_hash_map<std::string,
                        std::vector<std::pair<int64_t, absl::Time>>>;

// Quota messages <-> the policy's TenantQuota (unset field = kNoLimit).
scheduler::TenantQuota QuotaFromProto(const v1::TenantQuota& q);
v1::TenantQuota QuotaToProto(const scheduler::TenantQuota& q);

// The tenants: the created ones (persisted in kTenants), the weights the
// config names, and each one's decayed GPU-seconds for fair share.
//
// Owns: the tenant map and the set of created names.
// Invariants: a name is in the created set iff its record has a
// created_time and was written to the store. Fair share counts running
// jobs continuously: usage(now) = the ended attempts' record decayed to now
// + each running attempt's GPUs over [start, now] (HeldGpus), decayed with
// scheduler.fair_share_half_life. The record changes only when an attempt
// ends (AddEnded, persisted in that batch), so a restart reads the same
// record and the same running attempts: the same usage, bit for bit.
// Thread-safety: externally synchronized by the lock passed at construction
// (the ClusterManager's mu_), except Exists(), which takes names_mu_ only so
// that billing can ask while holding its own lock (one lock order:
// ClusterManager mu_ -> ledger -> names_mu_).
class TenantTable {
 public:
  using Map = std::map<std::string, TenantRt>;

  TenantTable(absl::Mutex* mu, const config::ClusterConfig* config);

  // Reads kTenants.
  absl::Status Load(storage::Store* store) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Validates and writes a new tenant (created at `now`) with a sync.
  absl::StatusOr<v1::Tenant> Create(const v1::Tenant& t, absl::Time now,
                                    storage::Store* store)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<v1::Tenant> List() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A config reload's tenant weights: each tenant not created with
  // `tenant create` takes its configured weight (new names are added).
  void SetConfigWeights(const absl::flat_hash_map<std::string, uint32_t>& w)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Exists(absl::string_view name) const;
  bool contains(const std::string& name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return tenants_.contains(name);
  }

  // Fair share: an attempt with `gpus` GPUs ran over [start, end]; the
  // tenant's record goes into `batch` (may be null).
  void AddEnded(const std::string& tenant, int64_t gpus, absl::Time start,
                absl::Time end, storage::WriteBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // At load, before FinishLoad: an ended attempt from the job records. Only
  // tenants without a stored record (a store from before the records) are
  // rebuilt from these, in end-time order.
  void AddLoadedAttempt(const std::string& tenant, int64_t gpus,
                        absl::Time start, absl::Time end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLoad() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Decayed GPU-seconds at `now`, running attempts (`held`) included.
  double Usage(const std::string& tenant, absl::Time now,
               const HeldGpus& held) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The quota in force: the run-time one, else the config's, else none.
  scheduler::TenantQuota Quota(const std::string& tenant) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Replaces the run-time quota (sync write). NOT_FOUND for a tenant that
  // was not created.
  absl::StatusOr<v1::Tenant> SetQuota(const std::string& tenant,
                                      const v1::TenantQuota& quota,
                                      storage::Store* store)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // List() with each tenant's quota in force and usage now.
  std::vector<v1::Tenant> ListWithUsage(absl::Time now,
                                        const HeldGpus& held) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The policy's view: weight, recent GPU-hours (running jobs included),
  // contracted GPUs and quota.
  void Snapshot(
      absl::Time now,
      const absl::flat_hash_map<
          std::string, absl::flat_hash_map<std::string, uint32_t>>& contracted,
      absl::flat_hash_map<std::string, scheduler::TenantInfo>* out,
      const HeldGpus& held = {}) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

 private:
  absl::Mutex* const mu_;
  const config::ClusterConfig* const config_;
  Map tenants_ ABSL_GUARDED_BY(mu_);
  struct LoadedAttempt {
    absl::Time end;
    std::string tenant;
    int64_t gpus;
    absl::Time start;
  };
  std::vector<LoadedAttempt> loaded_ ABSL_GUARDED_BY(mu_);
  mutable absl::Mutex names_mu_;
  absl::flat_hash_set<std::string> names_ ABSL_GUARDED_BY(names_mu_);
};

}  // namespace joule::daemon
