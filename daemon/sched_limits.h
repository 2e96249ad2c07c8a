#pragma once

// Pure helpers of the scheduling limits in jouled (issue 11, part B): a
// job's time limit, its running reason, its dependencies' states. The
// controller's side is cluster_manager_sched.cc.

#include <string>

#include "absl/time/time.h"
#include "joule/v1/joule.pb.h"
#include "scheduler/dependencies.h"
#include "scheduler/time_limits.h"

namespace joule::daemon {

// The limit a job runs under: Job.time_limit (set at submit), else (a job
// stored before limits existed) its spec's max_runtime or its class's
// default. Never zero.
absl::Duration JobTimeLimit(const v1::Job& job,
                            const scheduler::TimeLimits& limits);

// "running on n1" or, for a gang, "running on n1, n2, n3": every node.
std::string RunningReason(const v1::Job& job);

// A dependency's state for scheduler::EvaluateDependencies.
scheduler::Dep DepOf(const std::string& id, const v1::Job* job);

}  // namespace joule::daemon
