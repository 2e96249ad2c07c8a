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

// Every value of each enum, the ones added after this test too: the table
// in common/proto_names.cc names it as its descriptor does, and parsing the
// name gives the value back.
TEST(ProtoNamesTest, EveryJobStateNamedAsItsDescriptor) {
  const auto* d = v1::JobState_descriptor();
  for (int i = 0; i < d->value_count(); ++i) {
    const auto* v = d->value(i);
    const auto state = static_cast<v1::JobState>(v->number());
    if (v->number() == 0) {
      EXPECT_EQ(JobStateName(state), "unspecified");
      continue;
    }
    const std::string want = FromDescriptor(v, "JOB_STATE_");
    EXPECT_EQ(JobStateName(state), want) << v->name();
    auto parsed = ParseJobStateName(want, "--state");
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, state);
  }
}

TEST(ProtoNamesTest, EveryServiceClassNamedAsItsDescriptor) {
  const auto* d = v1::ServiceClass_descriptor();
  for (int i = 0; i < d->value_count(); ++i) {
    const auto* v = d->value(i);
    const auto cls = static_cast<v1::ServiceClass>(v->number());
    if (v->number() == 0) {
      EXPECT_EQ(ServiceClassName(cls), "unspecified");
      continue;
    }
    const std::string want = FromDescriptor(v, "SERVICE_CLASS_");
    EXPECT_EQ(ServiceClassName(cls), want) << v->name();
    auto parsed = ParseServiceClassName(want, "--class");
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, cls);
  }
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
