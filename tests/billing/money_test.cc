// Tests of the pure money arithmetic: decimal parsing, formatting, the one
// rounding function and overflow detection.
#include "billing/money.h"

#include <cstdint>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace joule::billing {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

// ------------------------------------------------------------ parsing ----

struct ParseOk {
  std::string text;
  int64_t micros;
};
class DecimalParseOkTest : public ::testing::TestWithParam<ParseOk> {};

TEST_P(DecimalParseOkTest, ParsesExactly) {
  absl::StatusOr<Money> m = ParseDecimal(GetParam().text, "price");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->micros(), GetParam().micros);
}

INSTANTIATE_TEST_SUITE_P(
    Decimals, DecimalParseOkTest,
    ::testing::Values(ParseOk{"2.49", 2'490'000},   // $2.49
                      ParseOk{"0.000125", 125},     // 125 micro-dollars
                      ParseOk{"3", 3'000'000},      // whole dollars
                      ParseOk{"0", 0},              // free
                      ParseOk{"0.80", 800'000},     // trailing zero
                      ParseOk{"007.5", 7'500'000},  // leading zeros
                      ParseOk{"0.000001", 1},       // smallest unit
                      // int64 max micro-dollars, exactly
                      ParseOk{"9223372036854.775807", kMax}));

struct ParseBad {
  std::string text;
  std::string rule;  // part of the message
};
class DecimalParseErrorTest : public ::testing::TestWithParam<ParseBad> {};

TEST_P(DecimalParseErrorTest, RejectsNamingFieldAndRule) {
  absl::StatusOr<Money> m =
      ParseDecimal(GetParam().text, "price.gpu_hour.price");
  ASSERT_FALSE(m.ok()) << GetParam().text << " parsed as " << m->micros();
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr("price.gpu_hour.price"));
  EXPECT_THAT(m.status().message(), HasSubstr(GetParam().rule));
}

INSTANTIATE_TEST_SUITE_P(
    Decimals, DecimalParseErrorTest,
    ::testing::Values(
        ParseBad{"", "empty"}, ParseBad{"-1", "negative"},
        ParseBad{"-0.01", "negative"}, ParseBad{"+1", "not a decimal"},
        ParseBad{"1.", "not a decimal"}, ParseBad{".5", "not a decimal"},
        ParseBad{"1e3", "not a decimal"}, ParseBad{" 1", "not a decimal"},
        ParseBad{"1,5", "not a decimal"}, ParseBad{"abc", "not a decimal"},
        ParseBad{"1.2.3", "not a decimal"},
        // 7 decimal places: below a micro-dollar
        ParseBad{"0.0000001", "more than 6 decimal places"},
        ParseBad{"2.4900000", "more than 6 decimal places"},
        // int64 max + 1 micro-dollar
        ParseBad{"9223372036854.775808", "too large"},
        ParseBad{"99999999999999999999", "too large"}));

// ---------------------------------------------------------- formatting ----

TEST(FormatTest, MicrosAndCents) {
  EXPECT_EQ(FormatMicros(2'490'000), "2.49");
  EXPECT_EQ(FormatMicros(125), "0.000125");
  EXPECT_EQ(FormatMicros(3'000'000), "3.00");
  EXPECT_EQ(FormatMicros(800'000), "0.80");
  EXPECT_EQ(FormatMicros(-1'500'000), "-1.50");
  EXPECT_EQ(FormatCents(747), "7.47");
  EXPECT_EQ(FormatCents(-5), "-0.05");
  EXPECT_EQ(FormatCents(0), "0.00");
  // 10800 GPU-s / 3600 = 3 GPU-h; 1 s = 0.000278 GPU-h (6 places).
  EXPECT_EQ(FormatRatio(10800, 3600, 6), "3");
  EXPECT_EQ(FormatRatio(1, 3600, 6), "0.000278");
  EXPECT_EQ(FormatRatio(1'500'000, 1'000'000, 6), "1.5");
}

// ------------------------------------------------------------ rounding ----

struct RoundCase {
  __int128 num;
  __int128 den;
  int64_t want;
};
class RoundHalfEvenTest : public ::testing::TestWithParam<RoundCase> {};

TEST_P(RoundHalfEvenTest, RoundsTiesToEven) {
  absl::StatusOr<int64_t> r = RoundHalfEven(GetParam().num, GetParam().den);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, GetParam().want);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RoundHalfEvenTest,
    ::testing::Values(
        RoundCase{5, 2, 2},    // 2.5 -> 2 (even)
        RoundCase{7, 2, 4},    // 3.5 -> 4 (even)
        RoundCase{-5, 2, -2},  // -2.5 -> -2
        RoundCase{-7, 2, -4},  // -3.5 -> -4
        RoundCase{1, 3, 0},    // 0.333 -> 0
        RoundCase{2, 3, 1},    // 0.667 -> 1
        RoundCase{-2, 3, -1},  // -0.667 -> -1
        RoundCase{0, 7, 0},    // 0
        // micro-dollars to cents (den 10,000):
        RoundCase{5'000, 10'000, 0},   // $0.005 -> $0.00
        RoundCase{15'000, 10'000, 2},  // $0.015 -> $0.02
        RoundCase{25'000, 10'000, 2},  // $0.025 -> $0.02
        RoundCase{25'001, 10'000, 3},  // $0.0250001 -> $0.03
        RoundCase{24'999, 10'000, 2},  // $0.0249999 -> $0.02
        RoundCase{-15'000, 10'000, -2},
        // GPU line: 1800 GPU-s x 10,000 micro/h / 3600 = 5000 micro = 0.5c
        RoundCase{1800 * 10'000, 3600 * 10'000, 0},
        RoundCase{static_cast<__int128>(kMax), 1, kMax}));

TEST(RoundHalfEvenErrorTest, OverflowAndBadDenominator) {
  EXPECT_EQ(RoundHalfEven(static_cast<__int128>(kMax) + 1, 1).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(RoundHalfEven(static_cast<__int128>(kMin) - 1, 1).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(RoundHalfEven(1, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ------------------------------------------------------------ overflow ----

TEST(MoneyOverflowTest, CheckedOpsNeverWrap) {
  Money max = Money::FromMicros(kMax);
  Money one = Money::FromMicros(1);
  EXPECT_EQ(Add(max, one).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Sub(Money::FromMicros(kMin), one).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Mul(max, 2).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Mul(Money::FromMicros(kMin), -1).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(CheckedAdd(kMax, 1).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(CheckedMul(kMax / 2 + 1, 2).status().code(),
            absl::StatusCode::kOutOfRange);
  // In range: exact.
  EXPECT_EQ(Add(Money::FromMicros(kMax - 1), one)->micros(), kMax);
  EXPECT_EQ(Mul(Money::FromMicros(2'490'000), 3)->micros(), 7'470'000);
}

TEST(ExactAmountTest, KeepsExactValueUntilOneRounding) {
  // 3 parts of 1 GPU-s at $0.01/GPU-h: each 10,000/3600 micro = 0.00027c;
  // exact sum 30,000/3600 micro, rounded once: 0 cents.
  ExactAmount a(3600);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a.AddProduct(1, 10'000).ok());
  EXPECT_EQ(a.numerator(), 30'000);
  EXPECT_EQ(*a.ToCents(), 0);
  // 2 GPUs x 5400 s = 10800 GPU-s = 3 GPU-h x $2.49 = $7.47
  ExactAmount b(3600);
  ASSERT_TRUE(b.AddProduct(2 * 5400, 2'490'000).ok());
  EXPECT_EQ(*b.ToCents(), 747);
  // __int128 overflow is detected, not wrapped.
  ExactAmount c(1);
  __int128 huge = static_cast<__int128>(1) << 100;
  EXPECT_EQ(c.AddProduct(huge, kMax).code(), absl::StatusCode::kOutOfRange);
  // A value beyond int64 cents is OUT_OF_RANGE at the rounding.
  ExactAmount d(1);
  ASSERT_TRUE(d.AddProduct(static_cast<__int128>(kMax) * 20'000, 1).ok());
  EXPECT_EQ(d.ToCents().status().code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace joule::billing
