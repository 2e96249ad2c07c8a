#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/cluster_config.h"
#include "joule/v1/joule.pb.h"
#include "scheduler/types.h"
#include "storage/store.h"

namespace joule::daemon {

// One tenant as the scheduler knows it.
struct TenantRt {
  v1::Tenant tenant;
  double decayed_gpu_seconds = 0;  // fair share only, never billed
  absl::Time decay_time = absl::InfinitePast();
};

// The tenants: the created ones (persisted in kTenants), the weights the
// config names, and each one's decayed GPU-seconds for fair share.
//
// Owns: the tenant map and the set of created names.
// Invariants: a name is in the created set iff its record has a
// created_time and was written to the store; usage is added only by ended
// attempts (AddUsage) and decays with scheduler.fair_share_half_life.
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
  bool Exists(absl::string_view name) const;
  bool contains(const std::string& name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return tenants_.contains(name);
  }

  // Fair share: `gpu_seconds` used, ending at `at`.
  void AddUsage(const std::string& tenant, double gpu_seconds, absl::Time at)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Decayed GPU-seconds at `now`.
  double Usage(const std::string& tenant, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The policy's view: weight, recent GPU-hours and contracted GPUs.
  void Snapshot(
      absl::Time now,
      const absl::flat_hash_map<
          std::string, absl::flat_hash_map<std::string, uint32_t>>& contracted,
      absl::flat_hash_map<std::string, scheduler::TenantInfo>* out) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

 private:
  absl::Mutex* const mu_;
  const config::ClusterConfig* const config_;
  Map tenants_ ABSL_GUARDED_BY(mu_);
  mutable absl::Mutex names_mu_;
  absl::flat_hash_set<std::string> names_ ABSL_GUARDED_BY(names_mu_);
};

}  // namespace joule::daemon
