#include "scheduler/efficiency_knee.h"

#include <vector>

#include "gtest/gtest.h"
#include "scheduler/policy.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using ::joule::scheduler::testing::ClusterBuilder;
using ::joule::scheduler::testing::kKw;
using ::joule::scheduler::testing::kW;
using ::joule::scheduler::testing::Pending;

// A workload whose utilisation saturates: at share s (permille of the range
// over idle) an H100 draws 70 + s × 630 / 1000 W and the job's utilisation
// is min(100, 40 + s / 10) %. Draw / utilisation, per bucket (share →
// draw W / util %):
//   300 → 259 / 70 = 3.70;  500 → 385 / 90 = 4.28;  600 → 448 / 100 = 4.48;
//   1000 → 700 / 100 = 7.0.
// The least energy per work is at 300 ‰.
void Feed(KneeEstimator& k, int64_t share, int n,
          const KneeEstimatorConfig& cfg) {
  const int64_t draw = (70 + share * 630 / 1000) * kW;
  const uint32_t util =
      static_cast<uint32_t>(std::min<int64_t>(100, 40 + share / 10));
  for (int i = 0; i < n; ++i) k.Add(share, draw, util, cfg);
}

// What daemon/knee_book.h persists: an estimator restored from another's
// bucket sums answers as that one; sums Add cannot make are refused.
TEST(KneeEstimatorTest, RestoredFromSumsAnswersAsTheOriginal) {
  const KneeEstimatorConfig cfg;
  KneeEstimator a;
  for (int i = 0; i < 12; ++i) {
    a.Add(300, 259'000, 90, cfg);   // 2.9 W per % at 300 permille
    a.Add(1000, 700'000, 95, cfg);  // 7.4 W per % at 1000 permille
  }
  ASSERT_EQ(a.KneePermille(cfg), 300);
  KneeEstimator b;
  for (int k = 0; k < KneeEstimator::kBuckets; ++k) {
    ASSERT_TRUE(b.Restore(k, a.sums(k))) << k;
  }
  EXPECT_EQ(b.KneePermille(cfg), 300);
  EXPECT_EQ(b.total_count(), 24);
  EXPECT_FALSE(b.Restore(KneeEstimator::kBuckets, {}));
  EXPECT_FALSE(b.Restore(0, {.count = -1}));
  EXPECT_FALSE(b.Restore(0, {.count = 1, .share_sum = 2000}));  // > 1000
  EXPECT_FALSE(b.Restore(0, {.count = 1, .util_sum = 300}));    // > 100 %
  EXPECT_EQ(b.KneePermille(cfg), 300);                          // unchanged
}

TEST(KneeEstimatorTest, FallsBackUntilEnoughBucketsHaveEnoughSamples) {
  const KneeEstimatorConfig cfg;  // 10 samples per bucket, 2 buckets
  KneeEstimator k;
  EXPECT_EQ(k.KneePermille(cfg), std::nullopt);
  EXPECT_EQ(LearnedKneePermille(&k, cfg, 500), 500);
  EXPECT_EQ(LearnedKneePermille(nullptr, cfg, 500), 500);
  Feed(k, 1000, 50, cfg);  // one bucket only: not enough
  EXPECT_EQ(LearnedKneePermille(&k, cfg, 500), 500);
  Feed(k, 300, 9, cfg);  // 9 < 10 samples
  EXPECT_EQ(LearnedKneePermille(&k, cfg, 500), 500);
  Feed(k, 300, 1, cfg);  // now two buckets of >= 10
  EXPECT_EQ(LearnedKneePermille(&k, cfg, 500), 300);
}

TEST(KneeEstimatorTest, PicksTheLeastEnergyPerWork) {
  const KneeEstimatorConfig cfg;
  KneeEstimator k;
  for (int64_t s : {1000, 600, 500, 300}) Feed(k, s, 20, cfg);
  EXPECT_EQ(k.KneePermille(cfg), 300);
  // A workload that is memory-bound (utilisation flat at 60 % whatever the
  // limit) is most efficient at the lowest limit sampled...
  KneeEstimator flat;
  for (int64_t s : {1000, 600, 200}) {
    for (int i = 0; i < 20; ++i) {
      flat.Add(s, (70 + s * 630 / 1000) * kW, 60, cfg);
    }
  }
  EXPECT_EQ(flat.KneePermille(cfg), 200);
  // ...and one whose utilisation falls in step with the draw is a tie
  // everywhere: the fastest (highest share) wins. 400 W / 40 %, 700 W / 70 %.
  KneeEstimator linear;
  for (int i = 0; i < 20; ++i) {
    linear.Add(500, 400 * kW, 40, cfg);
    linear.Add(1000, 700 * kW, 70, cfg);
  }
  EXPECT_EQ(linear.KneePermille(cfg), 1000);
}

TEST(KneeEstimatorTest, IdleSamplesAreIgnoredAndSharesClamped) {
  const KneeEstimatorConfig cfg;
  KneeEstimator k;
  k.Add(500, 400 * kW, 0, cfg);  // no utilisation
  k.Add(500, 0, 50, cfg);        // no draw
  EXPECT_EQ(k.count(5), 0);
  k.Add(1500, 700 * kW, 90, cfg);  // share clamped to 1000: top bucket
  k.Add(-10, 100 * kW, 10, cfg);   // clamped to 0: bottom bucket
  EXPECT_EQ(k.count(9), 1);
  EXPECT_EQ(k.count(0), 1);
  // SharePermille: (385 − 70) × 1000 / (700 − 70) = 500.
  EXPECT_EQ(KneeEstimator::SharePermille(385 * kW, 70 * kW, 700 * kW), 500);
  EXPECT_EQ(KneeEstimator::SharePermille(50 * kW, 70 * kW, 700 * kW), 0);
  EXPECT_EQ(KneeEstimator::SharePermille(700 * kW, 700 * kW, 700 * kW), 1000);
}

// Bounded: a bucket never counts more than max_samples_per_bucket, and old
// telemetry fades. 1,000 samples at 30 % utilisation, then 1,000 at 90 %
// in the same bucket: the bucket's mean utilisation ends near 90 %, so the
// knee moves there.
TEST(KneeEstimatorTest, BoundedAndForgets) {
  KneeEstimatorConfig cfg;
  cfg.max_samples_per_bucket = 100;
  KneeEstimator k;
  for (int i = 0; i < 1000; ++i) {
    k.Add(300, 259 * kW, 30, cfg);    // 8.6 W per %: worse than the top
    k.Add(1000, 700 * kW, 100, cfg);  // 7.0
  }
  EXPECT_LE(k.count(3), 100);
  EXPECT_EQ(k.KneePermille(cfg), 1000);
  for (int i = 0; i < 1000; ++i) k.Add(300, 259 * kW, 90, cfg);  // 2.9
  EXPECT_LE(k.count(3), 100);
  EXPECT_EQ(k.KneePermille(cfg), 300);
}

// The policy runs an efficiency job at its own learned knee when it has
// one: H100 increments over idle are 0..630 W here (test models are raw, so
// TDP 700 W, min 200 W): knee 300 ‰ of 700 W = 210 W; the config's 500 ‰
// gives 350 W.
TEST(KneeEstimatorTest, PolicyUsesThePendingJobsKnee) {
  ClusterBuilder b;
  b.Node("n0", b.Domain("r1", "rack", -1));
  PolicyConfig cfg;
  cfg.efficiency_knee_permille = 500;
  PendingJob own = Pending("own", 1);
  own.efficiency = true;
  own.efficiency_knee_permille = 300;
  PendingJob def = Pending("def", 1, 1, ServiceClass::kOnDemand, 0, 1);
  def.efficiency = true;
  const Decisions d =
      Schedule(b.Build(), std::vector<PendingJob>{own, def}, cfg);
  ASSERT_EQ(d.placements.size(), 2u);
  for (const Placement& p : d.placements) {
    EXPECT_EQ(p.power_limit_mw, p.job_id == "own" ? 210 * kW : 350 * kW)
        << p.job_id;
  }
}

}  // namespace
}  // namespace joule::scheduler
