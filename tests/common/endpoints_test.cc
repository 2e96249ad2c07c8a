#include "common/endpoints.h"

#include "gtest/gtest.h"

namespace joule {
namespace {

TEST(ParseEndpointsTest, Table) {
  struct Case {
    std::string in;
    std::vector<std::string> want;  // empty: INVALID_ARGUMENT
  };
  const Case cases[] = {
      {"127.0.0.1:7070", {"127.0.0.1:7070"}},
      {"a:1,b:2,c:3", {"a:1", "b:2", "c:3"}},
      {" a:1 , b:2", {"a:1", "b:2"}},
      {"", {}},
      {"a:1,,b:2", {}},
      {"a:1,", {}},
  };
  for (const Case& c : cases) {
    auto got = ParseEndpoints(c.in, "--server");
    if (c.want.empty()) {
      EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument)
          << c.in;
      EXPECT_NE(got.status().message().find("--server"), std::string::npos);
    } else {
      ASSERT_TRUE(got.ok()) << c.in << ": " << got.status();
      EXPECT_EQ(*got, c.want) << c.in;
    }
  }
}

TEST(LeaderHintTest, FromStandbyMessage) {
  EXPECT_EQ(LeaderHint("jouled at b:2 is a standby; the leader is at a:1"),
            "a:1");
  EXPECT_EQ(LeaderHint("cannot reach: the leader is at 10.0.0.1:7070 (x)"),
            "10.0.0.1:7070");
  EXPECT_EQ(LeaderHint("jouled at b:2 is a standby and no leader is elected"),
            "");
}

TEST(EndpointFollowerTest, FollowsHintsElseRotates) {
  EndpointFollower f({"a:1", "b:2", "c:3"});
  EXPECT_EQ(f.Current(), "a:1");
  // a is down: next.
  EXPECT_TRUE(f.OnFailure(14, "failed to connect"));
  EXPECT_EQ(f.Current(), "b:2");
  // b is a standby naming c.
  EXPECT_TRUE(
      f.OnFailure(14, "jouled at b:2 is a standby; the leader is at c:3"));
  EXPECT_EQ(f.Current(), "c:3");
  // A refusal that is not about reachability keeps the endpoint.
  EXPECT_FALSE(f.OnFailure(3, "bad argument"));
  EXPECT_EQ(f.Current(), "c:3");
  // A hint naming the current endpoint (stale) rotates instead of looping.
  EXPECT_TRUE(f.OnFailure(14, "the leader is at c:3"));
  EXPECT_NE(f.Current(), "c:3");
}

}  // namespace
}  // namespace joule
