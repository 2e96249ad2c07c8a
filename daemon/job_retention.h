#pragma once

// Which finished job records may be deleted by age (docs/ha.md#sizing,
// config `retention { finished_jobs }`). Pure: the daemon's compaction pass
// (ClusterManager::CompactFinishedJobs) and the tests use it.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "joule/v1/joule.pb.h"

namespace joule::daemon {

// When the job ended: the time of its last history entry (its move to a
// final state); InfinitePast() if it has none.
absl::Time JobEndTime(const v1::Job& job);

// The ids of the finished jobs whose records may go, in groups that should
// be deleted together: one group per job that is not an array task, and one
// per array holding every task of the array (sorted by id). A job is
// deletable only if all of these hold:
//   - it is finished (not pending, starting or running) and ended before
//     `cutoff`;
//   - `settled(job)`: billing needs nothing more of it (every attempt that
//     ran is rated and in a finalized statement, Ledger::AttemptSettled);
//   - no active job names it in `spec.after` (a pending dependency would
//     otherwise read "unknown job");
// and an array's tasks go only all together: while any task is active or
// not deletable, the whole array stays (it is listed and cancelled as one).
// `jobs` is keyed by job id (JobTable's map, or any id → Job view).
std::vector<std::vector<std::string>> ExpiredJobGroups(
    const std::map<std::string, const v1::Job*>& jobs, absl::Time cutoff,
    const std::function<bool(const v1::Job&)>& settled);
// The same over a part of the jobs (a retention chunk): `jobs` holds the
// chunk and every task of each array with a task in it, and `needed` the
// ids that any active job (in `jobs` or not) names in `spec.after`.
std::vector<std::vector<std::string>> ExpiredJobGroups(
    const std::map<std::string, const v1::Job*>& jobs, absl::Time cutoff,
    const std::function<bool(const v1::Job&)>& settled,
    const absl::flat_hash_set<std::string>& needed);

}  // namespace joule::daemon
