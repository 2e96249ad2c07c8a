#include "common/units.h"

#include "gtest/gtest.h"

namespace joule {
namespace {

struct PowerCase {
  const char* text;
  int64_t mw;  // -1: error expected
};

class ParsePowerTest : public ::testing::TestWithParam<PowerCase> {};

TEST_P(ParsePowerTest, Parses) {
  const PowerCase& c = GetParam();
  auto got = ParsePowerMw(c.text, "cap");
  if (c.mw < 0) {
    ASSERT_FALSE(got.ok()) << c.text;
    EXPECT_NE(got.status().message().find("cap"), std::string::npos);
  } else {
    ASSERT_TRUE(got.ok()) << c.text << ": " << got.status();
    EXPECT_EQ(*got, c.mw) << c.text;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Units, ParsePowerTest,
    ::testing::Values(PowerCase{"700", 700'000},      // bare number = W
                      PowerCase{"700W", 700'000},     // 700 × 1000 mW
                      PowerCase{"40kW", 40'000'000},  // 40 × 10^6 mW
                      PowerCase{"1.5 MW", 1'500'000'000},
                      PowerCase{"350.5W", 350'500}, PowerCase{"0.001W", 1},
                      PowerCase{"250mW", 250},   // lower-case mW
                      PowerCase{"0.0001W", -1},  // finer than 1 mW
                      PowerCase{"-5kW", -1},     // negative
                      PowerCase{"", -1}, PowerCase{"kW", -1},
                      PowerCase{"5GW", -1},  // unknown unit
                      PowerCase{"1.2.3W", -1},
                      PowerCase{"99999999999999999999W", -1}));  // overflow

TEST(FormatPowerTest, PicksAReadableUnit) {
  EXPECT_EQ(FormatPower(700'000), "700 W");
  EXPECT_EQ(FormatPower(5'600'000), "5.60 kW");
  EXPECT_EQ(FormatPower(37'200'000), "37.2 kW");
  EXPECT_EQ(FormatPower(2'500'000'000), "2.50 MW");
}

TEST(DurationTest, RejectsNegativeAndGarbage) {
  EXPECT_EQ(*ParseNonNegativeDuration("1h30m"), absl::Minutes(90));
  EXPECT_FALSE(ParseNonNegativeDuration("-1s").ok());
  EXPECT_FALSE(ParseNonNegativeDuration("soon").ok());
  // Named by `field`; an empty field leaves the naming to the caller.
  EXPECT_EQ(ParseNonNegativeDuration("soon", "--timeout").status().message(),
            "--timeout: \"soon\" is not a duration; want e.g. 90s, 5m, 1h30m");
  EXPECT_EQ(ParseNonNegativeDuration("-1s", "").status().message(),
            "\"-1s\" must not be negative");
}

}  // namespace
}  // namespace joule
