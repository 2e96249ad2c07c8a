#include "metrics/registry.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace joule::metrics {
namespace {

TEST(Exposition, FamiliesOnceSamplesInOrderLabelsEscaped) {
  Exposition e;
  e.Family("joule_x_watts", "gauge", "X.");
  e.Family("joule_x_watts", "gauge", "ignored: declared already");
  e.Sample("joule_x_watts", {{"domain", "rack-1"}}, 1500.5);
  e.Sample("joule_x_watts", {{"domain", "a\"b\\c\nd"}}, 2);
  e.Sample("joule_undeclared", {}, 1);  // dropped
  EXPECT_EQ(e.Text(),
            "# HELP joule_x_watts X.\n"
            "# TYPE joule_x_watts gauge\n"
            "joule_x_watts{domain=\"rack-1\"} 1500.5\n"
            "joule_x_watts{domain=\"a\\\"b\\\\c\\nd\"} 2\n");
}

TEST(Histogram, CumulativeBucketsSumAndCount) {
  Registry r;
  Histogram* h =
      r.GetHistogram("joule_t_seconds", "T.", {{"m", "a"}}, {0.01, 0.1, 1});
  // 0.005 -> le 0.01; 0.05 -> le 0.1; 0.5 -> le 1; 5 -> +Inf only.
  for (double v : {0.005, 0.05, 0.5, 5.0}) h->Observe(v);
  const std::string text = r.Render();
  for (const char* line : {"joule_t_seconds_bucket{m=\"a\",le=\"0.01\"} 1",
                           "joule_t_seconds_bucket{m=\"a\",le=\"0.1\"} 2",
                           "joule_t_seconds_bucket{m=\"a\",le=\"1\"} 3",
                           "joule_t_seconds_bucket{m=\"a\",le=\"+Inf\"} 4",
                           "joule_t_seconds_sum{m=\"a\"} 5.555",
                           "joule_t_seconds_count{m=\"a\"} 4",
                           "# TYPE joule_t_seconds histogram"}) {
    EXPECT_TRUE(absl::StrContains(text, line)) << line << "\n" << text;
  }
}

TEST(Registry, SameNameAndLabelsIsTheSameCounter) {
  Registry r;
  Counter* a = r.GetCounter("joule_c_total", "C.", {{"k", "1"}});
  EXPECT_EQ(a, r.GetCounter("joule_c_total", "C.", {{"k", "1"}}));
  EXPECT_NE(a, r.GetCounter("joule_c_total", "C.", {{"k", "2"}}));
  a->Inc(3);
  r.AddCollector([](Exposition* e) {
    e->Family("joule_g", "gauge", "G.");
    e->Sample("joule_g", {}, 7);
  });
  const std::string text = r.Render();
  EXPECT_TRUE(absl::StrContains(text, "joule_c_total{k=\"1\"} 3\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "joule_c_total{k=\"2\"} 0\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "joule_g 7\n")) << text;
}

// The format is what Prometheus's own linter accepts.
TEST(Registry, PromtoolAcceptsTheOutput) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool (Debian package prometheus) is not installed";
  }
  Registry r;
  r.GetCounter("joule_rpc_requests_total", "Calls.", {{"method", "a/B"}})
      ->Inc();
  r.GetHistogram("joule_rpc_duration_seconds", "Latency.", {{"method", "a/B"}})
      ->Observe(0.002);
  r.AddCollector([](Exposition* e) {
    e->Family("joule_domain_cap_watts", "gauge", "Cap.");
    e->Sample("joule_domain_cap_watts", {{"domain", "site"}}, 1e6);
  });
  const std::string path = ::testing::TempDir() + "/metrics.txt";
  std::ofstream(path) << r.Render();
  const int rc = std::system(
      ("promtool check metrics < " + path + " > " + path + ".out 2>&1")
          .c_str());
  std::ifstream out(path + ".out");
  std::string msg((std::istreambuf_iterator<char>(out)), {});
  EXPECT_EQ(rc, 0) << msg;
}

}  // namespace
}  // namespace joule::metrics
