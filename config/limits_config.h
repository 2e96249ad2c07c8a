#pragma once

// Parses the scheduling limits of the cluster config: per-class time limits
// (scheduler.time_limit) and tenant quotas (tenant.quota). Used by
// cluster_config.cc, which adds the file and line to the errors.

#include <optional>
#include <string>

#include "joule/v1/config.pb.h"
#include "scheduler/quota.h"
#include "scheduler/time_limits.h"

namespace joule::config {

// A refused field: its path below the list element (e.g.
// "time_limit[1].default_max_runtime") and the rule it breaks.
struct FieldError {
  std::string field;
  std::string rule;
};

// "reserved", "on-demand" or "spot".
std::optional<scheduler::ServiceClass> ParseClassName(const std::string& s);

// Applies every scheduler.time_limit entry onto `limits` (a field left
// empty keeps the class's default). Checks 0 < default <= limit.
std::optional<FieldError> ApplyTimeLimits(const v1::config::Scheduler& s,
                                          scheduler::TimeLimits* limits);

// The quota of one tenant entry; a class not listed has no limit.
std::optional<FieldError> ParseQuota(const v1::config::Quota& q,
                                     scheduler::TenantQuota* out);

}  // namespace joule::config
