#pragma once

// Small pure rules of power-aware admission shared by the policy
// (policy.h), the reactive loop (power_control.h), the daemon's
// ClusterManager and joule-sim. No clock, no I/O, no globals; thread-safe.
//
// Units: int64 milliwatts; permille = thousandths.

#include <cstdint>
#include <optional>
#include <utility>

#include "absl/types/span.h"
#include "scheduler/types.h"

namespace joule::scheduler {

// Default floors (lowest per-GPU limit) per class, for jobs that give no min
// power. Disabled: such a job is not throttleable (min = its limit). Enabled:
// floor = max(model minimum, limit × permille / 1000), and 0 permille means
// the model's minimum. The policy works with limits as increments over idle
// (see ClusterManager::SnapshotLocked), so the share applies to the
// increment: on an H100 (idle 70 W) at 700 W, 800 permille gives
// 70 + 0.8 × 630 = 574 W. The member defaults are jouled's and joule-sim's
// (scheduler.class_floors, --class-floors): reserved 1, on-demand 0.8, spot 0.
//
// Start floors (the *_start_permille shares, "on-demand-start=0.6"): a job
// that does not fit at or above its floor may be started by throttle-to-fit
// down to its start floor, ClassStartFloorMw = min(floor, start share of the
// limit), and it then keeps the limit it started at as its floor
// (StartedFloorMw): the power loop never throttles a job below where it
// started, nor a job started at or above its floor below that floor. So the
// low share lets jobs fit into small headroom (less fragmentation) without
// slowing a running job further than its start (docs/scheduling.md, "Start
// floors"). A start share at or above the floor changes nothing.
struct ClassFloors {
  bool enabled = false;
  int64_t reserved_permille = 1000;
  int64_t on_demand_permille = 800;
  int64_t spot_permille = 0;
  int64_t reserved_start_permille = 1000;
  int64_t on_demand_start_permille = 1000;
  int64_t spot_start_permille = 1000;
};
// The default of jouled and joule-sim: the floors above, enabled.
inline constexpr ClassFloors kDefaultClassFloors{.enabled = true};

// The floor a job of class `cls` gets at `limit_mw` on a model whose lowest
// accepted limit is `model_min_mw`. Always within [model_min_mw, limit_mw]
// (limit_mw when floors are disabled or limit_mw <= model_min_mw).
int64_t ClassFloorMw(ServiceClass cls, int64_t limit_mw, int64_t model_min_mw,
                     const ClassFloors& floors);

// The lowest limit throttle-to-fit may start such a job at: the class's
// start share of `limit_mw` (as ClassFloorMw), but never above
// ClassFloorMw. Within [model_min_mw, ClassFloorMw(...)].
int64_t ClassStartFloorMw(ServiceClass cls, int64_t limit_mw,
                          int64_t model_min_mw, const ClassFloors& floors);

// The floor of a job once started at `start_limit_mw` whose floor is
// `floor_mw`: min(start_limit_mw, floor_mw). A job started at or above its
// floor keeps the floor; one started below it (down to its start floor) is
// never throttled below its start.
int64_t StartedFloorMw(int64_t start_limit_mw, int64_t floor_mw);

// Throttle-to-fit: the largest per-GPU limit L in [min_mw, max_mw] such that
// for every (headroom_mw, gpus) entry, L × gpus <= headroom_mw; nullopt when
// even min_mw does not fit one of them. Entries with gpus <= 0 are ignored.
std::optional<int64_t> LargestFittingLimit(
    absl::Span<const std::pair<int64_t, int64_t>> headroom_and_gpus,
    int64_t min_mw, int64_t max_mw);

// Measured admission's commitment per GPU: min(limit_mw, p + p ×
// margin_pct / 100), where p is the percentile-th percentile of the samples
// and each sample (mW, weight) stands for weight / unit_weight reports
// (rounded down; at least one report in all): with n reports sorted
// ascending, p is report number min(n, ceil(n × percentile / 100)), counted
// from 1. limit_mw when there are no samples. The daemon passes one sample
// per report (weight 1, unit 1); joule-sim passes a 10 s tick sample as ten
// 1 s reports (weight 10000 ms, unit 1000 ms).
int64_t MeasuredCommitPerGpuMw(
    absl::Span<const std::pair<int64_t, int64_t>> samples, int64_t unit_weight,
    uint32_t percentile, uint32_t margin_pct, int64_t limit_mw);

// The closed-loop admission margin of one domain. Admission keeps
// reserve_permille of the cap free (DomainSnapshot::admission_reserve_mw).
// After each report interval the reserve adapts to how close the domain
// came to its cap:
//   * peak > cap × (1000 - near_permille) / 1000 (a near-breach, or a
//     breach the power loop had to fix): reserve += up_permille;
//   * otherwise, after quiet_intervals such quiet intervals in a row:
//     reserve -= down_permille (and the quiet count starts again);
// always clamped into [min_permille, max_permille]. The bounds are what
// keeps the cap guarantee: the reserve never drops below min_permille, and
// whatever noise gets past it is caught by the reactive loop within one
// interval (it acts on the cap itself, not the admission cap).
struct AdaptiveMarginConfig {
  int64_t min_permille = 10;
  int64_t max_permille = 100;
  int64_t initial_permille = 30;
  int64_t near_permille = 10;
  int64_t up_permille = 20;
  int64_t down_permille = 5;
  int32_t quiet_intervals = 6;
  // After a cap cut (an interval whose cap is below the previous one's), a
  // near-breach whose peak is within the domain's committed power holds the
  // state (no raise, no quiet count) until the first quiet interval: the
  // operator moved the cap below the draw, the power loop brings the draw to
  // just under the new cap and the domain is then full by its own
  // commitments, so being near the cap says nothing about noise, and a
  // raised reserve would only keep admission closed after the cut.
  // A peak above committed power raises as before. Only AdaptMargin's
  // committed_mw overload applies it.
  bool hold_after_cap_cut = true;
};

struct MarginState {
  int64_t reserve_permille = 0;
  int32_t quiet = 0;       // quiet intervals in a row
  int64_t cap_mw = 0;      // the cap of the last interval (0: none yet)
  bool after_cut = false;  // near the cap in every interval since a cap cut
};

// The state at the start, before any interval: initial_permille clamped.
MarginState InitialMargin(const AdaptiveMarginConfig& config);

// One interval of the rule above. `peak_mw` is the highest measured power of
// the domain in the interval (before the power loop acted on it).
MarginState AdaptMargin(const MarginState& prev, int64_t peak_mw,
                        int64_t cap_mw, const AdaptiveMarginConfig& config);
// The same with the domain's committed power in the interval (what
// admission counted, DomainSnapshot::committed_mw) and the cap-cut hold
// (config.hold_after_cap_cut); jouled's DomainTree and joule-sim call this.
MarginState AdaptMargin(const MarginState& prev, int64_t peak_mw,
                        int64_t cap_mw, int64_t committed_mw,
                        const AdaptiveMarginConfig& config);

// The reserve in mW for a cap: cap × reserve_permille / 1000 (0 for caps
// <= 0).
int64_t MarginReserveMw(const MarginState& state, int64_t cap_mw);

}  // namespace joule::scheduler
