#include "daemon/controller_util.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "daemon/validation.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace joule::daemon {

// A StopJob command for one attempt (grace 0: the agent's SIGKILL follows
// the first signal at once).
v1::DaemonMessage StopMessage(const std::string& job_id, uint32_t attempt,
                              std::string reason, absl::Duration grace,
                              const std::string& signal) {
  v1::DaemonMessage m;
  v1::StopJob* stop = m.mutable_stop_job();
  stop->set_job_id(job_id);
  stop->set_attempt(attempt);
  stop->set_reason(std::move(reason));
  if (grace > absl::ZeroDuration()) {
    *stop->mutable_grace_period() = ToProtoDuration(grace);
  }
  if (!signal.empty() && signal != "SIGTERM") stop->set_signal(signal);
  return m;
}

// The bytes that identify a spec for SubmitJob idempotency. Deterministic
// serialization: map fields (env) are written in key order, so equal specs
// give equal bytes whatever order their maps were built in.
std::string SpecFingerprint(const v1::JobSpec& spec) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    spec.SerializeToCodedStream(&coded);
  }
  return out;
}

scheduler::ServiceClass ToPolicyClass(v1::ServiceClass c) {
  switch (c) {
    case v1::SERVICE_CLASS_RESERVED:
      return scheduler::ServiceClass::kReserved;
    case v1::SERVICE_CLASS_SPOT:
      return scheduler::ServiceClass::kSpot;
    default:
      return scheduler::ServiceClass::kOnDemand;
  }
}

v1::ServiceClass FromPolicyClass(scheduler::ServiceClass c) {
  switch (c) {
    case scheduler::ServiceClass::kReserved:
      return v1::SERVICE_CLASS_RESERVED;
    case scheduler::ServiceClass::kSpot:
      return v1::SERVICE_CLASS_SPOT;
    default:
      return v1::SERVICE_CLASS_ON_DEMAND;
  }
}

absl::Status ValidName(absl::string_view field, absl::string_view name) {
  RETURN_IF_ERROR(validation::Name(field, name));
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must not be empty"));
  }
  if (name.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be at most 128 characters"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": \"", name,
          "\" may contain only letters, digits, '-', '_' and '.'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::JobSpec> SubmittedSpec(const v1::SubmitJobRequest& req,
                                          const std::string& caller_tenant) {
  v1::JobSpec spec = req.spec();
  if (!caller_tenant.empty() && spec.tenant().empty()) {
    spec.set_tenant(caller_tenant);
  }
  if (!caller_tenant.empty() && spec.tenant() != caller_tenant) {
    return absl::PermissionDeniedError(
        "spec.tenant: a tenant may submit jobs only for itself");
  }
  if (spec.nodes() == 0) spec.set_nodes(1);
  if (spec.service_class() == v1::SERVICE_CLASS_UNSPECIFIED) {
    spec.set_service_class(v1::SERVICE_CLASS_ON_DEMAND);
  }
  if (!req.request_id().empty()) {
    RETURN_IF_ERROR(ValidName("request_id", req.request_id()));
  }
  return spec;
}

std::string SubmitIdemKey(const v1::JobSpec& spec,
                          const std::string& request_id) {
  return request_id.empty() ? "" : absl::StrCat(spec.tenant(), "/", request_id);
}

void InitSubmittedJob(const v1::JobSpec& spec, const std::string& request_id,
                      absl::Time now, v1::Job* job) {
  *job->mutable_spec() = spec;
  *job->mutable_submit_time() = ToProtoTime(now);
  job->set_request_id(request_id);
  job->set_effective_class(spec.service_class());
  job->set_power_limit_mw(spec.power_limit_mw());
  job->set_min_power_limit_mw(spec.min_power_limit_mw());
}

absl::Status ValidateSetPowerCap(const v1::SetPowerCapRequest& r) {
  RETURN_IF_ERROR(validation::Text("reason", r.reason()));
  if (r.cap_mw() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cap_mw: ", r.cap_mw(), " is negative; a cap must be >= 0"));
  }
  return absl::OkStatus();
}

}  // namespace joule::daemon
