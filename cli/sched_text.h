#pragma once

// joulectl's text for scheduling limits (issue 11): quota flags and
// displays, a job's time limit, dependencies and contract line. Pure; the
// commands in main.cc print what these return.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "joule/v1/joule.pb.h"

namespace joule::cli {

// `tenant set-quota` flags: --max-gpus CLASS=GPUS (repeatable) and
// --max-pending N (< 0: no limit). Errors name the flag and the rule.
absl::StatusOr<v1::TenantQuota> ParseQuotaFlags(
    const std::vector<std::string>& max_gpus, int64_t max_pending);

// "on-demand 16, spot 0; pending 100", or "none".
std::string QuotaText(const v1::TenantQuota& q);

// `job submit --after job-1,job-2`: the ids, in order, without empties.
// An empty flag gives none; a malformed entry is an error naming --after.
absl::StatusOr<std::vector<std::string>> ParseAfter(const std::string& flag);

// "24h (on-demand default)" or "2h" for `job show`.
std::string TimeLimitText(const v1::Job& j);

// For a reserved job running beyond its tenant's contract: "beyond the
// tenant's contracted reserved GPUs: runs as on-demand; its GPUs are billed
// as reserved overage"; empty otherwise.
std::string ContractText(const v1::Job& j);

// `job submit --preempt-signal SIG --preempt-grace D` into the spec: the
// signal canonical ("usr1" -> "SIGUSR1", common/preempt_signal.h), the
// grace 0..24h; empty flags leave the fields unset. Errors name the flag.
absl::Status ApplyPreemptFlags(const std::string& signal,
                               const std::string& grace, v1::JobSpec* spec);

// "SIGUSR1, SIGKILL after 1m" or, for a job without a notice, "SIGTERM,
// SIGKILL after the stop grace" for `job show`.
std::string PreemptText(const v1::JobSpec& spec);

}  // namespace joule::cli
