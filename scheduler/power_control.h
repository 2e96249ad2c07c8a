#pragma once

// The reactive power loop: a pure function from measured power to per-job
// limit changes and preemptions. No clock, no I/O, no globals.
//
// Rules:
//
// 1. Over cap. Domains whose measured_mw > cap_mw are handled deepest first
//    (then by index). For each, excess = measured - cap, where measured
//    already reflects the savings of actions taken for deeper domains.
//
// 2. Throttle and preempt, class by class (priority-aware capping, as
//    CapMaestro): throttle spot -> preempt spot -> throttle on-demand ->
//    preempt on-demand -> throttle reserved -> preempt reserved (last
//    resort; its reason says so). A job of a higher class is thus never
//    throttled while a job of a lower class under the domain still runs
//    above its floor. Within a class: lowest priority first; then most
//    recently started; then id.
//
//    Throttle: a job whose current limit (after earlier actions in this
//    call) is above its min_mw. Its draw per GPU is estimated as
//    e = min(measured_per_gpu_mw, limit_mw); it is lowered only as far as
//    needed: new = max(min_mw, e - ceil(excess / g)), g = its GPUs under the
//    domain, and its saving is counted as (e - new) × its GPUs under each
//    domain on every path it spans. Jobs whose estimated draw is already at
//    or below min_mw are skipped (lowering them would save nothing).
//
// 3. Preempt: jobs of the class are preempted until excess <= 0, each
//    saving GPUs × (e − max(idle_per_gpu_mw, stop_floor_per_gpu_mw)) on
//    every domain it spans: during its stop grace a victim's GPUs run at
//    their minimum limit (the daemon lowers them when it is chosen), after
//    it idle. A job gets one action: a preemption replaces its throttle, a
//    second throttle updates the first.
//
// 4. Restore. Jobs whose limit_mw < requested_mw, that got no action in this
//    call and have no GPU under a domain that was over cap, are considered
//    in the order kReserved, kOnDemand, kSpot; highest priority first; then
//    earliest started; then id. A job is raised back to requested_mw when,
//    for every domain on its paths, measured + its increase under the domain
//    (GPUs × (requested - limit)) ≤ cap - cap × restore_margin_permille /
//    1000; the increase is then counted, so two restores never overcommit.
//    With partial_raise (power redistribution), a job that cannot go all the
//    way back is raised as far as every domain allows: by the largest
//    per-GPU increase inc <= requested − limit with measured + GPUs × inc <=
//    cap − margin on each domain, provided inc reaches requested or is at
//    least requested × min_raise_permille / 1000 (no tiny steps).
//    Hysteresis: a job whose limit changed less than min_raise_interval
//    before snapshot.now (RunningJob::limit_changed_at) is not raised; with
//    one action per job per call, a limit changes at most once per interval.
//    Throttles for a domain over cap are never delayed.

#include <cstdint>
#include <string>
#include <vector>

#include "scheduler/types.h"

namespace joule::scheduler {

struct PowerControlConfig {
  // Restore only if the domain stays at least this far under cap after the
  // raise (50 = 5%).
  int64_t restore_margin_permille = 50;
  // Rule 4: raise part of the way (power redistribution).
  bool partial_raise = false;
  int64_t min_raise_permille = 50;
  // Rule 4: hysteresis, see above. Zero = raise at the next call.
  absl::Duration min_raise_interval = absl::ZeroDuration();
};

struct PowerAction {
  enum Kind { kThrottle, kRestore, kPreempt };
  Kind kind = kThrottle;
  std::string job_id;
  int64_t new_limit_mw = 0;  // per GPU, for kThrottle / kRestore
  std::string reason;        // e.g. "rack r1 measured 41.3 kW > cap 40.0 kW"
};

// Decides throttles, preemptions and restores from measured power. Actions
// come in the order decided: over-cap actions, then restores. Deterministic;
// thread-safe (no shared state).
std::vector<PowerAction> ControlPower(const ClusterSnapshot& snapshot,
                                      const PowerControlConfig& config);

}  // namespace joule::scheduler
