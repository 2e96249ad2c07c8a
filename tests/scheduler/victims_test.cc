// Victim selection (victims.h, policy.h rule 5): fewest victims first, then
// fewest nodes, then lowest class, lowest priority, most recently started.

#include "scheduler/victims.h"

#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/policy.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using testing::ClusterBuilder;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using testing::kKw;
using testing::kW;
using testing::Pending;
using testing::TestNow;
using ::testing::UnorderedElementsAreArray;

// ---------------------------------------------------------------------------
// MinimalVictims on its own.

struct Cand {
  std::string id;
  ServiceClass cls;
  int32_t priority;
  int minutes_ago;  // started
  int64_t gpus;
  std::vector<int64_t> power_mw;
};

struct MinimalCase {
  std::string name;
  int64_t need_gpus;
  std::vector<int64_t> need_power_mw;
  std::vector<Cand> cands;
  std::vector<std::string> want;  // preemptability order; {"-"} = none fits
};

void PrintTo(const MinimalCase& c, std::ostream* os) { *os << c.name; }

class MinimalVictimsTest : public ::testing::TestWithParam<MinimalCase> {};

TEST_P(MinimalVictimsTest, FewestThenMostPreemptable) {
  const MinimalCase& c = GetParam();
  std::vector<VictimKey> keys;
  for (const Cand& x : c.cands) {
    keys.push_back(VictimKey{x.cls, x.priority,
                             TestNow() - absl::Minutes(x.minutes_ago), x.id});
  }
  std::vector<VictimCandidate> cands;
  for (size_t i = 0; i < c.cands.size(); ++i) {
    cands.push_back(
        VictimCandidate{&keys[i], c.cands[i].gpus, c.cands[i].power_mw});
  }
  const auto got =
      MinimalVictims(VictimNeed{c.need_gpus, c.need_power_mw}, cands);
  if (c.want == std::vector<std::string>{"-"}) {
    EXPECT_FALSE(got.has_value());
    return;
  }
  ASSERT_TRUE(got.has_value());
  std::vector<std::string> ids;
  for (size_t i : *got) ids.push_back(c.cands[i].id);
  EXPECT_THAT(ids, ElementsAreArray(c.want));
}

constexpr ServiceClass kSpot = ServiceClass::kSpot;
constexpr ServiceClass kOd = ServiceClass::kOnDemand;

INSTANTIATE_TEST_SUITE_P(
    Victims, MinimalVictimsTest,
    ::testing::Values(
        // Nothing missing: no victim.
        MinimalCase{"NothingMissing", 0, {}, {{"a", kSpot, 0, 1, 4, {}}}, {}},
        // 4 missing; one 4-GPU job (1 victim) beats four more recent 1-GPU
        // jobs (4 victims).
        MinimalCase{"OneBigBeatsFourSmall",
                    4,
                    {},
                    {{"s1", kSpot, 0, 1, 1, {}},
                     {"s2", kSpot, 0, 2, 1, {}},
                     {"s3", kSpot, 0, 3, 1, {}},
                     {"s4", kSpot, 0, 4, 1, {}},
                     {"big", kSpot, 0, 60, 4, {}}},
                    {"big"}},
        // 3 missing; sets of 2 that reach 3: {2,2} {2,1}... the fewest is 2
        // (no single job has 3). Most preemptable pair that covers: spot
        // "a" (2) + spot "b" (1) = 3; on-demand "c" (2) is spared.
        MinimalCase{"FewestThenSpotBeforeOnDemand",
                    3,
                    {},
                    {{"c", kOd, 0, 1, 2, {}},
                     {"a", kSpot, 0, 10, 2, {}},
                     {"b", kSpot, 0, 20, 1, {}}},
                    {"a", "b"}},
        // 2 missing, three 2-GPU spot jobs: one victim; lowest priority
        // first ("p0"), then the most recent ("new" over "old").
        MinimalCase{"LowestPriority",
                    2,
                    {},
                    {{"p1", kSpot, 1, 1, 2, {}}, {"p0", kSpot, 0, 30, 2, {}}},
                    {"p0"}},
        MinimalCase{"MostRecent",
                    2,
                    {},
                    {{"old", kSpot, 0, 30, 2, {}}, {"new", kSpot, 0, 5, 2, {}}},
                    {"new"}},
        // The most preemptable job is too small to be part of a 1-victim
        // cover: 4 missing, "tiny" (1 GPU, spot) cannot help; "od" (4 GPUs,
        // on-demand) is the only single victim.
        MinimalCase{"PreemptableButTooSmallIsSpared",
                    4,
                    {},
                    {{"tiny", kSpot, 0, 1, 1, {}}, {"od", kOd, 0, 60, 4, {}}},
                    {"od"}},
        // Not enough to free: 4 missing, 1 + 2 = 3 available.
        MinimalCase{"CannotCover",
                    4,
                    {},
                    {{"a", kSpot, 0, 1, 1, {}}, {"b", kSpot, 0, 1, 2, {}}},
                    {"-"}},
        // GPUs free on the node, a rack short of 1.4 kW: one 2-GPU job
        // elsewhere in the rack (2 × 700 W = 1.4 kW) beats two more recent
        // 1-GPU jobs (700 W each).
        MinimalCase{"PowerOneBigBeatsTwoSmall",
                    0,
                    {1400 * kW},
                    {{"s1", kSpot, 0, 1, 0, {700 * kW}},
                     {"s2", kSpot, 0, 2, 0, {700 * kW}},
                     {"two", kSpot, 0, 60, 0, {1400 * kW}}},
                    {"two"}},
        // 2 GPUs missing and the rack short of 1.4 kW: the GPU victim on
        // the node ("local", 2 GPUs at 700 W = 1.4 kW below the rack)
        // covers both; nothing more is taken.
        MinimalCase{"GpuVictimAlsoFreesThePower",
                    2,
                    {1400 * kW},
                    {{"local", kSpot, 0, 60, 2, {1400 * kW}},
                     {"far", kSpot, 0, 1, 0, {1400 * kW}}},
                    {"local"}},
        // 2 GPUs missing (local 2-GPU job at 400 W/GPU = 800 W) and the row
        // short of 1.4 kW: after "local" 600 W are still missing; "far"
        // (700 W) covers it.
        MinimalCase{"GpusThenPower",
                    2,
                    {1400 * kW},
                    {{"local", kSpot, 0, 60, 2, {800 * kW}},
                     {"far", kSpot, 0, 1, 0, {700 * kW}}},
                    {"far", "local"}}),
    [](const auto& info) { return info.param.name; });

TEST(VictimCostTest, FewestVictimsThenNodesThenPreemptable) {
  const VictimKey spot{kSpot, 0, TestNow(), "s"};
  const VictimKey od{kOd, 0, TestNow(), "o"};
  // 1 victim beats 2, whatever their class.
  EXPECT_TRUE(BetterVictims(CostOf({&od}, 1), CostOf({&spot, &spot}, 1)));
  // Equal count: 1 node beats 2.
  EXPECT_TRUE(BetterVictims(CostOf({&od}, 1), CostOf({&spot}, 2)));
  // Equal count and nodes: the set whose most valuable victim is less
  // valuable wins ({spot, spot} over {spot, on-demand}).
  EXPECT_TRUE(
      BetterVictims(CostOf({&spot, &spot}, 1), CostOf({&od, &spot}, 1)));
  EXPECT_FALSE(BetterVictims(CostOf({&spot}, 1), CostOf({&spot}, 1)));
}

// ---------------------------------------------------------------------------
// Schedule: which node and which victims.

struct Running {
  std::string id;
  std::vector<std::string> nodes;
  uint32_t gpus;  // per node
  ServiceClass cls;
  int32_t priority;
  int minutes_ago;
};

struct ScheduleCase {
  std::string name;
  std::vector<std::string> nodes;  // 8 × H100 each, one rack
  int64_t rack_cap_mw;             // 0 = none
  std::vector<Running> running;
  uint32_t claimant_gpus;
  uint32_t claimant_nodes;
  std::vector<std::string> want_nodes;
  std::vector<std::string> want_preempt;  // any order
};

void PrintTo(const ScheduleCase& c, std::ostream* os) { *os << c.name; }

class VictimScheduleTest : public ::testing::TestWithParam<ScheduleCase> {};

TEST_P(VictimScheduleTest, ChoosesTheFewestVictimsOnTheFewestNodes) {
  const ScheduleCase& c = GetParam();
  ClusterBuilder b;
  const int rack = c.rack_cap_mw > 0 ? b.Domain("r1", "rack", -1, c.rack_cap_mw)
                                     : b.Domain("r1", "rack", -1);
  std::map<std::string, int> index;
  for (const std::string& n : c.nodes) index[n] = b.Node(n, rack);
  for (const Running& r : c.running) {
    std::vector<int> ns;
    for (const std::string& n : r.nodes) ns.push_back(index.at(n));
    RunningJob& j = b.Run(r.id, ns, r.gpus, r.cls);
    j.priority = r.priority;
    j.start_time = TestNow() - absl::Minutes(r.minutes_ago);
  }
  b.Tenant("rt").contracted_gpus["H100"] = 64;
  PendingJob p =
      Pending("R", c.claimant_gpus, c.claimant_nodes, ServiceClass::kReserved);
  p.tenant = "rt";
  const ClusterSnapshot snap = b.Build();
  const Decisions d = Schedule(snap, {p}, PolicyConfig{});
  ASSERT_EQ(d.placements.size(), 1u);
  std::vector<std::string> nodes;
  for (const JobShare& s : d.placements[0].shares) {
    nodes.push_back(snap.nodes[s.node].name);
  }
  EXPECT_THAT(nodes, ElementsAreArray(c.want_nodes));
  EXPECT_THAT(d.placements[0].preempt,
              UnorderedElementsAreArray(c.want_preempt));
}

INSTANTIATE_TEST_SUITE_P(
    Victims, VictimScheduleTest,
    ::testing::Values(
        // A holds a (4-GPU spot) and a_od (4 GPUs, on-demand); B holds
        // four 1-GPU spot jobs, all started later than a, and b_od (4 GPUs,
        // on-demand). A 4-GPU claimant needs 4 GPUs: on A that is 1 victim
        // (a), on B 4 victims (s1..s4, the most preemptable by recency).
        // Fewest wins: a on A.
        ScheduleCase{"OneJobOnABeatsFourOnB",
                     {"A", "B"},
                     0,
                     {{"a", {"A"}, 4, kSpot, 0, 60},
                      {"a_od", {"A"}, 4, kOd, 0, 60},
                      {"s1", {"B"}, 1, kSpot, 0, 1},
                      {"s2", {"B"}, 1, kSpot, 0, 2},
                      {"s3", {"B"}, 1, kSpot, 0, 3},
                      {"s4", {"B"}, 1, kSpot, 0, 4},
                      {"b_od", {"B"}, 4, kOd, 0, 60}},
                     4,
                     1,
                     {"A"},
                     {"a"}},
        // Each of A, B, C holds one 4-GPU victim and 4 GPUs of a reserved
        // job; 1 victim anywhere. The gang job g holds 4 GPUs on both B and
        // C (preempting it touches 2 nodes); a on A touches 1: a wins
        // although g is more preemptable (started later).
        ScheduleCase{"FewestNodes",
                     {"A", "B", "C"},
                     0,
                     {{"a", {"A"}, 4, kSpot, 0, 60},
                      {"g", {"B", "C"}, 4, kSpot, 0, 1},
                      {"ra", {"A"}, 4, ServiceClass::kReserved, 0, 60},
                      {"rb", {"B"}, 4, ServiceClass::kReserved, 0, 60},
                      {"rc", {"C"}, 4, ServiceClass::kReserved, 0, 60}},
                     4,
                     1,
                     {"A"},
                     {"a"}},
        // One 4-GPU victim per node: spot beats on-demand, then lower
        // priority, then the most recent.
        ScheduleCase{"SpotBeforeOnDemand",
                     {"A", "B"},
                     0,
                     {{"od", {"A"}, 4, kOd, 0, 1},
                      {"ra", {"A"}, 4, ServiceClass::kReserved, 0, 60},
                      {"sp", {"B"}, 4, kSpot, 0, 60},
                      {"rb", {"B"}, 4, ServiceClass::kReserved, 0, 60}},
                     4,
                     1,
                     {"B"},
                     {"sp"}},
        ScheduleCase{"LowerPriorityFirst",
                     {"A", "B"},
                     0,
                     {{"p1", {"A"}, 4, kSpot, 1, 1},
                      {"ra", {"A"}, 4, ServiceClass::kReserved, 0, 60},
                      {"p0", {"B"}, 4, kSpot, 0, 60},
                      {"rb", {"B"}, 4, ServiceClass::kReserved, 0, 60}},
                     4,
                     1,
                     {"B"},
                     {"p0"}},
        ScheduleCase{"MostRecentFirst",
                     {"A", "B"},
                     0,
                     {{"old", {"A"}, 4, kSpot, 0, 60},
                      {"ra", {"A"}, 4, ServiceClass::kReserved, 0, 60},
                      {"new", {"B"}, 4, kSpot, 0, 5},
                      {"rb", {"B"}, 4, ServiceClass::kReserved, 0, 60}},
                     4,
                     1,
                     {"B"},
                     {"new"}},
        // GPUs and power: committed = base 2 × 1 kW + x (2 GPUs × 700 W on
        // A) + y1, y2 (1 GPU × 700 W each on B) = 4.8 kW; an 8-GPU claimant
        // needs 5.6 kW: 10.4 kW > cap 9 kW, 1.4 kW missing, and each node
        // misses 2 GPUs. On A, x frees both (4.8 − 1.4 + 5.6 = 9.0 ≤ 9):
        // 1 victim; on B y1 and y2 are needed: 2 victims.
        ScheduleCase{"PowerAndGpusOnOneNode",
                     {"A", "B"},
                     9 * kKw,
                     {{"x", {"A"}, 2, kSpot, 0, 60},
                      {"y1", {"B"}, 1, kSpot, 0, 1},
                      {"y2", {"B"}, 1, kSpot, 0, 2}},
                     8,
                     1,
                     {"A"},
                     {"x"}},
        // Power only: A is empty but the rack is short. Cap 9 kW: base 2 kW
        // + s1 700 W + s2 700 W + two 1.4 kW = 4.8 kW on B; A needs 5.6 kW:
        // 10.4 − 9 = 1.4 kW missing. "two" (1.4 kW) alone covers it; s1 and
        // s2 (more recent) would need both.
        ScheduleCase{"PowerOneVictimBeatsTwo",
                     {"A", "B"},
                     9 * kKw,
                     {{"s1", {"B"}, 1, kSpot, 0, 1},
                      {"s2", {"B"}, 1, kSpot, 0, 2},
                      {"two", {"B"}, 2, kSpot, 0, 60}},
                     8,
                     1,
                     {"A"},
                     {"two"}},
        // Gang of 2 × 4 GPUs: A and B each hold one 4-GPU spot job (plus a
        // reserved 4-GPU job); C and D each hold four more recent 1-GPU
        // spot jobs (plus 4 reserved GPUs). Grouped by node, A and B come
        // first (1 victim each): 2 victims instead of 8.
        ScheduleCase{
            "GangTakesTheCheapestNodes",
            {"A", "B", "C", "D"},
            0,
            {{"a", {"A"}, 4, kSpot, 0, 60},
             {"b", {"B"}, 4, kSpot, 0, 60},
             {"c1", {"C"}, 1, kSpot, 0, 1},
             {"c2", {"C"}, 1, kSpot, 0, 1},
             {"c3", {"C"}, 1, kSpot, 0, 1},
             {"c4", {"C"}, 1, kSpot, 0, 1},
             {"d1", {"D"}, 1, kSpot, 0, 1},
             {"d2", {"D"}, 1, kSpot, 0, 1},
             {"d3", {"D"}, 1, kSpot, 0, 1},
             {"d4", {"D"}, 1, kSpot, 0, 1},
             {"ra", {"A", "B", "C", "D"}, 4, ServiceClass::kReserved, 0, 60}},
            4,
            2,
            {"A", "B"},
            {"a", "b"}}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace joule::scheduler
