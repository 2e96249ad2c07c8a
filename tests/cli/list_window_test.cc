// cli/list_window.h: --since and --limit of every list command.
#include "cli/list_window.h"

#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"

namespace joule::cli {
namespace {

google::protobuf::RepeatedPtrField<v1::Tenant> Tenants(int n) {
  google::protobuf::RepeatedPtrField<v1::Tenant> out;
  for (int i = 0; i < n; ++i) {
    v1::Tenant* t = out.Add();
    t->set_name(std::string(1, static_cast<char>('a' + i)));
    t->mutable_created_time()->set_seconds(100 * i);  // a:0 b:100 c:200 ...
  }
  return out;
}

std::string Names(const google::protobuf::RepeatedPtrField<v1::Tenant>& ts) {
  std::string s;
  for (const auto& t : ts) s += t.name();
  return s;
}

TEST(ListWindowTest, SinceThenLimitFirstOrLatest) {
  const absl::Time now = absl::FromUnixSeconds(400);
  struct Case {
    std::string since;
    uint32_t limit;
    bool latest;
    std::string want;
  } const cases[] = {
      {"", 0, false, "abcde"},    // no window
      {"250s", 0, false, "cde"},  // cutoff 400-250 = 150: c d e
      {"", 2, false, "ab"},       // first 2 (name order)
      {"", 2, true, "de"},        // latest 2 (time order)
      {"300s", 2, true, "de"},    // cutoff 100: bcde, then latest 2
      {"300s", 2, false, "bc"},   // cutoff 100: bcde, then first 2
      {"0s", 0, true, "e"},       // cutoff 400: only e (400 >= 400)
      {"", 9, true, "abcde"},     // a limit above the count keeps all
  };
  for (const Case& c : cases) {
    auto items = Tenants(5);
    auto cutoff = SinceCutoff(c.since, now);
    ASSERT_TRUE(cutoff.ok()) << cutoff.status();
    ApplyWindow(&items, *cutoff, c.limit, c.latest, [](const v1::Tenant& t) {
      return absl::FromUnixSeconds(t.created_time().seconds());
    });
    EXPECT_EQ(Names(items), c.want) << c.since << " " << c.limit;
  }
}

// "Latest" is by time, not position: a list in id order (tokens) keeps
// the rows of the latest times, in list order.
TEST(ListWindowTest, LatestIsByTimeKeepingListOrder) {
  auto items = Tenants(5);  // a:0 b:100 c:200 d:300 e:400
  items.Mutable(0)->mutable_created_time()->set_seconds(500);  // a newest
  ApplyWindow(&items, absl::InfinitePast(), 2, /*latest=*/true,
              [](const v1::Tenant& t) {
                return absl::FromUnixSeconds(t.created_time().seconds());
              });
  EXPECT_EQ(Names(items), "ae");  // 500 and 400, in list order
}

TEST(ListWindowTest, BadSinceAndLimitAreRefused) {
  for (const char* bad : {"-1h", "soon", "5"}) {
    auto t = SinceCutoff(bad, absl::Now());
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(t.status().message().find("--since"), absl::string_view::npos);
  }
  CLI::App app;
  ListWindow w;
  AddListWindow(&app, &w, "", "");
  for (const char* bad : {"-1", "1000001", "x"}) {
    std::vector<std::string> args = {bad, "--limit"};  // CLI11: reversed
    EXPECT_THROW(app.parse(args), CLI::ParseError) << bad;
  }
  std::vector<std::string> ok = {"1000000", "--limit"};
  app.parse(ok);
  EXPECT_EQ(w.limit, kMaxListLimit);
}

}  // namespace
}  // namespace joule::cli
