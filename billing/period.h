#pragma once

// Calendar math of the billing ledger: UTC months ("YYYY-MM" periods) and
// UTC dates ("YYYY-MM-DD"). Pure: no storage, no clock.

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace joule::billing {

// One UTC calendar month, the billing period. A value type; thread-compatible.
// Invariant: 1 <= month <= 12, 1970 <= year <= 9999.
class Period {
 public:
  // Strict "YYYY-MM" (4-digit year 1970..9999, 2-digit month 01..12);
  // INVALID_ARGUMENT naming `field` otherwise.
  static absl::StatusOr<Period> Parse(std::string_view text,
                                      std::string_view field = "period");
  // The month containing `t` (UTC).
  static Period Of(absl::Time t);
  // Same, for whole Unix seconds.
  static Period OfUnixSeconds(int64_t s) {
    return Of(absl::FromUnixSeconds(s));
  }

  int year() const { return year_; }
  int month() const { return month_; }
  std::string ToString() const;  // "YYYY-MM"
  absl::Time Start() const;      // first instant, UTC midnight of day 1
  absl::Time End() const;        // first instant of the next month
  int64_t StartUnixSeconds() const { return absl::ToUnixSeconds(Start()); }
  int64_t EndUnixSeconds() const { return absl::ToUnixSeconds(End()); }
  Period Next() const;

  friend bool operator==(const Period& a, const Period& b) = default;
  friend auto operator<=>(const Period& a, const Period& b) = default;

 private:
  Period(int year, int month) : year_(year), month_(month) {}
  int year_ = 1970;
  int month_ = 1;
};

// Strict "YYYY-MM-DD" naming a real date; returns UTC midnight of that day.
// INVALID_ARGUMENT naming `field` otherwise.
absl::StatusOr<absl::Time> ParseDate(std::string_view text,
                                     std::string_view field);

// `t` plus `months` calendar months (UTC); a day that does not exist in the
// target month rolls over (Jan 31 + 1 month = Mar 3 or Mar 2), as
// absl::CivilSecond normalises.
absl::Time AddMonths(absl::Time t, int months);

}  // namespace joule::billing
