// ClusterManager: scheduling limits (issue 11, part B): time limits at
// submit, tenant quotas, dependencies and holds, fair share counting
// running attempts. The rules are the pure ones in scheduler/ (time_limits,
// quota, dependencies, fair_share); this file applies them to the owners.
#include <algorithm>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "daemon/cluster_manager.h"
#include "daemon/controller_util.h"
#include "daemon/sched_limits.h"
#include "scheduler/quota.h"

namespace joule::daemon {

// ------------------------------------------------------- pure helpers ----

absl::Duration JobTimeLimit(const v1::Job& job,
                            const scheduler::TimeLimits& limits) {
  const absl::Duration set = FromProtoDuration(job.time_limit());
  if (set > absl::ZeroDuration()) return set;
  return scheduler::EffectiveMaxRuntime(
      ToPolicyClass(job.spec().service_class()),
      FromProtoDuration(job.spec().max_runtime()), limits);
}

std::string RunningReason(const v1::Job& job) {
  std::vector<std::string> nodes;
  for (const v1::Allocation& al : job.allocations()) nodes.push_back(al.node());
  return absl::StrCat("running on ", absl::StrJoin(nodes, ", "));
}

scheduler::Dep DepOf(const std::string& id, const v1::Job* job) {
  scheduler::Dep d;
  d.id = id;
  if (job == nullptr) return d;  // kUnknown
  d.state_name = LowerStateName(job->state());
  switch (job->state()) {
    case v1::JOB_STATE_SUCCEEDED:
      d.state = scheduler::DepState::kSucceeded;
      break;
    case v1::JOB_STATE_FAILED:
      d.state = scheduler::DepState::kFailed;
      break;
    case v1::JOB_STATE_CANCELLED:
      d.state = scheduler::DepState::kCancelled;
      break;
    default:
      d.state = IsActive(job->state()) ? scheduler::DepState::kActive
                                       : scheduler::DepState::kFailed;
  }
  return d;
}

// ---------------------------------------------------------- controller ----

absl::Duration ClusterManager::TimeLimitLocked(const v1::Job& job) const {
  return JobTimeLimit(job, options_.config.scheduler.time_limits);
}

HeldGpus ClusterManager::HeldGpusLocked() const {
  HeldGpus held;
  for (const std::string& id : jobs_.placed()) {
    const v1::Job& job = jobs_.at(id).job;
    if (job.state() == v1::JOB_STATE_PENDING || job.attempts_size() == 0) {
      continue;
    }
    const v1::JobAttempt& a = job.attempts(job.attempts_size() - 1);
    if (!IsSet(a.start_time()) || IsSet(a.end_time())) continue;
    int64_t gpus = 0;
    for (const v1::Allocation& al : a.allocations()) {
      gpus += al.gpu_indices_size();
    }
    held[job.spec().tenant()].push_back({gpus, FromProtoTime(a.start_time())});
  }
  // A fixed order: the same sum on every read (and after a restart).
  for (auto& [tenant, v] : held) {
    std::sort(v.begin(), v.end(), [](const auto& x, const auto& y) {
      return std::tie(x.second, x.first) < std::tie(y.second, y.first);
    });
  }
  return held;
}

absl::Status ClusterManager::CheckSubmitLimitsLocked(
    const v1::JobSpec& spec, absl::Duration* time_limit) const {
  ASSIGN_OR_RETURN(*time_limit, scheduler::ResolveMaxRuntime(
                                    ToPolicyClass(spec.service_class()),
                                    FromProtoDuration(spec.max_runtime()),
                                    options_.config.scheduler.time_limits));
  if (spec.after_size() > 64) {
    return absl::InvalidArgumentError("spec.after: at most 64 jobs");
  }
  for (int i = 0; i < spec.after_size(); ++i) {
    auto it = jobs_.find(spec.after(i));
    if (it == jobs_.end() || it->second.job.spec().tenant() != spec.tenant()) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.after[", i, "]: no job \"", spec.after(i),
                       "\" of tenant ", spec.tenant()));
    }
  }
  const scheduler::TenantQuota quota = tenants_.Quota(spec.tenant());
  if (quota.max_pending_jobs != scheduler::kNoLimit) {
    int64_t pending = 0;
    for (const std::string& id : jobs_.active()) {
      const v1::Job& job = jobs_.at(id).job;
      pending += job.state() == v1::JOB_STATE_PENDING &&
                 job.spec().tenant() == spec.tenant();
    }
    RETURN_IF_ERROR(
        scheduler::CheckPendingQuota(spec.tenant(), pending, quota));
  }
  return absl::OkStatus();
}

absl::flat_hash_set<std::string> ClusterManager::SettleBlockedLocked() {
  absl::flat_hash_set<std::string> blocked;
  std::vector<std::pair<std::string, std::string>> failed;  // id, why
  for (const auto& [id, jp] : jobs_.pending()) {
    JobRt& j = *jp;
    if (j.job.held()) {
      j.job.set_reason("held (joulectl job release " + id + ")");
      blocked.insert(id);
      continue;
    }
    if (j.job.spec().after().empty()) continue;
    std::vector<scheduler::Dep> deps;
    for (const std::string& dep : j.job.spec().after()) {
      JobRt* d = jobs_.Find(dep);
      deps.push_back(DepOf(dep, d != nullptr ? &d->job : nullptr));
    }
    const scheduler::DepVerdict v = scheduler::EvaluateDependencies(deps);
    if (v.kind == scheduler::DepVerdict::kReady) continue;
    blocked.insert(id);
    if (v.kind == scheduler::DepVerdict::kWait) {
      j.job.set_reason(v.reason);
    } else {
      failed.push_back({id, v.reason});
    }
  }
  if (failed.empty()) return blocked;
  const absl::Time now = options_.clock->Now();
  storage::WriteBatch batch;
  for (const auto& [id, why] : failed) {
    JobRt& j = jobs_.at(id);
    TransitionLocked(j, v1::JOB_STATE_FAILED, why, now);
    PutJobLocked(&batch, j.job);
    AddEventLocked(&batch, "job", id, why);
  }
  // Not acknowledged to anyone: if the write fails, the next round decides
  // the same again from the same dependency states.
  CommitLocked(batch).IgnoreError();
  NotifyLocked();  // jobs after these may fail in turn
  return blocked;
}

absl::StatusOr<v1::Job> ClusterManager::HoldJob(
    const std::string& id, bool hold, const std::string& caller_tenant) {
  absl::MutexLock lock(&mu_);
  JobRt* j = FindJobLocked(id);
  if (j == nullptr ||
      (!caller_tenant.empty() && j->job.spec().tenant() != caller_tenant)) {
    return absl::NotFoundError(absl::StrCat("id: no job \"", id, "\""));
  }
  if (hold && j->job.state() != v1::JOB_STATE_PENDING) {
    return absl::FailedPreconditionError(
        absl::StrCat("id: job ", id, " is ", LowerStateName(j->job.state()),
                     "; only a pending job can be held"));
  }
  if (!hold && !j->job.held()) {
    return absl::FailedPreconditionError(
        absl::StrCat("id: job ", id, " is not held"));
  }
  if (j->job.held() == hold) return j->job;  // already held: no change
  v1::Job job = j->job;
  job.set_held(hold);
  job.set_reason(hold ? absl::StrCat("held (joulectl job release ", id, ")")
                      : "released; waiting for the next round");
  storage::WriteBatch batch;
  PutJobLocked(&batch, job);
  AddEventLocked(&batch, "job", id, hold ? "held" : "released");
  RETURN_IF_ERROR(CommitLocked(batch));
  j->job = job;
  NotifyLocked();
  return job;
}

absl::StatusOr<v1::Tenant> ClusterManager::SetTenantQuota(
    const v1::SetTenantQuotaRequest& r) {
  RETURN_IF_ERROR(ValidName("tenant", r.tenant()));
  const v1::TenantQuota& q = r.quota();
  for (const auto& [field, set, value] :
       {std::tuple{"quota.max_running_gpus_reserved",
                   q.has_max_running_gpus_reserved(),
                   q.max_running_gpus_reserved()},
        std::tuple{"quota.max_running_gpus_on_demand",
                   q.has_max_running_gpus_on_demand(),
                   q.max_running_gpus_on_demand()},
        std::tuple{"quota.max_running_gpus_spot", q.has_max_running_gpus_spot(),
                   q.max_running_gpus_spot()},
        std::tuple{"quota.max_pending_jobs", q.has_max_pending_jobs(),
                   q.max_pending_jobs()}}) {
    if (set && value > 1'000'000) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": must be at most 1000000"));
    }
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(v1::Tenant t,
                   tenants_.SetQuota(r.tenant(), q, options_.store));
  storage::WriteBatch batch;
  AddEventLocked(
      &batch, "tenant", r.tenant(),
      absl::StrCat("quota set: ", scheduler::QuotaText(QuotaFromProto(q))));
  CommitLocked(batch).IgnoreError();  // the quota itself is durable
  NotifyLocked();
  t.set_fair_share_gpu_seconds(
      tenants_.Usage(r.tenant(), options_.clock->Now(), HeldGpusLocked()));
  return t;
}

}  // namespace joule::daemon
