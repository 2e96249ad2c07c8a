#pragma once

// Small helpers shared by the ClusterManager's source files
// (cluster_manager*.cc). Pure functions; no state.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "joule/v1/joule.pb.h"
#include "scheduler/types.h"

namespace joule::daemon {

// A StopJob command for one attempt (grace 0: the agent's SIGKILL follows
// the first signal at once). `signal` empty or "SIGTERM": SIGTERM.
v1::DaemonMessage StopMessage(const std::string& job_id, uint32_t attempt,
                              std::string reason,
                              absl::Duration grace = absl::ZeroDuration(),
                              const std::string& signal = "");

// The bytes that identify a spec for SubmitJob idempotency. Deterministic
// serialization: map fields (env) are written in key order, so equal specs
// give equal bytes whatever order their maps were built in.
std::string SpecFingerprint(const v1::JobSpec& spec);

scheduler::ServiceClass ToPolicyClass(v1::ServiceClass c);
v1::ServiceClass FromPolicyClass(scheduler::ServiceClass c);

// A name field (tenant, request id): 1..128 of letters, digits, '-', '_'
// and '.'.
absl::Status ValidName(absl::string_view field, absl::string_view name);

// The spec SubmitJob and SubmitArray work with: the caller's tenant filled
// in (PERMISSION_DENIED for another tenant's), 1 node and on-demand by
// default; a request id, when given, must be a name (ValidName).
absl::StatusOr<v1::JobSpec> SubmittedSpec(const v1::SubmitJobRequest& req,
                                          const std::string& caller_tenant);

// The fields of a newly submitted job that come from its request (spec,
// submit time, request id, effective class, power limits); the caller sets
// its seq, id and the rest.
void InitSubmittedJob(const v1::JobSpec& spec, const std::string& request_id,
                      absl::Time now, v1::Job* job);

// The checks SetPowerCap and PreviewPowerCap share before they look at the
// domain: the reason is text (validation::Text) and cap_mw is not negative.
absl::Status ValidateSetPowerCap(const v1::SetPowerCapRequest& r);

// The idempotency key of a submission: "TENANT/REQUEST_ID", or "" without a
// request id (no idempotency).
std::string SubmitIdemKey(const v1::JobSpec& spec,
                          const std::string& request_id);

}  // namespace joule::daemon
