#pragma once

// The measured-plus policy as configurations of the pure policy and power
// loop, so that the daemon (ClusterManager) and joule-sim turn on exactly the
// same rules. See docs/scheduling.md, "measured-plus".

#include "absl/time/time.h"
#include "scheduler/policy.h"
#include "scheduler/power_control.h"

namespace joule::scheduler {

// `base` with throttle-to-fit, node-bound reservations, committed counted as
// at least measured, and the class floors (`floors`, enabled).
inline PolicyConfig MeasuredPlusPolicy(PolicyConfig base,
                                       ClassFloors floors = ClassFloors{}) {
  base.throttle_to_fit = true;
  base.reserve_best_node = true;
  base.committed_at_least_measured = true;
  base.class_floors = floors;
  base.class_floors.enabled = true;
  return base;
}

// `base` with partial raises (redistribution) and the raise hysteresis.
inline PowerControlConfig MeasuredPlusPower(PowerControlConfig base,
                                            absl::Duration min_raise_interval) {
  base.partial_raise = true;
  base.min_raise_interval = min_raise_interval;
  return base;
}

}  // namespace joule::scheduler
