#pragma once

// joulectl's side of job arrays (docs/cli.md#job-arrays): parsing
// `job submit --array A-B[%MAX]` and folding an array's tasks into one row
// of `job list`. Pure functions, no I/O.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "joule/v1/joule.pb.h"

namespace joule::cli {

// "A-B", "A-B%MAX" or "N" (one task) -> JobArray. Errors name --array and
// the rule (digits, A <= B, MAX >= 1).
absl::StatusOr<v1::JobArray> ParseArrayFlag(absl::string_view s);

// The rows of `job list`: ID, TENANT, NAME, STATE, CLASS, GPUS, NODES,
// REASON. Unless `expand`, the tasks of one array become one row, where
// the first task was: ID "job-000007_[0-999]" (lowest-highest index
// listed), STATE the tasks' state if they all share it, else "mixed",
// NODES the nodes its running tasks are on, REASON the count per state
// ("990 pending, 8 running, 2 succeeded").
std::vector<std::vector<std::string>> JobRows(
    const google::protobuf::RepeatedPtrField<v1::Job>& jobs, bool expand);

}  // namespace joule::cli
