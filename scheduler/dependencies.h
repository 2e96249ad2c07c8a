#pragma once

// Job dependencies (`job submit --after A,B`, as Slurm's afterok): a job
// starts only once every job it names has succeeded; it fails, with a reason
// naming the dependency, as soon as one of them fails or is cancelled. Pure;
// jouled applies the verdict before each scheduling round (a job that waits
// on a dependency, or is held, is not offered to the policy at all).
//
// Example: job-3 --after job-1,job-2 while job-1 succeeded and job-2 runs:
// kWait "waiting for job-2 to succeed (it is running)"; job-2 then fails:
// kFail "dependency job-2 failed".

#include <string>
#include <utility>

#include "absl/types/span.h"

namespace joule::scheduler {

enum class DepState {
  kUnknown,    // no such job (treated as failed)
  kActive,     // pending, starting or running
  kSucceeded,  // exited 0
  kFailed,     // failed or preempted for good
  kCancelled,
};

struct DepVerdict {
  enum Kind { kReady, kWait, kFail };
  Kind kind = kReady;
  std::string reason;  // empty for kReady
};

// `deps`: (job id, its state, its state's name for the text, e.g. "running").
struct Dep {
  std::string id;
  DepState state = DepState::kUnknown;
  std::string state_name;
};

// kFail for the first failed, cancelled or unknown dependency (in the order
// given); else kWait naming the active ones; else kReady.
DepVerdict EvaluateDependencies(absl::Span<const Dep> deps);

}  // namespace joule::scheduler
