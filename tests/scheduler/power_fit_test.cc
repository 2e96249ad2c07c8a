// Tests of power-aware placement (scheduler/power_fit.h, PolicyConfig::
// power_fit): the score, and which node Schedule picks with each rule.

#include "scheduler/power_fit.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "scheduler/policy.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using ::joule::scheduler::testing::ClusterBuilder;
using ::joule::scheduler::testing::kKw;
using ::joule::scheduler::testing::kNoCap;
using ::joule::scheduler::testing::kW;
using ::joule::scheduler::testing::Pending;

TEST(PowerFitTest, NamesRoundTrip) {
  for (PowerFit f :
       {PowerFit::kLeaf, PowerFit::kEveryLevel, PowerFit::kBalanced}) {
    EXPECT_EQ(ParsePowerFit(PowerFitName(f)), f);
  }
  EXPECT_FALSE(ParsePowerFit("best").has_value());
}

struct ScoreCase {
  std::string name;
  PowerFit fit;
  std::vector<DomainFill> path;  // leaf first
  int64_t need_mw;
  int64_t gpus;
  int64_t want;
};

class PowerFitScoreTest : public ::testing::TestWithParam<ScoreCase> {};

TEST_P(PowerFitScoreTest, Score) {
  const ScoreCase& c = GetParam();
  EXPECT_EQ(PowerFitScore(c.fit, c.path, c.need_mw, c.gpus), c.want);
}

// A rack of 10 kW with 4 kW free and 8 of 16 GPUs free, under a row of
// 100 kW with 30 kW free and 40 of 160 GPUs free; the job needs 2.8 kW on 4
// GPUs.
const std::vector<DomainFill> kPath = {{10'000 * kW, 4'000 * kW, 8, 16},
                                       {100'000 * kW, 30'000 * kW, 40, 160}};

INSTANTIATE_TEST_SUITE_P(
    Rules, PowerFitScoreTest,
    ::testing::Values(
        // The rack's headroom left: 4 - 2.8 = 1.2 kW.
        ScoreCase{"Leaf", PowerFit::kLeaf, kPath, 2'800 * kW, 4, 1'200 * kW},
        // 1.2 / 10 = 120,000 ppm + 27.2 / 100 = 272,000 ppm.
        ScoreCase{"EveryLevel", PowerFit::kEveryLevel, kPath, 2'800 * kW, 4,
                  392'000},
        // Rack: 4/16 GPUs left - 0.12 power left = 250,000 - 120,000 =
        // 130,000; row: 36/160 - 0.272 = 225,000 - 272,000 = -47,000; the
        // worse (larger) is the rack's.
        ScoreCase{"Balanced", PowerFit::kBalanced, kPath, 2'800 * kW, 4,
                  130'000},
        // A domain without a cap is skipped: only the row counts.
        ScoreCase{"UncappedSkipped",
                  PowerFit::kEveryLevel,
                  {{0, 0, 8, 16}, {100'000 * kW, 30'000 * kW, 40, 160}},
                  2'800 * kW,
                  4,
                  272'000}),
    [](const auto& info) { return info.param.name; });

// Two racks, each with one free 8-GPU node, in different rows. Rack ra
// (cap 10 kW, 1 kW base: 9 kW free) sits in row A (cap 7 kW: 6 kW free);
// rack rb (cap 8 kW: 7 kW free) in row B (cap 100 kW: 99 kW free). An
// 8-GPU job needs 8 × 700 W = 5.6 kW.
//   kLeaf: rack headroom left ra 3.4 kW, rb 1.4 kW -> rb.
//   kEveryLevel: ra 3.4/10 + 0.4/7 = 340,000 + 57,142 ppm; rb 1.4/8 +
//     93.4/100 = 175,000 + 934,000 ppm (the site's term is the same) -> ra.
struct Layout {
  ClusterSnapshot snap;
  int na = -1, nb = -1;
};
Layout TwoRows(int64_t row_a_cap_mw) {
  ClusterBuilder b;
  const int site = b.Domain("site", "site", -1, kNoCap);
  const int row_a = b.Domain("rowA", "row", site, row_a_cap_mw);
  const int row_b = b.Domain("rowB", "row", site, 100 * kKw);
  const int ra = b.Domain("ra", "rack", row_a, 10 * kKw);
  const int rb = b.Domain("rb", "rack", row_b, 8 * kKw);
  Layout l;
  l.na = b.Node("na", ra);
  l.nb = b.Node("nb", rb);
  l.snap = b.Build();
  return l;
}

int PlacedNode(const ClusterSnapshot& snap, PowerFit fit, uint32_t gpus) {
  PolicyConfig cfg;
  cfg.power_fit = fit;
  const std::vector<PendingJob> pending = {Pending("j", gpus)};
  const Decisions d = Schedule(snap, pending, cfg);
  if (d.placements.size() != 1) return -1;
  EXPECT_EQ(d.placements[0].power_limit_mw, 700 * kW);
  return d.placements[0].shares[0].node;
}

TEST(PowerFitPlacementTest, EveryLevelFillsTheTightestRowNotOnlyTheRack) {
  const Layout l = TwoRows(7 * kKw);
  EXPECT_EQ(PlacedNode(l.snap, PowerFit::kLeaf, 8), l.nb);
  EXPECT_EQ(PlacedNode(l.snap, PowerFit::kEveryLevel, 8), l.na);
}

TEST(PowerFitPlacementTest, EveryLevelIsCheckedBeforeScoring) {
  // Row A at 6 kW has 5 kW free < 5.6 kW: ra does not fit, so rb.
  const Layout l = TwoRows(6 * kKw);
  EXPECT_EQ(PlacedNode(l.snap, PowerFit::kEveryLevel, 8), l.nb);
  EXPECT_EQ(PlacedNode(l.snap, PowerFit::kBalanced, 8), l.nb);
}

TEST(PowerFitPlacementTest, GpuBestFitComesFirst) {
  // n1 has 2 free GPUs in a tight rack: cap 3 kW - (1 kW base + 6 × 100 W
  // of the running job) = 1.4 kW free; n2 has 8 free in a loose one. A
  // 2-GPU job (2 × 700 W = 1.4 kW, just fits) takes n1 under every rule:
  // fewest free GPUs left comes first.
  ClusterBuilder b;
  const int site = b.Domain("site", "site", -1, kNoCap);
  const int r1 = b.Domain("r1", "rack", site, 3 * kKw);
  const int r2 = b.Domain("r2", "rack", site, 100 * kKw);
  const int n1 = b.Node("n1", r1);
  b.Node("n2", r2);
  b.Run("busy", {n1}, 6, ServiceClass::kOnDemand, 100 * kW);
  const ClusterSnapshot snap = b.Build();
  for (PowerFit f :
       {PowerFit::kLeaf, PowerFit::kEveryLevel, PowerFit::kBalanced}) {
    EXPECT_EQ(PlacedNode(snap, f, 2), n1) << PowerFitName(f);
  }
}

TEST(PowerFitPlacementTest, BalancedPrefersThePowerRichRack) {
  // One row (no cap). Rack ra (20 kW) has na1 free and na2 running an
  // 8-GPU job at 700 W: 2 + 5.6 = 7.6 kW committed, 12.4 kW free. Rack rb
  // (20 kW) has nb free: 19 kW free. An 8-GPU job (5.6 kW):
  //   kLeaf: headroom left ra 6.8 kW, rb 13.4 kW -> ra.
  //   kBalanced: ra 0/16 - 6.8/20 = -340,000; rb 0/8 - 13.4/20 =
  //     -670,000; the row's term (8/24 - ~1 = -666,667) is the same for
  //     both, so ra scores max(-340,000, -666,667) = -340,000 and rb
  //     -666,667 -> rb.
  ClusterBuilder b;
  const int site = b.Domain("site", "site", -1, kNoCap);
  const int row = b.Domain("row", "row", site, kNoCap);
  const int ra = b.Domain("ra", "rack", row, 20 * kKw);
  const int rb = b.Domain("rb", "rack", row, 20 * kKw);
  const int na1 = b.Node("na1", ra);
  const int na2 = b.Node("na2", ra);
  const int nb = b.Node("nb", rb);
  b.Run("busy", {na2}, 8);
  const ClusterSnapshot snap = b.Build();
  EXPECT_EQ(PlacedNode(snap, PowerFit::kLeaf, 8), na1);
  EXPECT_EQ(PlacedNode(snap, PowerFit::kBalanced, 8), nb);
}

}  // namespace
}  // namespace joule::scheduler
