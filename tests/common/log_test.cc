#include "common/log.h"

#include "gtest/gtest.h"

namespace joule::log {
namespace {

const absl::Time kT = absl::FromUnixMillis(1764585139123);  // 2025-12-01

TEST(Log, TextQuotesValuesWithSpacesAndSkipsEmptyOnes) {
  EXPECT_EQ(FormatLine(Format::kText, kT, Level::kWarn, "throttle",
                       {{"job", "job-000001"},
                        {"node", "n1"},
                        {"domain", ""},
                        {"msg", "limit -> 500 W: \"cap\""}}),
            "2025-12-01T10:32:19.123Z WARN throttle job=job-000001 node=n1 "
            "msg=\"limit -> 500 W: \\\"cap\\\"\"");
}

TEST(Log, JsonEscapes) {
  EXPECT_EQ(FormatLine(Format::kJson, kT, Level::kInfo, "placement",
                       {{"job", "job-1"}, {"msg", "a\\b\n\x01"}}),
            "{\"time\":\"2025-12-01T10:32:19.123Z\",\"level\":\"info\","
            "\"event\":\"placement\",\"job\":\"job-1\",\"msg\":\"a\\\\b\\n"
            "\\u0001\"}");
}

TEST(Log, FlagsParseOrNameTheFlag) {
  Format f;
  Level l;
  EXPECT_TRUE(ParseFormat("json", &f).ok());
  EXPECT_EQ(f, Format::kJson);
  EXPECT_TRUE(ParseLevel("WARN", &l).ok());
  EXPECT_EQ(l, Level::kWarn);
  absl::Status s = ParseFormat("xml", &f);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--log-format"), absl::string_view::npos);
  EXPECT_NE(ParseLevel("loud", &l).message().find("--log-level"),
            absl::string_view::npos);
}

}  // namespace
}  // namespace joule::log
