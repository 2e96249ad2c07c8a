// Tests of the shared measured-plus options (scheduler/power_options.h):
// class-floor specs, the efficiency limit, and efficiency jobs in Schedule
// (never below the floor, every level checked).

#include "scheduler/power_options.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "scheduler/measured_plus.h"
#include "scheduler/policy.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using ::joule::scheduler::testing::ClusterBuilder;
using ::joule::scheduler::testing::kKw;
using ::joule::scheduler::testing::kNoCap;
using ::joule::scheduler::testing::kW;
using ::joule::scheduler::testing::Pending;

// One set of names for jouled's scheduler.plus_commit and joule-sim's
// --plus-commit, each the very rule of measured_window.h.
TEST(ParsePlusCommitTest, NamesAndRules) {
  auto p = ParsePlusCommit("percentile");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->kind, MeasuredCommitRule::kPercentile);
  EXPECT_EQ(p->percentile, MeasuredPlusRule().percentile);  // p50
  EXPECT_EQ(p->margin_pct, MeasuredPlusRule().margin_pct);  // 0
  auto c = ParsePlusCommit("floor-clamp");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->kind, MeasuredCommitRule::kFloorClamp);
  EXPECT_EQ(c->percentile, FloorClampRule().percentile);            // p50
  EXPECT_EQ(c->high_percentile, FloorClampRule().high_percentile);  // p95
  for (const char* bad : {"", "p50", "Floor-Clamp", "clamp"}) {
    EXPECT_FALSE(ParsePlusCommit(bad).has_value()) << bad;
  }
  EXPECT_EQ(PlusCommitName(MeasuredCommitRule::kPercentile), "percentile");
  EXPECT_EQ(PlusCommitName(MeasuredCommitRule::kFloorClamp), "floor-clamp");
}

TEST(ParseClassFloorsTest, NamedClassesChangeOthersKeepTheDefault) {
  ClassFloors def;  // disabled; 1000 / 800 / 0
  auto f = ParseClassFloors("on-demand=0.7,spot=0.25", def);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->enabled);
  EXPECT_EQ(f->reserved_permille, 1000);
  EXPECT_EQ(f->on_demand_permille, 700);
  EXPECT_EQ(f->spot_permille, 250);
  def.enabled = true;
  auto off = ParseClassFloors("off", def);
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->enabled);
  auto empty = ParseClassFloors("", def);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->enabled);
  EXPECT_EQ(empty->on_demand_permille, 800);
  // Start floors: "<class>-start"; the others keep theirs.
  auto start = ParseClassFloors("on-demand-start=0.6,spot-start=0", def);
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(start->on_demand_start_permille, 600);
  EXPECT_EQ(start->spot_start_permille, 0);
  EXPECT_EQ(start->reserved_start_permille, def.reserved_start_permille);
  EXPECT_EQ(start->on_demand_permille, 800);
}

// jouled's and joule-sim's defaults, each defined once: p50 and the floors
// reserved 1, on-demand 0.8, spot 0, enabled.
TEST(MeasuredPlusDefaultsTest, PercentileAndOnDemandEightTenths) {
  EXPECT_EQ(DefaultPlusCommit().kind, MeasuredCommitRule::kPercentile);
  EXPECT_EQ(DefaultPlusCommit().percentile, 50u);
  EXPECT_EQ(PlusCommitName(DefaultPlusCommit().kind), "percentile");
  EXPECT_TRUE(kDefaultClassFloors.enabled);
  EXPECT_EQ(kDefaultClassFloors.reserved_permille, 1000);
  EXPECT_EQ(kDefaultClassFloors.on_demand_permille, 800);
  EXPECT_EQ(kDefaultClassFloors.spot_permille, 0);
}

TEST(ParseClassFloorsTest, ErrorsNameTheEntry) {
  auto big = ParseClassFloors("spot=1.5", ClassFloors{});
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(big.status().message(),
            "\"spot=1.5\": the share must be in [0, 1]");
  auto cls = ParseClassFloors("gold=0.5", ClassFloors{});
  ASSERT_FALSE(cls.ok());
  EXPECT_EQ(cls.status().message(),
            "\"gold\" is not reserved, on-demand or spot (or one of them "
            "with -start)");
  EXPECT_FALSE(ParseClassFloors("spot", ClassFloors{}).ok());
  EXPECT_FALSE(ParseSharePermille("nan").ok());
  EXPECT_EQ(*ParseSharePermille("0.5"), 500);
}

struct KneeCase {
  std::string name;
  int64_t limit_w, min_w, knee_permille, want_w;
};
class EfficiencyLimitTest : public ::testing::TestWithParam<KneeCase> {};

TEST_P(EfficiencyLimitTest, KneeOfTheLimitWithinTheModelRange) {
  const KneeCase& c = GetParam();
  EXPECT_EQ(EfficiencyLimitMw(c.limit_w * kW, c.min_w * kW, c.knee_permille),
            c.want_w * kW);
}

INSTANTIATE_TEST_SUITE_P(
    Knees, EfficiencyLimitTest,
    ::testing::Values(
        // 500‰ of 630 W (H100 over idle) = 315 W.
        KneeCase{"Half", 630, 130, 500, 315},
        // 100‰ of 630 W = 63 W < the 130 W minimum → 130 W.
        KneeCase{"ClampedToMinimum", 630, 130, 100, 130},
        // 1000‰: the limit itself.
        KneeCase{"One", 630, 130, 1000, 630},
        // A limit at the minimum stays.
        KneeCase{"AtMinimum", 130, 130, 500, 130}),
    [](const auto& info) { return info.param.name; });

// One rack of 10 kW with one free 8-GPU H100 node (1 kW base).
ClusterSnapshot OneRack(int64_t rack_cap_mw) {
  ClusterBuilder b;
  const int site = b.Domain("site", "site", -1, kNoCap);
  const int rack = b.Domain("rk", "rack", site, rack_cap_mw);
  b.Node("n1", rack);
  return b.Build();
}

TEST(EfficiencyScheduleTest, StartsAtTheKneeAndItsFloorIsOfThatLimit) {
  // H100 700 W (the test models have no idle offset), knee 500‰: 350 W.
  // On-demand floor 800‰ of 350 W = 280 W. 8 × 350 W = 2.8 kW fits 10 kW.
  PendingJob p = Pending("e", 8);
  p.efficiency = true;
  const std::vector<PendingJob> pending = {p};
  const Decisions d =
      Schedule(OneRack(10 * kKw), pending, MeasuredPlusPolicy(PolicyConfig{}));
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].power_limit_mw, 350 * kW);
  EXPECT_EQ(d.placements[0].requested_limit_mw, 350 * kW);
  EXPECT_EQ(d.placements[0].min_power_mw, 280 * kW);
}

TEST(EfficiencyScheduleTest, ThrottledToFitNeverBelowTheFloor) {
  // Rack 3.4 kW − 1 kW base = 2.4 kW for 8 GPUs: 300 W each, below the
  // knee (350 W) but above the floor (280 W): starts at 300 W. At 3.1 kW
  // (2.1 kW: 262 W < 280 W) it waits.
  PendingJob p = Pending("e", 8);
  p.efficiency = true;
  const std::vector<PendingJob> pending = {p};
  PolicyConfig cfg = MeasuredPlusPolicy(PolicyConfig{});
  cfg.reserve_best_node = false;
  Decisions d = Schedule(OneRack(3'400 * kW), pending, cfg);
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].power_limit_mw, 300 * kW);
  EXPECT_EQ(d.placements[0].requested_limit_mw, 350 * kW);
  d = Schedule(OneRack(3'100 * kW), pending, cfg);
  EXPECT_TRUE(d.placements.empty());
}

TEST(EfficiencyScheduleTest, AnExplicitMinPowerStaysTheFloor) {
  // --power-mode efficiency --min-power 200W: limit 350 W, floor 200 W.
  PendingJob p = Pending("e", 8);
  p.efficiency = true;
  p.min_power_mw = 200 * kW;
  const std::vector<PendingJob> pending = {p};
  const Decisions d =
      Schedule(OneRack(10 * kKw), pending, MeasuredPlusPolicy(PolicyConfig{}));
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].power_limit_mw, 350 * kW);
  EXPECT_EQ(d.placements[0].min_power_mw, 200 * kW);
}

}  // namespace
}  // namespace joule::scheduler
