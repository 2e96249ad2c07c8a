#include "common/units.h"

#include <cctype>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace joule {
namespace {

absl::Status PowerError(absl::string_view field, absl::string_view text,
                        absl::string_view rule) {
  // An empty field leaves the naming to the caller (e.g. config errors that
  // already say "domain[3].cap").
  return absl::InvalidArgumentError(
      absl::StrCat(field, field.empty() ? "" : ": ", "\"", text, "\" ", rule));
}

}  // namespace

absl::StatusOr<int64_t> ParsePowerMw(absl::string_view text,
                                     absl::string_view field) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  if (s.empty()) return PowerError(field, text, "is empty; want e.g. 40kW");
  if (s[0] == '-') return PowerError(field, text, "must not be negative");
  size_t i = 0;
  while (i < s.size() &&
         (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) {
    ++i;
  }
  absl::string_view number = s.substr(0, i);
  std::string unit =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(s.substr(i)));
  // Scale to milliwatts: multiplier is 10^exp.
  int exp;
  if (unit.empty() || unit == "w") {
    exp = 3;
  } else if (unit == "kw") {
    exp = 6;
  } else if (unit == "mw" && s.substr(i).find('M') != absl::string_view::npos) {
    exp = 9;  // "MW" is megawatts; lower-case "mw" is milliwatts
  } else if (unit == "mw") {
    exp = 0;
  } else {
    return PowerError(field, text, "has an unknown unit; use W, kW or MW");
  }
  size_t dot = number.find('.');
  absl::string_view whole = number.substr(0, dot);
  absl::string_view frac = dot == absl::string_view::npos
                               ? absl::string_view()
                               : number.substr(dot + 1);
  if (whole.empty() && frac.empty()) {
    return PowerError(field, text, "is not a number");
  }
  if (frac.find('.') != absl::string_view::npos) {
    return PowerError(field, text, "is not a number");
  }
  if (static_cast<int>(frac.size()) > exp) {
    return PowerError(field, text, "is more precise than a milliwatt");
  }
  int64_t value = 0;
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max() / 10;
  for (char c : whole) {
    if (value > kMax) return PowerError(field, text, "is too large");
    value = value * 10 + (c - '0');
  }
  int remaining = exp;
  for (char c : frac) {
    if (value > kMax) return PowerError(field, text, "is too large");
    value = value * 10 + (c - '0');
    --remaining;
  }
  for (; remaining > 0; --remaining) {
    if (value > kMax) return PowerError(field, text, "is too large");
    value *= 10;
  }
  return value;
}

std::string FormatPower(int64_t mw) {
  const bool neg = mw < 0;
  const double w = static_cast<double>(neg ? -mw : mw) / 1000.0;
  std::string out;
  if (w >= 1e6) {
    out = absl::StrFormat("%.2f MW", w / 1e6);
  } else if (w >= 1e4) {
    out = absl::StrFormat("%.1f kW", w / 1e3);
  } else if (w >= 1e3) {
    out = absl::StrFormat("%.2f kW", w / 1e3);
  } else {
    out = absl::StrFormat("%.0f W", w);
  }
  return neg ? absl::StrCat("-", out) : out;
}

absl::StatusOr<absl::Duration> ParseNonNegativeDuration(
    absl::string_view text, absl::string_view field) {
  absl::Duration d;
  std::string s(absl::StripAsciiWhitespace(text));
  if (!absl::ParseDuration(s, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, field.empty() ? "" : ": ", "\"", text,
                     "\" is not a duration; want e.g. 90s, 5m, 1h30m"));
  }
  if (d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, field.empty() ? "" : ": ", "\"", text,
                     "\" must not be negative"));
  }
  return d;
}

std::string FormatKwh(uint64_t mj, int decimals) {
  // 1 kWh = 3.6e9 mJ. Informational only (never money).
  return absl::StrFormat("%.*f", decimals, static_cast<double>(mj) / 3.6e9);
}

}  // namespace joule
