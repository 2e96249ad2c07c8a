#pragma once

// Plain-data inputs of the scheduling policy (policy.h) and the reactive
// power loop (power_control.h). The state manager builds a ClusterSnapshot
// from its in-memory state; the policy never reads clocks or does I/O.
//
// Units: power is int64 milliwatts, time is absl::Time / absl::Duration.
// Indices (DomainSnapshot::parent, NodeSnapshot::domain, JobShare::node) are
// positions in the snapshot's vectors.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace joule::scheduler {

// Lower value = more important.
enum class ServiceClass { kReserved = 0, kOnDemand = 1, kSpot = 2 };

// "reserved", "on-demand", "spot".
const char* ServiceClassName(ServiceClass cls);

// A GPU model and the power limits its driver accepts.
struct GpuModelSpec {
  std::string name;  // e.g. "H100"
  int64_t tdp_mw = 0;
  int64_t min_limit_mw = 0;
  int64_t max_limit_mw = 0;
};

// One power domain (site, hall, row, rack, ...). The domains form a tree.
struct DomainSnapshot {
  std::string name;  // e.g. "r12"
  // Optional level word used only in reason text, e.g. "rack" gives
  // "rack r12 ..."; empty prints "domain r12 ...".
  std::string level;
  // Index into ClusterSnapshot::domains, -1 for a root. Parents come before
  // children (parent < own index); anything else is treated as a root.
  int parent = -1;
  int64_t cap_mw = 0;
  // Already committed: base power of every up node below + running jobs
  // (per admission mode; computed by the state manager).
  int64_t committed_mw = 0;
  // Sum of measured node power below.
  int64_t measured_mw = 0;
  // Admission keeps this much of the cap free: a job fits when committed +
  // its power <= cap - admission_reserve_mw. The reactive loop still acts
  // on the cap itself. Set from the adaptive margin (adaptive_margin.h).
  int64_t admission_reserve_mw = 0;
  // What the domain draws with every GPU idle (base + GPUs × idle); 0 =
  // unknown. A cap below it names it in reason text.
  int64_t idle_floor_mw = 0;
};

// One GPU node. At most 64 GPUs (free_gpus is a bitmask).
struct NodeSnapshot {
  std::string name;
  int domain = -1;          // leaf domain index
  bool schedulable = true;  // ready && !drained && healthy
  std::string gpu_model;
  uint32_t gpu_count = 0;
  uint64_t free_gpus = 0;  // bit i = GPU i free; unhealthy GPUs are not free
  int64_t measured_mw = 0;
  uint64_t unhealthy_gpus = 0;  // bit i = GPU i reported unhealthy
};

// The GPUs a job holds on one node.
struct JobShare {
  int node = -1;
  std::vector<uint32_t> gpus;
};

struct RunningJob {
  std::string id;
  std::string tenant;
  ServiceClass cls = ServiceClass::kOnDemand;  // effective class
  int32_t priority = 0;
  absl::Time start_time;
  absl::Duration max_runtime = absl::ZeroDuration();  // zero = none
  std::vector<JobShare> shares;
  std::string gpu_model;
  int64_t limit_mw = 0;      // current per-GPU limit
  int64_t requested_mw = 0;  // per-GPU limit it asked for
  int64_t min_mw = 0;        // lowest per-GPU limit it accepts
  // What it contributes to committed, summed over its nodes. The policy
  // attributes it to nodes in proportion to the GPUs on each.
  int64_t committed_mw = 0;
  int64_t measured_per_gpu_mw = 0;  // recent measured draw per GPU
  // What each of its GPUs still draws once it is gone (idle); a preemption
  // saves the measured draw minus this.
  int64_t idle_per_gpu_mw = 0;
  // The most each of its GPUs draws while it is being stopped: the daemon
  // sets a victim's GPUs to their minimum limit when it is chosen, so a
  // preemption saves the draw minus max(this, idle) at once. 0 = idle.
  int64_t stop_floor_per_gpu_mw = 0;
  // When limit_mw last changed (start, throttle or raise); the power loop's
  // hysteresis raises a job only once PowerControlConfig::
  // min_raise_interval has passed since.
  absl::Time limit_changed_at = absl::InfinitePast();
};

// Kueue-style limits of one tenant (scheduler/quota.h applies them).
inline constexpr int64_t kNoLimit = -1;
struct TenantQuota {
  // Most GPUs the tenant's running jobs of each effective class may hold,
  // indexed by ServiceClass; kNoLimit = no limit.
  int64_t max_running_gpus[3] = {kNoLimit, kNoLimit, kNoLimit};
  // Most jobs it may have pending (checked at submit); kNoLimit = none.
  int64_t max_pending_jobs = kNoLimit;
};

struct TenantInfo {
  uint32_t weight = 1;  // 0 is treated as 1
  // Decayed recent usage. Fair-share key = recent / weight (double: used for
  // ordering only, never money).
  double recent_gpu_hours = 0;
  // GPU model -> GPUs covered by active reserved contracts.
  absl::flat_hash_map<std::string, uint32_t> contracted_gpus;
  TenantQuota quota;
};

// A preemption in progress (scheduler/claims.h): GPUs promised to a pending
// job, held for it until its victims are gone.
struct ClaimSnapshot {
  std::string job_id;                // the claimant (pending)
  std::vector<std::string> victims;  // running jobs being stopped for it
  std::vector<JobShare> shares;      // node index + the GPUs promised there
  // Per-GPU power the claimant will commit (as PendingJob::power_mw counts
  // it): held on the claimed GPUs' domains while they wait for it.
  int64_t power_per_gpu_mw = 0;
};

struct ClusterSnapshot {
  absl::Time now;
  std::vector<GpuModelSpec> gpu_models;
  std::vector<DomainSnapshot> domains;
  std::vector<NodeSnapshot> nodes;
  std::vector<RunningJob> running;
  absl::flat_hash_map<std::string, TenantInfo> tenants;
  std::vector<ClaimSnapshot> claims;
};

struct PendingJob {
  std::string id;
  std::string tenant;
  ServiceClass cls = ServiceClass::kOnDemand;  // requested class
  int32_t priority = 0;
  uint64_t seq = 0;  // submit order
  uint32_t gpus_per_node = 1;
  uint32_t nodes = 1;        // > 1 = gang: all nodes or none
  std::string gpu_model;     // empty = any
  int64_t power_mw = 0;      // per GPU, 0 = model TDP
  int64_t min_power_mw = 0;  // 0 = power_mw
  absl::Duration max_runtime = absl::ZeroDuration();  // zero = none
  // Energy mode: runs at the efficiency limit instead of its limit
  // (PolicyConfig::efficiency_knee_permille, EfficiencyLimitMw).
  bool efficiency = false;
  // The knee learned for its workload (efficiency_knee.h), permille; 0 =
  // PolicyConfig::efficiency_knee_permille.
  int64_t efficiency_knee_permille = 0;
};

}  // namespace joule::scheduler
