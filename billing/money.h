#pragma once

// Money arithmetic of the billing ledger. Pure: no storage, no clock, no
// floating point. See docs/billing.md ("Money").

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace joule::billing {

inline constexpr int64_t kMicrosPerDollar = 1'000'000;
inline constexpr int64_t kMicrosPerCent = 10'000;
// Prices and rates are decimal strings with at most this many decimals.
inline constexpr int kMaxPriceDecimals = 6;

// Bounds that keep every statement line, subtotal and total inside int64
// cents, so that a period can always be finalized (docs/billing.md,
// "Bounds"). A price or rate (per GPU-hour, per 1M tokens, per request) is
// at most $1,000,000; one usage event carries at most 10^12 requests and
// 10^12 tokens per direction; the inference usage of one (tenant, month,
// served model), valued at the highest rate any version of its price ever
// had, is at most $10^12 (10^18 micro-dollars). Int64 cents hold 92,233 such
// lines.
inline constexpr int64_t kMaxPriceMicros = 1'000'000 * 1'000'000LL;
inline constexpr int64_t kMaxEventQuantity = 1'000'000'000'000LL;
inline constexpr int64_t kMaxLineMicros = 1'000'000'000'000'000'000LL;

// An amount of USD in micro-dollars (1e-6 USD). A value type: holds one int64
// and nothing else; every arithmetic operation is checked and returns an
// error instead of wrapping. Thread-compatible.
class Money {
 public:
  constexpr Money() = default;
  static constexpr Money FromMicros(int64_t micros) { return Money(micros); }
  constexpr int64_t micros() const { return micros_; }

  friend constexpr bool operator==(Money a, Money b) = default;
  friend constexpr auto operator<=>(Money a, Money b) = default;

 private:
  constexpr explicit Money(int64_t micros) : micros_(micros) {}
  int64_t micros_ = 0;
};

// Checked arithmetic: OUT_OF_RANGE on int64 overflow, never wraps.
absl::StatusOr<Money> Add(Money a, Money b);
absl::StatusOr<Money> Sub(Money a, Money b);
absl::StatusOr<Money> Mul(Money a, int64_t factor);
absl::StatusOr<int64_t> CheckedAdd(int64_t a, int64_t b);
absl::StatusOr<int64_t> CheckedMul(int64_t a, int64_t b);

// Parses a non-negative decimal USD string with at most 6 decimal places
// ("2.49", "0.000125", "3") into micro-dollars. Everything else (empty, a
// sign, spaces, exponent, more than 6 decimals, "1.", ".5", a value over
// int64 micro-dollars) is INVALID_ARGUMENT naming `field` and the rule.
absl::StatusOr<Money> ParseDecimal(std::string_view text,
                                   std::string_view field);

// ParseDecimal, then at most kMaxPriceMicros ($1,000,000): for prices and
// rates a client sets (not for stored ones being read back).
absl::StatusOr<Money> ParsePrice(std::string_view text, std::string_view field);

// Parses a USD amount that a person types for a credit or a grant: like
// ParseDecimal but at most 2 decimals (cents) and > 0; returns cents.
absl::StatusOr<int64_t> ParseAmountCents(std::string_view text,
                                         std::string_view field);

// Formats micro-dollars as a decimal string without trailing zeros beyond the
// cents: 2490000 -> "2.49", 125 -> "0.000125", 3000000 -> "3.00".
std::string FormatMicros(int64_t micros);
inline std::string FormatMoney(Money m) { return FormatMicros(m.micros()); }
// Formats cents as "7.47", "-0.05".
std::string FormatCents(int64_t cents);

// THE rounding function of the ledger: numerator / denominator rounded to the
// nearest integer, ties to the even integer (banker's rounding). Exact: works
// on __int128 with no intermediate rounding. `denominator` must be > 0
// (INVALID_ARGUMENT otherwise); OUT_OF_RANGE when the result does not fit an
// int64. Examples: 5/2 -> 2, 7/2 -> 4, -5/2 -> -2, 1/3 -> 0, 2/3 -> 1.
absl::StatusOr<int64_t> RoundHalfEven(__int128 numerator, __int128 denominator);

// Formats numerator/denominator as a decimal with at most `places` decimals
// (rounded half-even at the last place, trailing zeros removed). For
// quantities shown on a statement (the amount never uses it).
std::string FormatRatio(__int128 numerator, __int128 denominator, int places);

// An exact amount of money that is a sum of products `quantity x rate`
// divided by a fixed denominator: value = numerator / denominator
// micro-dollars. A statement line keeps its value in one of these until the
// single rounding to cents (ToCents). E.g. GPU-seconds x $/GPU-hour uses
// denominator 3600 (seconds per hour); tokens x $/1M tokens uses 1,000,000.
// Thread-compatible.
class ExactAmount {
 public:
  explicit ExactAmount(int64_t denominator = 1) : denominator_(denominator) {}
  // numerator += quantity x rate_micros; OUT_OF_RANGE on __int128 overflow.
  absl::Status AddProduct(__int128 quantity, int64_t rate_micros);
  absl::Status Add(const ExactAmount& other);  // same denominator required
  absl::Status Sub(const ExactAmount& other);  // same denominator required
  __int128 numerator() const { return numerator_; }
  int64_t denominator() const { return denominator_; }
  // The one rounding: cents = RoundHalfEven(numerator / (denominator x 1e4)).
  absl::StatusOr<int64_t> ToCents() const;

 private:
  __int128 numerator_ = 0;
  int64_t denominator_;
};

}  // namespace joule::billing
