#pragma once

// Claims: a preemption in progress, as the policy sees it. Pure functions
// over a ClusterSnapshot; no clock, no I/O.
//
// A claim is made when a reserved job preempts (policy.h rule 5): it names
// the claimant, its victims and exactly the GPUs it will get. Until the
// victims are gone, Schedule (policy.cc):
//   - holds the claimed GPUs that are already free for the claimant: no
//     other job is placed on them (a preempted job is never re-placed on
//     the GPUs it was preempted for), and their power
//     (power_per_gpu_mw each) stays committed on every domain above them;
//   - never picks new victims for the claimant;
//   - places the claimant on exactly the claimed GPUs once every victim is
//     gone and every claimed GPU is free (at its limit, or throttled to fit
//     down to its min power).
// A claim is dropped (Decisions::dropped_claims, with the reason) when it
// no longer holds: a claimed node is gone or unschedulable, a claimed GPU
// is unhealthy or held by a job that is not a victim, the claimant no
// longer matches the claimed shape, or its GPUs are free but the power does
// not fit. The claimant is then scheduled like any pending job in the same
// call (and may preempt again).

#include <cstdint>
#include <string>
#include <vector>

#include "scheduler/types.h"

namespace joule::scheduler {

struct ClaimStatus {
  enum Kind { kWaiting, kReady, kInvalid };
  Kind kind = kWaiting;
  std::string reason;             // kInvalid: why it no longer holds
  std::vector<uint64_t> vacant;   // per share: claimed GPUs free now
  std::vector<uint64_t> claimed;  // per share: every claimed GPU
  size_t victims_running = 0;     // victims still in snapshot.running
};

// Where `claim` stands in `snapshot`.
ClaimStatus CheckClaim(const ClaimSnapshot& claim,
                       const ClusterSnapshot& snapshot);

// "waiting: preempting 2 job(s) to make room on n1 GPUs 0-7 (claimed; 1
// still stopping)".
std::string ClaimWaitReason(const ClaimSnapshot& claim,
                            const ClaimStatus& status,
                            const ClusterSnapshot& snapshot);

}  // namespace joule::scheduler
