#pragma once

// Preemption notice (issue 11; docs/scheduling.md "Preemption notice"): the
// signal and grace a job gets when jouled stops it. A preemption (for a
// claim or a power cap) sends the job's JobSpec.preempt_signal and waits
// its preempt_grace, cut to the operator's scheduler.max_preempt_grace;
// every other stop (cancel, a failed gang rank) sends SIGTERM and waits
// scheduler.stop_grace, as before. Pure functions: no clock, no state.

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "joule/v1/joule.pb.h"

namespace joule::daemon {

// What one stop sends the agents: `signal` first (a canonical name, see
// common/preempt_signal.h), SIGKILL `grace` later.
struct StopNotice {
  std::string signal = "SIGTERM";
  absl::Duration grace;
  // The job asked for more than max_preempt_grace (a job stored before the
  // bound was lowered) and gets the bound.
  bool cut = false;
};

// At submit: a preempt_grace above the operator's bound is refused
// (INVALID_ARGUMENT naming spec.preempt_grace and the bound). The spec's
// own rules (allow-list, 0..24h) are validation::JobSpec's.
absl::Status CheckPreemptGrace(const v1::JobSpec& spec,
                               absl::Duration max_preempt_grace);

// The notice for a stop that ends in `target`: the job's own for
// JOB_STATE_PREEMPTED (signal default SIGTERM, grace default stop_grace,
// at most max_preempt_grace), else SIGTERM and stop_grace.
StopNotice NoticeFor(const v1::JobSpec& spec, v1::JobState target,
                     absl::Duration stop_grace,
                     absl::Duration max_preempt_grace);

// "SIGUSR1, SIGKILL after 1m" (and " (cut to max_preempt_grace)").
std::string NoticeText(const StopNotice& notice);

}  // namespace joule::daemon
