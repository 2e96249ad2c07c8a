// Regression tests for decisions that span scheduling rounds (issue 11,
// defects 6 and 7, quotas): each runs several Schedule calls, building the
// snapshot of each round the way jouled does (time limits from
// time_limits.h, fair-share usage from fair_share.h).

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/fair_share.h"
#include "scheduler/policy.h"
#include "scheduler/quota.h"
#include "scheduler/time_limits.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using ::joule::scheduler::testing::ClusterBuilder;
using ::joule::scheduler::testing::Pending;
using ::joule::scheduler::testing::TestNow;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

const Placement* FindPlacement(const Decisions& d, const std::string& id) {
  for (const Placement& p : d.placements) {
    if (p.job_id == id) return &p;
  }
  return nullptr;
}

const Wait* FindWait(const Decisions& d, const std::string& id) {
  for (const Wait& w : d.waits) {
    if (w.job_id == id) return &w;
  }
  return nullptr;
}

std::vector<std::string> Placed(const Decisions& d) {
  std::vector<std::string> out;
  for (const Placement& p : d.placements) out.push_back(p.job_id);
  return out;
}

// Defect 7: with no limits, a pending 8-GPU job had no shadow time and
// blocked every smaller H100 job. Every job now has a limit (class default
// 24h when it gives none), so backfill has end times.
//
//   n0: "long" 8 GPUs, started 1h ago, no --max-runtime → ends at +23h
//   n1: "half" 4 GPUs, started 2h ago, no --max-runtime → ends at +22h
//   n2: "other" 4 GPUs, started 1h ago, no --max-runtime → ends at +23h
// big (8 GPUs, first in the queue) fits on n1 once "half" ends: shadow
// +22h, S = {n1}. s1 and s2 (2 GPUs, default 24h > 22h) may not use n1 but
// start on n2; quick (1h ≤ 22h) may use n1 now.
// Round 2 at +22h: "half" is gone and big starts on n1, at its shadow time.
TEST(RoundsTest, Defect7DefaultLimitsLetBackfillRun) {
  const TimeLimits limits;
  auto build = [&](absl::Duration elapsed, bool with_limits,
                   const std::vector<std::string>& gone) {
    ClusterBuilder b;
    const int rack = b.Domain("r1", "rack", -1);
    const int n0 = b.Node("n0", rack);
    const int n1 = b.Node("n1", rack);
    const int n2 = b.Node("n2", rack);
    struct R {
      std::string id;
      int node;
      uint32_t gpus;
      absl::Duration age;
    };
    for (const R& r : std::vector<R>{{"long", n0, 8, absl::Hours(1)},
                                     {"half", n1, 4, absl::Hours(2)},
                                     {"other", n2, 4, absl::Hours(1)}}) {
      if (std::find(gone.begin(), gone.end(), r.id) != gone.end()) continue;
      RunningJob& j = b.Run(r.id, {r.node}, r.gpus);
      j.start_time = TestNow() - r.age;
      j.max_runtime =
          with_limits ? EffectiveMaxRuntime(j.cls, absl::ZeroDuration(), limits)
                      : absl::ZeroDuration();
    }
    ClusterSnapshot s = b.Build();
    s.now = TestNow() + elapsed;
    return s;
  };
  auto queue = [&](bool with_limits) {
    std::vector<PendingJob> q = {
        Pending("big", 8, 1, ServiceClass::kOnDemand, 0, 1),
        Pending("s1", 2, 1, ServiceClass::kOnDemand, 0, 2),
        Pending("s2", 2, 1, ServiceClass::kOnDemand, 0, 3),
        Pending("quick", 2, 1, ServiceClass::kOnDemand, 0, 4)};
    q[3].max_runtime = absl::Hours(1);
    for (PendingJob& p : q) {
      if (with_limits) {
        p.max_runtime = EffectiveMaxRuntime(p.cls, p.max_runtime, limits);
      }
    }
    return q;
  };
  const PolicyConfig cfg;

  // Before (no limits anywhere): s1 waits on a start time that is unknown.
  Decisions before =
      Schedule(build(absl::ZeroDuration(), false, {}), queue(false), cfg);
  ASSERT_NE(FindWait(before, "s1"), nullptr);
  EXPECT_THAT(FindWait(before, "s1")->reason,
              HasSubstr("its start time is unknown"));

  // Round 1 with limits: s1, s2 on n2, quick on n1; big reserved at +22h.
  Decisions r1 =
      Schedule(build(absl::ZeroDuration(), true, {}), queue(true), cfg);
  EXPECT_THAT(Placed(r1), UnorderedElementsAre("s1", "s2", "quick"));
  EXPECT_EQ(FindPlacement(r1, "s1")->shares[0].node, 2);
  EXPECT_EQ(FindPlacement(r1, "s2")->shares[0].node, 2);
  EXPECT_EQ(FindPlacement(r1, "quick")->shares[0].node, 1);
  ASSERT_NE(FindWait(r1, "big"), nullptr);
  EXPECT_THAT(FindWait(r1, "big")->reason, HasSubstr("expected in 22h"));

  // Round 2 at +22h: half and quick are gone, s1 and s2 still run on n2.
  ClusterSnapshot s2 = build(absl::Hours(22), true, {"half"});
  for (const char* id : {"s1", "s2"}) {
    RunningJob j;
    j.id = id;
    j.tenant = "t";
    j.start_time = TestNow();
    j.max_runtime = absl::Hours(24);
    j.gpu_model = "H100";
    j.limit_mw = j.requested_mw = 700 * testing::kW;
    j.committed_mw = 2 * j.limit_mw;
    const JobShare& share = FindPlacement(r1, id)->shares[0];
    j.shares = {share};
    for (uint32_t g : share.gpus) s2.nodes[2].free_gpus &= ~(uint64_t{1} << g);
    s2.running.push_back(j);
  }
  std::vector<PendingJob> q2 = queue(true);
  q2.erase(q2.begin() + 1, q2.end());
  Decisions r2 = Schedule(s2, q2, cfg);
  ASSERT_NE(FindPlacement(r2, "big"), nullptr);
  EXPECT_EQ(FindPlacement(r2, "big")->shares[0].node, 1);
}

// Defect 6: fair share counts running jobs. Tenant a holds 24 GPUs (n0..n2)
// since 10h ago, b none; c's job on n3 ends at +1h. a's job was submitted
// before b's. With usage added only when attempts end, a had 0 like b and
// went first (seq). Counted continuously (half-life 24h), a has
// 24 · 86,400/ln 2 · (1 − 2^(−11/24)) ≈ 815,000 GPU-seconds at +1h and b 0:
// b's job takes n3, in every round until a's usage decays below b's.
TEST(RoundsTest, Defect6RunningJobsCountInFairShare) {
  const absl::Duration hl = absl::Hours(24);
  const absl::Time a_start = TestNow() - absl::Hours(10);
  const DecayedUsage a_usage = AdvanceUsage({}, a_start, 24, hl);
  auto build = [&](absl::Duration elapsed, bool c_running) {
    ClusterBuilder b;
    const int rack = b.Domain("r1", "rack", -1);
    std::vector<int> nodes;
    for (int i = 0; i < 4; ++i) {
      nodes.push_back(b.Node(absl::StrCat("n", i), rack));
    }
    for (int i = 0; i < 3; ++i) {
      RunningJob& j = b.Run(absl::StrCat("a", i), {nodes[i]}, 8);
      j.tenant = "a";
      j.start_time = a_start;
    }
    if (c_running) b.Run("c0", {nodes[3]}, 8).tenant = "c";
    ClusterSnapshot s = b.Build();
    s.now = TestNow() + elapsed;
    s.tenants["a"].recent_gpu_hours = UsageAt(a_usage, s.now, 24, hl) / 3600;
    s.tenants["b"].recent_gpu_hours = 0;
    return s;
  };
  std::vector<PendingJob> q = {
      Pending("a-next", 8, 1, ServiceClass::kOnDemand, 0, 1),
      Pending("b-first", 8, 1, ServiceClass::kOnDemand, 0, 2)};
  q[0].tenant = "a";
  q[1].tenant = "b";
  const PolicyConfig cfg;
  // Round 1: no node is free; b's job is first in the queue already.
  Decisions r1 = Schedule(build(absl::ZeroDuration(), true), q, cfg);
  EXPECT_TRUE(r1.placements.empty());
  EXPECT_EQ(r1.waits[0].job_id, "b-first");
  EXPECT_GT(UsageAt(a_usage, TestNow() + absl::Hours(1), 24, hl), 800000);
  // Round 2: n3 frees; b's job starts there, a's waits.
  Decisions r2 = Schedule(build(absl::Hours(1), false), q, cfg);
  EXPECT_THAT(Placed(r2), UnorderedElementsAre("b-first"));
  EXPECT_NE(FindWait(r2, "a-next"), nullptr);
}

// Quotas over rounds: tenant t may run 16 on-demand GPUs. Three nodes of 8.
// Round 1: j1, j2 start (16), j3 waits naming the quota and holds nothing
// back: u's job starts on the third node. Round 2 (j1 ended): j3 starts.
TEST(RoundsTest, QuotaWaitsWithoutBlocking) {
  auto build = [](const std::vector<std::pair<std::string, int>>& running) {
    ClusterBuilder b;
    const int rack = b.Domain("r1", "rack", -1);
    std::vector<int> nodes;
    for (int i = 0; i < 3; ++i) {
      nodes.push_back(b.Node(absl::StrCat("n", i), rack));
    }
    for (const auto& [id, node] : running) {
      b.Run(id, {nodes[node]}, 8).tenant = id == "u1" ? "u" : "t";
    }
    b.Tenant("t")
        .quota.max_running_gpus[static_cast<int>(ServiceClass::kOnDemand)] = 16;
    return b.Build();
  };
  std::vector<PendingJob> q;
  for (int i = 1; i <= 3; ++i) {
    q.push_back(Pending(absl::StrCat("j", i), 8, 1, ServiceClass::kOnDemand, 0,
                        static_cast<uint64_t>(i)));
  }
  q.push_back(Pending("u1", 8, 1, ServiceClass::kOnDemand, 0, 4));
  q[3].tenant = "u";
  const PolicyConfig cfg;
  Decisions r1 = Schedule(build({}), q, cfg);
  EXPECT_THAT(Placed(r1), UnorderedElementsAre("j1", "j2", "u1"));
  ASSERT_NE(FindWait(r1, "j3"), nullptr);
  EXPECT_EQ(FindWait(r1, "j3")->reason,
            "over quota: tenant t runs 16 on-demand GPUs + 8 needed > "
            "max_running_gpus 16");
  // Round 2: j1 has ended, j2 and u1 run; j3 fits the quota (8 + 8).
  Decisions r2 = Schedule(build({{"j2", 1}, {"u1", 2}}),
                          std::vector<PendingJob>{q[2]}, cfg);
  EXPECT_THAT(Placed(r2), UnorderedElementsAre("j3"));
  // Round 3: a spot quota of 0 keeps spot jobs waiting, other classes run.
  ClusterSnapshot s3 = build({{"j2", 1}, {"u1", 2}});
  s3.tenants["t"]
      .quota.max_running_gpus[static_cast<int>(ServiceClass::kSpot)] = 0;
  PendingJob spot = Pending("sp", 1, 1, ServiceClass::kSpot, 0, 9);
  Decisions r3 = Schedule(s3, std::vector<PendingJob>{spot, q[2]}, cfg);
  EXPECT_THAT(Placed(r3), UnorderedElementsAre("j3"));
  EXPECT_THAT(FindWait(r3, "sp")->reason, HasSubstr("max_running_gpus 0"));
}

TEST(QuotaTest, PendingAtSubmit) {
  TenantQuota q;
  EXPECT_TRUE(CheckPendingQuota("t", 1000, q).ok());
  q.max_pending_jobs = 2;
  EXPECT_TRUE(CheckPendingQuota("t", 1, q).ok());
  absl::Status s = CheckPendingQuota("t", 2, q);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("max_pending_jobs 2"));
  EXPECT_EQ(QuotaText(q),
            "running GPUs: reserved unlimited, on-demand unlimited, spot "
            "unlimited; pending jobs 2");
}

// A gang bound by reserve_best_node names every node it is bound to.
TEST(RoundsTest, GangReasonNamesAllNodes) {
  ClusterBuilder b;
  const int rack = b.Domain("r1", "rack", -1);
  std::vector<int> nodes;
  for (int i = 0; i < 4; ++i) {
    nodes.push_back(b.Node(absl::StrCat("n", i), rack));
    b.Run(absl::StrCat("r", i), {nodes.back()}, i == 3 ? 6 : 4);
  }
  PolicyConfig cfg;
  cfg.reserve_best_node = true;
  Decisions d =
      Schedule(b.Build(), std::vector<PendingJob>{Pending("gang", 8, 3)}, cfg);
  ASSERT_EQ(d.waits.size(), 1u);
  EXPECT_THAT(d.waits[0].reason, HasSubstr("on nodes n0, n1, n2 when"));
}

}  // namespace
}  // namespace joule::scheduler
