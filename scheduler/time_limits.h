#pragma once

// Time limits per service class: every job has a max runtime, so backfill
// always has an end time to plan with (policy.h rule 6). Pure; shared by
// jouled (at submit and when it builds snapshots) and joule-sim.
//
// A job that gives no max runtime gets its class's default_max_runtime; one
// that asks for more than its class's max_runtime_limit is refused. The
// class is the requested one (a reserved job beyond its tenant's contract
// still has the reserved limits). Out of the box (no config):
//
//   class      default_max_runtime  max_runtime_limit
//   reserved   24h                  336h (14 days)
//   on-demand  24h                  168h (7 days)
//   spot       12h                  72h (3 days)
//
// Example: an on-demand job with no --max-runtime gets 24h; one asking for
// 200h is refused ("spec.max_runtime: 200h is above the on-demand limit
// 168h"); a spot job asking for 2h keeps 2h.

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scheduler/types.h"

namespace joule::scheduler {

struct ClassTimeLimit {
  absl::Duration default_max_runtime;
  absl::Duration max_runtime_limit;
};

// Invariant (checked by the config parser): 0 < default_max_runtime <=
// max_runtime_limit for every class.
struct TimeLimits {
  ClassTimeLimit reserved{absl::Hours(24), absl::Hours(14 * 24)};
  ClassTimeLimit on_demand{absl::Hours(24), absl::Hours(7 * 24)};
  ClassTimeLimit spot{absl::Hours(12), absl::Hours(3 * 24)};

  const ClassTimeLimit& For(ServiceClass cls) const;
  ClassTimeLimit& For(ServiceClass cls);
};

// The max runtime a new job of class `cls` gets: `requested` when it is
// positive and within the class's limit, the class default when it is zero.
// INVALID_ARGUMENT naming spec.max_runtime when it is negative or above the
// limit.
absl::StatusOr<absl::Duration> ResolveMaxRuntime(ServiceClass cls,
                                                 absl::Duration requested,
                                                 const TimeLimits& limits);

// The max runtime to plan with for a job already accepted (e.g. one stored
// before limits existed): `requested` when positive, else the class default.
// Never fails; never zero.
absl::Duration EffectiveMaxRuntime(ServiceClass cls, absl::Duration requested,
                                   const TimeLimits& limits);

// "24h", "90m", "1h30m" (absl::FormatDuration, whole seconds).
std::string FormatLimit(absl::Duration d);

}  // namespace joule::scheduler
