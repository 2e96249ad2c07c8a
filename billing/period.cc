#include "billing/period.h"

#include "absl/strings/str_format.h"
#include "billing/strings.h"

namespace joule::billing {
namespace {

// Parses exactly `n` ASCII digits.
bool Digits(std::string_view s, int* out) {
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return !s.empty();
}

}  // namespace

absl::StatusOr<Period> Period::Parse(std::string_view text,
                                     std::string_view field) {
  int y = 0, m = 0;
  if (text.size() != 7 || text[4] != '-' || !Digits(text.substr(0, 4), &y) ||
      !Digits(text.substr(5, 2), &m) || y < 1970 || m < 1 || m > 12) {
    return absl::InvalidArgumentError(
        Cat(field, ": \"", text, "\" is not a period YYYY-MM (UTC month)"));
  }
  return Period(y, m);
}

Period Period::Of(absl::Time t) {
  absl::CivilMonth m = absl::ToCivilMonth(t, absl::UTCTimeZone());
  return Period(static_cast<int>(m.year()), m.month());
}

std::string Period::ToString() const {
  return absl::StrFormat("%04d-%02d", year_, month_);
}

absl::Time Period::Start() const {
  return absl::FromCivil(absl::CivilMonth(year_, month_), absl::UTCTimeZone());
}

absl::Time Period::End() const { return Next().Start(); }

Period Period::Next() const {
  return month_ == 12 ? Period(year_ + 1, 1) : Period(year_, month_ + 1);
}

absl::StatusOr<absl::Time> ParseDate(std::string_view text,
                                     std::string_view field) {
  int y = 0, m = 0, d = 0;
  auto bad = [&] {
    return absl::InvalidArgumentError(
        Cat(field, ": \"", text, "\" is not a date YYYY-MM-DD (UTC midnight)"));
  };
  if (text.size() != 10 || text[4] != '-' || text[7] != '-' ||
      !Digits(text.substr(0, 4), &y) || !Digits(text.substr(5, 2), &m) ||
      !Digits(text.substr(8, 2), &d) || y < 1970) {
    return bad();
  }
  absl::CivilDay day(y, m, d);
  if (day.year() != y || day.month() != m || day.day() != d) return bad();
  return absl::FromCivil(day, absl::UTCTimeZone());
}

absl::Time AddMonths(absl::Time t, int months) {
  absl::CivilSecond cs = absl::ToCivilSecond(t, absl::UTCTimeZone());
  absl::CivilSecond moved(cs.year(), cs.month() + months, cs.day(), cs.hour(),
                          cs.minute(), cs.second());
  return absl::FromCivil(moved, absl::UTCTimeZone()) +
         (t - absl::FromCivil(cs, absl::UTCTimeZone()));
}

}  // namespace joule::billing
