#pragma once

// Memory sizes and CPU counts of job requests (`job submit --memory 64GiB
// --cpus 16`) and agent defaults, and their bounds (docs/api.md). Pure.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace joule {

inline constexpr int64_t kMinJobMemoryBytes = int64_t{1} << 20;  // 1 MiB
inline constexpr int64_t kMaxJobMemoryBytes = int64_t{1} << 44;  // 16 TiB
inline constexpr int64_t kMinJobCpuMillis = 10;                  // 0.01 CPU
inline constexpr int64_t kMaxJobCpuMillis = 1024 * 1000;         // 1,024 CPUs

// "64GiB", "512MiB", "1KiB", "2TiB", "1048576" (bytes; "B" optional) ->
// bytes, within [kMinJobMemoryBytes, kMaxJobMemoryBytes]. INVALID_ARGUMENT
// naming `field` otherwise (decimal units such as "GB" are refused: say
// GiB).
absl::StatusOr<int64_t> ParseMemoryBytes(absl::string_view field,
                                         absl::string_view text);
// "16", "0.5", "2.25" (up to 3 decimals) -> millicpus, within
// [kMinJobCpuMillis, kMaxJobCpuMillis]. INVALID_ARGUMENT naming `field`.
absl::StatusOr<int64_t> ParseCpuMillis(absl::string_view field,
                                       absl::string_view text);
// 68719476736 -> "64GiB" (exact binary units, else bytes); 16000 -> "16",
// 500 -> "0.5".
std::string FormatMemoryBytes(int64_t bytes);
std::string FormatCpuMillis(int64_t millis);

}  // namespace joule
