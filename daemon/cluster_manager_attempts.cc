// ClusterManager: the lifecycle of job attempts (start, stop, end) as the
// agents report it, and liveness.
#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "billing/ledger.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "daemon/cluster_manager.h"
#include "daemon/controller_util.h"
#include "daemon/preempt_notice.h"
#include "daemon/sched_limits.h"
#include "scheduler/shared_rules.h"
#include "daemon/validation.h"

namespace joule::daemon {

v1::JobAttempt ClusterManager::EndAttemptLocked(JobRt& j, absl::Time end,
                                                std::string outcome,
                                                storage::WriteBatch* batch) {
  v1::JobAttempt* a = j.job.attempts_size() > 0
                          ? j.job.mutable_attempts(j.job.attempts_size() - 1)
                          : j.job.add_attempts();
  if (IsSet(a->start_time()) && !IsSet(a->end_time())) {
    if (end < FromProtoTime(a->start_time()))
      end = FromProtoTime(a->start_time());
    *a->mutable_end_time() = ToProtoTime(end);
    uint32_t gpus = 0;
    for (const auto& al : a->allocations()) gpus += al.gpu_indices_size();
    AddTenantUsageLocked(j.job.spec().tenant(), gpus,
                         FromProtoTime(a->start_time()), end, batch);
  }
  a->set_outcome(std::move(outcome));
  a->set_energy_mj(j.energy_mj);
  const std::string key = AttemptKey(j.job.id(), j.job.attempt());
  for (const v1::Allocation& al : j.job.allocations()) {
    auto it = nodes_.find(al.node());
    if (it == nodes_.end()) continue;
    for (uint32_t g : al.gpu_indices()) {
      if (g < it->second.gpus.size() && it->second.gpus[g].job_key == key) {
        Gpu& gpu = it->second.gpus[g];
        gpu.job_key.clear();
        gpu.commanded_mw = 0;
        // The last report still shows the job's draw; until the next one,
        // count the GPU as idle so the power loop does not act on stale
        // numbers.
        gpu.status.set_power_mw(
            std::min(gpu.status.power_mw(), IdleMwLocked(gpu.info.model())));
      }
    }
    UpdateNodeMeasuredLocked(it->second);
  }
  if (options_.attempts != nullptr && IsSet(a->start_time())) {
    options_.attempts->AddAttempt(j.job, *a, batch);
  }
  NotifyLocked();
  return *a;
}

void ClusterManager::RequestStopLocked(JobRt& j, v1::JobState target,
                                       std::string reason) {
  if (j.job.stopping_to() != v1::JOB_STATE_UNSPECIFIED) return;
  j.job.set_stopping_to(target);
  // A preemption gives the job its notice (preempt_notice.h).
  const StopNotice notice =
      NoticeFor(j.job.spec(), target, options_.config.scheduler.stop_grace,
                options_.config.scheduler.max_preempt_grace);
  if (target == v1::JOB_STATE_PREEMPTED &&
      (!j.job.spec().preempt_signal().empty() ||
       j.job.spec().has_preempt_grace())) {
    absl::StrAppend(&reason, " (notice: ", NoticeText(notice), ")");
  }
  j.job.set_reason(reason);
  for (size_t i = 0; i < static_cast<size_t>(j.job.allocations_size()); ++i) {
    if (i < j.ended.size() && j.ended[i]) continue;
    auto it = nodes_.find(j.job.allocations(i).node());
    if (it == nodes_.end()) continue;
    // Its GPUs go to their minimum limit first: the draw falls within a
    // report interval, not after the grace (scheduler/shared_rules.h).
    for (uint32_t g : j.job.allocations(i).gpu_indices()) {
      if (g >= it->second.gpus.size()) continue;
      Gpu& gpu = it->second.gpus[g];
      const int64_t current = gpu.commanded_mw > 0
                                  ? gpu.commanded_mw
                                  : j.job.allocations(i).power_limit_mw();
      const int64_t floor =
          scheduler::StopFloorMw(gpu.info.min_power_limit_mw(), current);
      if (floor <= 0 || floor == gpu.commanded_mw) continue;
      gpu.commanded_mw = floor;
      v1::DaemonMessage m;
      m.mutable_set_power_limit()->set_gpu_index(g);
      m.mutable_set_power_limit()->set_power_limit_mw(floor);
      m.mutable_set_power_limit()->set_reason(
          "stopping: minimum limit for the stop grace");
      SendLocked(it->second, m);
    }
    SendLocked(it->second, StopMessage(j.job.id(), j.job.attempt(), reason,
                                       notice.grace, notice.signal));
    UpdateNodeMeasuredLocked(it->second);
  }
}

void ClusterManager::DropClaimLocked(const std::string& job_id,
                                     const std::string& why,
                                     storage::WriteBatch* batch) {
  if (claims_.Erase(job_id, batch)) {
    AddEventLocked(batch, "claim", job_id, absl::StrCat("claim dropped: ", why));
  }
}

absl::Status ClusterManager::HandleJobUpdate(const std::string& node,
                                             const v1::JobUpdate& u) {
  absl::MutexLock lock(&mu_);
  JobRt* j = FindJobLocked(u.job_id());
  // Updates of attempts that are over are duplicates (e.g. re-sent after a
  // reconnect): ignored.
  if (j == nullptr || !IsActive(j->job.state()) ||
      j->job.state() == v1::JOB_STATE_PENDING ||
      j->job.attempt() != u.attempt()) {
    return absl::OkStatus();
  }
  int rank = -1;
  for (int i = 0; i < j->job.allocations_size(); ++i) {
    if (j->job.allocations(i).node() == node) rank = i;
  }
  if (rank < 0) return absl::OkStatus();
  // Times are the daemon's: never before it sent StartJob, never after it
  // received this update, whatever the agent's clock says.
  const absl::Time now = options_.clock->Now();
  const absl::Time sent = std::min(StartSentLocked(*j), now);
  const absl::Time when =
      std::clamp(IsSet(u.time()) ? FromProtoTime(u.time()) : now, sent, now);
  const std::string message = u.message().substr(0, validation::kMaxTextBytes);
  storage::WriteBatch batch;
  std::vector<std::pair<v1::Job, v1::JobAttempt>> billed;
  switch (u.phase()) {
    case v1::JOB_PHASE_STARTED: {
      if (j->started[rank]) return absl::OkStatus();
      j->started[rank] = true;
      if (j->job.state() == v1::JOB_STATE_STARTING) {
        v1::JobAttempt* a = j->job.mutable_attempts(j->job.attempts_size() - 1);
        *a->mutable_start_time() = ToProtoTime(when);
        // A job being stopped (e.g. preempted while STARTING) keeps the
        // reason it is being stopped for; the history notes the start.
        const std::string stop_reason = j->job.reason();
        TransitionLocked(*j, v1::JOB_STATE_RUNNING,
                         absl::StrCat(RunningReason(j->job),
                                      message.empty() ? "" : "; ", message),
                         when);
        if (j->job.stopping_to() != v1::JOB_STATE_UNSPECIFIED) {
          j->job.set_reason(stop_reason);
        }
        PutJobLocked(&batch, j->job);
      }
      break;
    }
    case v1::JOB_PHASE_FAILED_TO_START:
    case v1::JOB_PHASE_EXITED:
    case v1::JOB_PHASE_LOST: {
      if (j->ended[rank]) return absl::OkStatus();
      j->ended[rank] = true;
      // The job's exit code is that of the first rank that failed (the
      // others are then stopped, and their 143s say nothing).
      if (j->first_failure_code == 0 && u.exit_code() != 0) {
        j->first_failure_code = u.exit_code();
      }
      // Physics bounds what a rank can have drawn: its GPUs at twice their
      // max limit for the whole attempt (mW x s = mJ).
      uint64_t energy = u.energy_mj();
      {
        const v1::JobAttempt& a = j->job.attempts(j->job.attempts_size() - 1);
        const absl::Time start =
            IsSet(a.start_time()) ? FromProtoTime(a.start_time()) : sent;
        const double seconds =
            std::max(0.0, absl::ToDoubleSeconds(when - start)) + 1;
        auto nit = nodes_.find(node);
        double max_mw = 0;
        for (uint32_t g : j->job.allocations(rank).gpu_indices()) {
          if (nit != nodes_.end() && g < nit->second.gpus.size()) {
            const int64_t max_limit =
                nit->second.gpus[g].info.max_power_limit_mw();
            max_mw +=
                2.0 * (max_limit > 0 ? max_limit : validation::kMaxPowerMw);
          }
        }
        const double cap = max_mw * seconds;
        if (static_cast<double>(energy) > cap) {
          AddEventLocked(&batch, "telemetry", node,
                         absl::StrCat("job_update.energy_mj of ", j->job.id(),
                                      " from node ", node, ": ", energy,
                                      " mJ is more than its GPUs can draw; "
                                      "counted as ",
                                      static_cast<uint64_t>(cap)));
          energy = static_cast<uint64_t>(cap);
        }
      }
      j->energy_mj += energy;
      const bool failed = u.phase() != v1::JOB_PHASE_EXITED ||
                          u.exit_code() != 0 || u.max_runtime_exceeded();
      if (u.phase() == v1::JOB_PHASE_EXITED && !j->started[rank] &&
          IsSet(u.start_time())) {
        // The STARTED update never arrived: take the start from the exit.
        j->started[rank] = true;
        if (j->job.state() == v1::JOB_STATE_STARTING) {
          const absl::Time start =
              std::clamp(FromProtoTime(u.start_time()), sent, when);
          *j->job.mutable_attempts(j->job.attempts_size() - 1)
               ->mutable_start_time() = ToProtoTime(start);
          const std::string stop_reason = j->job.reason();
          TransitionLocked(*j, v1::JOB_STATE_RUNNING, RunningReason(j->job),
                           start);
          if (j->job.stopping_to() != v1::JOB_STATE_UNSPECIFIED) {
            j->job.set_reason(stop_reason);
          }
        }
      }
      if (failed && j->job.stopping_to() == v1::JOB_STATE_UNSPECIFIED) {
        std::string why =
            u.max_runtime_exceeded()
                ? "max runtime exceeded"
                : absl::StrCat("rank ", rank, " on ", node, ": ", message);
        RequestStopLocked(*j, v1::JOB_STATE_FAILED, why);
      }
      bool all_ended = true;
      for (bool e : j->ended) all_ended = all_ended && e;
      if (!all_ended) break;
      FinishAttemptLocked(*j, when, &batch, &billed);
      break;
    }
    default:
      return absl::InvalidArgumentError("job_update.phase: unknown phase");
  }
  if (u.phase() == v1::JOB_PHASE_STARTED) {
    // Not acknowledged to anyone and re-derivable: if this write is lost
    // with the machine, the agent's EXITED carries the start time again.
    // It still survives a crash of jouled itself (the WAL is written).
    RETURN_IF_ERROR(
        options_.store->Write(batch, storage::WriteOptions{.sync = false}));
  } else {
    RETURN_IF_ERROR(CommitLocked(batch));
  }
  CommitBilled(billed);
  return absl::OkStatus();
}

void ClusterManager::FinishAttemptLocked(
    JobRt& j, absl::Time end, storage::WriteBatch* batch,
    std::vector<std::pair<v1::Job, v1::JobAttempt>>* billed) {
  v1::JobState target = j.job.stopping_to();
  std::string reason = j.job.reason();
  if (target == v1::JOB_STATE_UNSPECIFIED) {
    target = v1::JOB_STATE_SUCCEEDED;
    reason = "all ranks exited with code 0";
  }
  j.job.set_exit_code(j.first_failure_code);
  v1::JobAttempt a =
      EndAttemptLocked(j, end, LowerStateName(target) + ": " + reason, batch);
  if (IsSet(a.start_time()) && options_.attempts != nullptr) {
    billed->emplace_back(j.job, a);
  }
  if (target == v1::JOB_STATE_PREEMPTED) {
    TransitionLocked(j, v1::JOB_STATE_PREEMPTED, reason, end);
    TransitionLocked(j, v1::JOB_STATE_PENDING, "requeued after preemption",
                     end);
  } else {
    j.job.set_stopping_to(v1::JOB_STATE_UNSPECIFIED);
    TransitionLocked(j, target, reason, end);
  }
  PutJobLocked(batch, j.job);
}

void ClusterManager::HandleCommandResult(const std::string& node,
                                         const v1::CommandResult& r) {
  if (r.ok()) return;
  absl::MutexLock lock(&mu_);
  storage::WriteBatch batch;
  AddEventLocked(
      &batch, "command", node,
      absl::StrCat("command ", r.command_id(), " failed: ", r.error()));
  CommitLocked(batch).IgnoreError();
}

void ClusterManager::HandleLogChunk(const std::string& node,
                                    const v1::LogChunk& c) {
  absl::MutexLock lock(&mu_);
  auto it = pending_logs_.find(c.command_id());
  if (it == pending_logs_.end() || it->second->node != node) return;
  it->second->chunk = c;
  it->second->done.Notify();
  pending_logs_.erase(it);
}

void ClusterManager::CheckLiveness() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  storage::WriteBatch batch;
  std::vector<std::pair<v1::Job, v1::JobAttempt>> billed;
  for (auto& [name, n] : nodes_) {
    if (n.ready && now - n.last_report > options_.heartbeat_timeout) {
      n.ready = false;
      n.unreachable_since = now;
      AddEventLocked(&batch, "node", name,
                     absl::StrCat("unreachable: no report for ",
                                  absl::FormatDuration(now - n.last_report)));
    }
    if (!n.ready && n.unreachable_since != absl::InfinitePast() &&
        now - n.unreachable_since >
            options_.config.scheduler.unreachable_requeue_after) {
      bool any = false;
      for (const Gpu& g : n.gpus) any = any || !g.job_key.empty();
      if (any) {
        // Requeue every job that holds GPUs here: nothing says it still runs.
        SettleLostJobsLocked(
            n, {},
            absl::StrCat("node ", name, " unreachable for ",
                         absl::FormatDuration(now - n.unreachable_since)),
            /*always_requeue=*/true, &batch, &billed);
      }
    }
  }
  // A job no agent confirmed within the timeout is requeued; a rank that
  // starts later anyway is stopped as stale by its node's next report.
  const absl::Duration timeout = options_.config.scheduler.starting_timeout;
  std::vector<std::string> late;
  for (const std::string& id : jobs_.placed()) {
    const JobRt& j = jobs_.at(id);
    if (j.job.state() == v1::JOB_STATE_STARTING &&
        now - StartSentLocked(j) > timeout) {
      late.push_back(id);
    }
  }
  for (const std::string& id : late) {
    JobRt& j = jobs_.at(id);
    std::vector<std::string> where;
    for (const v1::Allocation& al : j.job.allocations()) {
      where.push_back(al.node());
      auto it = nodes_.find(al.node());
      if (it == nodes_.end()) continue;
      SendLocked(it->second, StopMessage(id, j.job.attempt(),
                                         "not started within the timeout"));
      // It may start yet: its GPUs stay taken until a report shows it gone.
      it->second.HoldStopping(AttemptKey(id, j.job.attempt()), al);
    }
    const std::string why =
        absl::StrCat("not started within ", absl::FormatDuration(timeout),
                     " on ", absl::StrJoin(where, ", "), "; requeued");
    EndAttemptLocked(j, now, why, &batch);
    if (j.job.stopping_to() == v1::JOB_STATE_CANCELLED) {
      TransitionLocked(j, v1::JOB_STATE_CANCELLED, j.job.reason(), now);
    } else {
      TransitionLocked(j, v1::JOB_STATE_PENDING, why, now);
    }
    PutJobLocked(&batch, j.job);
    AddEventLocked(&batch, "job", id, why);
  }
  CommitLocked(batch).IgnoreError();
  CommitBilled(billed);
}

}  // namespace joule::daemon
