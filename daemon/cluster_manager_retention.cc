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
  int64_t deleted = 0;
  size_t looked = 0;
  while (looked < kRetentionPassJobs) {
    // 1. One chunk from the cursor, under the lock: the jobs, every task of
    // an array with a task in the chunk (an array goes all together), the
    // candidates (finished before the cutoff) with the attempts that ran,
    // and what active jobs wait for. Billing is asked without the lock.
    std::vector<std::string> view_ids;
    std::vector<std::pair<std::string, std::vector<uint32_t>>> candidates;
    absl::flat_hash_set<std::string> needed;
    bool at_end = false;
    std::string chunk_start;
    {
      absl::MutexLock lock(&mu_);
      chunk_start = retention_cursor_;
      for (const std::string& id : jobs_.active()) {
        if (const JobRt* j = jobs_.Find(id); j != nullptr) {
          for (const std::string& dep : j->job.spec().after()) {
            needed.insert(dep);
          }
        }
      }
      absl::flat_hash_set<std::string> arrays;
      auto add = [&](const std::string& id, const v1::Job& job) {
        view_ids.push_back(id);
        if (IsActive(job.state()) || job.history().empty() ||
            JobEndTime(job) >= cutoff) {
          return;
        }
        std::vector<uint32_t> ran;
        for (const v1::JobAttempt& a : job.attempts()) {
          if (IsSet(a.start_time())) ran.push_back(a.attempt());
        }
        candidates.emplace_back(id, std::move(ran));
      };
      auto it = jobs_.lower_bound(retention_cursor_);
      for (size_t n = 0; it != jobs_.end() && n < kRetentionChunk; ++it, ++n) {
        ++looked;
        const v1::Job& job = it->second.job;
        if (job.array_id().empty()) {
          add(it->first, job);
        } else if (arrays.insert(job.array_id()).second) {
          const std::string prefix = absl::StrCat(job.array_id(), "_");
          for (auto t = jobs_.lower_bound(prefix);
               t != jobs_.end() && t->first.starts_with(prefix); ++t) {
            if (t->second.job.array_id() == job.array_id()) {
              add(t->first, t->second.job);
            }
          }
        }
      }
      at_end = it == jobs_.end();
      retention_cursor_ = at_end ? std::string() : it->first;
    }
    absl::flat_hash_set<std::string> settled;
    for (const auto& [id, ran] : candidates) {
      bool ok = true;
      for (uint32_t a : ran) ok = ok && attempt_settled(id, a);
      if (ok) settled.insert(id);
    }
    // 2. The groups (finished jobs do not change, so the verdicts hold), and
    // their delete ops: each job's record, and the submission's idempotency
    // record with the group's last job.
    std::vector<std::vector<storage::WriteBatch::Op>> ops;
    if (!candidates.empty()) {
      absl::MutexLock lock(&mu_);
      std::map<std::string, const v1::Job*> view;
      for (const std::string& id : view_ids) {
        if (const JobRt* j = jobs_.Find(id); j != nullptr) {
          view.emplace(id, &j->job);
        }
      }
      const std::vector<std::vector<std::string>> groups = ExpiredJobGroups(
          view, cutoff,
          [&](const v1::Job& job) { return settled.contains(job.id()); },
          needed);
      for (const std::vector<std::string>& g : groups) {
        std::vector<storage::WriteBatch::Op>& o = ops.emplace_back();
        for (const std::string& id : g) {
          o.push_back({std::string(storage::kJobs), id, std::nullopt});
        }
        const v1::Job& last = jobs_.at(g.back()).job;
        if (!last.request_id().empty()) {
          o.push_back(
              {std::string(storage::kJobsIdem),
               absl::StrCat(last.spec().tenant(), "/", last.request_id()),
               std::nullopt});
        }
      }
    }
    // 3. Bounded writes without the lock, then memory follows each write (a
    // failed write leaves memory holding more than the store, never less).
    const int64_t limit = options_.store->max_batch_ops();
    const size_t per = limit > 0 ? static_cast<size_t>(limit) : 1000;
    storage::WriteBatch batch;
    std::vector<std::string> in_batch;
    auto flush = [&]() -> absl::Status {
      if (batch.empty()) return absl::OkStatus();
      absl::Status s = options_.store->Write(batch, {.sync = true});
      if (!s.ok()) {
        absl::MutexLock lock(&mu_);
        retention_cursor_ = chunk_start;  // the next pass retries the chunk
        return s;
      }
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
    if (at_end) break;
  }
  return deleted;
}

absl::StatusOr<int64_t> ClusterManager::CompactEvents(absl::Time cutoff) {
  return events_.Compact(cutoff, options_.store->max_batch_ops());
}

}  // namespace joule::daemon
