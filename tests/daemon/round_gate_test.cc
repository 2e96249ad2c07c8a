// RoundGate (daemon/round_gate.h): which periodic rounds are due after a
// full round on a small snapshot, one change at a time.
#include "daemon/round_gate.h"

#include <functional>
#include <string>

#include "gtest/gtest.h"

namespace joule::daemon {
namespace {

constexpr int64_t kW = 1000;  // mW

// One 8-GPU node with GPUs 0-3 free under a 100 kW site; one running job
// on GPUs 4-7 since t=0 with a 1 h time limit; tenant acme, 2 GPU-hours.
scheduler::ClusterSnapshot Base() {
  scheduler::ClusterSnapshot s;
  s.now = absl::FromUnixSeconds(1000);
  s.gpu_models.push_back({"H100", 700 * kW, 200 * kW, 700 * kW});
  scheduler::DomainSnapshot site;
  site.name = "site";
  site.cap_mw = 100'000 * kW;
  site.committed_mw = 4'000 * kW;
  site.measured_mw = 3'000 * kW;
  s.domains.push_back(site);
  scheduler::NodeSnapshot n;
  n.name = "n1";
  n.domain = 0;
  n.gpu_model = "H100";
  n.gpu_count = 8;
  n.free_gpus = 0x0f;
  n.measured_mw = 3'000 * kW;
  s.nodes.push_back(n);
  scheduler::RunningJob r;
  r.id = "job-000001";
  r.tenant = "acme";
  r.start_time = absl::FromUnixSeconds(0);
  r.max_runtime = absl::Hours(1);  // ends at t=3600
  r.shares.push_back({0, {4, 5, 6, 7}});
  r.limit_mw = 700 * kW;
  r.measured_per_gpu_mw = 600 * kW;
  s.running.push_back(r);
  s.tenants["acme"].recent_gpu_hours = 2.0;
  return s;
}

struct Case {
  std::string name;
  std::function<void(scheduler::ClusterSnapshot&)> change;
  bool due;
};

TEST(RoundGateTest, DueOnlyWhenAnInputMoved) {
  const Case cases[] = {
      {"nothing", [](auto&) {}, false},
      {"1 s later", [](auto& s) { s.now += absl::Seconds(1); }, false},
      {"5 s later (max_skip)", [](auto& s) { s.now += absl::Seconds(5); },
       true},
      {"a GPU freed", [](auto& s) { s.nodes[0].free_gpus = 0x1f; }, true},
      {"node drained", [](auto& s) { s.nodes[0].schedulable = false; }, true},
      {"cap lowered", [](auto& s) { s.domains[0].cap_mw -= 1; }, true},
      // 3,000 W: 1 % is 30 W.
      {"measured +29 W", [](auto& s) { s.domains[0].measured_mw += 29 * kW; },
       false},
      {"measured +31 W", [](auto& s) { s.domains[0].measured_mw += 31 * kW; },
       true},
      // 600 W per GPU: 1 % is 6 W.
      {"job draw +5 W",
       [](auto& s) { s.running[0].measured_per_gpu_mw += 5 * kW; }, false},
      {"job draw +7 W",
       [](auto& s) { s.running[0].measured_per_gpu_mw += 7 * kW; }, true},
      {"job throttled", [](auto& s) { s.running[0].limit_mw = 500 * kW; },
       true},
      {"job gone", [](auto& s) { s.running.clear(); }, true},
      // 2 GPU-hours: the step is max(1 % = 0.02, 0.1) GPU-hours.
      {"usage +0.09 GPU-h",
       [](auto& s) { s.tenants["acme"].recent_gpu_hours += 0.09; }, false},
      {"usage +0.11 GPU-h",
       [](auto& s) { s.tenants["acme"].recent_gpu_hours += 0.11; }, true},
      {"quota set",
       [](auto& s) { s.tenants["acme"].quota.max_running_gpus[1] = 4; }, true},
      {"claim",
       [](auto& s) {
         s.claims.push_back({"job-000002", {}, {}, 0});
       },
       true},
  };
  for (const Case& c : cases) {
    RoundGate gate;
    gate.Record(Base(), /*changed=*/false);
    scheduler::ClusterSnapshot s = Base();
    c.change(s);
    EXPECT_EQ(gate.Due(s), c.due) << c.name;
  }
}

TEST(RoundGateTest, DueAtARunningJobsTimeLimit) {
  RoundGate gate(absl::Hours(10));  // max_skip out of the way
  gate.Record(Base(), false);
  scheduler::ClusterSnapshot s = Base();
  s.now = absl::FromUnixSeconds(3599);  // the job ends at t=3600
  s.running[0].measured_per_gpu_mw += 0;
  EXPECT_FALSE(gate.Due(s));
  s.now = absl::FromUnixSeconds(3600);
  EXPECT_TRUE(gate.Due(s));
}

TEST(RoundGateTest, DueAfterAChangingRoundOrBeforeAnyRecord) {
  RoundGate gate;
  EXPECT_TRUE(gate.Due(Base()));  // no full round yet
  gate.Record(Base(), /*changed=*/true);
  EXPECT_TRUE(gate.Due(Base()));  // it placed: its effect is unseen
  gate.Record(Base(), false);
  EXPECT_FALSE(gate.Due(Base()));
  gate.Invalidate();  // a round began and did not finish
  EXPECT_TRUE(gate.Due(Base()));
}

// RoundPacer: the gap before the next woken round, per last round and wake.
TEST(RoundPacerTest, LongerGapOnlyForSubmitsIntoAQueueThatDidNotMove) {
  struct PaceCase {
    std::string name;
    bool ran;  // a round ran before (else the pacer is fresh)
    absl::Duration took;
    bool changed;
    bool appended_only;
    absl::Duration gap;
  };
  const absl::Duration ms = absl::Milliseconds(1);
  const PaceCase cases[] = {
      {"no round yet", false, {}, false, true, 5 * ms},
      {"short round, submits", true, absl::Microseconds(80), false, true,
       5 * ms},
      {"short round, other wake", true, absl::Microseconds(80), false, false,
       5 * ms},
      {"long round that placed, submits", true, 20 * ms, true, true, 40 * ms},
      {"long round that placed, other wake", true, 20 * ms, true, false,
       40 * ms},
      {"long round that moved nothing, submits", true, 20 * ms, false, true,
       160 * ms},
      {"long round that moved nothing, other wake", true, 20 * ms, false, false,
       40 * ms},
      {"2 ms round that moved nothing, submits", true, 2 * ms, false, true,
       16 * ms},
      {"2 ms round that placed", true, 2 * ms, true, true, 5 * ms},
      {"100 ms round that moved nothing, submits (at most 500 ms)", true,
       100 * ms, false, true, 500 * ms},
      {"400 ms round that moved nothing, submits (2 x is more)", true, 400 * ms,
       false, true, 800 * ms},
  };
  for (const PaceCase& c : cases) {
    RoundPacer pacer;
    if (c.ran) pacer.Ran(c.took, c.changed);
    EXPECT_EQ(pacer.Gap(c.appended_only), c.gap) << c.name;
  }
}

// Over several rounds the gap follows the last round only: a queue that
// starts moving again (a placement) is back to the short gap at once.
TEST(RoundPacerTest, FollowsTheLastRoundOverSeveralRounds) {
  const absl::Duration ms = absl::Milliseconds(1);
  RoundPacer pacer;
  pacer.Ran(10 * ms, /*changed=*/true);  // placed
  EXPECT_EQ(pacer.Gap(true), 20 * ms);
  pacer.Ran(10 * ms, false);  // stuck: a burst of submits waits longer
  EXPECT_EQ(pacer.Gap(true), 80 * ms);
  EXPECT_EQ(pacer.Gap(false), 20 * ms);  // an exit or a node does not
  pacer.Ran(12 * ms, false);
  EXPECT_EQ(pacer.Gap(true), 96 * ms);
  pacer.Ran(12 * ms, true);  // a GPU freed, the next job placed
  EXPECT_EQ(pacer.Gap(true), 24 * ms);
  pacer.Ran(absl::Microseconds(50), false);  // the queue drained
  EXPECT_EQ(pacer.Gap(true), 5 * ms);
}

}  // namespace
}  // namespace joule::daemon
