// ClusterManager: deleting finished jobs and old events by age
// (docs/ha.md#sizing). The selection is pure (daemon/job_retention.h); the
// pass is driven by daemon/retention.h on the leader.
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "daemon/cluster_manager.h"
#include "daemon/job_retention.h"

namespace joule::daemon {

absl::StatusOr<int64_t> ClusterManager::CompactFinishedJobs(
    absl::Time cutoff,
    const std::function<bool(const std::string&, uint32_t)>& attempt_settled) {
  // 1. Candidates (finished before the cutoff) and the attempts that ran,
  // under the lock; billing is asked without it, so that the pass holds
  // the manager's lock only for the two scans.
  std::vector<std::pair<std::string, std::vector<uint32_t>>> candidates;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, j] : jobs_) {
      if (IsActive(j.job.state()) || j.job.history().empty() ||
          JobEndTime(j.job) >= cutoff) {
        continue;
      }
      std::vector<uint32_t> ran;
      for (const v1::JobAttempt& a : j.job.attempts()) {
        if (IsSet(a.start_time())) ran.push_back(a.attempt());
      }
      candidates.emplace_back(id, std::move(ran));
    }
  }
  if (candidates.empty()) return 0;
  absl::flat_hash_set<std::string> settled;
  for (const auto& [id, ran] : candidates) {
    bool ok = true;
    for (uint32_t a : ran) ok = ok && attempt_settled(id, a);
    if (ok) settled.insert(id);
  }
  // 2. The groups (finished jobs do not change, so the verdicts hold), and
  // their delete ops: each job's record, and the submission's idempotency
  // record with the group's last job.
  std::vector<std::vector<std::string>> groups;
  std::vector<std::vector<storage::WriteBatch::Op>> ops;
  {
    absl::MutexLock lock(&mu_);
    std::map<std::string, const v1::Job*> view;
    for (const auto& [id, j] : jobs_) view.emplace(id, &j.job);
    groups = ExpiredJobGroups(view, cutoff, [&](const v1::Job& job) {
      return settled.contains(job.id());
    });
    for (const std::vector<std::string>& g : groups) {
      std::vector<storage::WriteBatch::Op>& o = ops.emplace_back();
      for (const std::string& id : g) {
        o.push_back({std::string(storage::kJobs), id, std::nullopt});
      }
      const v1::Job& last = jobs_.at(g.back()).job;
      if (!last.request_id().empty()) {
        o.push_back({std::string(storage::kJobsIdem),
                     absl::StrCat(last.spec().tenant(), "/", last.request_id()),
                     std::nullopt});
      }
    }
  }
  // 3. Bounded writes without the lock, then memory follows each write (a
  // failed write leaves memory holding more than the store, never less).
  const int64_t limit = options_.store->max_batch_ops();
  const size_t per = limit > 0 ? static_cast<size_t>(limit) : 1000;
  int64_t deleted = 0;
  storage::WriteBatch batch;
  std::vector<std::string> in_batch;
  auto flush = [&]() -> absl::Status {
    if (batch.empty()) return absl::OkStatus();
    absl::Status s = options_.store->Write(batch, {.sync = true});
    if (!s.ok()) return s;
    absl::MutexLock lock(&mu_);
    for (const std::string& id : in_batch) jobs_.Erase(id);
    deleted += static_cast<int64_t>(in_batch.size());
    batch.Clear();
    in_batch.clear();
    return absl::OkStatus();
  };
  for (const std::vector<storage::WriteBatch::Op>& o : ops) {
    for (const storage::WriteBatch::Op& op : o) {
      if (batch.size() >= per) {
        if (absl::Status s = flush(); !s.ok()) return s;
      }
      batch.Delete(op.table, op.key);
      if (op.table == storage::kJobs) in_batch.push_back(op.key);
    }
  }
  if (absl::Status s = flush(); !s.ok()) return s;
  return deleted;
}

absl::StatusOr<int64_t> ClusterManager::CompactEvents(absl::Time cutoff) {
  return events_.Compact(cutoff, options_.store->max_batch_ops());
}

}  // namespace joule::daemon
