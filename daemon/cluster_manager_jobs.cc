// ClusterManager: the job API (submit, get, list, cancel, logs).
#include <algorithm>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "daemon/cluster_manager.h"
#include "daemon/controller_util.h"
#include "daemon/preempt_notice.h"
#include "daemon/validation.h"
#include "joule/v1/records.pb.h"

namespace joule::daemon {

// A submitted spec's checks against the cluster, for SubmitJob and
// SubmitArray alike: its fields, tenant, model and sizes, then a price in
// effect (options_.check_priced).
absl::Status ClusterManager::ValidateSpecLocked(const v1::JobSpec& spec) const {
  RETURN_IF_ERROR(validation::JobSpec(spec));
  RETURN_IF_ERROR(CheckPreemptGrace(
      spec, options_.config.scheduler.max_preempt_grace));
  if (!tenants_.contains(spec.tenant())) {
    return absl::NotFoundError(absl::StrCat(
        "spec.tenant: \"", spec.tenant(),
        "\" is not a tenant (create it with `joulectl tenant create`)"));
  }
  if (spec.command_size() == 0 || spec.command(0).empty()) {
    return absl::InvalidArgumentError(
        "spec.command: must name a program to run");
  }
  if (spec.gpus_per_node() == 0) {
    return absl::InvalidArgumentError("spec.gpus_per_node: must be at least 1");
  }
  if (spec.nodes() > 1024) {
    return absl::InvalidArgumentError("spec.nodes: must be at most 1024");
  }
  if (spec.service_class() != v1::SERVICE_CLASS_UNSPECIFIED &&
      !v1::ServiceClass_IsValid(spec.service_class())) {
    return absl::InvalidArgumentError(
        "spec.service_class: must be reserved, on-demand or spot");
  }
  if (spec.sim_load() < 0 || spec.sim_load() > 1) {
    return absl::InvalidArgumentError("spec.sim_load: must be within 0..1");
  }
  const google::protobuf::Duration& mr = spec.max_runtime();
  if (mr.seconds() < 0 || mr.nanos() < 0) {
    return absl::InvalidArgumentError("spec.max_runtime: must not be negative");
  }
  if (spec.power_limit_mw() < 0 || spec.min_power_limit_mw() < 0) {
    return absl::InvalidArgumentError(
        "spec.power_limit_mw: power must not be negative");
  }
  if (!spec.gpu_model().empty()) {
    const config::GpuModel* m = GpuModelLocked(spec.gpu_model());
    bool on_a_node = false;
    for (const auto& [name, n] : nodes_) {
      if (!n.gpus.empty() && n.gpus[0].info.model() == spec.gpu_model()) {
        on_a_node = true;
      }
    }
    if (m == nullptr && !on_a_node) {
      std::vector<std::string> known;
      for (const auto& g : options_.config.gpu_models) known.push_back(g.name);
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.gpu_model: \"", spec.gpu_model(),
          "\" is not a known GPU model (known: ", absl::StrJoin(known, ", "),
          ")"));
    }
    if (m != nullptr && spec.power_limit_mw() > 0) {
      const int64_t lo = m->min_limit_mw, hi = m->max_limit_mw;
      if ((lo > 0 && spec.power_limit_mw() < lo) ||
          (hi > 0 && spec.power_limit_mw() > hi)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "spec.power_limit_mw: ", FormatPower(spec.power_limit_mw()),
            " is outside the ", spec.gpu_model(), " power-limit range ",
            FormatPower(lo), "..", FormatPower(hi)));
      }
    }
  }
  if (spec.min_power_limit_mw() > 0 && spec.power_limit_mw() > 0 &&
      spec.min_power_limit_mw() > spec.power_limit_mw()) {
    return absl::InvalidArgumentError(
        "spec.min_power_limit_mw: must not exceed power_limit_mw");
  }
  // A shape no node can ever hold is refused at once.
  uint32_t largest = 0;
  for (const auto& [name, n] : nodes_) {
    if (spec.gpu_model().empty() ||
        (!n.gpus.empty() && n.gpus[0].info.model() == spec.gpu_model())) {
      largest = std::max<uint32_t>(largest, n.gpus.size());
    }
  }
  if (spec.gpus_per_node() > largest) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.gpus_per_node: ", spec.gpus_per_node(), " GPUs",
        spec.gpu_model().empty() ? "" : absl::StrCat(" of ", spec.gpu_model()),
        " per node is more than any registered node has (largest: ", largest,
        ")"));
  }
  if (options_.check_priced) {  // a price in effect for its model and class
    RETURN_IF_ERROR(options_.check_priced(spec, options_.clock->Now()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> ClusterManager::PriorSubmitLocked(
    const std::string& idem_key, const std::string& fingerprint,
    const std::string& request_id) {
  // A retry racing its original waits for it, then sees its record.
  auto settled = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !jobs_.submitting().contains(idem_key);
  };
  mu_.Await(absl::Condition(&settled));
  ASSIGN_OR_RETURN(auto prior,
                   options_.store->Get(storage::kJobsIdem, idem_key));
  if (!prior.has_value()) return std::nullopt;
  v1::records::SubmitIdempotency rec;
  rec.ParseFromString(*prior);
  if (rec.spec_fingerprint() != fingerprint) {
    return absl::AlreadyExistsError(
        absl::StrCat("request_id: \"", request_id,
                     "\" was already used for a different job spec"));
  }
  return rec.job_id();
}

absl::StatusOr<v1::Job> ClusterManager::SubmitJob(
    const v1::SubmitJobRequest& req, const std::string& caller_tenant) {
  ASSIGN_OR_RETURN(const v1::JobSpec spec, SubmittedSpec(req, caller_tenant));
  const std::string idem_key = SubmitIdemKey(spec, req.request_id());
  JobRt j;
  storage::WriteBatch batch;
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(ValidateSpecLocked(spec));
    if (!idem_key.empty()) {
      ASSIGN_OR_RETURN(
          const std::optional<std::string> prior,
          PriorSubmitLocked(idem_key, SpecFingerprint(spec), req.request_id()));
      if (prior.has_value()) {
        auto it = jobs_.find(*prior);
        if (it != jobs_.end()) return it->second.job;
      }
      jobs_.submitting().insert(idem_key);
    }
    absl::Duration time_limit;
    if (absl::Status s = CheckSubmitLimitsLocked(spec, &time_limit); !s.ok()) {
      if (!idem_key.empty()) jobs_.submitting().erase(idem_key);
      return s;
    }
    const absl::Time now = options_.clock->Now();
    v1::Job& job = j.job;
    job.set_seq(jobs_.NextSeq());
    job.set_id(absl::StrFormat("job-%06d", job.seq()));
    InitSubmittedJob(spec, req.request_id(), now, &job);
    *job.mutable_time_limit() = ToProtoDuration(time_limit);
    TransitionLocked(j, v1::JOB_STATE_PENDING, "submitted", now);
    jobs_.Deactivate(job.id());  // not visible until it is durable
    PutJobLocked(&batch, job);
    PutCountersLocked(&batch);
    if (!idem_key.empty()) {
      v1::records::SubmitIdempotency rec;
      rec.set_job_id(job.id());
      rec.set_spec_fingerprint(SpecFingerprint(spec));
      batch.Put(storage::kJobsIdem, idem_key, rec.SerializeAsString());
    }
  }
  // The synchronous write runs without the lock, so that concurrent
  // submissions share one WAL sync (RocksDB group commit). A crash here
  // loses only what was not acknowledged. Counters may be stored out of
  // order; Load() takes the largest job seq seen.
  const absl::Status s =
      options_.store->Write(batch, storage::WriteOptions{.sync = true});
  absl::MutexLock lock(&mu_);
  if (!idem_key.empty()) jobs_.submitting().erase(idem_key);
  if (!s.ok()) return s;
  const v1::Job out = j.job;
  jobs_.Insert(std::move(j));
  NotifyAppendedLocked();
  return out;
}

absl::StatusOr<v1::Job> ClusterManager::GetJob(
    const std::string& id, const std::string& caller_tenant) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end() || (!caller_tenant.empty() &&
                            it->second.job.spec().tenant() != caller_tenant)) {
    return absl::NotFoundError(absl::StrCat("id: no job \"", id, "\""));
  }
  v1::Job j = it->second.job;
  // A pending efficiency job: the knee it would be placed at now.
  if (j.state() == v1::JOB_STATE_PENDING &&
      j.spec().power_mode() == v1::POWER_MODE_EFFICIENCY) {
    *j.mutable_efficiency_knee() = EfficiencyKneeLocked(j);
  }
  return j;
}

absl::StatusOr<std::vector<v1::Job>> ClusterManager::ListJobs(
    const v1::ListJobsRequest& req, const std::string& caller_tenant) {
  if (!caller_tenant.empty() && !req.tenant().empty() &&
      req.tenant() != caller_tenant) {
    return absl::PermissionDeniedError(
        "tenant: a tenant may list only its own jobs");
  }
  const std::string tenant =
      caller_tenant.empty() ? req.tenant() : caller_tenant;
  absl::MutexLock lock(&mu_);
  std::vector<v1::Job> out;
  for (const auto& [id, j] : jobs_) {
    if (!tenant.empty() && j.job.spec().tenant() != tenant) continue;
    if (req.state() != v1::JOB_STATE_UNSPECIFIED &&
        j.job.state() != req.state()) {
      continue;
    }
    if (!req.array_id().empty() && j.job.array_id() != req.array_id()) continue;
    out.push_back(j.job);
  }
  if (req.limit() > 0 && out.size() > req.limit()) {
    out.erase(out.begin(), out.end() - req.limit());  // newest
  }
  return out;
}

absl::StatusOr<v1::Job> ClusterManager::CancelJob(
    const v1::CancelJobRequest& req, const std::string& caller_tenant) {
  RETURN_IF_ERROR(validation::Text("reason", req.reason()));
  absl::MutexLock lock(&mu_);
  JobRt* j = FindJobLocked(req.id());
  if (j == nullptr ||
      (!caller_tenant.empty() && j->job.spec().tenant() != caller_tenant)) {
    return absl::NotFoundError(absl::StrCat("id: no job \"", req.id(), "\""));
  }
  if (!IsActive(j->job.state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "id: job ", req.id(), " is already ", LowerStateName(j->job.state())));
  }
  const std::string reason =
      req.reason().empty() ? "cancelled by request" : req.reason();
  storage::WriteBatch batch;
  if (j->job.state() == v1::JOB_STATE_PENDING) {
    DropClaimLocked(req.id(), "its job was cancelled", &batch);
    TransitionLocked(*j, v1::JOB_STATE_CANCELLED, reason,
                     options_.clock->Now());
  } else {
    RequestStopLocked(*j, v1::JOB_STATE_CANCELLED, reason);
  }
  PutJobLocked(&batch, j->job);
  RETURN_IF_ERROR(CommitLocked(batch));
  return j->job;
}

absl::StatusOr<v1::GetJobLogsResponse> ClusterManager::GetJobLogs(
    const v1::GetJobLogsRequest& req, const std::string& caller_tenant) {
  auto pending = std::make_shared<PendingLog>();
  std::string node;
  {
    absl::MutexLock lock(&mu_);
    JobRt* j = FindJobLocked(req.id());
    if (j == nullptr ||
        (!caller_tenant.empty() && j->job.spec().tenant() != caller_tenant)) {
      return absl::NotFoundError(absl::StrCat("id: no job \"", req.id(), "\""));
    }
    const uint32_t attempt =
        req.attempt() == 0 ? j->job.attempt() : req.attempt();
    if (attempt == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "id: job ", req.id(), " has not started yet, so it has no logs"));
    }
    if (attempt > static_cast<uint32_t>(j->job.attempts_size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("attempt: job ", req.id(), " has ",
                       j->job.attempts_size(), " attempt(s)"));
    }
    const v1::JobAttempt& a = j->job.attempts(attempt - 1);
    if (a.allocations_size() == 0) {
      return absl::FailedPreconditionError("attempt: ran on no node");
    }
    node = a.allocations(0).node();
    auto it = nodes_.find(node);
    if (it == nodes_.end() || it->second.link == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "node ", node, " (which holds the log) is not connected"));
    }
    v1::DaemonMessage m;
    m.set_command_id(next_command_id_++);
    m.mutable_fetch_logs()->set_job_id(req.id());
    m.mutable_fetch_logs()->set_attempt(attempt);
    m.mutable_fetch_logs()->set_max_bytes(
        req.max_bytes() == 0 ? 1 << 20 : req.max_bytes());
    pending->node = node;
    pending_logs_[m.command_id()] = pending;
    it->second.link->Send(m);
  }
  if (!pending->done.WaitForNotificationWithTimeout(absl::Seconds(5))) {
    return absl::DeadlineExceededError(
        absl::StrCat("node ", node, " did not send the log within 5s"));
  }
  if (!pending->chunk.error().empty()) {
    return absl::NotFoundError(pending->chunk.error());
  }
  v1::GetJobLogsResponse resp;
  resp.set_data(pending->chunk.data());
  resp.set_truncated(pending->chunk.truncated());
  resp.set_node(node);
  return resp;
}

}  // namespace joule::daemon
