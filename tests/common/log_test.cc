#include "common/log.h"

#include <map>
#include <string>

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

// A stand-in for CLI::App: AddLogFlags only calls add_option.
struct FakeApp {
  std::map<std::string, std::string*> options;
  void add_option(const std::string& name, std::string& value,
                  const std::string& help) {
    options[name] = &value;
  }
};

TEST(Log, AddLogFlagsBindsBothFlagsWithTheirDefaults) {
  FakeApp app;
  LogOptions o;
  AddLogFlags(app, &o);
  ASSERT_EQ(app.options.size(), 2u);
  ASSERT_EQ(app.options.count("--log-format"), 1u);
  ASSERT_EQ(app.options.count("--log-level"), 1u);
  EXPECT_EQ(*app.options["--log-format"], "text");
  EXPECT_EQ(*app.options["--log-level"], "info");
  *app.options["--log-format"] = "json";
  EXPECT_EQ(o.format, "json");
}

TEST(Log, ApplyLogOptionsRefusesEitherBadValueAndConfiguresOtherwise) {
  EXPECT_TRUE(ApplyLogOptions({.format = "text", .level = "warn"}).ok());
  EXPECT_FALSE(Enabled(Level::kInfo));
  EXPECT_TRUE(Enabled(Level::kWarn));
  absl::Status s = ApplyLogOptions({.format = "xml", .level = "debug"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--log-format"), absl::string_view::npos);
  s = ApplyLogOptions({.format = "json", .level = "loud"});
  EXPECT_NE(s.message().find("--log-level"), absl::string_view::npos);
  EXPECT_FALSE(Enabled(Level::kDebug));   // neither bad call configured
  EXPECT_TRUE(ApplyLogOptions({}).ok());  // text, info: the defaults
  EXPECT_TRUE(Enabled(Level::kInfo));
}

}  // namespace
}  // namespace joule::log
