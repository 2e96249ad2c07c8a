#pragma once

// joule-sim's discrete-event simulator: drives the real placement policy
// (scheduler::Schedule), the reactive power loop (scheduler::ControlPower)
// and the billing ledger (billing::Ledger on a MemoryStore with a FakeClock)
// in simulated time against simulated nodes whose GPUs draw what
// agent::SimGpuPowerMw says.
//
// Time advances in control ticks (SimOptions::tick_ms). Between ticks, job
// arrivals, completions, cap changes and inference usage are processed in
// time order; at each tick the GPUs report (new power noise), the power loop
// runs (unless oblivious), then the scheduler runs over a window of the
// pending queue. See docs/evaluation.md for the model.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scheduler/measured_window.h"
#include "scheduler/power_fit.h"
#include "scheduler/power_rules.h"
#include "scheduler/time_limits.h"
#include "sim/cluster.h"
#include "sim/pricing.h"
#include "sim/workload.h"

namespace joule::sim {

// kMeasuredPlus: measured admission plus throttle-to-fit, class-default
// floors, power redistribution with hysteresis and a closed-loop admission
// margin per domain (docs/scheduling.md, "measured-plus").
enum class PolicyKind { kOblivious, kAllocated, kMeasured, kMeasuredPlus };
const char* PolicyName(PolicyKind p);

// Work done per second at a power limit: 1 at or above the power the job
// wants; (limit/want)^alpha down to knee × want; linear below the knee
// (see docs/evaluation.md for the sources). Pure.
double ThrottleSpeed(int64_t limit_mw, int64_t want_mw, double alpha,
                     double knee);

struct SimOptions {
  PolicyKind policy = PolicyKind::kAllocated;
  uint64_t seed = 1;
  absl::Time start = absl::FromUnixSeconds(1767225600);  // 2026-01-01
  int64_t tick_ms = 10'000;           // telemetry + power loop period
  int64_t schedule_interval_ms = 0;   // scheduler period; 0 = every tick
  uint32_t queue_window = 2'000;      // pending jobs given to Schedule per tick
  double default_load = 0.8;          // jobs without a load (and no CDF)
  const LoadCdf* load_cdf = nullptr;  // samples loads when set
  double power_noise = 0.05;          // per-tick relative load noise (uniform)
  double throttle_alpha = 0.4;
  double throttle_knee = 0.5;
  double max_runtime_factor = 0;  // > 0: jobs declare and are killed at
                                  // ceil(factor × duration)
  // Otherwise, as jouled: every job gets its class's default_max_runtime
  // (scheduler/time_limits.h) and is killed there; false = no limits.
  bool time_limits = true;
  scheduler::TimeLimits limits;
  // Jobs that give no min power accept throttling down to their GPU's
  // minimum limit (else, as the policy defaults, min = their limit).
  bool throttleable = false;
  bool backfill = true;
  bool allow_preemption = true;
  uint32_t measured_percentile = 95;
  uint32_t measured_margin_pct = 10;
  // The window of both measured modes (as jouled's, report unit 1 s).
  scheduler::MeasuredWindowOptions measured_window;
  int64_t restore_margin_permille = 50;
  // measured-plus only: the per-job commitment (percentile, margin), the
  // class floors, the adaptive per-domain reserve, the raise hysteresis.
  // The per-job commitment: p50 by default (scheduler::DefaultPlusCommit, as
  // jouled); --plus-commit floor-clamp gives clamp(floor, p50, p95).
  scheduler::MeasuredCommitRule plus_commit = scheduler::DefaultPlusCommit();
  scheduler::ClassFloors class_floors = scheduler::kDefaultClassFloors;
  scheduler::PowerFit power_fit = scheduler::PowerFit::kLeaf;
  scheduler::AdaptiveMarginConfig margin;
  int64_t min_raise_interval_ms = 30'000;
  absl::Duration fair_share_half_life = absl::Hours(24);
  int64_t max_sim_ms = 0;  // 0 = run until every job is done
  int timeline_points = 400;
  int64_t timeline_from_ms = 0;  // timeline covers [from, to); to 0 = end
  int64_t timeline_to_ms = 0;
  bool progress = false;  // progress line on stderr
  // Tests: every Schedule call (which takes the policy's state kept between
  // calls, scheduler/kept_state.h) is repeated with the state built afresh
  // from the snapshot; different Decisions fail the run (Internal).
  bool verify_kept_state = false;
};

// Measured power against caps, aggregated over the domains of one level.
struct LevelStats {
  std::string level;
  int64_t domains = 0;
  double mean_measured_w = 0;  // time-mean per domain, averaged
  double mean_cap_w = 0;
  double max_measured_w = 0;         // highest of any domain
  double max_measured_over_cap = 0;  // highest measured / cap of any domain
  double seconds_over_cap = 0;       // summed over the level's domains
  // Of that, the time past two report intervals (ticks) into an over-cap
  // episode of a domain (the "0 s beyond two report intervals").
  double seconds_over_cap_beyond_two_ticks = 0;
  double watt_seconds_over_cap = 0;
  int64_t domains_ever_over = 0;
  // Domain-ticks at which telemetry found a domain over its cap before the
  // power loop acted (in the daemon: over for at most one report interval).
  int64_t tick_breaches = 0;
  // Measured / cap per domain, sampled at every tick (domain-ticks).
  double used_share_mean = 0, used_share_p50 = 0, used_share_p95 = 0;
  // Mean W per domain, sampled at every tick after the scheduler ran:
  // cap − measured split by cause (see docs/evaluation.md, "Where the watts
  // go"), and the idle draw of free GPUs (part of measured).
  double stranded_margin_w = 0;            // committed + reserve − measured
  double stranded_fragmentation_w = 0;     // headroom no pending job fits
  double stranded_not_throttleable_w = 0;  // a job fits only below its min
  double stranded_gpus_full_w = 0;  // no node below has the GPUs a job needs
  double stranded_no_demand_w = 0;  // nothing pending
  double stranded_usable_w = 0;     // a pending job fits: taken next round
  double idle_floor_w = 0;
};

struct TimelinePoint {
  double time_s = 0;
  double site_measured_w = 0;  // mean over the bucket
  double site_cap_w = 0;
  double running_gpus = 0;
  double pending_jobs = 0;
};

struct SimResult {
  std::string policy;
  // Jobs.
  int64_t jobs_total = 0;
  int64_t jobs_completed = 0;
  int64_t jobs_killed_max_runtime = 0;
  int64_t jobs_never_started = 0;  // never got GPUs (incl. infeasible)
  int64_t jobs_running_at_end = 0;
  int64_t jobs_infeasible = 0;  // dropped: can never run as specified
  std::vector<std::string> infeasible_examples;
  int64_t attempts = 0;
  double gpu_hours_allocated = 0;       // all attempts
  double gpu_hours_completed_work = 0;  // duration × GPUs of completed jobs
  double gpu_hours_lost_to_preemption = 0;
  double makespan_s = 0;  // first submit to last job end
  double queue_delay_mean_s = 0, queue_delay_p50_s = 0, queue_delay_p95_s = 0,
         queue_delay_p99_s = 0;
  // The delay with the jobs still waiting at the end counted as waiting
  // from their submission to the end (sim/delay.h); jobs_waiting_at_end of
  // them never started.
  double queue_delay_censored_mean_s = 0, queue_delay_censored_p95_s = 0;
  int64_t jobs_waiting_at_end = 0;
  double slowdown_mean = 0;  // (end - submit) / duration of completed jobs
  double gpu_allocation_ratio = 0;  // allocated GPU-time / (GPUs × makespan)
  double energy_kwh = 0;            // whole site (base + GPUs)
  double gpu_energy_kwh = 0;        // jobs' GPUs
  // Power control.
  int64_t throttle_actions = 0;
  int64_t restore_actions = 0;
  int64_t preemptions_power = 0;     // by the power loop
  int64_t preemptions_reserved = 0;  // by reserved placements
  int64_t schedule_calls = 0;
  int64_t control_calls = 0;
  std::vector<LevelStats> levels;  // root first
  // Billing (cents).
  std::map<std::string, int64_t> revenue_cents;  // pricing model -> cents
  int64_t revenue_total_cents = 0;
  int64_t backlog_cents = 0;
  int64_t usage_events = 0;
  std::vector<std::string> billing_errors;  // first few
  std::vector<TimelinePoint> timeline;
  // The simulator itself (not deterministic; kept out of comparisons).
  double wall_s = 0;
  int64_t events = 0;
  double events_per_s = 0;
  double sim_seconds = 0;
};

// Everything a run reads. Pointers must outlive Simulate.
struct SimInputs {
  const SimCluster* cluster = nullptr;
  const Workload* workload = nullptr;
  const std::vector<CapEvent>* cap_events = nullptr;   // optional
  const std::vector<v1::UsageEvent>* usage = nullptr;  // optional
  const PricingFile* pricing = nullptr;                // optional
};

// Runs one policy over the inputs. Deterministic for given inputs and
// options (except the wall-time fields).
absl::StatusOr<SimResult> Simulate(const SimInputs& inputs,
                                   const SimOptions& options);

// Peak resident set of this process, bytes (getrusage).
int64_t PeakRssBytes();

}  // namespace joule::sim
