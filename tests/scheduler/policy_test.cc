#include "scheduler/policy.h"

#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using ::joule::scheduler::testing::ClusterBuilder;
using ::joule::scheduler::testing::kKw;
using ::joule::scheduler::testing::kW;
using ::joule::scheduler::testing::Pending;
using ::joule::scheduler::testing::TestNow;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;
using ::testing::StartsWith;

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

std::vector<int> NodesOf(const Placement& p) {
  std::vector<int> out;
  for (const JobShare& s : p.shares) out.push_back(s.node);
  return out;
}

// ---------------------------------------------------------------------------
// Fit at every domain level.
//
//   s1 (site) ── h1 (hall) ── w1 (row) ── r1 (rack): n0, job a: 2 GPUs
//             │            │            └ r2 (rack): n1, job b: 8 GPUs
//             │            └ w2 (row) ── r3 (rack): n2, job c: 8 GPUs
//             └ h2 (hall) ── w3 (row) ── r4 (rack): n3, job d: 8 GPUs
//
// Base 1 kW per node, 700 W per GPU. Committed: r1 = 1 kW + 2×700 W =
// 2.4 kW; r2 = r3 = r4 = 1 kW + 8×700 W = 6.6 kW; w1 = 2.4 + 6.6 = 9.0 kW;
// h1 = 9.0 + 6.6 = 15.6 kW; s1 = 15.6 + 6.6 = 22.2 kW. The pending job asks
// for 4 H100 at TDP: 4×700 W = 2.8 kW, and only n0 has free GPUs.
struct LevelCase {
  std::string name;
  int level;  // 0 rack r1, 1 row w1, 2 hall h1, 3 site s1
  int64_t cap_mw;
  bool fits;
  std::string reason;
};

class DomainLevelTest : public ::testing::TestWithParam<LevelCase> {};

TEST_P(DomainLevelTest, FitsOnlyWhenEveryDomainOnThePathHasRoom) {
  const LevelCase& c = GetParam();
  ClusterBuilder b;
  const int s1 = b.Domain("s1", "site", -1);
  const int h1 = b.Domain("h1", "hall", s1);
  const int w1 = b.Domain("w1", "row", h1);
  const int r1 = b.Domain("r1", "rack", w1);
  const int r2 = b.Domain("r2", "rack", w1);
  const int w2 = b.Domain("w2", "row", h1);
  const int r3 = b.Domain("r3", "rack", w2);
  const int h2 = b.Domain("h2", "hall", s1);
  const int w3 = b.Domain("w3", "row", h2);
  const int r4 = b.Domain("r4", "rack", w3);
  const int n0 = b.Node("n0", r1);
  b.Run("a", {n0}, 2);
  b.Run("b", {b.Node("n1", r2)}, 8);
  b.Run("c", {b.Node("n2", r3)}, 8);
  b.Run("d", {b.Node("n3", r4)}, 8);
  b.SetCap(std::vector<int>{r1, w1, h1, s1}[c.level], c.cap_mw);
  const ClusterSnapshot snap = b.Build();
  ASSERT_EQ(snap.domains[r1].committed_mw, 2400 * kW);
  ASSERT_EQ(snap.domains[w1].committed_mw, 9000 * kW);
  ASSERT_EQ(snap.domains[h1].committed_mw, 15600 * kW);
  ASSERT_EQ(snap.domains[s1].committed_mw, 22200 * kW);

  const std::vector<PendingJob> pending = {Pending("j", 4)};
  const Decisions d = Schedule(snap, pending, PolicyConfig{});
  if (c.fits) {
    ASSERT_EQ(d.placements.size(), 1u);
    EXPECT_THAT(d.waits, IsEmpty());
    EXPECT_EQ(d.placements[0].job_id, "j");
    ASSERT_EQ(d.placements[0].shares.size(), 1u);
    EXPECT_EQ(d.placements[0].shares[0].node, n0);
    EXPECT_THAT(d.placements[0].shares[0].gpus, ElementsAre(2, 3, 4, 5));
    EXPECT_EQ(d.placements[0].power_limit_mw, 700 * kW);
    EXPECT_EQ(d.placements[0].gpu_model, "H100");
  } else {
    EXPECT_THAT(d.placements, IsEmpty());
    ASSERT_EQ(d.waits.size(), 1u);
    EXPECT_EQ(d.waits[0].kind, WaitKind::kOverPowerCap);
    EXPECT_THAT(d.waits[0].reason, StartsWith(c.reason));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Levels, DomainLevelTest,
    ::testing::Values(
        // rack: 2.4 kW + 2.8 kW = 5.2 kW ≤ 5.2 kW → fits (equality is ok).
        LevelCase{"RackFits", 0, 5200 * kW, true, ""},
        // rack: 2.4 kW + 2.8 kW = 5.2 kW > 5.1 kW → waits.
        LevelCase{"RackOver", 0, 5100 * kW, false,
                  "waiting: rack r1 power 2.40 kW committed + 2.80 kW needed "
                  "> cap 5.10 kW"},
        // row: 9.0 kW + 2.8 kW = 11.8 kW ≤ 11.8 kW → fits.
        LevelCase{"RowFits", 1, 11800 * kW, true, ""},
        // row: 9.0 kW + 2.8 kW = 11.8 kW > 11.7 kW → waits.
        LevelCase{"RowOver", 1, 11700 * kW, false,
                  "waiting: row w1 power 9.00 kW committed + 2.80 kW needed > "
                  "cap 11.7 kW"},
        // hall: 15.6 kW + 2.8 kW = 18.4 kW ≤ 18.4 kW → fits.
        LevelCase{"HallFits", 2, 18400 * kW, true, ""},
        // hall: 15.6 kW + 2.8 kW = 18.4 kW > 18.3 kW → waits.
        LevelCase{"HallOver", 2, 18300 * kW, false,
                  "waiting: hall h1 power 15.6 kW committed + 2.80 kW needed > "
                  "cap 18.3 kW"},
        // site: 22.2 kW + 2.8 kW = 25.0 kW ≤ 25.0 kW → fits.
        LevelCase{"SiteFits", 3, 25000 * kW, true, ""},
        // site: 22.2 kW + 2.8 kW = 25.0 kW > 24.9 kW → waits.
        LevelCase{"SiteOver", 3, 24900 * kW, false,
                  "waiting: site s1 power 22.2 kW committed + 2.80 kW needed > "
                  "cap 24.9 kW"}),
    [](const auto& info) { return info.param.name; });

// The working copy is updated after each placement: the second job sees the
// first one's power.
TEST(ScheduleTest, LaterJobsSeeEarlierPlacements) {
  ClusterBuilder b;
  // rack cap 12 kW: base 2×1 kW = 2 kW; first job 8×700 W → 7.6 kW;
  // second 7.6 kW + 5.6 kW = 13.2 kW > 12 kW → waits.
  const int r1 = b.Domain("r1", "rack", -1, 12 * kKw);
  b.Node("n0", r1);
  b.Node("n1", r1);
  const std::vector<PendingJob> pending = {Pending("first", 8, 1, {}, 0, 1),
                                           Pending("second", 8, 1, {}, 0, 2)};
  const Decisions d = Schedule(b.Build(), pending, PolicyConfig{});
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].job_id, "first");
  EXPECT_THAT(NodesOf(d.placements[0]), ElementsAre(0));
  const Wait* w = FindWait(d, "second");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->kind, WaitKind::kOverPowerCap);
  EXPECT_THAT(w->reason, StartsWith("waiting: rack r1 power 7.60 kW committed "
                                    "+ 5.60 kW needed > cap 12.0 kW"));
}

TEST(ScheduleTest, ObliviousModeIgnoresCaps) {
  ClusterBuilder b;
  // rack cap 5 kW: 1 kW base + 8×700 W = 6.6 kW > 5 kW.
  const int r1 = b.Domain("r1", "rack", -1, 5 * kKw);
  b.Node("n0", r1);
  const std::vector<PendingJob> pending = {Pending("j", 8)};
  const ClusterSnapshot snap = b.Build();
  PolicyConfig oblivious;
  oblivious.enforce_power = false;
  EXPECT_EQ(Schedule(snap, pending, oblivious).placements.size(), 1u);
  const Decisions enforced = Schedule(snap, pending, PolicyConfig{});
  EXPECT_THAT(enforced.placements, IsEmpty());
  ASSERT_EQ(enforced.waits.size(), 1u);
  EXPECT_EQ(enforced.waits[0].kind, WaitKind::kOverPowerCap);
}

TEST(ScheduleTest, PowerIsClampedToTheModelRange) {
  ClusterBuilder b;
  const int r1 = b.Domain("r1", "rack", -1);
  b.Node("n0", r1);
  PendingJob high = Pending("high", 1);
  high.power_mw = 900 * kW;     // above H100 max 700 W → 700 W
  high.min_power_mw = 50 * kW;  // below H100 min 200 W → 200 W
  PendingJob low = Pending("low", 1);
  low.power_mw = 100 * kW;  // below min 200 W → 200 W; min = limit
  const std::vector<PendingJob> pending = {high, low};
  const Decisions d = Schedule(b.Build(), pending, PolicyConfig{});
  ASSERT_EQ(d.placements.size(), 2u);
  EXPECT_EQ(FindPlacement(d, "high")->power_limit_mw, 700 * kW);
  EXPECT_EQ(FindPlacement(d, "high")->min_power_mw, 200 * kW);
  EXPECT_EQ(FindPlacement(d, "low")->power_limit_mw, 200 * kW);
  EXPECT_EQ(FindPlacement(d, "low")->min_power_mw, 200 * kW);
}

TEST(ScheduleTest, AnyModelUsesTheFirstModelThatFits) {
  ClusterBuilder b;
  const int r1 = b.Domain("r1", "rack", -1);
  b.Run("busy", {b.Node("h", r1, "H100")}, 8);
  const int a = b.Node("a", r1, "A100", 4);
  PendingJob j = Pending("j", 2);
  j.gpu_model = "";
  const std::vector<PendingJob> pending = {j};
  const Decisions d = Schedule(b.Build(), pending, PolicyConfig{});
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].gpu_model, "A100");
  EXPECT_EQ(d.placements[0].power_limit_mw, 400 * kW);  // A100 TDP
  EXPECT_THAT(NodesOf(d.placements[0]), ElementsAre(a));
}

TEST(ScheduleTest, JobsBeyondTheLimitAreNotConsidered) {
  ClusterBuilder b;
  b.Node("n0", b.Domain("r1", "rack", -1));
  const std::vector<PendingJob> pending = {Pending("a", 1, 1, {}, 0, 1),
                                           Pending("b", 1, 1, {}, 0, 2)};
  PolicyConfig config;
  config.max_jobs_considered = 1;
  const Decisions d = Schedule(b.Build(), pending, config);
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].job_id, "a");
  ASSERT_EQ(d.waits.size(), 1u);
  EXPECT_EQ(d.waits[0].job_id, "b");
  EXPECT_EQ(d.waits[0].kind, WaitKind::kRetryLater);
  EXPECT_EQ(d.waits[0].reason,
            "not considered this round (queue position 2, limit 1)");
}

// ---------------------------------------------------------------------------
// Gangs.
struct GangCase {
  std::string name;
  std::function<ClusterSnapshot()> cluster;
  uint32_t gpus;
  uint32_t nodes;
  std::vector<int> want_nodes;  // empty = waits
  WaitKind want_kind;
  std::string want_reason;
};

class GangTest : public ::testing::TestWithParam<GangCase> {};

TEST_P(GangTest, AllOrNothingWithTopologyPreference) {
  const GangCase& c = GetParam();
  const std::vector<PendingJob> pending = {Pending("g", c.gpus, c.nodes)};
  const Decisions d = Schedule(c.cluster(), pending, PolicyConfig{});
  if (!c.want_nodes.empty()) {
    ASSERT_EQ(d.placements.size(), 1u);
    EXPECT_THAT(NodesOf(d.placements[0]), ElementsAreArray(c.want_nodes));
    for (const JobShare& s : d.placements[0].shares) {
      EXPECT_EQ(s.gpus.size(), c.gpus);
    }
  } else {
    EXPECT_THAT(d.placements, IsEmpty());  // nothing partial
    ASSERT_EQ(d.waits.size(), 1u);
    EXPECT_EQ(d.waits[0].kind, c.want_kind);
    EXPECT_THAT(d.waits[0].reason, StartsWith(c.want_reason));
  }
}

// w1 ── r1: n0 (4 busy), n1 | r2: n2 (4 busy) | r3: n3, n4. Best fit
// anywhere would take n0 + n2 (4 free each, 0 left); one rack wins: r1
// (n0, n1) has less headroom (2 kW base + 4×700 W = 4.8 kW committed) than r3
// (2 kW).
ClusterSnapshot RackPreferenceCluster() {
  ClusterBuilder b;
  const int w1 = b.Domain("w1", "row", -1);
  const int r1 = b.Domain("r1", "rack", w1);
  const int r2 = b.Domain("r2", "rack", w1);
  const int r3 = b.Domain("r3", "rack", w1);
  b.Run("x0", {b.Node("n0", r1)}, 4);
  b.Node("n1", r1);
  b.Run("x2", {b.Node("n2", r2)}, 4);
  b.Node("n3", r3);
  b.Node("n4", r3);
  return b.Build();
}

// s ── w1 ── r1: n0, n1 (busy) ; s ── w2 ── r2: n2 | r3: n3.
// No rack has two free nodes; w2 has two (n2, n3). Best fit anywhere would
// start with n0 (r1 has the least headroom: 2 kW + 5.6 kW = 7.6 kW).
ClusterSnapshot RowPreferenceCluster() {
  ClusterBuilder b;
  const int s = b.Domain("s", "site", -1);
  const int w1 = b.Domain("w1", "row", s);
  const int r1 = b.Domain("r1", "rack", w1);
  const int w2 = b.Domain("w2", "row", s);
  const int r2 = b.Domain("r2", "rack", w2);
  const int r3 = b.Domain("r3", "rack", w2);
  b.Node("n0", r1);
  b.Run("busy", {b.Node("n1", r1)}, 8);
  b.Node("n2", r2);
  b.Node("n3", r3);
  return b.Build();
}

// w1 (cap 10 kW) ── r1: n0 | r2: n1. Committed 2 kW base. One node of 8×700
// W: 2 + 5.6 = 7.6 kW fits; two: 7.6 + 5.6 = 13.2 kW > 10 kW.
ClusterSnapshot PowerGangCluster() {
  ClusterBuilder b;
  const int w1 = b.Domain("w1", "row", -1, 10 * kKw);
  b.Node("n0", b.Domain("r1", "rack", w1));
  b.Node("n1", b.Domain("r2", "rack", w1));
  return b.Build();
}

// w1 ── r1 (cap 10 kW): n0, n1 | r2: n2, n3. r1 can hold one 5.6 kW node
// (2 + 5.6 = 7.6 kW) but not two (13.2 kW > 10 kW), so the gang goes to r2.
ClusterSnapshot RackCapGangCluster() {
  ClusterBuilder b;
  const int w1 = b.Domain("w1", "row", -1);
  const int r1 = b.Domain("r1", "rack", w1, 10 * kKw);
  const int r2 = b.Domain("r2", "rack", w1);
  b.Node("n0", r1);
  b.Node("n1", r1);
  b.Node("n2", r2);
  b.Node("n3", r2);
  return b.Build();
}

INSTANTIATE_TEST_SUITE_P(
    Gangs, GangTest,
    ::testing::Values(
        GangCase{"PrefersOneRack", RackPreferenceCluster, 4, 2, {0, 1}, {}, ""},
        GangCase{"PrefersOneRow", RowPreferenceCluster, 8, 2, {2, 3}, {}, ""},
        GangCase{"SpansRowsWhenNeeded",
                 RowPreferenceCluster,
                 8,
                 3,
                 {0, 2, 3},
                 {},
                 ""},
        GangCase{"AllOrNothingGpus",
                 RowPreferenceCluster,
                 8,
                 4,
                 {},
                 WaitKind::kRetryLater,
                 "gang needs 4 ready nodes with 8 free H100; 3 have them"},
        // Greedy takes n0 (row 2 + 5.6 = 7.6 kW), then n1 is refused.
        GangCase{"AllOrNothingPower",
                 PowerGangCluster,
                 8,
                 2,
                 {},
                 WaitKind::kOverPowerCap,
                 "waiting: row w1 power 7.60 kW committed + 5.60 kW needed > "
                 "cap 10.0 kW"},
        GangCase{"RackCapSendsGangToAnotherRack",
                 RackCapGangCluster,
                 8,
                 2,
                 {2, 3},
                 {},
                 ""}),
    [](const auto& info) { return info.param.name; });

// ---------------------------------------------------------------------------
// Best fit: fewest free GPUs left, then least leaf headroom.
//
// r1: n0 (8 free), n1 (2 free: 6 busy), n2 (4 free: 4 busy); r2: n3 (4 free).
// r1 committed = 3 kW base + 10×700 W = 10 kW; r2 = 1 kW + 2.8 kW = 3.8 kW.
struct BestFitCase {
  std::string name;
  uint32_t gpus;
  int64_t r1_cap_mw;
  int want_node;
  std::vector<uint32_t> want_gpus;
};

class BestFitTest : public ::testing::TestWithParam<BestFitCase> {};

TEST_P(BestFitTest, LeavesTheLeastStrandedCapacity) {
  const BestFitCase& c = GetParam();
  ClusterBuilder b;
  const int s = b.Domain("s", "site", -1);
  const int r1 = b.Domain("r1", "rack", s, c.r1_cap_mw);
  const int r2 = b.Domain("r2", "rack", s, 100 * kKw);
  b.Node("n0", r1);
  b.Run("y1", {b.Node("n1", r1)}, 6);
  b.Run("y2", {b.Node("n2", r1)}, 4);
  b.Run("y3", {b.Node("n3", r2)}, 4);
  const std::vector<PendingJob> pending = {Pending("j", c.gpus)};
  const Decisions d = Schedule(b.Build(), pending, PolicyConfig{});
  ASSERT_EQ(d.placements.size(), 1u);
  ASSERT_EQ(d.placements[0].shares.size(), 1u);
  EXPECT_EQ(d.placements[0].shares[0].node, c.want_node);
  EXPECT_THAT(d.placements[0].shares[0].gpus, ElementsAreArray(c.want_gpus));
}

INSTANTIATE_TEST_SUITE_P(
    BestFit, BestFitTest,
    ::testing::Values(
        BestFitCase{"OneGpuToFullestNode", 1, 100 * kKw, 1, {6}},
        BestFitCase{"TwoGpusFillNode", 2, 100 * kKw, 1, {6, 7}},
        // n2 and n3 both leave 1; r1 headroom 90 kW < r2 96.2 kW → n2.
        BestFitCase{"ThreeGpusLeastHeadroom", 3, 100 * kKw, 2, {4, 5, 6}},
        BestFitCase{"FourGpus", 4, 100 * kKw, 2, {4, 5, 6, 7}},
        BestFitCase{"FiveGpusNeedEmptyNode", 5, 100 * kKw, 0, {0, 1, 2, 3, 4}},
        // r1 cap 12 kW: 10 kW + 4×700 W = 12.8 kW > 12 kW → n3 in r2.
        BestFitCase{"CappedRackSkipped", 4, 12 * kKw, 3, {4, 5, 6, 7}}),
    [](const auto& info) { return info.param.name; });

// ---------------------------------------------------------------------------
// Order: class, priority, fair share, seq. One node, every job wants all 8
// GPUs, so exactly the first in order starts.
struct OrderCase {
  std::string name;
  std::vector<PendingJob> jobs;
  std::string want;
  ServiceClass want_class;
};

PendingJob Job(std::string id, ServiceClass cls, int32_t priority,
               std::string tenant = "t", uint64_t seq = 0) {
  PendingJob p = Pending(std::move(id), 8, 1, cls, priority, seq);
  p.tenant = std::move(tenant);
  return p;
}

class OrderTest : public ::testing::TestWithParam<OrderCase> {};

TEST_P(OrderTest, FirstInOrderStarts) {
  const OrderCase& c = GetParam();
  ClusterBuilder b;
  b.Node("n0", b.Domain("r1", "rack", -1));
  // "light": 30 GPU-h / weight 4 = 7.5; "heavy": 10 GPU-h / weight 1 = 10.
  b.Tenant("light").weight = 4;
  b.Tenant("light").recent_gpu_hours = 30;
  b.Tenant("heavy").weight = 1;
  b.Tenant("heavy").recent_gpu_hours = 10;
  b.Tenant("contract").contracted_gpus["H100"] = 8;
  b.Tenant("small").contracted_gpus["H100"] = 4;
  const Decisions d = Schedule(b.Build(), c.jobs, PolicyConfig{});
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].job_id, c.want);
  EXPECT_EQ(d.placements[0].effective_class, c.want_class);
  EXPECT_EQ(d.waits.size(), c.jobs.size() - 1);
}

INSTANTIATE_TEST_SUITE_P(
    Order, OrderTest,
    ::testing::Values(
        OrderCase{"ClassBeatsPriority",
                  {Job("spot", ServiceClass::kSpot, 100),
                   Job("od", ServiceClass::kOnDemand, 0)},
                  "od",
                  ServiceClass::kOnDemand},
        OrderCase{"ReservedFirst",
                  {Job("od", ServiceClass::kOnDemand, 100),
                   Job("res", ServiceClass::kReserved, 0, "contract")},
                  "res",
                  ServiceClass::kReserved},
        OrderCase{"PriorityWithinClass",
                  {Job("p1", ServiceClass::kOnDemand, 1),
                   Job("p2", ServiceClass::kOnDemand, 2)},
                  "p2",
                  ServiceClass::kOnDemand},
        OrderCase{"FairShare",
                  {Job("heavy", ServiceClass::kOnDemand, 0, "heavy", 1),
                   Job("light", ServiceClass::kOnDemand, 0, "light", 2)},
                  "light",
                  ServiceClass::kOnDemand},
        OrderCase{"SeqBreaksTies",
                  {Job("late", ServiceClass::kOnDemand, 0, "t", 5),
                   Job("early", ServiceClass::kOnDemand, 0, "t", 3)},
                  "early",
                  ServiceClass::kOnDemand},
        // 8 GPUs > contract 4 → runs as on-demand, ordered by priority
        // among on-demand jobs.
        OrderCase{"ReservedBeyondContractOrderedAsOnDemand",
                  {Job("res", ServiceClass::kReserved, 0, "small"),
                   Job("od", ServiceClass::kOnDemand, 5)},
                  "od",
                  ServiceClass::kOnDemand},
        OrderCase{"ReservedBeyondContractRunsAsOnDemand",
                  {Job("res", ServiceClass::kReserved, 10, "small"),
                   Job("od", ServiceClass::kOnDemand, 5)},
                  "res",
                  ServiceClass::kOnDemand}),
    [](const auto& info) { return info.param.name; });

// ---------------------------------------------------------------------------
// Backfill.
//
// r1 (cap varies): n0 with R1 (6 GPUs, started 1 h ago, max 2 h → ends in
// 1 h), n1 with R2 (r2_gpus GPUs, no max_runtime). Head job B wants 8 GPUs:
// no node has 8 free, so it waits; at R1's end (shadow, +1 h) n0 is free.
// Committed now = 2 kW base + 6×700 W + r2×700 W.
struct BackfillCase {
  std::string name;
  absl::Duration r1_runtime;
  uint32_t r2_gpus;
  int64_t cap_mw;
  bool backfill;
  uint32_t j_gpus;
  absl::Duration j_runtime;
  int want_node;  // -1 = J waits
  std::string want_reason;
};

class BackfillTest : public ::testing::TestWithParam<BackfillCase> {};

TEST_P(BackfillTest, LowerJobNeverDelaysTheHeadJob) {
  const BackfillCase& c = GetParam();
  ClusterBuilder b;
  const int r1 = b.Domain("r1", "rack", -1, c.cap_mw);
  const int n0 = b.Node("n0", r1);
  const int n1 = b.Node("n1", r1);
  b.Run("R1", {n0}, 6).max_runtime = c.r1_runtime;
  b.Run("R2", {n1}, c.r2_gpus);
  PendingJob head = Pending("B", 8, 1, ServiceClass::kOnDemand, 10, 1);
  PendingJob j = Pending("J", c.j_gpus, 1, ServiceClass::kOnDemand, 0, 2);
  j.max_runtime = c.j_runtime;
  const std::vector<PendingJob> pending = {head, j};
  PolicyConfig config;
  config.backfill = c.backfill;
  const Decisions d = Schedule(b.Build(), pending, config);
  EXPECT_EQ(FindPlacement(d, "B"), nullptr);
  const Wait* head_wait = FindWait(d, "B");
  ASSERT_NE(head_wait, nullptr);
  EXPECT_EQ(head_wait->kind, WaitKind::kRetryLater);
  if (c.want_node >= 0) {
    const Placement* p = FindPlacement(d, "J");
    ASSERT_NE(p, nullptr);
    EXPECT_THAT(NodesOf(*p), ElementsAre(c.want_node));
  } else {
    EXPECT_EQ(FindPlacement(d, "J"), nullptr);
    const Wait* w = FindWait(d, "J");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->kind, WaitKind::kRetryLater);
    EXPECT_EQ(w->reason, c.want_reason);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Backfill, BackfillTest,
    ::testing::Values(
        // n1 is full (8); J (2 GPUs, 30 m) fits only on n0 and ends before
        // the shadow time (+1 h) → rule (a).
        BackfillCase{"ShortJobEndsBeforeShadow", absl::Hours(2), 8, 100 * kKw,
                     true, 2, absl::Minutes(30), 0, ""},
        // Same but 90 m > 1 h: it would still hold n0 at the shadow time.
        BackfillCase{"LongJobOnReservedNodeDenied", absl::Hours(2), 8,
                     100 * kKw, true, 2, absl::Minutes(90), -1,
                     "waiting: would delay job B (expected to start in 1h)"},
        // n1 has 4 free. Best fit is n0 (2 free) but n0 is B's; J moves to n1.
        BackfillCase{"LongJobMovedOffReservedNode", absl::Hours(2), 4,
                     100 * kKw, true, 2, absl::ZeroDuration(), 1, ""},
        // cap 12 kW. Now: 2 + 4.2 + 2.8 = 9.0 kW; J 4×700 W → 11.8 kW ≤ 12
        // kW fits now. At the shadow time R1 is gone: 9.0 - 4.2 = 4.8 kW,
        // + B 5.6 kW = 10.4 kW, + J 2.8 kW = 13.2 kW > 12 kW → denied.
        BackfillCase{"LongJobWouldTakeReservedPower", absl::Hours(2), 4,
                     12 * kKw, true, 4, absl::ZeroDuration(), -1,
                     "waiting: would delay job B (expected to start in 1h)"},
        // cap 14 kW: 4.8 + 5.6 + 2.8 = 13.2 kW ≤ 14 kW → allowed on n1.
        BackfillCase{"LongJobFitsBesideReservedPower", absl::Hours(2), 4,
                     14 * kKw, true, 4, absl::ZeroDuration(), 1, ""},
        // R1 has no max_runtime → B has no shadow time; a same-model job is
        // never provably harmless.
        BackfillCase{"NoShadowTimeBlocksSameModel", absl::ZeroDuration(), 4,
                     100 * kKw, true, 2, absl::Minutes(30), -1,
                     "waiting: would delay job B (its start time is "
                     "unknown)"},
        BackfillCase{"BackfillOff", absl::Hours(2), 4, 100 * kKw, false, 2,
                     absl::Minutes(30), -1,
                     "waiting behind job B (backfill is off)"}),
    [](const auto& info) { return info.param.name; });

TEST(BackfillTest, HeadJobReasonNamesItsExpectedStart) {
  ClusterBuilder b;
  const int r1 = b.Domain("r1", "rack", -1);
  b.Run("R1", {b.Node("n0", r1)}, 6).max_runtime = absl::Hours(2);
  const std::vector<PendingJob> pending = {Pending("B", 8)};
  const Decisions d = Schedule(b.Build(), pending, PolicyConfig{});
  ASSERT_EQ(d.waits.size(), 1u);
  EXPECT_EQ(d.waits[0].kind, WaitKind::kRetryLater);
  EXPECT_EQ(d.waits[0].reason,
            "no ready node with 8 free H100; next to start, expected in 1h");
}

TEST(BackfillTest, HeadJobThatCanNeverFitHoldsNoReservation) {
  ClusterBuilder b;
  // rack cap 7.5 kW. B: 2 kW base + 8×700 W = 7.6 kW > 7.5 kW even with
  // every job gone, so it reserves nothing. Now: 2 kW + 10×200 W = 4.0 kW;
  // J (no runtime) 2×700 W → 5.4 kW ≤ 7.5 kW starts.
  const int r1 = b.Domain("r1", "rack", -1, 7500 * kW);
  b.Run("R1", {b.Node("n0", r1)}, 6, ServiceClass::kOnDemand, 200 * kW);
  b.Run("R2", {b.Node("n1", r1)}, 4, ServiceClass::kOnDemand, 200 * kW);
  const std::vector<PendingJob> pending = {
      Pending("B", 8, 1, ServiceClass::kOnDemand, 10, 1),
      Pending("J", 2, 1, ServiceClass::kOnDemand, 0, 2)};
  const Decisions d = Schedule(b.Build(), pending, PolicyConfig{});
  ASSERT_NE(FindPlacement(d, "J"), nullptr);
  const Wait* w = FindWait(d, "B");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->reason,
            "no ready node with 8 free H100; does not fit even when all "
            "running jobs end");
}

// ---------------------------------------------------------------------------
// Reserved preemption.
//
// n0 (8 GPUs) is full: s1 spot prio 0 (GPUs 0-1, started 10 m ago), s2 spot
// prio 5 (2-3, 20 m ago), s3 spot prio 0 (4-5, 5 m ago), o1 on-demand prio 0
// (6-7, 30 m ago). Order to preempt: s3, s1 (prio 0, most recent first), s2,
// then o1.
struct PreemptCase {
  std::string name;
  uint32_t gpus;
  std::vector<std::string> want_preempt;
  std::vector<uint32_t> want_gpus;
};

class PreemptTest : public ::testing::TestWithParam<PreemptCase> {};

TEST_P(PreemptTest, SpotBeforeOnDemandLowestPriorityMostRecentFirst) {
  const PreemptCase& c = GetParam();
  ClusterBuilder b;
  const int n0 = b.Node("n0", b.Domain("r1", "rack", -1));
  auto run = [&](std::string id, ServiceClass cls, int32_t prio,
                 absl::Duration ago) {
    RunningJob& r = b.Run(std::move(id), {n0}, 2, cls);
    r.priority = prio;
    r.start_time = TestNow() - ago;
  };
  run("s1", ServiceClass::kSpot, 0, absl::Minutes(10));
  run("s2", ServiceClass::kSpot, 5, absl::Minutes(20));
  run("s3", ServiceClass::kSpot, 0, absl::Minutes(5));
  run("o1", ServiceClass::kOnDemand, 0, absl::Minutes(30));
  b.Tenant("rt").contracted_gpus["H100"] = 8;
  PendingJob r = Pending("R", c.gpus, 1, ServiceClass::kReserved);
  r.tenant = "rt";
  const std::vector<PendingJob> pending = {r};
  const Decisions d = Schedule(b.Build(), pending, PolicyConfig{});
  ASSERT_EQ(d.placements.size(), 1u);
  const Placement& p = d.placements[0];
  EXPECT_EQ(p.effective_class, ServiceClass::kReserved);
  EXPECT_THAT(p.preempt, ElementsAreArray(c.want_preempt));
  ASSERT_EQ(p.shares.size(), 1u);
  EXPECT_THAT(p.shares[0].gpus, ElementsAreArray(c.want_gpus));
}

INSTANTIATE_TEST_SUITE_P(
    Preempt, PreemptTest,
    ::testing::Values(PreemptCase{"TwoGpus", 2, {"s3"}, {4, 5}},
                      PreemptCase{"FourGpus", 4, {"s3", "s1"}, {0, 1, 4, 5}},
                      PreemptCase{
                          "SixGpus", 6, {"s3", "s1", "s2"}, {0, 1, 2, 3, 4, 5}},
                      PreemptCase{"EightGpus",
                                  8,
                                  {"s3", "s1", "s2", "o1"},
                                  {0, 1, 2, 3, 4, 5, 6, 7}}),
    [](const auto& info) { return info.param.name; });

TEST(PreemptTest, PreemptsForPowerOnlyAsMuchAsNeeded) {
  ClusterBuilder b;
  // rack cap 11 kW: 2 kW base + sp 4×700 W + od 4×700 W = 7.6 kW; R wants
  // 8×700 W = 5.6 kW on n1 → 13.2 kW > 11 kW. Without sp: 10.4 kW ≤ 11 kW.
  const int r1 = b.Domain("r1", "rack", -1, 11 * kKw);
  const int n0 = b.Node("n0", r1);
  const int n1 = b.Node("n1", r1);
  b.Run("sp", {n0}, 4, ServiceClass::kSpot);
  b.Run("od", {n0}, 4, ServiceClass::kOnDemand).start_time = TestNow();
  b.Tenant("rt").contracted_gpus["H100"] = 8;
  PendingJob r = Pending("R", 8, 1, ServiceClass::kReserved);
  r.tenant = "rt";
  const std::vector<PendingJob> pending = {r};
  const Decisions d = Schedule(b.Build(), pending, PolicyConfig{});
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_THAT(NodesOf(d.placements[0]), ElementsAre(n1));
  EXPECT_THAT(d.placements[0].preempt, ElementsAre("sp"));
}

TEST(PreemptTest, PreemptsNothingWhenNotEnoughCanBeFreed) {
  ClusterBuilder b;
  const int n0 = b.Node("n0", b.Domain("r1", "rack", -1));
  b.Run("res", {n0}, 2, ServiceClass::kReserved);  // never preempted
  b.Run("sp", {n0}, 6, ServiceClass::kSpot);
  b.Tenant("rt").contracted_gpus["H100"] = 8;
  PendingJob r = Pending("R", 8, 1, ServiceClass::kReserved);
  r.tenant = "rt";
  const std::vector<PendingJob> pending = {r};
  const Decisions d = Schedule(b.Build(), pending, PolicyConfig{});
  EXPECT_THAT(d.placements, IsEmpty());
  ASSERT_EQ(d.waits.size(), 1u);
  EXPECT_EQ(d.waits[0].kind, WaitKind::kRetryLater);
}

TEST(PreemptTest, ReservedBeyondContractDoesNotPreempt) {
  ClusterBuilder b;
  const int n0 = b.Node("n0", b.Domain("r1", "rack", -1));
  b.Run("sp", {n0}, 8, ServiceClass::kSpot);
  // Contract 8, 4 already running reserved elsewhere: 4 + 8 > 8.
  const int n1 = b.Node("n1", 0);
  b.Run("mine", {n1}, 4, ServiceClass::kReserved).tenant = "rt";
  b.Run("other", {n1}, 4, ServiceClass::kOnDemand);
  b.Tenant("rt").contracted_gpus["H100"] = 8;
  PendingJob r = Pending("R", 8, 1, ServiceClass::kReserved);
  r.tenant = "rt";
  const std::vector<PendingJob> pending = {r};
  const Decisions d = Schedule(b.Build(), pending, PolicyConfig{});
  EXPECT_THAT(d.placements, IsEmpty());
  ASSERT_EQ(d.waits.size(), 1u);

  // Within the contract (4 + 4 ≤ 8) the same tenant preempts the spot job.
  PendingJob small = r;
  small.gpus_per_node = 4;
  const std::vector<PendingJob> pending2 = {small};
  const Decisions d2 = Schedule(b.Build(), pending2, PolicyConfig{});
  ASSERT_EQ(d2.placements.size(), 1u);
  EXPECT_EQ(d2.placements[0].effective_class, ServiceClass::kReserved);
  EXPECT_THAT(d2.placements[0].preempt, ElementsAre("sp"));
}

TEST(PreemptTest, DisabledByConfig) {
  ClusterBuilder b;
  b.Run("sp", {b.Node("n0", b.Domain("r1", "rack", -1))}, 8,
        ServiceClass::kSpot);
  b.Tenant("rt").contracted_gpus["H100"] = 8;
  PendingJob r = Pending("R", 8, 1, ServiceClass::kReserved);
  r.tenant = "rt";
  const std::vector<PendingJob> pending = {r};
  PolicyConfig config;
  config.allow_preemption = false;
  EXPECT_THAT(Schedule(b.Build(), pending, config).placements, IsEmpty());
}

// ---------------------------------------------------------------------------
// Infeasible and retry reasons.
struct ReasonCase {
  std::string name;
  std::string model;
  uint32_t gpus;
  uint32_t nodes;
  WaitKind want_kind;
  std::string want_reason;
};

class ReasonTest : public ::testing::TestWithParam<ReasonCase> {};

TEST_P(ReasonTest, ExplainsWhy) {
  const ReasonCase& c = GetParam();
  ClusterBuilder b;
  const int r1 = b.Domain("r1", "rack", -1);
  b.Node("n0", r1);
  b.Node("down", r1, "A100", 8, 1 * kKw, /*schedulable=*/false);
  PendingJob j = Pending("j", c.gpus, c.nodes);
  j.gpu_model = c.model;
  const std::vector<PendingJob> pending = {j};
  const Decisions d = Schedule(b.Build(), pending, PolicyConfig{});
  EXPECT_THAT(d.placements, IsEmpty());
  ASSERT_EQ(d.waits.size(), 1u);
  EXPECT_EQ(d.waits[0].kind, c.want_kind);
  EXPECT_THAT(d.waits[0].reason, StartsWith(c.want_reason));
}

INSTANTIATE_TEST_SUITE_P(
    Reasons, ReasonTest,
    ::testing::Values(
        ReasonCase{"UnknownModel", "B200", 1, 1, WaitKind::kInfeasible,
                   "unknown GPU model \"B200\""},
        ReasonCase{"TooManyGpusPerNode", "H100", 16, 1, WaitKind::kInfeasible,
                   "no node has 16 H100 (largest has 8)"},
        ReasonCase{"TooManyGpusAnyModel", "", 16, 1, WaitKind::kInfeasible,
                   "no node has 16 GPUs of any model (largest has 8)"},
        ReasonCase{"GangLargerThanCluster", "H100", 8, 5, WaitKind::kInfeasible,
                   "gang needs 5 nodes with 8 H100; the cluster has 1"},
        ReasonCase{"NoGpus", "H100", 0, 1, WaitKind::kInfeasible,
                   "requests no GPUs"},
        // The only A100 node is not schedulable: it may come back.
        ReasonCase{"NodeNotReady", "A100", 8, 1, WaitKind::kRetryLater,
                   "no ready node with 8 free A100"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace joule::scheduler
