// Operations: jouled's Prometheus endpoint against a real jouled with an
// agent and a job; the figures equal what the API says, and promtool
// accepts the page.
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

std::string Scrape(const Cluster& c) {
  httplib::Client http("127.0.0.1", c.metrics_port());
  auto res = http.Get("/metrics");
  if (!res || res->status != 200) return "";
  return res->body;
}

// The value of the sample whose line starts with `series` (name + labels).
double Value(const std::string& text, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, series + " ")) {
      double v = -1;
      EXPECT_TRUE(absl::SimpleAtod(line.substr(series.size() + 1), &v));
      return v;
    }
  }
  ADD_FAILURE() << "no series " << series;
  return -1;
}

TEST(MetricsE2E, ScrapeMatchesTheApiAndPassesPromtool) {
  Cluster c;
  ASSERT_NO_FATAL_FAILURE(StartCluster(c, {"n1"}));
  CtlResult sub = c.Ctl({"job", "submit", "--tenant", "acme", "--gpus", "2",
                         "--", "sleep", "30"});
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  ASSERT_TRUE(WaitFor(
      [&] { return absl::StrContains(Scrape(c), "state=\"running\""); }));

  // The power tree as the API reports it, and as the scrape does (W = mW /
  // 1000). Read the tree twice around the scrape: with a job running the
  // measured draw moves, so compare the cap and committed power exactly.
  v1::GetPowerTreeResponse tree;
  c.CtlJson({"power", "tree"}, &tree);
  const std::string text = Scrape(c);
  ASSERT_FALSE(text.empty());
  for (const v1::PowerDomain& d : tree.domains()) {
    const std::string l =
        absl::StrCat("{domain=\"", d.name(), "\",kind=\"", d.kind(), "\"}");
    EXPECT_DOUBLE_EQ(Value(text, "joule_domain_cap_watts" + l),
                     d.cap_mw() / 1000.0);
    EXPECT_DOUBLE_EQ(Value(text, "joule_domain_committed_watts" + l),
                     d.committed_mw() / 1000.0);
  }
  // One series per GPU of the node; the job by state and class; the calls
  // made above; build info.
  int gpus = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, "joule_gpu_power_limit_watts{node=\"n1\"")) {
      ++gpus;
    }
  }
  EXPECT_EQ(gpus, 8);
  EXPECT_EQ(Value(text, "joule_jobs{state=\"running\",class=\"on-demand\"}"),
            1);
  EXPECT_EQ(Value(text, "joule_node_up{node=\"n1\",domain=\"site\"}"), 1);
  EXPECT_GE(Value(text,
                  "joule_rpc_requests_total{method=\"joule.v1.JobService/"
                  "SubmitJob\",code=\"OK\"}"),
            1);
  EXPECT_TRUE(absl::StrContains(text, "joule_build_info{version=\"")) << text;
  EXPECT_TRUE(absl::StrContains(text, "joule_events_total{kind=\"node\"}"));
  EXPECT_TRUE(absl::StrContains(text, "joule_store_write_seconds_bucket"));
  EXPECT_TRUE(absl::StrContains(
      text, "joule_loop_round_seconds_count{round=\"schedule\"}"));

  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool (Debian package prometheus) is not installed";
  }
  WriteFile(c.dir() + "/scrape.txt", text);
  Process promtool(
      {"/bin/sh", "-c", "promtool check metrics < " + c.dir() + "/scrape.txt"},
      c.dir() + "/promtool.log");
  EXPECT_EQ(promtool.Wait(), 0) << ReadFile(c.dir() + "/promtool.log");
}

TEST(MetricsE2E, NonLoopbackMetricsAddressIsRefused) {
  Cluster c;
  c.StartDaemon();  // for its PKI
  Process d(
      {Bin("jouled"), "--listen", "127.0.0.1:1", "--data-dir",
       c.dir() + "/data2", "--insecure", "--metrics-listen", "0.0.0.0:9464"},
      c.dir() + "/bad-metrics.log");
  EXPECT_EQ(d.Wait(), 2);
  EXPECT_TRUE(absl::StrContains(ReadFile(c.dir() + "/bad-metrics.log"),
                                "--metrics-listen: 0.0.0.0:9464 is not a "
                                "loopback address"))
      << ReadFile(c.dir() + "/bad-metrics.log");
}

// `job submit --wait` waits on the WatchEvents stream, not by polling:
// while a 2 s job runs it reads the job twice (once subscribed, once at its
// end), where the 1-50 ms poll of before made ~40 GetJob calls. It exits 0
// for a job that succeeded and 1 (the failure on stderr) for one that
// failed, as before.
TEST(MetricsE2E, SubmitWaitFollowsTheStreamInsteadOfPolling) {
  Cluster c;
  ASSERT_NO_FATAL_FAILURE(StartCluster(c, {"n1"}));
  const std::string get_job =
      "joule_rpc_requests_total{method=\"joule.v1.JobService/GetJob\","
      "code=\"OK\"}";
  auto get_jobs = [&] {
    const std::string text = Scrape(c);
    return absl::StrContains(text, get_job + " ") ? Value(text, get_job) : 0;
  };
  const double before = get_jobs();
  CtlResult ok = c.Ctl({"job", "submit", "--tenant", "acme", "--gpus", "1",
                        "--wait", "--", "sleep", "2"});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_LE(get_jobs() - before, 2) << "polled GetJob instead of the stream";
  const std::string id(absl::StripAsciiWhitespace(ok.out));
  v1::Job job;
  c.CtlJson({"job", "show", id}, &job);
  EXPECT_EQ(job.state(), v1::JOB_STATE_SUCCEEDED);

  CtlResult fail = c.Ctl({"job", "submit", "--tenant", "acme", "--gpus", "1",
                          "--wait", "--", "false"});
  EXPECT_EQ(fail.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(fail.err, "failed")) << fail.err;
}

}  // namespace
}  // namespace joule::e2e
