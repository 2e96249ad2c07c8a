// Issue 16, end to end (real jouled, agent and joulectl): the measured-plus
// commitment chosen by `scheduler { plus_commit }` is what `power tree`
// shows over many report rounds, a reload switches it (and refuses a bad
// name, changing nothing), and `job show` prints an efficiency job's knee
// and every job's floor.
//
// The simulated GPU backend draws a constant idle + load × (TDP − idle) per
// job, so a job's p50 and p95 are equal and both rules commit its draw: this
// test shows the setting reaching the daemon's commitments; the rounds where
// the two rules differ are PlusCommitDaemonTest's (tests/daemon).
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

// One rack rk1 (100 kW, no power pressure), n1 (1 kW base, 8 × H100 idle
// 70 W); measured-plus with `plus` (a scheduler field line).
std::string Config(const std::string& plus) {
  return ConfigBuilder()
      .Domain("rk1", "100kW")
      .Nodes(1, "rk1")
      .Scheduler("admission: \"measured-plus\" stop_grace: \"1s\" " + plus)
      .Text();
}

int64_t RackCommittedMw(const Cluster& c) {
  v1::GetPowerTreeResponse tree;
  c.CtlJson({"power", "tree"}, &tree);
  for (const auto& d : tree.domains()) {
    if (d.name() == "rk1") return d.committed_mw();
  }
  return -1;
}

// A job of 8 GPUs at --sim-load 0.5 draws 70 + 0.5 × 630 = 385 W per GPU;
// its floor (on-demand 0.8) is 70 + 0.8 × 630 = 574 W. Under floor-clamp it
// commits min(700, clamp(574, p50 385, p95 385)) = 385 W once it has 5 s of
// reports (700 W before): the rack commits 1 kW + 8 × 385 W = 4.08 kW.
TEST(PowerCommitE2E, FloorClampSettingCommitsReloadsAndJobShowSaysTheKnee) {
  Cluster::Options o;
  o.config_text = Config("plus_commit: \"floor-clamp\"");
  Cluster c(o);
  ASSERT_NO_FATAL_FAILURE(StartCluster(c, {"n1"}));
  CtlResult sub =
      c.Ctl({"job", "submit", "--tenant", "acme", "--gpus", "8", "--gpu-model",
             "H100", "--sim-load", "0.5", "--", "sleep", "300"});
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  const std::string a(absl::StripAsciiWhitespace(sub.out));
  ASSERT_TRUE(WaitFor([&] { return RackCommittedMw(c) == 4'080'000; }))
      << RackCommittedMw(c);
  // It stays there over the following rounds (one report a round).
  for (int i = 0; i < 5; ++i) {
    absl::SleepFor(absl::Milliseconds(500));
    EXPECT_EQ(RackCommittedMw(c), 4'080'000) << i;
  }
  CtlResult show = c.Ctl({"job", "show", a});
  EXPECT_TRUE(absl::StrContains(show.out, "min 574 W")) << show.out;

  // A bad name is refused by the reload, naming the field; nothing changes.
  const std::string conf = c.dir() + "/cluster.conf";  // jouled's --config
  auto write = [&](const std::string& plus) {
    WriteFile(conf, Config(plus) + "billing { allow_unpriced: true }\n");
  };
  write("plus_commit: \"p95\"");
  CtlResult bad = c.Ctl({"config", "reload"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(bad.err, "scheduler.plus_commit")) << bad.err;
  EXPECT_EQ(RackCommittedMw(c), 4'080'000);
  // Back to p50 by reload: named in the reply, the commitment the same
  // (p50 = 385 W too).
  write("plus_commit: \"percentile\"");
  CtlResult r = c.Ctl({"config", "reload"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(
      r.out, "scheduler.plus_commit floor-clamp -> percentile"))
      << r.out;
  EXPECT_EQ(RackCommittedMw(c), 4'080'000);

  // An efficiency job waiting for n1's GPUs: `job show` gives the knee it
  // would run at, the config's 0.5 (nothing learned of acme/eff/H100).
  CtlResult e = c.Ctl({"job", "submit", "--tenant", "acme", "--name", "eff",
                       "--gpus", "8", "--gpu-model", "H100", "--power-mode",
                       "efficiency", "--", "sleep", "300"});
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const std::string eid(absl::StripAsciiWhitespace(e.out));
  CtlResult es = c.Ctl({"job", "show", eid});
  EXPECT_TRUE(absl::StrContains(
      es.out,
      "knee:     0.50 of its limit over idle, the config's efficiency_knee "
      "(acme/eff/H100: 0 samples"))
      << es.out;
  ASSERT_EQ(c.Ctl({"job", "cancel", eid}).exit_code, 0);
  ASSERT_EQ(c.Ctl({"job", "cancel", a}).exit_code, 0);
}

}  // namespace
}  // namespace joule::e2e
