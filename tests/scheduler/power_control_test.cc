#include "scheduler/power_control.h"

#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using ::joule::scheduler::testing::ClusterBuilder;
using ::joule::scheduler::testing::kKw;
using ::joule::scheduler::testing::kW;
using ::joule::scheduler::testing::TestNow;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

// (kind, job, new limit in W) for compact expectations.
using Act = std::tuple<PowerAction::Kind, std::string, int64_t>;
constexpr PowerAction::Kind kT = PowerAction::kThrottle;
constexpr PowerAction::Kind kP = PowerAction::kPreempt;
constexpr PowerAction::Kind kR = PowerAction::kRestore;

std::vector<Act> Compact(const std::vector<PowerAction>& actions) {
  std::vector<Act> out;
  for (const PowerAction& a : actions) {
    out.push_back({a.kind, a.job_id, a.new_limit_mw / kW});
  }
  return out;
}

// ---------------------------------------------------------------------------
// Throttle order and preemption.
//
// One rack r1 (root), node n0 with 1 kW base. Four jobs, 2 GPUs each, limit
// and measured 700 W/GPU, min 300 W: sp0 (spot, prio 0), sp5 (spot, prio 5),
// od (on-demand), res (reserved). Measured = 1 kW + 4×2×700 W = 6.6 kW.
// Throttling one job to min saves 2×(700 - 300) W = 800 W; preempting a
// throttled job saves 2×300 W = 600 W.
struct ThrottleCase {
  std::string name;
  int64_t cap_mw;
  std::vector<Act> want;
};

class ThrottleTest : public ::testing::TestWithParam<ThrottleCase> {};

TEST_P(ThrottleTest, SpotThenOnDemandThenReservedNeverBelowMin) {
  const ThrottleCase& c = GetParam();
  ClusterBuilder b;
  const int n0 = b.Node("n0", b.Domain("r1", "rack", -1, c.cap_mw));
  // Listed most important first so the order must come from sorting.
  b.Run("res", {n0}, 2, ServiceClass::kReserved).min_mw = 300 * kW;
  b.Run("od", {n0}, 2, ServiceClass::kOnDemand).min_mw = 300 * kW;
  RunningJob& sp5 = b.Run("sp5", {n0}, 2, ServiceClass::kSpot);
  sp5.min_mw = 300 * kW;
  sp5.priority = 5;
  b.Run("sp0", {n0}, 2, ServiceClass::kSpot).min_mw = 300 * kW;
  const ClusterSnapshot snap = b.Build();
  ASSERT_EQ(snap.domains[0].measured_mw, 6600 * kW);
  EXPECT_THAT(Compact(ControlPower(snap, PowerControlConfig{})),
              ElementsAreArray(c.want));
}

INSTANTIATE_TEST_SUITE_P(
    Throttle, ThrottleTest,
    ::testing::Values(
        // 6.6 kW ≤ 6.6 kW: not over, nothing to do.
        ThrottleCase{"AtCap", 6600 * kW, {}},
        // excess 600 W: sp0 to 700 - 600/2 = 400 W.
        ThrottleCase{"SmallExcess", 6000 * kW, {{kT, "sp0", 400}}},
        // excess 1.0 kW: sp0 to min 300 W (800 W), then 200 W from sp5:
        // 700 - 200/2 = 600 W.
        ThrottleCase{
            "SecondSpot", 5600 * kW, {{kT, "sp0", 300}, {kT, "sp5", 600}}},
        // Class by class: throttle spot, preempt spot, throttle on-demand,
        // preempt on-demand, throttle reserved, preempt reserved.
        // excess 2.6 kW: sp0, sp5 to 300 W (1.6 kW, 1.0 left); spot is
        // preempted before on-demand is touched: sp0 (600 W), sp5 (600 W).
        ThrottleCase{"SpotPreemptedBeforeOnDemandIsThrottled",
                     4000 * kW,
                     {{kP, "sp0", 0}, {kP, "sp5", 0}}},
        // excess 3.6 kW: spot 1.6 + 1.2 kW (0.8 left); od to 300 W (0.8).
        ThrottleCase{"OnDemandThrottledOnceSpotIsGone",
                     3000 * kW,
                     {{kP, "sp0", 0}, {kP, "sp5", 0}, {kT, "od", 300}}},
        // excess 5.1 kW: spot 2.8 kW (2.3 left), od 0.8 + 0.6 kW (0.9
        // left), res to 300 W (0.8; 0.1 left), res preempted: the last
        // resort.
        ThrottleCase{
            "ReservedPreemptedAsTheLastResort",
            1500 * kW,
            {{kP, "sp0", 0}, {kP, "sp5", 0}, {kP, "od", 0}, {kP, "res", 0}}}),
    [](const auto& info) { return info.param.name; });

TEST(PowerControlTest, MostRecentlyStartedFirstAmongEquals) {
  ClusterBuilder b;
  // 1 kW + 2×2×700 W = 3.8 kW; cap 3.6 kW → excess 200 W → new = 700 - 100.
  const int n0 = b.Node("n0", b.Domain("r1", "rack", -1, 3600 * kW));
  b.Run("old", {n0}, 2, ServiceClass::kSpot).start_time =
      TestNow() - absl::Hours(2);
  b.Run("new", {n0}, 2, ServiceClass::kSpot).start_time =
      TestNow() - absl::Minutes(1);
  EXPECT_THAT(Compact(ControlPower(b.Build(), PowerControlConfig{})),
              ElementsAreArray(std::vector<Act>{{kT, "new", 600}}));
}

TEST(PowerControlTest, SavingIsEstimatedFromMeasuredDraw) {
  ClusterBuilder b;
  // Job limit 700 W but drawing 500 W/GPU: 1 kW + 2×500 W = 2.0 kW; cap
  // 1.8 kW → excess 200 W. Lowering the limit to 500 W saves nothing, so it
  // must go to 500 - 200/2 = 400 W.
  const int n0 = b.Node("n0", b.Domain("r1", "rack", -1, 1800 * kW));
  RunningJob& j = b.Run("j", {n0}, 2, ServiceClass::kSpot);
  j.measured_per_gpu_mw = 500 * kW;
  const std::vector<PowerAction> actions =
      ControlPower(b.Build(), PowerControlConfig{});
  EXPECT_THAT(Compact(actions),
              ElementsAreArray(std::vector<Act>{{kT, "j", 400}}));
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].reason, "rack r1 measured 2.00 kW > cap 1.80 kW");
}

// A preempted job's GPUs still draw idle power, so a preemption saves the
// draw minus idle. Two unthrottleable 1-GPU spot jobs at 700 W: 1 kW + 2 ×
// 700 W = 2.4 kW; cap 1.75 kW → excess 650 W. Idle 0: preempting "new"
// saves 700 W, enough. Idle 70 W: it saves 630 W < 650 W, so "old" goes too.
TEST(PowerControlTest, PreemptionSavesDrawMinusIdle) {
  for (const int64_t idle : {int64_t{0}, 70 * kW}) {
    ClusterBuilder b;
    const int n0 = b.Node("n0", b.Domain("r1", "rack", -1, 1750 * kW));
    for (const char* id : {"old", "new"}) {
      RunningJob& j = b.Run(id, {n0}, 1, ServiceClass::kSpot);
      j.min_mw = j.limit_mw;
      j.idle_per_gpu_mw = idle;
      j.start_time = TestNow() - (std::string(id) == "old" ? absl::Hours(2)
                                                           : absl::Minutes(1));
    }
    std::vector<std::string> preempted;
    for (const PowerAction& a : ControlPower(b.Build(), PowerControlConfig{})) {
      ASSERT_EQ(a.kind, PowerAction::kPreempt);
      preempted.push_back(a.job_id);
    }
    if (idle == 0) {
      EXPECT_THAT(preempted, ::testing::ElementsAre("new"));
    } else {
      EXPECT_THAT(preempted, ::testing::ElementsAre("new", "old"));
    }
  }
}

TEST(PowerControlTest, DeeperDomainSavingsCountOnAncestors) {
  ClusterBuilder b;
  // row w (cap 7.3 kW) ── ra (cap 3.4 kW): n0, job a (spot prio 0, 4 GPUs)
  //                   └─ rb: n1, job b (spot prio -1, 4 GPUs).
  // ra = 1 + 4×0.7 = 3.8 kW (excess 400 W); w = 7.6 kW (excess 300 W).
  // Rack first: a to 700 - 400/4 = 600 W saves 400 W, so w = 7.2 kW ≤ 7.3
  // kW and b (which row-first would throttle) is untouched.
  const int w = b.Domain("w", "row", -1, 7300 * kW);
  const int ra = b.Domain("ra", "rack", w, 3400 * kW);
  const int rb = b.Domain("rb", "rack", w);
  b.Run("a", {b.Node("n0", ra)}, 4, ServiceClass::kSpot);
  b.Run("b", {b.Node("n1", rb)}, 4, ServiceClass::kSpot).priority = -1;
  EXPECT_THAT(Compact(ControlPower(b.Build(), PowerControlConfig{})),
              ElementsAreArray(std::vector<Act>{{kT, "a", 600}}));
}

TEST(PowerControlTest, ReservedAtItsFloorIsPreemptedOnlyAsTheLastResort) {
  ClusterBuilder b;
  // Reserved job already at min, alone, over cap: it cannot be throttled,
  // so it is preempted, and the reason says why.
  const int n0 = b.Node("n0", b.Domain("r1", "rack", -1, 1 * kKw));
  RunningJob& j = b.Run("res", {n0}, 2, ServiceClass::kReserved, 300 * kW);
  j.min_mw = 300 * kW;
  j.requested_mw = 700 * kW;
  const std::vector<PowerAction> a =
      ControlPower(b.Build(), PowerControlConfig{});
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, PowerAction::kPreempt);
  EXPECT_THAT(a[0].reason, ::testing::HasSubstr("last resort"));
}

// Priority inversion (issue #11, defect 5): a reserved job with a floor of
// 300 W and a spot job without one (floor = limit), 8 GPUs each at 700 W:
// 1 kW + 11.2 kW = 12.2 kW, cap 9 kW, excess 3.2 kW. The spot job is
// preempted (its GPUs at their 200 W minimum during the grace: saves 8 ×
// 500 W = 4 kW); the reserved job keeps 700 W.
TEST(PowerControlTest, SpotIsPreemptedBeforeReservedIsThrottled) {
  ClusterBuilder b;
  const int n0 = b.Node("n0", b.Domain("r1", "rack", -1, 9 * kKw), "H100", 16);
  b.Run("res", {n0}, 8, ServiceClass::kReserved).min_mw = 300 * kW;
  RunningJob& sp = b.Run("sp", {n0}, 8, ServiceClass::kSpot);
  sp.min_mw = sp.limit_mw;
  sp.stop_floor_per_gpu_mw = 200 * kW;
  EXPECT_THAT(Compact(ControlPower(b.Build(), PowerControlConfig{})),
              ElementsAreArray(std::vector<Act>{{kP, "sp", 0}}));
  // With a floor of 600 W during the grace the preemption saves only 8 ×
  // 100 W: the reserved job is throttled too, by what is left (2.4 kW / 8 =
  // 300 W → 400 W).
  ClusterBuilder b2;
  const int m0 =
      b2.Node("n0", b2.Domain("r1", "rack", -1, 9 * kKw), "H100", 16);
  b2.Run("res", {m0}, 8, ServiceClass::kReserved).min_mw = 300 * kW;
  RunningJob& sp2 = b2.Run("sp", {m0}, 8, ServiceClass::kSpot);
  sp2.min_mw = sp2.limit_mw;
  sp2.stop_floor_per_gpu_mw = 600 * kW;
  EXPECT_THAT(Compact(ControlPower(b2.Build(), PowerControlConfig{})),
              ElementsAreArray(std::vector<Act>{{kP, "sp", 0}, {kT, "res", 400}}));
}

// ---------------------------------------------------------------------------
// Restore.
//
// r1 (root), n0 with 1 kW base. t1 (on-demand) and t2 (spot), 2 GPUs each,
// limit and measured 300 W, requested 700 W, min 200 W. Measured = 1 kW +
// 4×300 W = 2.2 kW. Restoring one adds 2×(700 - 300) W = 800 W.
struct RestoreCase {
  std::string name;
  int64_t cap_mw;
  std::vector<Act> want;
};

class RestoreTest : public ::testing::TestWithParam<RestoreCase> {};

TEST_P(RestoreTest, RestoresWhenEveryDomainKeepsTheMargin) {
  const RestoreCase& c = GetParam();
  ClusterBuilder b;
  const int n0 = b.Node("n0", b.Domain("r1", "rack", -1, c.cap_mw));
  // Spot listed first so the order must come from sorting.
  b.Run("t2", {n0}, 2, ServiceClass::kSpot, 300 * kW).requested_mw = 700 * kW;
  b.Run("t1", {n0}, 2, ServiceClass::kOnDemand, 300 * kW).requested_mw =
      700 * kW;
  const ClusterSnapshot snap = b.Build();
  ASSERT_EQ(snap.domains[0].measured_mw, 2200 * kW);
  EXPECT_THAT(Compact(ControlPower(snap, PowerControlConfig{})),
              ElementsAreArray(c.want));
}

INSTANTIATE_TEST_SUITE_P(
    Restore, RestoreTest,
    ::testing::Values(
        // cap 4.0 kW, margin 5% = 200 W → ceiling 3.8 kW: t1 2.2 + 0.8 = 3.0,
        // t2 3.0 + 0.8 = 3.8 ≤ 3.8 → both, on-demand first.
        RestoreCase{"BothFit", 4000 * kW, {{kR, "t1", 700}, {kR, "t2", 700}}},
        // cap 3.2 kW, margin 160 W → 3.04 kW: t1 → 3.0 kW ok; t2 → 3.8 kW
        // no. The first restore is counted against the second.
        RestoreCase{"OnlyOneFits", 3200 * kW, {{kR, "t1", 700}}},
        // cap 3.1 kW, margin 155 W → 2.945 kW < 3.0 kW: none.
        RestoreCase{"MarginBlocks", 3100 * kW, {}},
        // cap 2.1 kW < 2.2 kW: over cap. Excess 100 W → t2 (spot) to
        // 300 - 50 = 250 W; t1 sits under an over-cap domain → no restore.
        RestoreCase{"OverCapNeverRestores", 2100 * kW, {{kT, "t2", 250}}}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace joule::scheduler
