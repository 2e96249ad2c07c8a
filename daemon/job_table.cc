#include "daemon/job_table.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/proto_names.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "daemon/controller_util.h"
#include "scheduler/power_rules.h"

namespace joule::daemon {
std::string AttemptKey(const std::string& job_id, uint32_t attempt) {
  return absl::StrCat(job_id, "/", attempt);
}

bool IsActive(v1::JobState s) {
  return s == v1::JOB_STATE_PENDING || s == v1::JOB_STATE_STARTING ||
         s == v1::JOB_STATE_RUNNING;
}

std::string LowerStateName(v1::JobState s) { return JobStateName(s); }

QueuedJob QueueEntry(JobRt& j) {
  const v1::JobSpec& s = j.job.spec();
  QueuedJob q;
  q.rt = &j;
  scheduler::PendingJob& p = q.offer;
  p.id = j.job.id();
  p.tenant = s.tenant();
  p.cls = ToPolicyClass(s.service_class());
  p.priority = s.priority();
  p.seq = j.job.seq();
  p.gpus_per_node = s.gpus_per_node();
  p.nodes = std::max<uint32_t>(1, s.nodes());
  p.gpu_model = s.gpu_model();
  // Without a power limit both powers stay 0 whatever the idle offset
  // (scheduler::OffsetPower); a time limit set at submit is the job's own
  // (JobTimeLimit).
  p.max_runtime = FromProtoDuration(j.job.time_limit());
  q.round_fields = s.power_limit_mw() > 0 || s.min_power_limit_mw() > 0 ||
                   s.power_mode() == v1::POWER_MODE_EFFICIENCY ||
                   p.max_runtime <= absl::ZeroDuration();
  q.array_limited = j.job.array_max_running() > 0;
  return q;
}

void JobTable::Enqueue(JobRt& j) {
  auto [it, inserted] = pending_.try_emplace(j.job.id(), &j);
  if (!inserted) {  // pending again: its entry is rebuilt
    queue_.erase({it->second->job.seq(), j.job.id()});
    it->second = &j;
  }
  queue_.insert_or_assign({j.job.seq(), j.job.id()}, QueueEntry(j));
}

void JobTable::Unqueue(const std::string& id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  queue_.erase({it->second->job.seq(), id});
  pending_.erase(it);
}

absl::Status JobTable::Load(
    storage::Store* store, uint64_t next_seq,
    const std::function<void(const v1::Job&, const v1::JobAttempt&)>&
        on_attempt,
    const std::function<void(const v1::Job&)>& on_active) {
  next_seq_ = std::max<uint64_t>(1, next_seq);
  absl::Status parse_error;
  RETURN_IF_ERROR(store->Scan(storage::kJobs, "", [&](auto key, auto value) {
    JobRt j;
    if (!j.job.ParseFromString(std::string(value))) {
      parse_error = absl::DataLossError(
          absl::StrCat("cannot parse ", std::string(storage::kJobs), " record ",
                       std::string(key)));
      return false;
    }
    const v1::Job& job = j.job;
    next_seq_ = std::max(next_seq_, job.seq() + 1);
    for (const v1::JobAttempt& a : job.attempts()) {
      if (IsSet(a.start_time()) && IsSet(a.end_time())) on_attempt(job, a);
    }
    if (IsActive(job.state())) {
      active_.insert(job.id());
      if (job.state() != v1::JOB_STATE_PENDING) placed_.insert(job.id());
      const size_t n = job.allocations_size();
      j.started.assign(n, job.state() == v1::JOB_STATE_RUNNING);
      j.ended.assign(n, false);
      on_active(job);
    }
    const std::string id = job.id();
    const bool pending =
        IsActive(job.state()) && job.state() == v1::JOB_STATE_PENDING;
    JobRt& stored = jobs_[id] = std::move(j);
    if (pending) Enqueue(stored);
    return true;
  }));
  return parse_error;
}

JobRt* JobTable::Find(const std::string& id) {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second;
}

void JobTable::Insert(JobRt j) {
  const std::string id = j.job.id();
  const bool placed = j.job.state() != v1::JOB_STATE_PENDING;
  JobRt& stored = jobs_[id] = std::move(j);
  active_.insert(id);
  if (placed) {
    placed_.insert(id);
    Unqueue(id);
  } else {
    placed_.erase(id);
    Enqueue(stored);
  }
}

void JobTable::Put(storage::WriteBatch* batch, const v1::Job& job) const {
  batch->Put(storage::kJobs, job.id(), job.SerializeAsString());
}

void JobTable::Transition(JobRt& j, v1::JobState state, std::string reason,
                          absl::Time when) {
  if (state != v1::JOB_STATE_PREEMPTED) j.job.set_state(state);
  j.job.set_reason(reason);
  v1::JobTransition* t = j.job.add_history();
  t->set_state(state);
  *t->mutable_time() = ToProtoTime(when);
  t->set_reason(std::move(reason));
  t->set_attempt(j.job.attempt());
  if (IsActive(state)) {
    active_.insert(j.job.id());
    if (state == v1::JOB_STATE_PENDING) {
      placed_.erase(j.job.id());
      Enqueue(j);
    } else {
      placed_.insert(j.job.id());
      Unqueue(j.job.id());
    }
  } else if (state != v1::JOB_STATE_PREEMPTED) {
    active_.erase(j.job.id());
    placed_.erase(j.job.id());
    Unqueue(j.job.id());
  }
  if (state == v1::JOB_STATE_PENDING) {
    j.job.clear_allocations();
    j.job.set_stopping_to(v1::JOB_STATE_UNSPECIFIED);
    j.started.clear();
    j.ended.clear();
    j.first_failure_code = 0;
    j.measured_window.Clear();
    j.measured_per_gpu_mw = 0;
    j.energy_mj = 0;
  }
}

absl::Time JobTable::StartSent(const JobRt& j) const {
  for (int i = j.job.history_size() - 1; i >= 0; --i) {
    const v1::JobTransition& t = j.job.history(i);
    if (t.attempt() != j.job.attempt()) break;
    if (t.state() == v1::JOB_STATE_STARTING) return FromProtoTime(t.time());
  }
  return absl::InfinitePast();
}

int64_t JobTable::CommittedPerGpu(const JobRt& j) const {
  int64_t limit = j.job.power_limit_mw();
  if (j.job.allocations_size() > 0)
    limit = j.job.allocations(0).power_limit_mw();
  const config::AdmissionMode mode = config_->scheduler.admission;
  // The rule joule-sim applies (scheduler/measured_window.h): measured
  // commits the configured percentile + margin, measured-plus the
  // configured plus_commit (p50, or clamp(floor, p50, p95)).
  if (mode == config::AdmissionMode::kMeasured) {
    return j.measured_window.CommitPerGpuMw(
        scheduler::MeasuredRule(config_->scheduler.measured_percentile,
                                config_->scheduler.measured_margin_pct),
        scheduler::MeasuredWindowOptions{}, limit, j.job.min_power_limit_mw());
  }
  if (mode == config::AdmissionMode::kMeasuredPlus) {
    return j.measured_window.CommitPerGpuMw(config_->scheduler.plus_commit,
                                            scheduler::MeasuredWindowOptions{},
                                            limit, j.job.min_power_limit_mw());
  }
  return limit;
}

void JobTable::AddSample(JobRt& j, int64_t per_gpu_mw,
                         int64_t weight_ms) const {
  j.measured_per_gpu_mw = per_gpu_mw;
  j.measured_window.Add(per_gpu_mw, weight_ms,
                        scheduler::MeasuredWindowOptions{});
}

}  // namespace joule::daemon
