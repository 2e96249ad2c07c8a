#pragma once

// The one validation layer for what callers and agents send jouled: every
// string with a length and a pattern, every number with a range (no NaN or
// infinity), every time within [2000-01-01, now + 1 year]. Each rule that
// fails gives INVALID_ARGUMENT with the field's name and the rule. Pure:
// `now` is passed in. FieldTable() is the table documented in docs/api.md
// ("Input limits"); tests check that the two agree.

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "joule/v1/joule.pb.h"

namespace joule::daemon::validation {

inline constexpr size_t kMaxNameBytes = 128;
inline constexpr size_t kMaxTextBytes = 1024;
inline constexpr size_t kMaxArgvEnvBytes = 256 * 1024;
inline constexpr size_t kMaxArgvEnvEntries = 4096;
inline constexpr size_t kMaxAddressBytes = 255;
inline constexpr uint32_t kMaxGpusPerNode = 64;
inline constexpr uint32_t kMaxNodesPerJob = 1024;
inline constexpr int64_t kMaxPowerMw = 10'000'000;  // 10 kW per GPU
inline constexpr uint64_t kMaxGpuMemoryBytes = uint64_t{1} << 44;  // 16 TiB
inline constexpr int32_t kMaxPriority = 1'000'000;
inline constexpr int32_t kMinTemperatureC = -40;
inline constexpr int32_t kMaxTemperatureC = 200;
inline constexpr size_t kMaxRunningJobs = 4096;
absl::Duration MaxRuntime();  // 366 days

// One row of the field table.
struct FieldRule {
  absl::string_view field;
  absl::string_view rule;
};
absl::Span<const FieldRule> FieldTable();

// A name: 1..128 bytes of [A-Za-z0-9._-], not "." or "..".
absl::Status Name(absl::string_view field, absl::string_view value);
// As Name, or empty.
absl::Status OptionalName(absl::string_view field, absl::string_view value);
// Free text: at most `max` bytes, no NUL.
absl::Status Text(absl::string_view field, absl::string_view value,
                  size_t max = kMaxTextBytes);
absl::Status IntRange(absl::string_view field, int64_t value, int64_t lo,
                      int64_t hi);
// Finite and within [lo, hi].
absl::Status Real(absl::string_view field, double value, double lo, double hi);
// A set time within [2000-01-01, now + 1 year].
absl::Status Time(absl::string_view field, const google::protobuf::Timestamp& t,
                  absl::Time now);
// A duration within [0, max], nanos in range.
absl::Status Duration(absl::string_view field,
                      const google::protobuf::Duration& d, absl::Duration max);

// Everything about a job spec that needs no cluster state (the manager then
// checks tenant existence, models and shapes).
absl::Status JobSpec(const v1::JobSpec& spec);
// A registration's own values (GPU count, limits, names, address).
absl::Status Register(const v1::RegisterRequest& req);
// One reported GPU against what the node registered for it: power within
// [0, 2 x max limit], utilisation <= 100 %, temperature in range, memory
// used <= total. `field` is the report field's path ("report.gpus[3]").
absl::Status GpuReport(absl::string_view field, const v1::GpuStatus& g,
                       const v1::GpuInfo& registered);

}  // namespace joule::daemon::validation
