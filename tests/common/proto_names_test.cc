#include "common/proto_names.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"

namespace joule {
namespace {

// The name the descriptor gives: JOB_STATE_ON_HOLD -> "on-hold".
std::string FromDescriptor(const google::protobuf::EnumValueDescriptor* v,
                           const std::string& prefix) {
  return absl::StrReplaceAll(
      absl::AsciiStrToLower(v->name().substr(prefix.size())), {{"_", "-"}});
}

// Every value of an enum, the ones added after this test too: the table
// in common/proto_names.cc names it as its descriptor does (value 0 is
// "unspecified"), and parsing the name gives the value back.
template <typename Enum, typename NameFn, typename ParseFn>
void ExpectEveryValueNamedAsItsDescriptor(
    const google::protobuf::EnumDescriptor* d, const std::string& prefix,
    NameFn name, ParseFn parse, const std::string& flag) {
  for (int i = 0; i < d->value_count(); ++i) {
    const auto* v = d->value(i);
    const auto value = static_cast<Enum>(v->number());
    if (v->number() == 0) {
      EXPECT_EQ(name(value), "unspecified");
      continue;
    }
    const std::string want = FromDescriptor(v, prefix);
    EXPECT_EQ(name(value), want) << v->name();
    auto parsed = parse(want, flag);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, value);
  }
}

TEST(ProtoNamesTest, EveryJobStateNamedAsItsDescriptor) {
  ExpectEveryValueNamedAsItsDescriptor<v1::JobState>(
      v1::JobState_descriptor(), "JOB_STATE_", JobStateName, ParseJobStateName,
      "--state");
}

TEST(ProtoNamesTest, EveryServiceClassNamedAsItsDescriptor) {
  ExpectEveryValueNamedAsItsDescriptor<v1::ServiceClass>(
      v1::ServiceClass_descriptor(), "SERVICE_CLASS_", ServiceClassName,
      ParseServiceClassName, "--class");
}

TEST(ProtoNamesTest, UnknownNumbersAndNamesAndTheDashlessSpelling) {
  EXPECT_EQ(JobStateName(static_cast<v1::JobState>(99)), "unspecified");
  EXPECT_EQ(JobStateName(static_cast<v1::JobState>(-1)), "unspecified");
  EXPECT_EQ(ServiceClassName(static_cast<v1::ServiceClass>(4)), "unspecified");
  EXPECT_EQ(*ParseServiceClassName("ondemand", "--class"),
            v1::SERVICE_CLASS_ON_DEMAND);
  auto bad = ParseServiceClassName("gold", "--class");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "--class: \"gold\" is not one of reserved, on-demand, spot");
  EXPECT_FALSE(ParseJobStateName("unspecified", "--state").ok());
  EXPECT_FALSE(ParseJobStateName("", "--state").ok());
}

}  // namespace
}  // namespace joule
