#pragma once

// Parsing and small pure rules for the measured-plus options that the
// daemon's config (config/cluster_config.h) and joule-sim's flags share:
// class floors, the power-fit rule and the efficiency limit. No clock, no
// I/O; thread-safe.

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "scheduler/measured_window.h"
#include "scheduler/power_rules.h"

namespace joule::scheduler {

// "reserved=1,on-demand=0.8,spot=0": the floor of each class named, as a
// share in [0, 1] of the limit (0 = the GPU minimum; see ClassFloorMw);
// classes not named keep `defaults`' value, and the result is enabled.
// "on-demand-start=0.6" (also reserved-start, spot-start) sets a class's
// start floor share (ClassStartFloorMw, power_rules.h).
// "off": `defaults` disabled (jobs without a min power are not
// throttleable). Empty: `defaults`. Errors (INVALID_ARGUMENT) name the
// entry, e.g. "\"spot=2\": the share must be in [0, 1]".
absl::StatusOr<ClassFloors> ParseClassFloors(absl::string_view spec,
                                             ClassFloors defaults);

// A share "0.5" in [0, 1] as permille (rounded), or INVALID_ARGUMENT.
absl::StatusOr<int64_t> ParseSharePermille(absl::string_view text);

// The per-GPU limit a job in efficiency mode runs at: the throughput
// model's knee, knee_permille of `limit_mw` (joule-sim's --throttle-knee:
// below the knee throughput falls linearly with the limit, so energy per
// unit of work stops falling there), clamped into [model_min_mw,
// limit_mw]. Limits are increments over idle, as everywhere in the policy:
// on an H100 (idle 70 W) at 700 W, 500 permille gives 70 + 315 = 385 W.
int64_t EfficiencyLimitMw(int64_t limit_mw, int64_t model_min_mw,
                          int64_t knee_permille);

// measured-plus's per-job commitment by name, one set of names for the
// daemon's `scheduler { plus_commit }` and joule-sim's --plus-commit:
// "percentile" (MeasuredPlusRule: p50) or "floor-clamp" (FloorClampRule:
// clamp(floor, p50, p95)); nullopt for any other name.
std::optional<MeasuredCommitRule> ParsePlusCommit(absl::string_view name);
// The name ParsePlusCommit takes for a rule of this kind.
absl::string_view PlusCommitName(MeasuredCommitRule::Kind kind);
inline constexpr absl::string_view kPlusCommitNames = "percentile, floor-clamp";

}  // namespace joule::scheduler
