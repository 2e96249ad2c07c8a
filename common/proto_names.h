#pragma once

// The lower-case names of job states and service classes ("pending",
// "on-demand"), used by jouled's messages, its metrics labels and joulectl.
// Each is the proto enum name without its prefix, in lower case, '_' as '-'
// (JOB_STATE_PENDING -> "pending", SERVICE_CLASS_ON_DEMAND -> "on-demand"),
// kept in a table (no descriptor pool is built to name a value); a test
// checks the table against the enums' descriptors. Pure functions;
// thread-safe.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "joule/v1/joule.pb.h"

namespace joule {

// "pending", "running", ...; "unspecified" for JOB_STATE_UNSPECIFIED or an
// unknown number.
std::string JobStateName(v1::JobState s);
// "reserved", "on-demand", "spot"; "unspecified" likewise.
std::string ServiceClassName(v1::ServiceClass c);

// The inverse of the names above (and "ondemand" for on-demand); the
// unspecified value is refused. Errors name `flag` and list the names.
absl::StatusOr<v1::JobState> ParseJobStateName(absl::string_view s,
                                               absl::string_view flag);
absl::StatusOr<v1::ServiceClass> ParseServiceClassName(absl::string_view s,
                                                       absl::string_view flag);

}  // namespace joule
