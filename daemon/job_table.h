#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/cluster_config.h"
#include "joule/v1/joule.pb.h"
#include "scheduler/measured_window.h"
#include "scheduler/types.h"
#include "storage/store.h"

namespace joule::daemon {

// "job/attempt": the key of one attempt (GPU allocations, agent reports).
std::string AttemptKey(const std::string& job_id, uint32_t attempt);
// Pending, starting or running.
bool IsActive(v1::JobState s);
// "pending", "running", ...
std::string LowerStateName(v1::JobState s);

// One job at run time: its persisted record plus what the agents reported
// about its current attempt.
struct JobRt {
  v1::Job job;
  // Per allocation index: started / ended as reported by the agents.
  std::vector<bool> started;
  std::vector<bool> ended;
  int32_t first_failure_code = 0;  // exit code of the first rank to fail
  uint64_t energy_mj = 0;
  // Measured modes: the recent per-GPU draw (scheduler/measured_window.h).
  scheduler::MeasuredWindow measured_window;
  int64_t measured_per_gpu_mw = 0;
  // The last report that showed this attempt running (any rank): a lost
  // attempt ends there, not when the loss is noticed.
  absl::Time last_seen = absl::InfinitePast();
  // Last start or limit change (the power loop's raise hysteresis).
  absl::Time limit_changed_at = absl::InfinitePast();
};

// A PENDING job in the queue: what the scheduling round offers the policy,
// built once from its record when it became pending (a job's spec, seq and
// time limit do not change while it waits).
struct QueuedJob {
  JobRt* rt = nullptr;
  // The record's fields; power limits, the learned knee and a time limit
  // from the config are the round's (`round_fields`).
  scheduler::PendingJob offer;
  // It has a power limit, efficiency mode or no time limit of its own: the
  // round adds what depends on the moment (idle offsets, knees, config).
  bool round_fields = false;
  bool array_limited = false;  // a task of an array with max_running
};
// `offer` and the flags from a pending job's record.
QueuedJob QueueEntry(JobRt& j);

// The jobs: every job ever submitted (persisted in kJobs with its attempts
// and history), the set of active ones, the job sequence and the
// submissions being written.
//
// Owns: job records and their lifecycle: a state changes only through
// Transition(), which appends the history entry and keeps the active set.
// Invariants: `active` holds exactly the jobs in PENDING, STARTING or
// RUNNING, `placed` the STARTING and RUNNING ones, `pending` the PENDING
// ones, `queue` the same ones in seq order, each with its QueuedJob built
// from its record; a PENDING job has no allocations and no stop request; job
// ids are unique (seq only grows, Load() resumes past the largest stored).
// Thread-safety: externally synchronized by the lock passed at construction
// (the ClusterManager's mu_).
class JobTable {
 public:
  using Map = std::map<std::string, JobRt>;
  // By (seq, id): queue order, unique.
  using Queue = absl::btree_map<std::pair<uint64_t, std::string>, QueuedJob>;

  JobTable(absl::Mutex* mu, const config::ClusterConfig* config)
      : mu_(mu), config_(config) {}

  // Reads kJobs. `on_attempt(job, attempt)` is called for every ended
  // attempt (fair share), `on_active(job)` for every active job (the
  // controller re-marks its GPUs). Resumes the sequence at least at
  // `next_seq`.
  absl::Status Load(
      storage::Store* store, uint64_t next_seq,
      const std::function<void(const v1::Job&, const v1::JobAttempt&)>&
          on_attempt,
      const std::function<void(const v1::Job&)>& on_active)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Map::iterator begin() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return jobs_.begin();
  }
  Map::iterator end() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return jobs_.end(); }
  Map::const_iterator begin() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return jobs_.begin();
  }
  Map::const_iterator end() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return jobs_.end();
  }
  Map::iterator find(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return jobs_.find(id);
  }
  Map::const_iterator find(const std::string& id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return jobs_.find(id);
  }
  JobRt& at(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return jobs_.at(id);
  }
  const JobRt& at(const std::string& id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return jobs_.at(id);
  }
  JobRt* Find(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The first job whose id is not below `id` (an array's tasks by prefix).
  Map::iterator lower_bound(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return jobs_.lower_bound(id);
  }
  // Pending, starting and running job ids.
  const absl::flat_hash_set<std::string>& active() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return active_;
  }
  // The active jobs that hold GPUs: STARTING and RUNNING (active() less
  // the PENDING ones), for the loops that skip a long pending queue.
  const absl::flat_hash_set<std::string>& placed() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return placed_;
  }
  // The PENDING jobs, by id, with their records (stable: std::map nodes),
  // so that a round over a long queue needs no lookup per job.
  const absl::flat_hash_map<std::string, JobRt*>& pending() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return pending_;
  }

  // The PENDING jobs in queue (seq) order with their offers: a round
  // copies them instead of reading every record.
  const Queue& queue() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_;
  }

  // A new job's sequence number.
  uint64_t NextSeq() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return next_seq_++; }
  uint64_t next_seq() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return next_seq_;
  }
  // Adds a job whose record is durable (SubmitJob) and makes it active.
  void Insert(JobRt j) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets a job whose record was deleted (retention); only finished ones.
  void Erase(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    active_.erase(id);
    placed_.erase(id);
    Unqueue(id);
    jobs_.erase(id);
  }
  // Takes a job that is not (yet) durable out of the active set.
  void Deactivate(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    active_.erase(id);
    placed_.erase(id);
    Unqueue(id);
  }
  // "tenant/request_id" of submissions being written right now.
  absl::flat_hash_set<std::string>& submitting()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return submitting_;
  }

  // Writes the job's record to `batch`.
  void Put(storage::WriteBatch* batch, const v1::Job& job) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves `j` to `state` (PREEMPTED is recorded in the history only: the
  // job stays where it is until its requeue), keeping the active set; a
  // move to PENDING clears the attempt's run-time state.
  void Transition(JobRt& j, v1::JobState state, std::string reason,
                  absl::Time when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When the current attempt's StartJob was sent (its STARTING transition).
  absl::Time StartSent(const JobRt& j) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Per-GPU power the job commits in its domains: its limit, or in the
  // measured modes the percentile of its recent draw.
  int64_t CommittedPerGpu(const JobRt& j) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records one measured per-GPU sample of the current attempt, standing
  // for `weight_ms` of draw (one report interval).
  void AddSample(JobRt& j, int64_t per_gpu_mw, int64_t weight_ms) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

 private:
  // pending_ and queue_ together: `j` is PENDING (again), or `id` is not.
  void Enqueue(JobRt& j) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unqueue(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex* const mu_;
  const config::ClusterConfig* const config_;
  Map jobs_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> active_ ABSL_GUARDED_BY(mu_);
  // Invariant: exactly the ids in active_ whose state is not PENDING.
  absl::flat_hash_set<std::string> placed_ ABSL_GUARDED_BY(mu_);
  // Invariant: exactly the ids in active_ whose state is PENDING, each
  // with its record in jobs_.
  absl::flat_hash_map<std::string, JobRt*> pending_ ABSL_GUARDED_BY(mu_);
  // Invariant: exactly the ids in pending_, keyed by (seq, id) as the
  // record was when it became pending.
  Queue queue_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_set<std::string> submitting_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule::daemon
