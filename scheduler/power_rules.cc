#include "scheduler/power_rules.h"

#include <algorithm>
#include <limits>

#include "absl/container/inlined_vector.h"
#include "scheduler/measured_window.h"

namespace joule::scheduler {

namespace {

// The share of `cls` among per-class shares.
int64_t ClassShare(ServiceClass cls, int64_t reserved, int64_t on_demand,
                   int64_t spot) {
  if (cls == ServiceClass::kReserved) return reserved;
  if (cls == ServiceClass::kSpot) return spot;
  return on_demand;
}

int64_t ShareFloorMw(int64_t permille, int64_t limit_mw, int64_t model_min_mw) {
  permille = std::clamp<int64_t>(permille, 0, 1000);
  const int64_t share = limit_mw * permille / 1000;
  return std::clamp(share, model_min_mw, limit_mw);
}

}  // namespace

int64_t ClassFloorMw(ServiceClass cls, int64_t limit_mw, int64_t model_min_mw,
                     const ClassFloors& floors) {
  if (!floors.enabled || limit_mw <= model_min_mw) return limit_mw;
  return ShareFloorMw(
      ClassShare(cls, floors.reserved_permille, floors.on_demand_permille,
                 floors.spot_permille),
      limit_mw, model_min_mw);
}

int64_t ClassStartFloorMw(ServiceClass cls, int64_t limit_mw,
                          int64_t model_min_mw, const ClassFloors& floors) {
  const int64_t floor = ClassFloorMw(cls, limit_mw, model_min_mw, floors);
  if (!floors.enabled || limit_mw <= model_min_mw) return floor;
  return std::min(floor,
                  ShareFloorMw(ClassShare(cls, floors.reserved_start_permille,
                                          floors.on_demand_start_permille,
                                          floors.spot_start_permille),
                               limit_mw, model_min_mw));
}

int64_t StartedFloorMw(int64_t start_limit_mw, int64_t floor_mw) {
  return std::min(start_limit_mw, floor_mw);
}

std::optional<int64_t> LargestFittingLimit(
    absl::Span<const std::pair<int64_t, int64_t>> headroom_and_gpus,
    int64_t min_mw, int64_t max_mw) {
  if (max_mw < min_mw) return std::nullopt;
  int64_t best = max_mw;
  for (const auto& [headroom, gpus] : headroom_and_gpus) {
    if (gpus <= 0) continue;
    if (headroom < 0) return std::nullopt;
    // Floor division: the largest L with L × gpus <= headroom.
    best = std::min(best, headroom / gpus);
  }
  if (best < min_mw) return std::nullopt;
  return best;
}

int64_t MeasuredCommitPerGpuMw(
    absl::Span<const std::pair<int64_t, int64_t>> samples, int64_t unit_weight,
    uint32_t percentile, uint32_t margin_pct, int64_t limit_mw) {
  if (samples.empty()) return limit_mw;
  const int64_t p = WeightedPercentileMw(samples, unit_weight, percentile);
  const int64_t with_margin = p + p * static_cast<int64_t>(margin_pct) / 100;
  return std::min(limit_mw, with_margin);
}

namespace {

// Near-breach: within near_permille of the cap, or over it. Compared as
// peak × 1000 > cap × (1000 - near) without overflow for caps up to ~9 GW.
bool NearCap(int64_t peak_mw, int64_t cap_mw, int64_t near_permille) {
  return cap_mw > 0 &&
         peak_mw > cap_mw / 1000 * (1000 - near_permille) +
                       cap_mw % 1000 * (1000 - near_permille) / 1000;
}

}  // namespace

MarginState InitialMargin(const AdaptiveMarginConfig& config) {
  MarginState s;
  s.reserve_permille =
      std::clamp(config.initial_permille, config.min_permille,
                 std::max(config.min_permille, config.max_permille));
  return s;
}

MarginState AdaptMargin(const MarginState& prev, int64_t peak_mw,
                        int64_t cap_mw, const AdaptiveMarginConfig& config) {
  const int64_t lo = config.min_permille;
  const int64_t hi = std::max(config.min_permille, config.max_permille);
  MarginState next = prev;
  if (NearCap(peak_mw, cap_mw, config.near_permille)) {
    next.reserve_permille += config.up_permille;
    next.quiet = 0;
  } else if (++next.quiet >= std::max<int32_t>(1, config.quiet_intervals)) {
    next.reserve_permille -= config.down_permille;
    next.quiet = 0;
  }
  next.reserve_permille = std::clamp(next.reserve_permille, lo, hi);
  return next;
}

MarginState AdaptMargin(const MarginState& prev, int64_t peak_mw,
                        int64_t cap_mw, int64_t committed_mw,
                        const AdaptiveMarginConfig& config) {
  const bool near = NearCap(peak_mw, cap_mw, config.near_permille);
  const bool cut = prev.cap_mw > 0 && cap_mw < prev.cap_mw;
  MarginState next;
  if (config.hold_after_cap_cut && near && (cut || prev.after_cut) &&
      peak_mw <= committed_mw) {
    next = prev;  // within the commitments after a cut: hold
  } else {
    next = AdaptMargin(prev, peak_mw, cap_mw, config);
  }
  next.cap_mw = cap_mw;
  next.after_cut = near && (cut || prev.after_cut);
  return next;
}

int64_t MarginReserveMw(const MarginState& state, int64_t cap_mw) {
  if (cap_mw <= 0) return 0;
  // cap / 1000 × permille + remainder, exact for caps up to ~9 GW.
  return cap_mw / 1000 * state.reserve_permille +
         cap_mw % 1000 * state.reserve_permille / 1000;
}

}  // namespace joule::scheduler
