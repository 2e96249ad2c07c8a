// Tests of the measured-plus rules: class floors, throttle-to-fit admission
// (policy rule 4), the node-bound reservation (rule 6), redistribution with
// hysteresis (power loop rule 4) and the adaptive margin.

#include "scheduler/power_rules.h"

#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/policy.h"
#include "scheduler/power_control.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using ::joule::scheduler::testing::ClusterBuilder;
using ::joule::scheduler::testing::kKw;
using ::joule::scheduler::testing::kNoCap;
using ::joule::scheduler::testing::kW;
using ::joule::scheduler::testing::Pending;
using ::joule::scheduler::testing::TestNow;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// ---------------------------------------------------------------------------
// Class floors.

struct FloorCase {
  std::string name;
  ServiceClass cls;
  bool enabled;
  int64_t limit_w;
  int64_t want_w;
};

class ClassFloorTest : public ::testing::TestWithParam<FloorCase> {};

TEST_P(ClassFloorTest, FloorIsTheClassShareNeverBelowTheModelMinimum) {
  const FloorCase& c = GetParam();
  ClassFloors f;  // reserved 1000, on-demand 800, spot 0 permille
  f.enabled = c.enabled;
  EXPECT_EQ(ClassFloorMw(c.cls, c.limit_w * kW, 130 * kW, f), c.want_w * kW);
}

INSTANTIATE_TEST_SUITE_P(
    Floors, ClassFloorTest,
    ::testing::Values(
        // Disabled: min = limit (not throttleable).
        FloorCase{"Disabled", ServiceClass::kSpot, false, 630, 630},
        // Reserved: 1000‰ of 630 W = 630 W.
        FloorCase{"Reserved", ServiceClass::kReserved, true, 630, 630},
        // On-demand: 800‰ of 630 W = 504 W.
        FloorCase{"OnDemand", ServiceClass::kOnDemand, true, 630, 504},
        // Spot: 0‰ = the model's minimum, 130 W.
        FloorCase{"SpotIsModelMinimum", ServiceClass::kSpot, true, 630, 130},
        // On-demand at 150 W: 800‰ = 120 W < 130 W minimum → 130 W.
        FloorCase{"ClampedUpToMinimum", ServiceClass::kOnDemand, true, 150,
                  130},
        // A limit at or below the minimum stays the limit.
        FloorCase{"LimitAtMinimum", ServiceClass::kSpot, true, 130, 130}),
    [](const auto& info) { return info.param.name; });

TEST(ClassStartFloorTest, StartFloorIsTheStartShareNeverAboveTheFloor) {
  ClassFloors f;  // reserved 1000, on-demand 800, spot 0; starts 1000
  f.enabled = true;
  f.on_demand_start_permille = 600;
  f.reserved_start_permille = 500;
  const int64_t lo = 130 * kW;
  struct Case {
    const char* name;
    ServiceClass cls;
    int64_t limit_w, want_w;
  } cases[] = {
      // On-demand: 600‰ of 630 W = 378 W (the floor is 504 W).
      {"on-demand", ServiceClass::kOnDemand, 630, 378},
      // Reserved: 500‰ of 630 W = 315 W, below its 630 W floor.
      {"reserved", ServiceClass::kReserved, 630, 315},
      // Spot: start 1000‰ = 630 W is above its floor (the 130 W minimum):
      // the floor.
      {"spot keeps the floor", ServiceClass::kSpot, 630, 130},
      // On-demand at 200 W: 600‰ = 120 W < 130 W minimum → 130 W.
      {"clamped up to the minimum", ServiceClass::kOnDemand, 200, 130},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ClassStartFloorMw(c.cls, c.limit_w * kW, lo, f), c.want_w * kW);
  }
  // Without a start share below the floor, the start floor is the floor.
  ClassFloors plain;
  plain.enabled = true;
  EXPECT_EQ(ClassStartFloorMw(ServiceClass::kOnDemand, 630 * kW, lo, plain),
            504 * kW);
  // Disabled: the limit, as ClassFloorMw.
  f.enabled = false;
  EXPECT_EQ(ClassStartFloorMw(ServiceClass::kOnDemand, 630 * kW, lo, f),
            630 * kW);
}

TEST(StartedFloorTest, AJobKeepsTheLowerOfItsStartAndItsFloor) {
  // Started at its 630 W limit, floor 504 W: the floor.
  EXPECT_EQ(StartedFloorMw(630 * kW, 504 * kW), 504 * kW);
  // Throttled to fit at 450 W (between the 378 W start floor and the
  // 504 W floor): 450 W, never throttled below where it started.
  EXPECT_EQ(StartedFloorMw(450 * kW, 504 * kW), 450 * kW);
  // Started at 520 W, above the floor: the floor.
  EXPECT_EQ(StartedFloorMw(520 * kW, 504 * kW), 504 * kW);
}

// ---------------------------------------------------------------------------
// LargestFittingLimit.

TEST(LargestFittingLimitTest, TightestDomainDecides) {
  // Headroom 3.0 kW for 8 GPUs → 375 W; 10 kW for 16 GPUs → 625 W. The
  // tightest wins: 375 W, inside [200, 630].
  const std::vector<std::pair<int64_t, int64_t>> room = {{3000 * kW, 8},
                                                         {10000 * kW, 16}};
  EXPECT_EQ(LargestFittingLimit(room, 200 * kW, 630 * kW), 375 * kW);
  // Capped at the requested limit when everything has room.
  EXPECT_EQ(LargestFittingLimit({{{100000 * kW, 8}}}, 200 * kW, 630 * kW),
            630 * kW);
  // Below the floor (375 W < 400 W): none.
  EXPECT_EQ(LargestFittingLimit(room, 400 * kW, 630 * kW), std::nullopt);
  // Negative headroom: none.
  EXPECT_EQ(LargestFittingLimit({{{-1, 8}}}, 0, 630 * kW), std::nullopt);
}

// ---------------------------------------------------------------------------
// Throttle-to-fit at every level.
//
//   site s ── row w ── rack r: n0 (8 free GPUs, 1 kW base)
//
// The pending on-demand job asks for 8 H100 at 700 W with min 400 W:
// 5.6 kW at its limit, 3.2 kW at its min. Committed everywhere is 1 kW
// (base). One level gets cap = 1 kW + room; the others have no cap. The
// steps (4) are 700 − k × 75 W: 625, 550, 475, 400 W; the first step that
// fits is raised to floor(room / 8) mW (never above 700 W).
struct FitCase {
  std::string name;
  int level;  // 0 rack, 1 row, 2 site
  int64_t room_w;
  int64_t want_limit_mw;  // 0 = waits
};

class ThrottleToFitTest : public ::testing::TestWithParam<FitCase> {};

TEST_P(ThrottleToFitTest, StartsAtTheLargestLimitThatFitsNeverBelowMin) {
  const FitCase& c = GetParam();
  ClusterBuilder b;
  const int s = b.Domain("s", "site", -1);
  const int w = b.Domain("w", "row", s);
  const int r = b.Domain("r", "rack", w);
  b.Node("n0", r);
  const int level_domain[] = {r, w, s};
  b.SetCap(level_domain[c.level], 1 * kKw + c.room_w * kW);
  PendingJob p = Pending("j", 8);
  p.power_mw = 700 * kW;
  p.min_power_mw = 400 * kW;
  PolicyConfig cfg;
  cfg.throttle_to_fit = true;
  const Decisions d = Schedule(b.Build(), {p}, cfg);
  if (c.want_limit_mw == 0) {
    EXPECT_THAT(d.placements, IsEmpty());
    ASSERT_EQ(d.waits.size(), 1u);
    EXPECT_EQ(d.waits[0].kind, WaitKind::kOverPowerCap);
    return;
  }
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].power_limit_mw, c.want_limit_mw);
  EXPECT_EQ(d.placements[0].requested_limit_mw, 700 * kW);
  EXPECT_EQ(d.placements[0].min_power_mw, 400 * kW);
  // The same case without throttle-to-fit waits unless 5.6 kW fits.
  cfg.throttle_to_fit = false;
  const Decisions plain = Schedule(b.Build(), {p}, cfg);
  EXPECT_EQ(plain.placements.size(), c.want_limit_mw == 700 * kW ? 1u : 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Levels, ThrottleToFitTest,
    ::testing::Values(
        // Room 6 kW ≥ 5.6 kW: full limit.
        FitCase{"RackRoomy", 0, 6000, 700 * kW},
        // Room 4.5 kW: 625 (5.0 kW) no, 550 (4.4 kW) fits → raised to
        // 4,500,000 mW / 8 = 562,500 mW.
        FitCase{"RackTight", 0, 4500, 562'500},
        FitCase{"RowTight", 1, 4500, 562'500},
        FitCase{"SiteTight", 2, 4500, 562'500},
        // Room exactly 3.2 kW = 8 × 400 W: starts at its min.
        FitCase{"RackAtMin", 0, 3200, 400 * kW},
        FitCase{"SiteAtMin", 2, 3200, 400 * kW},
        // Room 3.1 kW < 3.2 kW: never below the min → waits.
        FitCase{"RackBelowMin", 0, 3100, 0}, FitCase{"RowBelowMin", 1, 3100, 0},
        FitCase{"SiteBelowMin", 2, 3100, 0}),
    [](const auto& info) { return info.param.name; });

TEST(ThrottleToFitTest, ClassFloorsMakeJobsWithoutMinThrottleable) {
  // Rack cap 1 kW + 4.2 kW, one node. An 8-GPU job at 700 W without min
  // power, of each class in turn, with class floors on:
  //   reserved: floor 700 W (5.6 kW) → waits;
  //   on-demand: floor 560 W (4.48 kW) → waits (4.2 kW < 4.48 kW);
  //   spot: floor 200 W: steps 575, 450 (3.6 kW) fits → floor(4200/8) =
  //   525 W.
  for (const auto& [cls, want] : std::vector<std::pair<ServiceClass, int64_t>>{
           {ServiceClass::kReserved, 0},
           {ServiceClass::kOnDemand, 0},
           {ServiceClass::kSpot, 525 * kW}}) {
    ClusterBuilder b;
    b.Node("n0", b.Domain("r", "rack", -1, 1 * kKw + 4200 * kW));
    PendingJob p = Pending("j", 8, 1, cls);
    PolicyConfig cfg;
    cfg.throttle_to_fit = true;
    cfg.class_floors.enabled = true;
    const Decisions d = Schedule(b.Build(), {p}, cfg);
    if (want == 0) {
      EXPECT_THAT(d.placements, IsEmpty()) << ServiceClassName(cls);
    } else {
      ASSERT_EQ(d.placements.size(), 1u) << ServiceClassName(cls);
      EXPECT_EQ(d.placements[0].power_limit_mw, want);
      EXPECT_EQ(d.placements[0].min_power_mw, 200 * kW);
    }
  }
}

TEST(ThrottleToFitTest, StartFloorLetsAJobStartBelowItsFloorAndKeepItsStart) {
  // One node, rack cap 1 kW + room; an 8-GPU on-demand job at 700 W without
  // min power; class floors on with on-demand 0.8 (floor 560 W) and
  // on-demand-start 0.6 (start floor 420 W). The 4 steps are 700 − k × 70:
  // 630, 560, 490, 420 W.
  //   room 4.2 kW: 490 W (3.92 kW) is the first that fits → raised to
  //     4200 / 8 = 525 W, below the floor: its floor is its start, 525 W;
  //   room 5.0 kW: 560 W (4.48 kW) fits → raised to 625 W, above the
  //     floor: its floor is 560 W;
  //   room 3.3 kW: 420 W (3.36 kW) does not fit → waits.
  //   Without the start share, room 4.2 kW waits (4.2 kW < 4.48 kW).
  struct Case {
    int64_t room_w, start_permille, want_limit_w, want_min_w;
  } cases[] = {{4200, 600, 525, 525},
               {5000, 600, 625, 560},
               {3300, 600, 0, 0},
               {4200, 1000, 0, 0}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.room_w);
    ClusterBuilder b;
    b.Node("n0", b.Domain("r", "rack", -1, 1 * kKw + c.room_w * kW));
    PendingJob p = Pending("j", 8, 1, ServiceClass::kOnDemand);
    PolicyConfig cfg;
    cfg.throttle_to_fit = true;
    cfg.class_floors.enabled = true;
    cfg.class_floors.on_demand_start_permille = c.start_permille;
    const Decisions d = Schedule(b.Build(), {p}, cfg);
    if (c.want_limit_w == 0) {
      EXPECT_THAT(d.placements, IsEmpty());
      continue;
    }
    ASSERT_EQ(d.placements.size(), 1u);
    EXPECT_EQ(d.placements[0].power_limit_mw, c.want_limit_w * kW);
    EXPECT_EQ(d.placements[0].requested_limit_mw, 700 * kW);
    EXPECT_EQ(d.placements[0].min_power_mw, c.want_min_w * kW);
  }
}

TEST(ThrottleToFitTest, AdmissionReserveAndMeasuredCount) {
  // Rack cap 1 kW + 6 kW; an 8-GPU job 700 W, min 200 W.
  //   reserve 1 kW → admission room 5 kW → 625 W (5.0 kW) fits exactly;
  //   measured 2 kW above committed with committed_at_least_measured →
  //   room 6 − 1 − 2 = 3 kW → steps 575 (4.6), 450 (3.6), 325 (2.6 kW)
  //   fits → floor(3000 / 8) = 375 W.
  ClusterBuilder b;
  const int r = b.Domain("r", "rack", -1, 1 * kKw + 6000 * kW);
  b.Node("n0", r);
  ClusterSnapshot snap = b.Build();
  snap.domains[r].admission_reserve_mw = 1 * kKw;
  PendingJob p = Pending("j", 8);
  p.min_power_mw = 200 * kW;
  PolicyConfig cfg;
  cfg.throttle_to_fit = true;
  Decisions d = Schedule(snap, {p}, cfg);
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].power_limit_mw, 625 * kW);
  snap.domains[r].measured_mw += 2 * kKw;
  cfg.committed_at_least_measured = true;
  d = Schedule(snap, {p}, cfg);
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].power_limit_mw, 375 * kW);
}

// ---------------------------------------------------------------------------
// Node-bound reservation.
//
// Two racks, one node each (8 GPUs). n0 (rack r0) runs a 4-GPU job, n1 (r1)
// a 6-GPU job, neither with max_runtime. The head job (priority 5, no min
// power: floor = limit) wants 8 GPUs: it cannot start. A later 2-GPU job
// follows.
//   classic EASY without shadow time: every H100 node is reserved → the
//   2-GPU job waits;
//   reserve_best_node: the head is bound to n0 (4 free GPUs beat 2), so the
//   2-GPU job starts on n1.
TEST(ReserveBestNodeTest, OtherNodesStayOpen) {
  ClusterBuilder b;
  const int n0 = b.Node("n0", b.Domain("r0", "rack", -1));
  const int n1 = b.Node("n1", b.Domain("r1", "rack", -1));
  b.Run("a", {n0}, 4);
  b.Run("b", {n1}, 6);
  const std::vector<PendingJob> pending = {
      Pending("head", 8, 1, ServiceClass::kOnDemand, 5, 1),
      Pending("small", 2, 1, ServiceClass::kOnDemand, 0, 2)};
  PolicyConfig cfg;
  Decisions d = Schedule(b.Build(), pending, cfg);
  EXPECT_THAT(d.placements, IsEmpty());
  cfg.reserve_best_node = true;
  d = Schedule(b.Build(), pending, cfg);
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].job_id, "small");
  ASSERT_EQ(d.placements[0].shares.size(), 1u);
  EXPECT_EQ(d.placements[0].shares[0].node, n1);
  ASSERT_FALSE(d.waits.empty());
  EXPECT_THAT(d.waits[0].reason, ::testing::HasSubstr("on node n0"));
}

// ---------------------------------------------------------------------------
// Redistribution: order, partial raises and hysteresis over several rounds.
//
// Rack r (root), cap 4.0 kW, margin 5% = 200 W → raises must keep measured
// ≤ 3.8 kW. Node n0: base 1 kW. Jobs (2 GPUs each, requested
// 700 W, drawing their limit): res (reserved) at 300 W, spot at 300 W.
// Measured = 1 kW + 4 × 300 W = 2.2 kW. Room = 3.8 − 2.2 = 1.6 kW.
//   (t = 0, limits changed at −60 s): res first: +min(400, 1600/2) = +400
//   → 700 W (restore), room 0.8 kW; spot +min(400, 800/2) = 400 → 700 W.
// With a cap of 3.0 kW (room 650 W), see the rounds below.
TEST(RedistributionTest, ReservedFirstPartialRaisesAndHysteresis) {
  auto build = [](int64_t cap_mw) {
    ClusterBuilder b;
    const int n0 = b.Node("n0", b.Domain("r", "rack", -1, cap_mw));
    for (const auto& [id, cls] :
         std::vector<std::pair<std::string, ServiceClass>>{
             {"spot", ServiceClass::kSpot}, {"res", ServiceClass::kReserved}}) {
      RunningJob& j = b.Run(id, {n0}, 2, cls, 300 * kW);
      j.requested_mw = 700 * kW;
      j.limit_changed_at = TestNow() - absl::Seconds(60);
    }
    return b;
  };
  PowerControlConfig cfg;
  cfg.partial_raise = true;
  cfg.min_raise_interval = absl::Seconds(30);
  using Act = std::tuple<std::string, int64_t>;
  auto compact = [](const std::vector<PowerAction>& a) {
    std::vector<Act> out;
    for (const PowerAction& x : a) {
      EXPECT_EQ(x.kind, PowerAction::kRestore);
      out.push_back({x.job_id, x.new_limit_mw / kW});
    }
    return out;
  };
  EXPECT_THAT(compact(ControlPower(build(4000 * kW).Build(), cfg)),
              ElementsAre(Act{"res", 700}, Act{"spot", 700}));

  // Cap 3.0 kW: margin 150 W → ceiling 2.85 kW, room 650 W → res +325.
  ClusterBuilder tight = build(3000 * kW);
  ClusterSnapshot snap = tight.Build();
  EXPECT_THAT(compact(ControlPower(snap, cfg)), ElementsAre(Act{"res", 625}));
  // Apply round 1 and move 10 s on: res now 625 W (changed now − 0 s);
  // spot draws 100 W (its load fell), freeing 400 W.
  snap.now = TestNow() + absl::Seconds(10);
  for (RunningJob& j : snap.running) {
    if (j.id == "res") {
      j.limit_mw = j.measured_per_gpu_mw = 625 * kW;
      j.limit_changed_at = TestNow();
    } else {
      j.measured_per_gpu_mw = 100 * kW;
    }
  }
  // Measured = 1 kW + 2×625 + 2×100 W = 2.45 kW; room = 2.85 − 2.45 =
  // 400 W. res is held (10 s < 30 s); spot +min(400, 400/2) = 200 → 500 W.
  snap.domains[0].measured_mw = 2450 * kW;
  EXPECT_THAT(compact(ControlPower(snap, cfg)), ElementsAre(Act{"spot", 500}));
  // Without partial raises neither fits all the way back: nothing.
  cfg.partial_raise = false;
  EXPECT_THAT(ControlPower(snap, cfg), IsEmpty());
  // 40 s on, res is free to move again: 75 W per GPU left to its 700 W,
  // 2 × 75 = 150 W ≤ 400 W → restored; spot gets +min(400, 250 / 2) = 125
  // → 425 W.
  cfg.partial_raise = true;
  snap.now = TestNow() + absl::Seconds(40);
  EXPECT_THAT(compact(ControlPower(snap, cfg)),
              ElementsAre(Act{"res", 700}, Act{"spot", 425}));
}

TEST(RedistributionTest, TinyRaisesAreSkipped) {
  // Room 50 W for 2 GPUs → +25 W per GPU < 5% of 700 W (35 W): no change.
  ClusterBuilder b;
  const int n0 = b.Node("n0", b.Domain("r", "rack", -1, kNoCap));
  RunningJob& j = b.Run("j", {n0}, 2, ServiceClass::kOnDemand, 300 * kW);
  j.requested_mw = 700 * kW;
  ClusterSnapshot snap = b.Build();
  // Measured 1.6 kW; cap so that cap − 5% − 1.6 kW = 50 W: cap = 1.65 / 0.95.
  snap.domains[0].cap_mw = 1'736'842;  // 1,736.842 W
  PowerControlConfig cfg;
  cfg.partial_raise = true;
  // 1,736,842 mW − 86,842 (5%) = 1,650,000 − 1,600,000 = 50,000 mW.
  EXPECT_THAT(ControlPower(snap, cfg), IsEmpty());
}

// ---------------------------------------------------------------------------
// Adaptive margin.

struct MarginCase {
  std::string name;
  std::vector<int64_t> peaks_permille;  // peak per interval, ‰ of cap
  int64_t want_permille;
};

class AdaptiveMarginTest : public ::testing::TestWithParam<MarginCase> {};

TEST_P(AdaptiveMarginTest, StaysWithinBounds) {
  const MarginCase& c = GetParam();
  AdaptiveMarginConfig cfg;  // 10..100, initial 30, near 10, +20, −5 / 6
  const int64_t cap = 40 * kKw;
  MarginState s = InitialMargin(cfg);
  EXPECT_EQ(s.reserve_permille, 30);
  for (int64_t p : c.peaks_permille) {
    s = AdaptMargin(s, cap / 1000 * p, cap, cfg);
    EXPECT_GE(s.reserve_permille, cfg.min_permille);
    EXPECT_LE(s.reserve_permille, cfg.max_permille);
  }
  EXPECT_EQ(s.reserve_permille, c.want_permille);
  EXPECT_EQ(MarginReserveMw(s, cap), cap / 1000 * c.want_permille);
}

INSTANTIATE_TEST_SUITE_P(
    Margin, AdaptiveMarginTest,
    ::testing::Values(
        // 995‰ > 990‰ (near): 30 + 20 = 50.
        MarginCase{"NearBreachWidens", {995}, 50},
        // 990‰ is not above 990‰: quiet; one quiet interval changes nothing.
        MarginCase{"AtThresholdIsQuiet", {990}, 30},
        // 6 quiet intervals: 30 − 5 = 25; 12: 20.
        MarginCase{"QuietNarrows", std::vector<int64_t>(12, 500), 20},
        // 100 quiet intervals would give 30 − 16×5 < 10: held at 10.
        MarginCase{"FloorHolds", std::vector<int64_t>(100, 500), 10},
        // 10 breaches: 30 + 200 > 100: held at 100.
        MarginCase{"CeilingHolds", std::vector<int64_t>(10, 1100), 100},
        // A breach resets the quiet count: 5 quiet, breach (+20 = 50), 5
        // quiet → still 50.
        MarginCase{"BreachResetsQuiet",
                   {500, 500, 500, 500, 500, 1001, 500, 500, 500, 500, 500},
                   50}),
    [](const auto& info) { return info.param.name; });

// The cap-cut hold (AdaptiveMarginConfig::hold_after_cap_cut), through the
// overload with committed power. Each interval: cap, peak and committed in
// kW; reserve 30‰ at the start, +20 per near-breach (peak > 990‰ of the
// cap), −5 after 6 quiet intervals.
struct Interval {
  int64_t cap_kw, peak_kw, committed_kw;
};
struct CutCase {
  std::string name;
  std::vector<Interval> intervals;
  bool hold;  // config.hold_after_cap_cut
  int64_t want_permille;
};

class CapCutHoldTest : public ::testing::TestWithParam<CutCase> {};

TEST_P(CapCutHoldTest, HoldsOnlyWithinTheCommitmentsAfterACut) {
  const CutCase& c = GetParam();
  AdaptiveMarginConfig cfg;
  cfg.hold_after_cap_cut = c.hold;
  MarginState s = InitialMargin(cfg);
  for (const Interval& i : c.intervals) {
    s = AdaptMargin(s, i.peak_kw * kKw, i.cap_kw * kKw, i.committed_kw * kKw,
                    cfg);
    EXPECT_GE(s.reserve_permille, cfg.min_permille);
    EXPECT_LE(s.reserve_permille, cfg.max_permille);
  }
  EXPECT_EQ(s.reserve_permille, c.want_permille);
}

// Alibaba B's site in small: 1,200 kW, cut to 900 kW; the loop brings the
// draw to 899, 898, 897 kW (> 891 = 990‰ of 900: near), committed 1 kW
// above the draw.
const std::vector<Interval> kCut = {{1200, 924, 926},
                                    {900, 924, 926},
                                    {900, 899, 901},
                                    {900, 898, 900},
                                    {900, 897, 899}};

INSTANTIATE_TEST_SUITE_P(
    Margin, CapCutHoldTest,
    ::testing::Values(
        // 924 < 1,188 (990‰ of 1,200): quiet (count 1); then four
        // near-breaches within the commitments after the cut: held at 30.
        CutCase{"CutWithinCommitmentsHolds", kCut, true, 30},
        // Without the hold: four near-breaches, 30 + 4 × 20 = 110 → 100.
        CutCase{"WithoutTheHoldRaises", kCut, false, 100},
        // After the cut the draw goes above its commitments (899 > 895):
        // noise admission did not count, so it raises: 30 + 20 = 50.
        CutCase{"AboveTheCommitmentsRaises",
                {{1200, 924, 926}, {900, 924, 926}, {900, 899, 895}},
                true,
                50},
        // Same cap every interval (no cut): near-breaches within the
        // commitments raise as without the hold: 30 + 2 × 20 = 70.
        CutCase{"NoCutRaises", {{900, 899, 901}, {900, 898, 900}}, true, 70},
        // The episode ends at the first quiet interval (880 ≤ 891); a later
        // near-breach at the same cap raises: 30 + 20 = 50.
        CutCase{"QuietEndsTheHold",
                {{1200, 924, 926},
                 {900, 899, 901},
                 {900, 880, 882},
                 {900, 899, 901}},
                true,
                50},
        // A higher cap is no cut: 1,200 → 1,300, peak 1,290 > 1,287 (990‰
        // of 1,300), within the commitments, still raises: 50.
        CutCase{"RaisedCapIsNoCut",
                {{1200, 924, 926}, {1300, 1290, 1295}},
                true,
                50}),
    [](const auto& info) { return info.param.name; });

// ---------------------------------------------------------------------------
// Measured commitment (the daemon's and joule-sim's shared rule).

TEST(MeasuredCommitTest, PercentileOfReportsPlusMargin) {
  // Daemon: 10 reports 100..1000 W, p95 → report ceil(9.5) = 10 → 1000 W,
  // + 10% = 1100 W, capped at the 1050 W limit.
  std::vector<std::pair<int64_t, int64_t>> reports;
  for (int i = 10; i >= 1; --i) reports.push_back({i * 100 * kW, 1});
  EXPECT_EQ(MeasuredCommitPerGpuMw(reports, 1, 95, 10, 1050 * kW), 1050 * kW);
  // p50 → report 5 → 500 W, no margin.
  EXPECT_EQ(MeasuredCommitPerGpuMw(reports, 1, 50, 0, 1050 * kW), 500 * kW);
  // joule-sim: two 10 s samples (300 W, 500 W) = 20 one-second reports;
  // p50 → report 10 → 300 W; p95 → report 19 → 500 W.
  const std::vector<std::pair<int64_t, int64_t>> ticks = {{500 * kW, 10000},
                                                          {300 * kW, 10000}};
  EXPECT_EQ(MeasuredCommitPerGpuMw(ticks, 1000, 50, 0, 700 * kW), 300 * kW);
  EXPECT_EQ(MeasuredCommitPerGpuMw(ticks, 1000, 95, 0, 700 * kW), 500 * kW);
  // No samples: the limit.
  EXPECT_EQ(MeasuredCommitPerGpuMw({}, 1, 95, 10, 700 * kW), 700 * kW);
}

}  // namespace
}  // namespace joule::scheduler
