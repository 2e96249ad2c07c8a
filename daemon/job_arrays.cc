#include "daemon/job_arrays.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "daemon/cluster_manager.h"
#include "daemon/controller_util.h"
#include "daemon/job_table.h"
#include "daemon/validation.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "joule/v1/records.pb.h"
#include "storage/store.h"

namespace joule::daemon {
namespace {

// Idempotency fingerprint of an array submission: the spec and the bounds,
// serialized deterministically (env in key order).
std::string ArrayFingerprint(const v1::JobSpec& spec, const v1::JobArray& a) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    spec.SerializeToCodedStream(&coded);
    a.SerializeToCodedStream(&coded);
  }
  return out;
}

}  // namespace

absl::Status ValidateArray(const v1::JobArray& a, int64_t max_batch_ops) {
  if (a.first() > a.last()) {
    return absl::InvalidArgumentError(absl::StrCat("array: first (", a.first(),
                                                   ") must not be above last (",
                                                   a.last(), ")"));
  }
  const uint64_t tasks = uint64_t{a.last()} - a.first() + 1;
  // Tasks + the counters record + the idempotency record.
  uint64_t most = kMaxArrayTasks;
  if (max_batch_ops > 0) {
    most = std::min<uint64_t>(
        most, static_cast<uint64_t>(std::max<int64_t>(0, max_batch_ops - 2)));
  }
  if (tasks > most) {
    return absl::InvalidArgumentError(
        absl::StrCat("array: ", tasks, " tasks; at most ", most, " per array",
                     max_batch_ops > 0 ? " with this store" : ""));
  }
  return absl::OkStatus();
}

std::string ArrayTaskId(absl::string_view array_id, uint32_t index) {
  return absl::StrCat(array_id, "_", index);
}

void ArrayGate::Count(const v1::Job& job) {
  if (job.array_max_running() == 0) return;
  Array& a = arrays_[job.array_id()];
  a.max_running = job.array_max_running();
  if (job.state() == v1::JOB_STATE_PENDING) {
    a.pending.emplace_back(job.array_index(), job.id());
  } else {
    ++a.holding;
  }
}

void ArrayGate::Finish() {
  if (arrays_.empty()) {
    armed_ = false;
    return;
  }
  for (auto& [id, a] : arrays_) {
    if (a.holding >= a.max_running) continue;
    const size_t room = a.max_running - a.holding;
    if (a.pending.size() > room) {
      std::nth_element(a.pending.begin(), a.pending.begin() + room,
                       a.pending.end());
      a.pending.resize(room);
    }
    for (const auto& [index, task] : a.pending) admitted_.insert(task);
  }
}

// --------------------------------------------- ClusterManager (arrays) ----

absl::StatusOr<v1::SubmitJobResponse> ClusterManager::SubmitArray(
    const v1::SubmitJobRequest& req, const std::string& caller_tenant) {
  // The same normalisation as SubmitJob.
  ASSIGN_OR_RETURN(const v1::JobSpec spec, SubmittedSpec(req, caller_tenant));
  const v1::JobArray& array = req.array();
  RETURN_IF_ERROR(ValidateArray(array, options_.store->max_batch_ops()));
  const uint32_t tasks = array.last() - array.first() + 1;
  const std::string idem_key = SubmitIdemKey(spec, req.request_id());
  std::vector<JobRt> made;
  made.reserve(tasks);
  std::string array_id;
  storage::WriteBatch batch;
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(ValidateSpecLocked(spec));
    if (!idem_key.empty()) {
      ASSIGN_OR_RETURN(
          const std::optional<std::string> prior,
          PriorSubmitLocked(idem_key, ArrayFingerprint(spec, array),
                            req.request_id()));
      if (prior.has_value()) {
        auto it = jobs_.lower_bound(*prior + "_");
        if (it != jobs_.end() && it->second.job.array_id() == *prior) {
          v1::SubmitJobResponse out;
          *out.mutable_job() = it->second.job;
          out.set_array_id(*prior);
          out.set_array_tasks(tasks);
          return out;
        }
      }
      jobs_.submitting().insert(idem_key);
    }
    const absl::Time now = options_.clock->Now();
    array_id = absl::StrFormat("job-%06d", jobs_.next_seq());
    for (uint32_t i = 0; i < tasks; ++i) {
      JobRt j;
      v1::Job& job = j.job;
      const uint32_t index = array.first() + i;
      job.set_seq(jobs_.NextSeq());
      job.set_id(ArrayTaskId(array_id, index));
      InitSubmittedJob(spec, req.request_id(), now, &job);
      job.set_array_id(array_id);
      job.set_array_index(index);
      job.set_array_max_running(array.max_running());
      TransitionLocked(j, v1::JOB_STATE_PENDING, "submitted", now);
      jobs_.Deactivate(job.id());  // not visible until it is durable
      PutJobLocked(&batch, job);
      made.push_back(std::move(j));
    }
    PutCountersLocked(&batch);
    if (!idem_key.empty()) {
      v1::records::SubmitIdempotency rec;
      rec.set_job_id(array_id);
      rec.set_spec_fingerprint(ArrayFingerprint(spec, array));
      batch.Put(storage::kJobsIdem, idem_key, rec.SerializeAsString());
    }
  }
  // One synchronous write for the whole array, outside the lock (as
  // SubmitJob).
  const absl::Status s =
      options_.store->Write(batch, storage::WriteOptions{.sync = true});
  absl::MutexLock lock(&mu_);
  if (!idem_key.empty()) jobs_.submitting().erase(idem_key);
  if (!s.ok()) return s;
  v1::SubmitJobResponse out;
  *out.mutable_job() = made.front().job;
  out.set_array_id(array_id);
  out.set_array_tasks(tasks);
  for (JobRt& j : made) jobs_.Insert(std::move(j));
  if (array.max_running() > 0) array_gate_.Arm();
  NotifyAppendedLocked();
  return out;
}

bool ClusterManager::IsArray(const std::string& id) {
  absl::MutexLock lock(&mu_);
  if (jobs_.find(id) != jobs_.end()) return false;
  auto it = jobs_.lower_bound(id + "_");
  return it != jobs_.end() && it->second.job.array_id() == id;
}

absl::StatusOr<v1::Job> ClusterManager::CancelArray(
    const v1::CancelJobRequest& req, const std::string& caller_tenant) {
  RETURN_IF_ERROR(validation::Text("reason", req.reason()));
  const std::string reason =
      req.reason().empty() ? "cancelled by request" : req.reason();
  absl::MutexLock lock(&mu_);
  const std::string prefix = req.id() + "_";
  storage::WriteBatch batch;
  uint32_t total = 0;
  uint32_t cancelled = 0;
  const v1::Job* first = nullptr;
  for (auto it = jobs_.lower_bound(prefix);
       it != jobs_.end() && it->second.job.array_id() == req.id(); ++it) {
    JobRt& j = it->second;
    if (!caller_tenant.empty() && j.job.spec().tenant() != caller_tenant) {
      break;  // one array has one tenant
    }
    ++total;
    if (first == nullptr) first = &j.job;
    if (!IsActive(j.job.state())) continue;
    if (j.job.state() == v1::JOB_STATE_PENDING) {
      TransitionLocked(j, v1::JOB_STATE_CANCELLED, reason,
                       options_.clock->Now());
    } else {
      RequestStopLocked(j, v1::JOB_STATE_CANCELLED, reason);
    }
    PutJobLocked(&batch, j.job);
    ++cancelled;
  }
  if (total == 0) {
    return absl::NotFoundError(absl::StrCat("id: no job \"", req.id(), "\""));
  }
  if (cancelled == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "id: every task of array ", req.id(), " has already ended"));
  }
  RETURN_IF_ERROR(CommitLocked(batch));
  NotifyLocked();
  // A summary of the array, in the shape of a job.
  v1::Job out;
  out.set_id(req.id());
  *out.mutable_spec() = first->spec();
  out.set_state(v1::JOB_STATE_CANCELLED);
  out.set_reason(absl::StrCat(reason, ": ", cancelled, " of ", total,
                              " task(s) cancelled or stopping"));
  *out.mutable_submit_time() = first->submit_time();
  out.set_seq(first->seq());
  out.set_array_id(req.id());
  out.set_array_max_running(first->array_max_running());
  return out;
}

}  // namespace joule::daemon
