#include "daemon/job_retention.h"

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "common/proto_time.h"
#include "daemon/job_table.h"

namespace joule::daemon {

absl::Time JobEndTime(const v1::Job& job) {
  if (job.history().empty()) return absl::InfinitePast();
  return FromProtoTime(job.history(job.history_size() - 1).time());
}

std::vector<std::vector<std::string>> ExpiredJobGroups(
    const std::map<std::string, const v1::Job*>& jobs, absl::Time cutoff,
    const std::function<bool(const v1::Job&)>& settled) {
  // Jobs a live job still waits for.
  absl::flat_hash_set<std::string> needed;
  for (const auto& [id, job] : jobs) {
    if (!IsActive(job->state())) continue;
    for (const std::string& dep : job->spec().after()) needed.insert(dep);
  }
  return ExpiredJobGroups(jobs, cutoff, settled, needed);
}

std::vector<std::vector<std::string>> ExpiredJobGroups(
    const std::map<std::string, const v1::Job*>& jobs, absl::Time cutoff,
    const std::function<bool(const v1::Job&)>& settled,
    const absl::flat_hash_set<std::string>& needed) {
  auto deletable = [&](const v1::Job& job) {
    return !IsActive(job.state()) && !job.history().empty() &&
           JobEndTime(job) < cutoff && !needed.contains(job.id()) &&
           settled(job);
  };
  std::vector<std::vector<std::string>> out;
  // Arrays: every task deletable, else none. The map is ordered by id and
  // an array's tasks share the prefix "<array>_", but other ids may sort
  // between them ("job-000010_1" < "job-0000100"), so group explicitly.
  absl::flat_hash_map<std::string, size_t> array_group;  // array -> out index
  absl::flat_hash_set<std::string> kept_arrays;
  for (const auto& [id, job] : jobs) {
    if (job->array_id().empty()) {
      if (deletable(*job)) out.push_back({id});
      continue;
    }
    const std::string& array = job->array_id();
    if (kept_arrays.contains(array)) continue;
    if (!deletable(*job)) {
      kept_arrays.insert(array);
      if (auto it = array_group.find(array); it != array_group.end()) {
        out[it->second].clear();
      }
      continue;
    }
    auto [it, inserted] = array_group.try_emplace(array, out.size());
    if (inserted) out.emplace_back();
    out[it->second].push_back(id);
  }
  std::erase_if(out, [](const auto& g) { return g.empty(); });
  return out;
}

}  // namespace joule::daemon
