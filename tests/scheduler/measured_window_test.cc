#include "scheduler/measured_window.h"

#include <algorithm>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/power_control.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using ::joule::scheduler::testing::ClusterBuilder;
using ::joule::scheduler::testing::kKw;
using ::joule::scheduler::testing::kW;

// ---------------------------------------------------------------- window ---

TEST(MeasuredWindowTest, DaemonReportsKeepSixtySecondsAndNeedFive) {
  const MeasuredWindowOptions opts;  // 60 s window, 5 s minimum, 1 s unit
  MeasuredWindow w;
  // Four 1 s reports: 4 s < 5 s, so the limit is committed.
  for (int i = 1; i <= 4; ++i) w.Add(i * 100 * kW, 1000, opts);
  EXPECT_FALSE(w.Ready(opts));
  EXPECT_EQ(w.CommitPerGpuMw(MeasuredRule(), opts, 700 * kW, 0), 700 * kW);
  // The fifth makes 5 s: p95 of {100..500} = report ceil(5 × 0.95) = 5 →
  // 500 W, + 10 % = 550 W.
  w.Add(500 * kW, 1000, opts);
  EXPECT_TRUE(w.Ready(opts));
  EXPECT_EQ(w.CommitPerGpuMw(MeasuredRule(), opts, 700 * kW, 0), 550 * kW);
  // 61 reports in all: the oldest is dropped, 60 s are kept.
  for (int i = 0; i < 56; ++i) w.Add(200 * kW, 1000, opts);
  EXPECT_EQ(w.samples().size(), 60u);
  EXPECT_EQ(w.total_ms(), 60000);
  EXPECT_EQ(w.samples().front().first, 200 * kW);  // 100 W is gone
}

TEST(MeasuredWindowTest, MeasuredPlusDefaultIsTheMedian) {
  const MeasuredWindowOptions opts;
  MeasuredWindow w;
  for (int64_t mw : {500, 500, 500, 500, 500, 520, 520, 520, 560, 560}) {
    w.Add(mw * kW, 1000, opts);
  }
  // p50 = report 5 = 500 W whatever the floor.
  EXPECT_EQ(w.CommitPerGpuMw(MeasuredPlusRule(), opts, 700 * kW, 574 * kW),
            500 * kW);
}

TEST(MeasuredWindowTest, SimTicksAreTenReportsEach) {
  const MeasuredWindowOptions opts;
  MeasuredWindow w;
  // One 10 s tick is 10 reports: ready at once.
  w.Add(300 * kW, 10000, opts);
  EXPECT_TRUE(w.Ready(opts));
  // Seven ticks = 70 s: the first is dropped (60 s are left).
  for (int i = 0; i < 6; ++i) w.Add((400 + 10 * i) * kW, 10000, opts);
  EXPECT_EQ(w.samples().size(), 6u);
  EXPECT_EQ(w.total_ms(), 60000);
  // 60 reports of {400, 410, ..., 450} W, ten each: p50 = report 30 →
  // 420 W; p95 = report 57 → 450 W.
  EXPECT_EQ(w.CommitPerGpuMw(MeasuredRule(50, 0), opts, 700 * kW, 0), 420 * kW);
  EXPECT_EQ(w.CommitPerGpuMw(MeasuredRule(95, 0), opts, 700 * kW, 0), 450 * kW);
  // A weight of 0 (a job that started at this tick) adds nothing.
  w.Add(999 * kW, 0, opts);
  EXPECT_EQ(w.samples().size(), 6u);
  w.Clear();
  EXPECT_FALSE(w.Ready(opts));
}

// --------------------------------------------------------- floor clamp ---

struct ClampCase {
  std::string name;
  int64_t floor_w;
  int64_t limit_w;
  int64_t want_w;
};

class FloorClampTest : public ::testing::TestWithParam<ClampCase> {};

// Ten 1 s reports: 500 W ×5, 520 W ×3, 560 W ×2. p50 = report 5 = 500 W;
// p95 = report ceil(9.5) = 10 = 560 W.
TEST_P(FloorClampTest, CommitsTheFloorBetweenP50AndP95) {
  const ClampCase& c = GetParam();
  const MeasuredWindowOptions opts;
  MeasuredWindow w;
  for (int64_t mw : {500, 500, 500, 500, 500, 520, 520, 520, 560, 560}) {
    w.Add(mw * kW, 1000, opts);
  }
  EXPECT_EQ(
      w.CommitPerGpuMw(FloorClampRule(), opts, c.limit_w * kW, c.floor_w * kW),
      c.want_w * kW);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, FloorClampTest,
    ::testing::Values(
        // Floor 200 W (spot: the GPU minimum) <= p50: everything above it
        // can be throttled away, commit p50.
        ClampCase{"FloorBelowP50", 200, 700, 500},
        // On-demand 80 %: 70 + 0.8 × 630 = 574 W >= p95 560 W: nothing can
        // be given back, commit p95.
        ClampCase{"FloorAboveP95", 574, 700, 560},
        // Floor 540 W in between: the draw below it is committed whole.
        ClampCase{"FloorBetween", 540, 700, 540},
        // Not throttleable (floor = limit): p95.
        ClampCase{"NotThrottleable", 700, 700, 560},
        // Never above the limit.
        ClampCase{"LimitBelowClamp", 540, 530, 530}),
    [](const auto& info) { return info.param.name; });

TEST(FloorClampTest, PureRule) {
  EXPECT_EQ(FloorClampMw(500, 560, 540, 700), 540);
  EXPECT_EQ(FloorClampMw(500, 560, 100, 700), 500);
  EXPECT_EQ(FloorClampMw(500, 560, 600, 700), 560);
  EXPECT_EQ(FloorClampMw(500, 400, 600, 700), 500);  // high < low: low
  EXPECT_EQ(FloorClampMw(500, 560, 600, 450), 450);  // the limit
}

// For any window and floor: p50 <= commit <= min(limit, p95) (or the limit
// when it is lower), and the draw up to p95 above the commitment is at most
// what throttling to the floor can take back: p95 - commit <= max(0, p95 -
// floor). This is what lets the power loop answer p95 noise by throttling.
TEST(FloorClampTest, NoiseUpToP95IsAlwaysThrottleable) {
  std::mt19937_64 rng(7);
  const MeasuredWindowOptions opts;
  for (int trial = 0; trial < 2000; ++trial) {
    MeasuredWindow w;
    const int n = 5 + static_cast<int>(rng() % 60);
    for (int i = 0; i < n; ++i) {
      w.Add(static_cast<int64_t>(70 + rng() % 631) * kW, 1000, opts);
    }
    const int64_t limit = static_cast<int64_t>(200 + rng() % 501) * kW;
    const int64_t floor = static_cast<int64_t>(200 + rng() % 501) * kW;
    const int64_t p50 = WeightedPercentileMw(w.samples(), 1000, 50);
    const int64_t p95 = WeightedPercentileMw(w.samples(), 1000, 95);
    const int64_t c = w.CommitPerGpuMw(FloorClampRule(), opts, limit, floor);
    ASSERT_LE(c, limit);
    ASSERT_GE(c, std::min(limit, p50));
    ASSERT_LE(c, std::min(limit, std::max(p50, p95)));
    ASSERT_LE(std::min(limit, p95) - c, std::max<int64_t>(0, p95 - floor))
        << "trial " << trial;
  }
}

// --------------------------------------------- with the power loop ---

// One rack, node n0 (1 kW base), four 1-GPU on-demand jobs at 700 W whose
// windows are the ten reports above (p50 500 W, p95 560 W). The rack's cap
// is exactly what they commit (admission filled it): 1 kW + 4 × commit.
// Then every job draws its p95, 560 W: measured 1 kW + 4 × 560 W = 3.24 kW.
//   * floor 574 W, p50 commitments: cap 1 + 4 × 0.5 = 3.0 kW, excess
//     240 W; every job draws below its floor (nothing to throttle), so the
//     loop preempts one (saves 560 − 70 idle = 490 W).
//   * floor 574 W, clamp: commit 560 W, cap 3.24 kW: not over, no action.
//   * floor 300 W, clamp: commit p50 = 500 W, cap 3.0 kW, excess 240 W:
//     the newest job is throttled to 560 − 240 = 320 W >= its floor; no
//     preemption.
struct LoopCase {
  std::string name;
  MeasuredCommitRule rule;
  int64_t floor_w;
  int throttles;
  int preemptions;
};

class ClampWithLoopTest : public ::testing::TestWithParam<LoopCase> {};

TEST_P(ClampWithLoopTest, P95NoiseIsThrottledNotPreempted) {
  const LoopCase& c = GetParam();
  const MeasuredWindowOptions opts;
  MeasuredWindow w;
  for (int64_t mw : {500, 500, 500, 500, 500, 520, 520, 520, 560, 560}) {
    w.Add(mw * kW, 1000, opts);
  }
  const int64_t commit =
      w.CommitPerGpuMw(c.rule, opts, 700 * kW, c.floor_w * kW);
  ClusterBuilder b;
  const int n0 = b.Node("n0", b.Domain("r1", "rack", -1, 1 * kKw + 4 * commit));
  for (int i = 0; i < 4; ++i) {
    RunningJob& j = b.Run("j" + std::to_string(i), {n0}, 1);
    j.start_time += absl::Seconds(i);
    j.min_mw = c.floor_w * kW;
    j.measured_per_gpu_mw = 560 * kW;
    j.idle_per_gpu_mw = 70 * kW;
  }
  int throttles = 0, preemptions = 0;
  for (const PowerAction& a : ControlPower(b.Build(), PowerControlConfig{})) {
    if (a.kind == PowerAction::kThrottle) {
      ++throttles;
      EXPECT_GE(a.new_limit_mw, c.floor_w * kW);
    }
    if (a.kind == PowerAction::kPreempt) ++preemptions;
  }
  EXPECT_EQ(throttles, c.throttles);
  EXPECT_EQ(preemptions, c.preemptions);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ClampWithLoopTest,
    ::testing::Values(LoopCase{"P50HighFloor", MeasuredRule(50, 0), 574, 0, 1},
                      LoopCase{"ClampHighFloor", FloorClampRule(), 574, 0, 0},
                      LoopCase{"ClampLowFloor", FloorClampRule(), 300, 1, 0}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace joule::scheduler
