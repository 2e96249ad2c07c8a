// Issue 16: under measured-plus admission, a throttleable job that does not
// fit a tight rack cap at its limit starts at a lower limit, and is raised
// back when its neighbour ends (real jouled, agents and joulectl).
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

// One rack rk1 (cap 11 kW) holding two nodes: base 2 × 1 kW + 16 idle GPUs
// × 70 W = 3.12 kW committed. Job A (8 H100 at 700 W) adds 8 × (700 − 70) =
// 5.04 kW: 8.16 kW. Job B (spot, no min power) would add another 5.04 kW:
// 13.2 kW > 11 kW, so measured admits it only later; measured-plus gives a
// spot job the GPU minimum (200 W) as its floor and starts it at the
// largest limit that fits: at most (11 − 8.16) kW / 8 = 355 W over idle,
// i.e. <= 425 W, and >= 200 W.
// `scheduler` is added to the scheduler block; `rack_cap` is rk1's cap.
std::string Config(const std::string& scheduler = "",
                   const std::string& rack_cap = "11kW") {
  return ConfigBuilder()
      .Domain("rk1", rack_cap)
      .Nodes(2, "rk1")
      .Scheduler(absl::StrCat(
          "admission: \"measured-plus\" stop_grace: \"1s\" ", scheduler))
      .Text();
}

class PowerE2E : public ::testing::Test {
 protected:
  virtual std::string ConfigText() { return Config(); }
  void SetUp() override {
    Cluster::Options o;
    o.config_text = ConfigText();
    cluster_ = std::make_unique<Cluster>(o);
    ASSERT_NO_FATAL_FAILURE(StartCluster(*cluster_, {"n1", "n2"}));
  }
  std::string Submit(std::vector<std::string> args) {
    return SubmitJob(*cluster_, std::move(args));
  }
  v1::Job Job(const std::string& id) { return ShowJob(*cluster_, id); }
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(PowerE2E, ThrottledToFitThenRaisedWhenTheNeighbourEnds) {
  const std::string a =
      Submit({"--tenant", "acme", "--gpus", "8", "--", "sleep", "600"});
  ASSERT_TRUE(WaitFor([&] { return Job(a).state() == v1::JOB_STATE_RUNNING; }));
  const std::string b = Submit({"--tenant", "acme", "--gpus", "8", "--class",
                                "spot", "--", "sleep", "600"});
  ASSERT_TRUE(WaitFor([&] { return Job(b).state() == v1::JOB_STATE_RUNNING; }));
  v1::Job jb = Job(b);
  // Requested 700 W, floor (the class default for spot) 200 W, started lower.
  EXPECT_EQ(jb.power_limit_mw(), 700'000);
  EXPECT_EQ(jb.min_power_limit_mw(), 200'000);
  ASSERT_EQ(jb.allocations_size(), 1);
  const int64_t start = jb.allocations(0).power_limit_mw();
  EXPECT_LE(start, 425'000);
  EXPECT_GE(start, 200'000);
  // `job show` prints the floor and the current limit.
  CtlResult show = cluster_->Ctl({"job", "show", b});
  EXPECT_TRUE(absl::StrContains(show.out, "min 200 W")) << show.out;
  // A's limit is untouched.
  EXPECT_EQ(Job(a).allocations(0).power_limit_mw(), 700'000);

  // The neighbour ends: B goes back to its requested limit.
  ASSERT_EQ(cluster_->Ctl({"job", "cancel", a}).exit_code, 0);
  ASSERT_TRUE(WaitFor(
      [&] { return Job(b).allocations(0).power_limit_mw() == 700'000; }));
  v1::ListEventsResponse ev;
  cluster_->CtlJson({"events", "--kind", "restore"}, &ev);
  bool found = false;
  for (const auto& e : ev.events()) found = found || e.subject() == b;
  EXPECT_TRUE(found);
  ASSERT_EQ(cluster_->Ctl({"job", "cancel", b}).exit_code, 0);
}

// As above, but B names its power (--power 700W) and no min power: it
// still gets the spot floor (200 W) and starts throttled, not at 700 W
// (which would commit 13.2 kW under the 11 kW rack).
TEST_F(PowerE2E, ExplicitPowerWithoutMinGetsTheClassFloor) {
  const std::string a =
      Submit({"--tenant", "acme", "--gpus", "8", "--", "sleep", "600"});
  ASSERT_TRUE(WaitFor([&] { return Job(a).state() == v1::JOB_STATE_RUNNING; }));
  const std::string b =
      Submit({"--tenant", "acme", "--gpus", "8", "--class", "spot", "--power",
              "700W", "--", "sleep", "600"});
  ASSERT_TRUE(WaitFor([&] { return Job(b).state() == v1::JOB_STATE_RUNNING; }));
  v1::Job jb = Job(b);
  EXPECT_EQ(jb.power_limit_mw(), 700'000);
  EXPECT_EQ(jb.min_power_limit_mw(), 200'000);
  ASSERT_EQ(jb.allocations_size(), 1);
  EXPECT_LE(jb.allocations(0).power_limit_mw(), 425'000);
  EXPECT_GE(jb.allocations(0).power_limit_mw(), 200'000);
  ASSERT_EQ(cluster_->Ctl({"job", "cancel", a}).exit_code, 0);
  ASSERT_EQ(cluster_->Ctl({"job", "cancel", b}).exit_code, 0);
}

// Class floors and the efficiency knee from the config: on-demand at 50 %
// of its limit over idle, knee 0.5; the rack at 100 kW (no power pressure).
class PowerConfigE2E : public PowerE2E {
 protected:
  std::string ConfigText() override {
    return Config(R"(class_floors: "on-demand=0.5" efficiency_knee: "0.5")",
                  "100kW");
  }
};

TEST_F(PowerConfigE2E, ConfiguredFloorAndEfficiencyMode) {
  // Efficiency: 70 + 0.5 × (700 − 70) = 385 W; its floor, 50 % of that
  // over idle: 70 + 157.5 = 227.5 W.
  const std::string e =
      Submit({"--tenant", "acme", "--gpus", "8", "--power-mode", "efficiency",
              "--", "sleep", "600"});
  ASSERT_TRUE(WaitFor([&] { return Job(e).state() == v1::JOB_STATE_RUNNING; }));
  v1::Job je = Job(e);
  EXPECT_EQ(je.spec().power_mode(), v1::POWER_MODE_EFFICIENCY);
  EXPECT_EQ(je.power_limit_mw(), 385'000);
  EXPECT_EQ(je.min_power_limit_mw(), 227'500);
  ASSERT_EQ(je.allocations_size(), 1);
  EXPECT_EQ(je.allocations(0).power_limit_mw(), 385'000);
  CtlResult show = cluster_->Ctl({"job", "show", e});
  EXPECT_TRUE(absl::StrContains(show.out, "mode efficiency")) << show.out;
  // Performance, no min power: 700 W, floor 70 + 315 = 385 W (the config's
  // 50 %, not the default 80 %).
  const std::string p =
      Submit({"--tenant", "acme", "--gpus", "8", "--", "sleep", "600"});
  ASSERT_TRUE(WaitFor([&] { return Job(p).state() == v1::JOB_STATE_RUNNING; }));
  v1::Job jp = Job(p);
  EXPECT_EQ(jp.power_limit_mw(), 700'000);
  EXPECT_EQ(jp.min_power_limit_mw(), 385'000);
  EXPECT_EQ(jp.allocations(0).power_limit_mw(), 700'000);
  // A bad mode is refused by joulectl: exit 2, nothing submitted.
  CtlResult bad = cluster_->Ctl({"job", "submit", "--tenant", "acme", "--gpus",
                                 "1", "--power-mode", "eco", "--", "true"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(bad.err, "--power-mode")) << bad.err;
  ASSERT_EQ(cluster_->Ctl({"job", "cancel", e}).exit_code, 0);
  ASSERT_EQ(cluster_->Ctl({"job", "cancel", p}).exit_code, 0);
}

// Start floors from the config (class_floors "on-demand-start=0.4"): B, an
// on-demand job without min power, does not fit the rack at its 0.8 floor
// (8 × (574 − 70) W = 4.03 kW over idle, 2.84 kW left), but fits at its
// start floor 70 + 0.4 × 630 = 322 W (2.02 kW). It starts at most at
// 355 W over idle (<= 425 W), and its floor is the limit it started at.
// When A ends it is raised back to 700 W and keeps that floor.
class PowerStartFloorE2E : public PowerE2E {
 protected:
  std::string ConfigText() override {
    return Config(R"(class_floors: "on-demand-start=0.4")");
  }
};

TEST_F(PowerStartFloorE2E, StartsBelowTheFloorAndKeepsItsStartAsFloor) {
  const std::string a =
      Submit({"--tenant", "acme", "--gpus", "8", "--", "sleep", "600"});
  ASSERT_TRUE(WaitFor([&] { return Job(a).state() == v1::JOB_STATE_RUNNING; }));
  const std::string b =
      Submit({"--tenant", "acme", "--gpus", "8", "--", "sleep", "600"});
  ASSERT_TRUE(WaitFor([&] { return Job(b).state() == v1::JOB_STATE_RUNNING; }));
  v1::Job jb = Job(b);
  EXPECT_EQ(jb.power_limit_mw(), 700'000);
  ASSERT_EQ(jb.allocations_size(), 1);
  const int64_t start = jb.allocations(0).power_limit_mw();
  EXPECT_LE(start, 425'000);
  EXPECT_GE(start, 322'000);
  EXPECT_EQ(jb.min_power_limit_mw(), start);
  ASSERT_EQ(cluster_->Ctl({"job", "cancel", a}).exit_code, 0);
  ASSERT_TRUE(WaitFor(
      [&] { return Job(b).allocations(0).power_limit_mw() == 700'000; }));
  EXPECT_EQ(Job(b).min_power_limit_mw(), start);
  ASSERT_EQ(cluster_->Ctl({"job", "cancel", b}).exit_code, 0);
}

}  // namespace
}  // namespace joule::e2e
