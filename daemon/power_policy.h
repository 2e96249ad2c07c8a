#pragma once

// The PolicyConfig the daemon schedules with: the base policy, plus the
// measured-plus rules (scheduler/measured_plus.h) with the config's class
// floors and power fit under admission "measured-plus", and the config's
// efficiency knee for jobs in power_mode EFFICIENCY. Pure; thread-safe.

#include "config/cluster_config.h"
#include "scheduler/measured_plus.h"
#include "scheduler/policy.h"

namespace joule::daemon {

inline scheduler::PolicyConfig DaemonPolicy(
    scheduler::PolicyConfig base, bool measured_plus,
    const config::SchedulerSettings& settings) {
  base.efficiency_knee_permille = settings.efficiency_knee_permille;
  if (!measured_plus) return base;
  base = scheduler::MeasuredPlusPolicy(base, settings.class_floors);
  base.class_floors.enabled = settings.class_floors.enabled;
  base.power_fit = settings.power_fit;
  return base;
}

}  // namespace joule::daemon
