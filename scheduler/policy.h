#pragma once

// The scheduling policy: a pure function from a ClusterSnapshot and the
// pending queue to placements and waits. No clock, no I/O, no globals.
//
// Rules, in the order Schedule applies them:
//
// 1. Resolution. A job names a GPU model or none (any model: the models are
//    tried in snapshot order and the first that fits is used). Per-GPU limit
//    = power_mw, or the model's TDP when 0, clamped into the model's
//    [min_limit_mw, max_limit_mw], and for an efficiency job then lowered
//    to the knee (EfficiencyLimitMw, power_options.h; the job's learned
//    knee when it has one); min power =
//    min_power_mw (0 = the limit) clamped into [min_limit_mw, limit]; with
//    class_floors enabled, a job without min_power_mw gets ClassFloorMw of
//    its requested class instead (power_rules.h), and throttle-to-fit may
//    start it down to ClassStartFloorMw; once placed its floor is
//    StartedFloorMw(start limit, class floor) (Placement::min_power_mw). A
//    job needs, on each of its nodes, gpus_per_node × limit of power
//    headroom. It is kInfeasible when it asks for no GPUs, for an unknown
//    model, for more GPUs per node than any node of the model has, or for
//    more gang nodes than the cluster has.
//
// 2. Effective class. A reserved job is effective-reserved when its tenant's
//    running reserved GPUs of that model + the GPUs of the tenant's earlier
//    effective-reserved pending jobs (by priority, then seq) + its own GPUs
//    ≤ contracted_gpus[model]; otherwise (and always when it names no model)
//    it is scheduled as, and placed as, kOnDemand.
//
// 3. Order: effective class (reserved, on-demand, spot), priority (higher
//    first), fair share (lower recent_gpu_hours / weight first), seq. Only the
//    first max_jobs_considered jobs are examined (0 = all); the rest wait
//    kRetryLater "not considered this round". Every pending job gets exactly
//    one Placement or one Wait.
//
// 3a. Quota (quota.h). A job whose GPUs would take its tenant's running GPUs
//    of its effective class above TenantInfo::quota.max_running_gpus waits
//    kRetryLater "over quota: tenant T runs R <class> GPUs + G needed >
//    max_running_gpus M"; it takes no reservation (rule 6) and does not hold
//    back later jobs. Placements in the same call count.
//
// 4. Fit. A node set fits when every node is schedulable, of the model, has
//    gpus_per_node free GPUs, and for EVERY domain on the path from each node
//    to the root, committed + the job's power under that domain ≤ cap
//    (skipped when enforce_power is false). A gang (nodes > 1) gets all nodes
//    or none, preferring one leaf domain (rack), then one parent of a leaf
//    (row), then anywhere. Best fit: fewest free GPUs left on the node, then
//    least power headroom left on its leaf, then lowest node index; with
//    power_fit kEveryLevel or kBalanced a single-node job breaks the tie
//    after the free GPUs by PowerFitScore over its whole path instead
//    (power_fit.h). GPUs are the lowest free indices. Each placement updates
//    the working copy, so later jobs in the same call see it.
//
//    Throttle-to-fit (throttle_to_fit): a job that does not fit at its
//    limit, and whose min power is below it, is tried at throttle_steps
//    evenly spaced lower limits down to its min power (limit − k × (limit −
//    min) / steps, k = 1..steps), the first that fits wins, and its limit is
//    then raised to the largest one that still fits every domain on the
//    chosen nodes' paths (LargestFittingLimit, never above the requested
//    limit, never below the min). The placement carries that start limit as
//    power_limit_mw and the requested one as requested_limit_mw; the power
//    loop raises it back as headroom returns (power_control.h, rule 4).
//    Admission caps are DomainSnapshot::cap_mw − admission_reserve_mw; with
//    committed_at_least_measured a domain's committed power is taken as
//    max(committed_mw, measured_mw).
//
// 5. Preemption (allow_preemption). An effective-reserved job that does not
//    fit may preempt running kSpot and kOnDemand jobs; jobs placed in this
//    call are never preempted. It frees exactly what it needs, with the
//    fewest victims, then on the fewest nodes, then the most preemptable
//    (spot before on-demand, lowest priority, most recently started, then
//    id), then by best fit (victims.h). A single-node job takes, for every
//    node, the minimal victim set that frees the GPUs missing there and the
//    power missing on every domain of its path (MinimalVictims), and goes
//    to the node with the best set. A gang tries the victims grouped by
//    node, the node with the best set first, takes the shortest prefix
//    after which the gang search succeeds, then spares every victim in it
//    that the chosen placement does not need. If even preempting all of
//    them does not make it fit, nothing is preempted and it waits. GPUs
//    freed beyond what it needs are not given to later jobs in the same
//    call: they are free only once the victims have stopped.
//
//    A placement that preempts becomes a claim in the daemon
//    (ClusterSnapshot::claims, claims.h): in later calls its GPUs are held
//    for the claimant, it picks no new victims, and it is placed on exactly
//    those GPUs once its victims are gone.
//
//    Reason text: a job blocked by power names the domain; when that
//    domain's (or an ancestor's) cap is below its idle floor
//    (DomainSnapshot::idle_floor_mw) it says so: "waiting: cap 4.00 kW is
//    below the idle draw 6.18 kW of rack-1".
//
// 6. Backfill (EASY). The first job that is blocked (kRetryLater or
//    kOverPowerCap; not kInfeasible) gets the reservation if it would fit
//    once every running job has ended; a job that would not (e.g. needs more
//    power than a cap allows even on an idle cluster) waits without one.
//    Its shadow time is found by ending running jobs (and those placed in
//    this call) in order of start + max_runtime: the end time of the job
//    after whose end it first fits, and its shadow placement S is where it
//    would fit then. If it needs a job without max_runtime to end, it has no
//    shadow time. A later job J may start only if
//      (a) it has a max_runtime and now + max_runtime ≤ shadow time, or
//      (b) it uses none of the reserved nodes — those of S, or with no
//          shadow time every node of the reserved job's model(s) — and, for
//          each domain the reserved job could draw on (S's paths, or with no
//          shadow time every domain holding a node of its model(s)), J's
//          power there fits in the headroom left for it: cap − committed at
//          the shadow time (now, with no shadow time) − the reserved job's
//          power there (its whole power, with no shadow time) − what earlier
//          (b)-backfilled jobs took. If J's best fit touches S, J is retried
//          with S's nodes excluded.
//    With reserve_best_node, a reserved job without a shadow time is bound
//    instead to the nodes closest to taking it (per node: most of its GPUs
//    free, then most power left on the tightest domain of the node's path
//    after the job's per-node need, at its min power with throttle-to-fit,
//    then lowest index; a gang takes the best `nodes` of them, of the
//    option whose chosen nodes have the most free GPUs): J may not use
//    those nodes, and on each domain of their paths J's power must fit in
//    cap − committed now − the job's need there − what earlier backfilled
//    jobs took. Other nodes and domains stay open, so one job waiting for
//    power or for whole nodes no longer stops every other job of its model;
//    the bound nodes only gain free GPUs until it starts.
//    Otherwise J waits kRetryLater "would delay job X". With backfill false,
//    every job after the reservation holder waits behind it.

// Cost: O(n log n) to sort the queue, then about O(log nodes) per job that
// fits (free capacity is indexed by model, free GPU count and leaf headroom;
// gangs scan the leaves with room), O(1) for a job whose shape already failed
// in this call (or whose options were just tried at the same state), and
// O(victims scanned) for each preempting job. The shadow time (rule 6) costs
// about 2k index updates, k = the running jobs that must end first (gallop,
// then bisect). Measured on 10,000 nodes / 80,000 GPUs / 5-level tree /
// 100,000 pending (bench/bench_policy.cc): 5,448 placed in 74-85 ms of CPU
// per call with 5.4k jobs running, 10,867 in 146-187 ms on an empty cluster.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "scheduler/power_fit.h"
#include "scheduler/claims.h"
#include "scheduler/power_rules.h"
#include "scheduler/types.h"

namespace joule::scheduler {

struct PolicyConfig {
  // false = "oblivious": places by GPUs only (joule-sim compares the two).
  bool enforce_power = true;
  bool backfill = true;
  bool allow_preemption = true;
  // Jobs examined per call, in order; the rest wait. 0 = all.
  uint32_t max_jobs_considered = 10000;
  // Rule 4: start a throttleable job below its limit when that fits.
  bool throttle_to_fit = false;
  uint32_t throttle_steps = 4;  // 0 is treated as 1
  // Rule 4: a domain's committed power counts as at least its measured
  // power (measured admission commits percentiles, which the draw can
  // exceed for a while).
  bool committed_at_least_measured = false;
  // Rule 6: bind a reservation without shadow time to one node.
  bool reserve_best_node = false;
  // Rule 1: default min power per class for jobs that give none.
  ClassFloors class_floors;
  // Rule 4: how a single-node job picks among the best-fit nodes on power
  // (power_fit.h); kLeaf is the least leaf headroom left.
  PowerFit power_fit = PowerFit::kLeaf;
  // Rule 1: a PendingJob::efficiency job's limit is EfficiencyLimitMw of
  // its resolved limit at this knee (power_options.h), or at its own
  // PendingJob::efficiency_knee_permille when set (learned from telemetry,
  // efficiency_knee.h), and its class floor is taken of that limit.
  int64_t efficiency_knee_permille = 500;
};

enum class WaitKind {
  kRetryLater,    // resources busy
  kInfeasible,    // can never fit as specified (GPU count, unknown model)
  kOverPowerCap,  // GPUs free but a domain cap blocks
};

struct Placement {
  std::string job_id;
  std::vector<JobShare> shares;  // node rank order (ascending node index)
  int64_t power_limit_mw = 0;    // per-GPU limit to start at
  // The resolved limit it asked for; > power_limit_mw when throttled to fit.
  int64_t requested_limit_mw = 0;
  // The floor it runs with: its min power, or under class floors
  // StartedFloorMw(power_limit_mw, its class floor) (power_rules.h).
  int64_t min_power_mw = 0;
  std::string gpu_model;  // resolved
  // A reserved job beyond its tenant's contract runs as kOnDemand.
  ServiceClass effective_class = ServiceClass::kOnDemand;
  std::vector<std::string> preempt;  // running job ids to preempt first
};

struct Wait {
  std::string job_id;
  WaitKind kind = WaitKind::kRetryLater;
  // Operator-actionable, e.g. "waiting: rack r12 power 37.2 kW committed +
  // 5.60 kW needed > cap 40.0 kW" or "no ready node with 8 free H100".
  std::string reason;
};

struct Decisions {
  std::vector<Placement> placements;  // in the order they were made
  std::vector<Wait> waits;            // in queue order
  // Claims (ClusterSnapshot::claims) that no longer hold, with the reason
  // (claims.h); the daemon forgets them. Their jobs were scheduled like any
  // other pending job in the same call.
  std::vector<Wait> dropped_claims;
};

// Decides which pending jobs start now and where. Deterministic for a given
// input. Thread-safe (no shared state).
Decisions Schedule(const ClusterSnapshot& snapshot,
                   absl::Span<const PendingJob> pending,
                   const PolicyConfig& config);

}  // namespace joule::scheduler
