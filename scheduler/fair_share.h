#pragma once

// Fair-share usage: decayed GPU-seconds per tenant, counted continuously
// while a tenant's jobs hold GPUs (not only when an attempt ends). Pure
// functions, shared by jouled and joule-sim.
//
// A GPU held at time s counts 2^-((t - s) / half_life) GPU-seconds per
// second at time t. A tenant's usage is kept as (value, at): its decayed
// GPU-seconds at time `at`. Between two changes of the number of GPUs the
// tenant holds (an attempt starts or ends), the value follows in closed form:
//
//   u(t) = u(at) · 2^-((t - at)/h) + g · h/ln 2 · (1 − 2^-((t - at)/h))
//
// where g is the GPUs held over [at, t] and h the half-life. The owner
// advances the record only when g changes and persists it in the same write
// as that change; everything else reads UsageAt, which changes nothing. So
// after a restart the record and g (from the persisted running jobs) are
// the same as before, and UsageAt gives the same value to the last bit.
//
// An attempt that ended at E before the record's time (it ended while the
// daemon was down, or is settled late) is taken back over [E, at] with
// AddSpan(−gpus, E, at): the result equals having advanced at E.
//
// Worked example (h = 1 h): a tenant holds 24 GPUs from 10:00; at 11:00
// u = 24 · 3600/ln 2 · (1 − ½) = 62,324 GPU-seconds (17.3 GPU-hours), at
// 12:00 u = 62,324 · ½ + 62,324 = 93,487; another tenant that held none has
// 0, so its jobs sort first.

#include <cstdint>

#include "absl/time/time.h"

namespace joule::scheduler {

struct DecayedUsage {
  double gpu_seconds = 0;                // the value at `at`
  absl::Time at = absl::InfinitePast();  // InfinitePast: never used
};

// The record advanced to `to` with `gpus` held over [at, to]. A record that
// was never used starts at `to` with 0 (nothing was held before). `to`
// before `at` returns the record unchanged. half_life <= 0 is taken as 1 s.
DecayedUsage AdvanceUsage(const DecayedUsage& u, absl::Time to, int64_t gpus,
                          absl::Duration half_life);

// The decayed GPU-seconds at `now` with `gpus` held since the record's time
// (a read: AdvanceUsage(u, now, gpus, h).gpu_seconds; 0 for an unused one).
double UsageAt(const DecayedUsage& u, absl::Time now, int64_t gpus,
               absl::Duration half_life);

// Adds `gpus` held over [from, to] (clamped to at most the record's time;
// `gpus` may be negative to take back a span that was counted but did not
// happen), as valued at the record's time. The result is never below 0.
DecayedUsage AddSpan(const DecayedUsage& u, int64_t gpus, absl::Time from,
                     absl::Time to, absl::Duration half_life);

// The fair-share sort key: usage / weight in GPU-hours (weight 0 = 1).
double FairShareKey(double gpu_seconds, uint32_t weight);

}  // namespace joule::scheduler
