#include "billing/money.h"

#include <algorithm>
#include <limits>

#include "billing/strings.h"
#include "common/status_macros.h"

namespace joule::billing {
namespace {

absl::Status Overflow(std::string_view what) {
  return absl::OutOfRangeError(Cat(what, " overflows int64"));
}

// Decimal digits of a non-negative __int128.
std::string Int128ToString(unsigned __int128 v) {
  if (v == 0) return "0";
  std::string s;
  while (v > 0) {
    s.push_back(static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  }
  std::reverse(s.begin(), s.end());
  return s;
}

}  // namespace

absl::StatusOr<int64_t> CheckedAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return Overflow("addition");
  return r;
}

absl::StatusOr<int64_t> CheckedMul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return Overflow("multiplication");
  return r;
}

absl::StatusOr<Money> Add(Money a, Money b) {
  int64_t r;
  if (__builtin_add_overflow(a.micros(), b.micros(), &r)) {
    return Overflow("money addition");
  }
  return Money::FromMicros(r);
}

absl::StatusOr<Money> Sub(Money a, Money b) {
  int64_t r;
  if (__builtin_sub_overflow(a.micros(), b.micros(), &r)) {
    return Overflow("money subtraction");
  }
  return Money::FromMicros(r);
}

absl::StatusOr<Money> Mul(Money a, int64_t factor) {
  int64_t r;
  if (__builtin_mul_overflow(a.micros(), factor, &r)) {
    return Overflow("money multiplication");
  }
  return Money::FromMicros(r);
}

absl::StatusOr<Money> ParseDecimal(std::string_view text,
                                   std::string_view field) {
  auto bad = [&](std::string_view rule) {
    return absl::InvalidArgumentError(Cat(field, ": \"", text, "\" ", rule));
  };
  if (text.empty()) return bad("is empty; want a decimal like 2.49");
  if (text.front() == '-') return bad("is negative; prices must be >= 0");
  size_t dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view frac =
      dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  auto all_digits = [](std::string_view s) {
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return c >= '0' && c <= '9'; });
  };
  if (whole.empty() || !all_digits(whole) || !all_digits(frac) ||
      (dot != std::string_view::npos && frac.empty())) {
    return bad("is not a decimal number (digits, optional '.' and digits)");
  }
  if (frac.size() > static_cast<size_t>(kMaxPriceDecimals)) {
    return bad("has more than 6 decimal places");
  }
  int64_t micros = 0;
  for (char c : whole) {
    if (__builtin_mul_overflow(micros, 10, &micros) ||
        __builtin_add_overflow(micros, c - '0', &micros)) {
      return bad("is too large");
    }
  }
  if (__builtin_mul_overflow(micros, kMicrosPerDollar, &micros)) {
    return bad("is too large");
  }
  int64_t f = 0;
  for (size_t i = 0; i < static_cast<size_t>(kMaxPriceDecimals); ++i) {
    f = f * 10 + (i < frac.size() ? frac[i] - '0' : 0);
  }
  if (__builtin_add_overflow(micros, f, &micros)) return bad("is too large");
  return Money::FromMicros(micros);
}

absl::StatusOr<Money> ParsePrice(std::string_view text,
                                 std::string_view field) {
  absl::StatusOr<Money> m = ParseDecimal(text, field);
  if (m.ok() && m->micros() > kMaxPriceMicros) {
    return absl::InvalidArgumentError(
        Cat(field, ": \"", text, "\" is above the largest price, 1000000"));
  }
  return m;
}

absl::StatusOr<int64_t> ParseAmountCents(std::string_view text,
                                         std::string_view field) {
  ASSIGN_OR_RETURN(Money m, ParseDecimal(text, field));
  if (m.micros() % kMicrosPerCent != 0) {
    return absl::InvalidArgumentError(
        Cat(field, ": \"", text, "\" has more than 2 decimal places (cents)"));
  }
  if (m.micros() == 0) {
    return absl::InvalidArgumentError(Cat(field, ": must be > 0"));
  }
  return m.micros() / kMicrosPerCent;
}

std::string FormatMicros(int64_t micros) {
  bool neg = micros < 0;
  unsigned __int128 v =
      neg ? static_cast<unsigned __int128>(-static_cast<__int128>(micros))
          : static_cast<unsigned __int128>(micros);
  std::string whole = Int128ToString(v / kMicrosPerDollar);
  std::string frac = Int128ToString(v % kMicrosPerDollar);
  frac = std::string(6 - frac.size(), '0') + frac;
  while (frac.size() > 2 && frac.back() == '0') frac.pop_back();
  return Cat(neg ? "-" : "", whole, ".", frac);
}

std::string FormatCents(int64_t cents) {
  bool neg = cents < 0;
  unsigned __int128 v =
      neg ? static_cast<unsigned __int128>(-static_cast<__int128>(cents))
          : static_cast<unsigned __int128>(cents);
  std::string frac = Int128ToString(v % 100);
  if (frac.size() < 2) frac = "0" + frac;
  return Cat(neg ? "-" : "", Int128ToString(v / 100), ".", frac);
}

absl::StatusOr<int64_t> RoundHalfEven(__int128 numerator,
                                      __int128 denominator) {
  if (denominator <= 0) {
    return absl::InvalidArgumentError("RoundHalfEven: denominator must be > 0");
  }
  // C++ division truncates toward zero; move to floor division first.
  __int128 q = numerator / denominator;
  __int128 r = numerator % denominator;
  if (r < 0) {
    q -= 1;
    r += denominator;
  }
  // Now numerator = q * denominator + r with 0 <= r < denominator.
  __int128 rest = denominator - r;  // distance to the next integer
  if (r > rest || (r == rest && (q & 1) != 0)) q += 1;
  if (q > std::numeric_limits<int64_t>::max() ||
      q < std::numeric_limits<int64_t>::min()) {
    return absl::OutOfRangeError("rounded amount overflows int64");
  }
  return static_cast<int64_t>(q);
}

std::string FormatRatio(__int128 numerator, __int128 denominator, int places) {
  __int128 scale = 1;
  for (int i = 0; i < places; ++i) scale *= 10;
  __int128 n;
  if (__builtin_mul_overflow(numerator, scale, &n)) return "overflow";
  absl::StatusOr<int64_t> scaled = RoundHalfEven(n, denominator);
  if (!scaled.ok()) return "overflow";
  bool neg = *scaled < 0;
  unsigned __int128 v =
      neg ? static_cast<unsigned __int128>(-static_cast<__int128>(*scaled))
          : static_cast<unsigned __int128>(*scaled);
  std::string whole = Int128ToString(v / static_cast<unsigned __int128>(scale));
  if (places == 0) return Cat(neg ? "-" : "", whole);
  std::string frac = Int128ToString(v % static_cast<unsigned __int128>(scale));
  frac = std::string(places - frac.size(), '0') + frac;
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  return Cat(neg ? "-" : "", whole, frac.empty() ? "" : ".", frac);
}

absl::Status ExactAmount::AddProduct(__int128 quantity, int64_t rate_micros) {
  __int128 p;
  if (__builtin_mul_overflow(quantity, static_cast<__int128>(rate_micros),
                             &p) ||
      __builtin_add_overflow(numerator_, p, &numerator_)) {
    return absl::OutOfRangeError("exact amount overflows __int128");
  }
  return absl::OkStatus();
}

absl::Status ExactAmount::Add(const ExactAmount& other) {
  if (other.denominator_ != denominator_) {
    return absl::InternalError("ExactAmount::Add: denominators differ");
  }
  if (__builtin_add_overflow(numerator_, other.numerator_, &numerator_)) {
    return absl::OutOfRangeError("exact amount overflows __int128");
  }
  return absl::OkStatus();
}

absl::Status ExactAmount::Sub(const ExactAmount& other) {
  if (other.denominator_ != denominator_) {
    return absl::InternalError("ExactAmount::Sub: denominators differ");
  }
  if (__builtin_sub_overflow(numerator_, other.numerator_, &numerator_)) {
    return absl::OutOfRangeError("exact amount overflows __int128");
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ExactAmount::ToCents() const {
  return RoundHalfEven(numerator_,
                       static_cast<__int128>(denominator_) * kMicrosPerCent);
}

}  // namespace joule::billing
