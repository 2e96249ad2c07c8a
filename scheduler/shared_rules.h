#pragma once

// Rules that both jouled (daemon/cluster_manager*.cc) and joule-sim apply
// around the policies: how the state manager turns its state into a
// snapshot and a decision back into limits. Pure functions; no clock, no
// I/O.

#include <cstdint>

#include "absl/types/span.h"
#include "scheduler/types.h"

namespace joule::scheduler {

// Idle offsets. Committed power counts every free GPU at idle, so what a
// job adds where it lands is, per GPU, its limit minus idle: the policy
// works with limits as increments over idle.
//
// A model's limits as the policy sees them: TDP and range minus `idle_mw`
// (never negative).
GpuModelSpec OffsetByIdle(const GpuModelSpec& spec, int64_t idle_mw);
// What is taken off a pending job's explicit power: the idle of its model,
// or for a job of any model the smallest idle among `listed_idle_mw` (the
// config's models; 0 when there are none).
int64_t PendingIdleOffsetMw(bool names_model, int64_t model_idle_mw,
                            absl::Span<const int64_t> listed_idle_mw);
// A pending job's explicit power as the policy takes it: power - offset,
// at least 1 mW; 0 (none given) stays 0.
int64_t OffsetPower(int64_t power_mw, int64_t offset_mw);

// The stopping-job view. The draw projected for one GPU: its last reported
// draw, capped at the limit commanded (0 = none commanded). A job being
// stopped has its GPUs commanded to their minimum limit the moment it is
// chosen (StopFloorMw), so during its grace it counts at most that, and the
// projection matches what the agents report within a report interval.
int64_t ProjectedGpuMw(int64_t reported_mw, int64_t commanded_mw);
// The limit a stopping job's GPU is set to: the GPU's minimum limit, never
// above its current one; 0 (unknown minimum) leaves the limit as it is.
int64_t StopFloorMw(int64_t gpu_min_limit_mw, int64_t current_limit_mw);

}  // namespace joule::scheduler
