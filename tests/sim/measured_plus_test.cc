// joule-sim with the measured-plus policy: a hand-checked throttle-to-fit
// start and raise, 0 s over cap on a saturated synthetic cluster, and the
// stranded-power split.

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sim/cluster.h"
#include "sim/report.h"
#include "sim/simulator.h"
#include "sim/stranded.h"
#include "sim/workload.h"

namespace joule::sim {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kW = 1000;

const LevelStats& Level(const SimResult& r, const std::string& level) {
  for (const LevelStats& l : r.levels) {
    if (l.level == level) return l;
  }
  static LevelStats none;
  ADD_FAILURE() << "no level " << level;
  return none;
}

// One rack under an unlimited site: `nodes` 1-GPU H100 nodes n0, n1, ...
// (idle 70 W, min 200 W, max 700 W), the rack capped at `rack_cap_w`.
SimCluster H100Rack(int nodes, int64_t rack_cap_w) {
  SimCluster c;
  SimGpuModel h100;
  EXPECT_TRUE(LookupSimGpu("H100", &h100));
  c.models.push_back(h100);
  c.domains.push_back({"site", "site", -1, kUnlimitedMw});
  c.domains.push_back({"rack-a", "rack", 0, rack_cap_w * kW});
  for (int i = 0; i < nodes; ++i) {
    c.nodes.push_back({absl::StrCat("n", i), 1, 0, 1, 0});
  }
  return c;
}

// site > rack (cap 1,200 W) > two 1-GPU H100 nodes (idle 70 W, min 200 W),
// base power 0. A (on-demand) and B (spot, no min power: its class floor is
// the GPU minimum) arrive at 0, both at load 1 (want 700 W), no noise.
//   A is placed first at 700 W: committed = 700 + B's free GPU at idle 70 =
//   770 W. The admission reserve is 30‰ of 1,200 = 36 W → admission cap
//   1,164 W. B at its limit adds 630 W (increments over idle): 1,400 W, no.
//   Throttle-to-fit steps (increments 630 → 130, 4 steps): 505 (1,275 W)
//   no, 380 (1,150 W) fits; raised to 1,164 − 770 = 394 → B starts at
//   394 + 70 = 464 W.
//   A ends at 100 s. At the 100 s tick measured = 70 + 464 = 534 W; the
//   restore margin (5%) leaves 1,140 − 534 = 606 W ≥ 236 W: B goes back to
//   700 W (B's last change was 100 s ago > 30 s hysteresis).
//   B ran 100 s at speed (464/700)^0.4 = 0.848336, leaving 15.1664 s of
//   work: it ends at 115.1664 s, i.e. 115.167 s (completions are rounded up
//   to the ms).
// measured (no throttle-to-fit) starts B only at the 100 s tick: 200 s.
TEST(MeasuredPlus, ThrottledToFitThenRaisedWhenTheNeighbourEnds) {
  const SimCluster c = H100Rack(2, 1200);
  auto w = ParseCanonicalCsv(
      "job_id,tenant,submit_time_s,duration_s,class,load\n"
      "A,t,0,100,on-demand,1\nB,t,0,100,spot,1\n",
      "test.csv");
  ASSERT_TRUE(w.ok()) << w.status();
  SimInputs in{&c, &*w};
  SimOptions o;
  o.power_noise = 0;
  o.policy = PolicyKind::kMeasuredPlus;
  auto r = Simulate(in, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->jobs_completed, 2);
  EXPECT_EQ(r->attempts, 2);
  EXPECT_EQ(r->throttle_actions, 0);
  EXPECT_EQ(r->restore_actions, 1);
  EXPECT_EQ(r->preemptions_power, 0);
  EXPECT_DOUBLE_EQ(r->queue_delay_p99_s, 0);
  EXPECT_NEAR(ThrottleSpeed(464 * kW, 700 * kW, 0.4, 0.5), 0.848336, 1e-6);
  EXPECT_DOUBLE_EQ(r->makespan_s, 115.167);
  EXPECT_DOUBLE_EQ(Level(*r, "rack").seconds_over_cap, 0);
  // 700 + 464 W while both ran.
  EXPECT_DOUBLE_EQ(Level(*r, "rack").max_measured_w, 1164);

  o.policy = PolicyKind::kMeasured;
  auto m = Simulate(in, o);
  ASSERT_TRUE(m.ok());
  EXPECT_DOUBLE_EQ(m->makespan_s, 200);
  EXPECT_DOUBLE_EQ(m->queue_delay_p99_s, 100);
}

// The saturated input the next tests share: 64 H100 nodes (8 per rack, 4
// racks per row, 2 rows per hall), caps 0.7 of TDP at rack, row and site,
// 1,000 synthetic jobs at utilization 1.3, seed 3, 8 simulated hours.
SimResult RunSaturated(SimOptions o) {
  auto c = SyntheticCluster(
      "nodes=64,gpus-per-node=8,gpu-model=H100,nodes-per-rack=8,"
      "racks-per-row=4,rows-per-hall=2");
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return {};
  EXPECT_TRUE(ApplyCapFractions("rack=0.7,row=0.7,site=0.7", &*c).ok());
  const Workload w = SyntheticWorkload(1000, c->TotalGpus(), 8, 1.3, 10, 3);
  SimInputs in{&*c, &w};
  o.seed = 3;
  o.max_sim_ms = 8 * 3600 * 1000;
  auto r = Simulate(in, o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : SimResult{};
}

SimResult RunSaturated(PolicyKind policy) {
  SimOptions o;
  o.policy = policy;
  return RunSaturated(o);
}

// Never over any cap at any level, not even within a tick.
void ExpectNeverOverCap(const SimResult& r) {
  for (const LevelStats& l : r.levels) {
    EXPECT_EQ(l.seconds_over_cap, 0) << l.level;
    EXPECT_EQ(l.seconds_over_cap_beyond_two_ticks, 0) << l.level;
  }
}

// On the saturated input measured-plus is never over any cap and completes
// more work than measured.
TEST(MeasuredPlus, SaturatedSyntheticNeverOverCap) {
  const std::vector<SimResult> results = {
      RunSaturated(PolicyKind::kOblivious), RunSaturated(PolicyKind::kMeasured),
      RunSaturated(PolicyKind::kMeasuredPlus)};
  const SimResult& obl = results[0];
  const SimResult& meas = results[1];
  const SimResult& plus = results[2];
  EXPECT_GT(Level(obl, "rack").seconds_over_cap, 0);  // the load is high
  ExpectNeverOverCap(plus);
  EXPECT_GT(plus.gpu_hours_completed_work, meas.gpu_hours_completed_work);
  EXPECT_GT(plus.throttle_actions + plus.restore_actions, 0);
  // The report carries the stranded-power breakdown.
  RunInfo info;
  const std::string json = ReportJson(info, results, false);
  EXPECT_THAT(json, HasSubstr("\"stranded_w\""));
  EXPECT_THAT(json, HasSubstr("\"policy\": \"measured-plus\""));
  EXPECT_THAT(ReportSvg(info, results), HasSubstr("where the watts go"));
}

// The same input with the floor clamp and an on-demand start floor of 0.6
// (below the 0.8 floor): never over a cap, more work than measured,
// throttle-to-fit starts some jobs below their floor, and the report names
// the start share. The censored delay counts the jobs still waiting, so it
// is at least the started-only mean whenever some wait.
TEST(MeasuredPlus, StartFloorsNeverOverCap) {
  const SimResult meas = RunSaturated(PolicyKind::kMeasured);
  SimOptions o;
  o.policy = PolicyKind::kMeasuredPlus;
  o.plus_commit = scheduler::FloorClampRule();
  o.class_floors.on_demand_start_permille = 600;
  const SimResult r = RunSaturated(o);
  ExpectNeverOverCap(r);
  EXPECT_GT(r.gpu_hours_completed_work, meas.gpu_hours_completed_work);
  EXPECT_GT(r.throttle_actions + r.restore_actions, 0);
  EXPECT_GT(r.jobs_waiting_at_end, 0);
  EXPECT_GT(r.queue_delay_censored_mean_s, r.queue_delay_mean_s);
  RunInfo info;
  info.options = o;
  const std::string json = ReportJson(info, {r}, false);
  EXPECT_THAT(json, HasSubstr("\"floor_on_demand_start_permille\": 600"));
  EXPECT_THAT(json, HasSubstr("\"queue_delay_censored_s\""));
}

// The same input with watt best fit at every level (and the balanced
// rule): still 0 s over cap at every level, more work than measured, and
// the report names the rule.
TEST(MeasuredPlus, PowerFitNeverOverCap) {
  const SimResult meas = RunSaturated(PolicyKind::kMeasured);
  for (scheduler::PowerFit fit :
       {scheduler::PowerFit::kEveryLevel, scheduler::PowerFit::kBalanced}) {
    SimOptions o;
    o.policy = PolicyKind::kMeasuredPlus;
    o.power_fit = fit;
    const SimResult r = RunSaturated(o);
    ExpectNeverOverCap(r);
    EXPECT_GT(r.gpu_hours_completed_work, meas.gpu_hours_completed_work);
    RunInfo info;
    info.options = o;
    EXPECT_THAT(ReportJson(info, {r}, false),
                HasSubstr(absl::StrCat("\"power_fit\": \"",
                                       scheduler::PowerFitName(fit), "\"")));
  }
}

// A cap cut below the draw, then the cap back (as Alibaba B's demand
// response, in small): one rack of four 1-GPU H100 nodes (idle 70 W), cap
// 3,000 W; A, B, C (on-demand, load 1: want 700 W, 2,000 s) start at 0:
// 3 × 700 + 70 = 2,170 W. At 100 s the rack is cut to 1,900 W: the power
// loop throttles them (floor clamp, on-demand floor 0.6 = 448 W) and the
// draw then sits just under the new cap, within the rack's commitments.
// With the cap-cut hold the reserve stays at its 30‰ instead of climbing by
// 20‰ per interval to 100‰, so D (spot, 100 s, arriving at 150 s) gets in
// sooner once the cap is back at 2,400 W at 400 s. Never over a cap beyond
// two ticks either way.
TEST(MeasuredPlus, CapCutHoldAdmitsSoonerAfterTheCut) {
  const SimCluster c = H100Rack(4, 3000);
  auto w = ParseCanonicalCsv(
      "job_id,tenant,submit_time_s,duration_s,class,load\n"
      "A,t,0,2000,on-demand,1\nB,t,0,2000,on-demand,1\n"
      "C,t,0,2000,on-demand,1\nD,t,150,100,spot,1\n",
      "test.csv");
  ASSERT_TRUE(w.ok()) << w.status();
  auto caps = ParseCapEvents(
      "time_s,domain,new_cap\n100,rack-a,1900W\n400,rack-a,2400W\n", "caps.csv",
      c);
  ASSERT_TRUE(caps.ok()) << caps.status();
  SimInputs in{&c, &*w, &*caps};
  SimOptions o;
  o.power_noise = 0;
  o.policy = PolicyKind::kMeasuredPlus;
  o.plus_commit = scheduler::FloorClampRule();
  o.class_floors.on_demand_permille = 600;
  auto hold = Simulate(in, o);
  ASSERT_TRUE(hold.ok()) << hold.status();
  o.margin.hold_after_cap_cut = false;
  auto raise = Simulate(in, o);
  ASSERT_TRUE(raise.ok()) << raise.status();
  for (const SimResult* r : {&*hold, &*raise}) {
    EXPECT_EQ(r->jobs_completed, 4);
    EXPECT_EQ(Level(*r, "rack").seconds_over_cap_beyond_two_ticks, 0);
  }
  // D waits from 150 s to the 400 s tick, when the cap is back: the
  // reserve held at 30‰ (72 W of 2,400) leaves room for it at once.
  EXPECT_DOUBLE_EQ(hold->queue_delay_p99_s, 250);
  // Without the hold the reserve reached 100‰ during the cut and falls
  // back only 5‰ per six quiet ticks, while the restores of A, B and C take
  // the returned headroom first: D starts at 1,110 s (960 s of delay).
  EXPECT_DOUBLE_EQ(raise->queue_delay_p99_s, 960);
  EXPECT_LT(Level(*hold, "rack").stranded_margin_w,
            Level(*raise, "rack").stranded_margin_w);
}

// SplitStranded: cap 40 kW, measured 30 kW → 10 kW unused.
struct SplitCase {
  std::string name;
  int64_t committed_kw, reserve_kw;
  bool pending;
  int64_t need_limit_kw, need_floor_kw;  // -1 = none
  StrandedSplit want;                    // in kW
};

class SplitStrandedTest : public ::testing::TestWithParam<SplitCase> {};

TEST_P(SplitStrandedTest, OneCauseForTheHeadroom) {
  const SplitCase& c = GetParam();
  DomainPowerSample s;
  s.cap_mw = 40'000 * kW;
  s.measured_mw = 30'000 * kW;
  s.committed_mw = c.committed_kw * 1000 * kW;
  s.reserve_mw = c.reserve_kw * 1000 * kW;
  s.pending = c.pending;
  s.need_at_limit_mw = c.need_limit_kw < 0 ? -1 : c.need_limit_kw * 1000 * kW;
  s.need_at_floor_mw = c.need_floor_kw < 0 ? -1 : c.need_floor_kw * 1000 * kW;
  const StrandedSplit got = SplitStranded(s);
  const int64_t k = 1000 * kW;
  EXPECT_EQ(got.margin_mw, c.want.margin_mw * k);
  EXPECT_EQ(got.fragmentation_mw, c.want.fragmentation_mw * k);
  EXPECT_EQ(got.not_throttleable_mw, c.want.not_throttleable_mw * k);
  EXPECT_EQ(got.gpus_full_mw, c.want.gpus_full_mw * k);
  EXPECT_EQ(got.no_demand_mw, c.want.no_demand_mw * k);
  EXPECT_EQ(got.usable_mw, c.want.usable_mw * k);
}

INSTANTIATE_TEST_SUITE_P(
    Causes, SplitStrandedTest,
    ::testing::Values(
        // committed 34 + reserve 1 − measured 30 = 5 kW margin; headroom 5.
        // Nothing pending → no demand.
        SplitCase{"NoDemand", 34, 1, false, -1, -1, {5, 0, 0, 0, 5, 0}},
        // No pending job has the GPUs → GPUs full.
        SplitCase{"GpusFull", 34, 1, true, -1, -1, {5, 0, 0, 5, 0, 0}},
        // 5 kW ≥ 5 kW need at the limit → usable.
        SplitCase{"Usable", 34, 1, true, 5, 3, {5, 0, 0, 0, 0, 5}},
        // 5 < 6 at the limit, ≥ 4 at the floor → not throttleable.
        SplitCase{"NotThrottleable", 34, 1, true, 6, 4, {5, 0, 5, 0, 0, 0}},
        // 5 < 7 even at the floor → fragmentation.
        SplitCase{"Fragmentation", 34, 1, true, 8, 7, {5, 5, 0, 0, 0, 0}},
        // committed 45 > cap: the whole 10 kW is margin.
        SplitCase{"AllMargin", 45, 0, true, 1, 1, {10, 0, 0, 0, 0, 0}}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace joule::sim
