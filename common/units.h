#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace joule {

// Power is int64 milliwatts, energy uint64/int64 millijoules everywhere.
inline constexpr int64_t kMilliwattsPerWatt = 1000;

// Parses "700", "700W", "40kW", "1.5 MW", "350.5W" into milliwatts. A bare
// number is watts. Up to 3 decimal places below the watt are exact; more
// precision than a milliwatt, a negative value, an unknown unit or overflow
// is an error naming `field`.
absl::StatusOr<int64_t> ParsePowerMw(absl::string_view text,
                                     absl::string_view field = "power");

// "37.2 kW", "700 W", "1.50 MW": for people, not for parsing back exactly.
std::string FormatPower(int64_t mw);

// Parses "90s", "5m", "1h30m", "250ms" (absl duration syntax) and rejects
// negative values, naming `field` (an empty one leaves the naming to the
// caller, as ParsePowerMw).
absl::StatusOr<absl::Duration> ParseNonNegativeDuration(
    absl::string_view text, absl::string_view field = "duration");

// Energy in millijoules to kWh, formatted with `decimals` places.
std::string FormatKwh(uint64_t mj, int decimals = 3);

}  // namespace joule
