#include "scheduler/fair_share.h"

#include <cmath>
#include <numbers>

#include "gtest/gtest.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using ::joule::scheduler::testing::TestNow;

constexpr absl::Duration kHour = absl::Hours(1);

// 24 GPUs held for one half-life: 24 · 3600/ln 2 · (1 − ½) = 62,324.4
// GPU-seconds; one more half-life: 62,324.4 · ½ + 62,324.4 = 93,486.6.
TEST(FairShareTest, ClosedFormWhileHeld) {
  DecayedUsage u = AdvanceUsage({}, TestNow(), 24, kHour);
  EXPECT_EQ(u.gpu_seconds, 0);
  EXPECT_EQ(u.at, TestNow());
  EXPECT_NEAR(UsageAt(u, TestNow() + kHour, 24, kHour), 62324.4, 0.1);
  EXPECT_NEAR(UsageAt(u, TestNow() + 2 * kHour, 24, kHour), 93486.6, 0.1);
  // Held for a long time it tends to g · h / ln 2 = 124,648.9.
  EXPECT_NEAR(UsageAt(u, TestNow() + 100 * kHour, 24, kHour),
              24 * 3600 / std::numbers::ln2, 0.1);
  // Nothing held: it only decays (halves per half-life).
  DecayedUsage v{1000, TestNow()};
  EXPECT_DOUBLE_EQ(UsageAt(v, TestNow() + kHour, 0, kHour), 500);
}

// Advancing in steps at every change gives what one step gives: the value
// does not depend on how often it is read or advanced.
TEST(FairShareTest, StepsCompose) {
  DecayedUsage one = AdvanceUsage({}, TestNow(), 8, kHour);
  DecayedUsage steps = one;
  for (int i = 1; i <= 60; ++i) {
    steps = AdvanceUsage(steps, TestNow() + absl::Minutes(i), 8, kHour);
  }
  one = AdvanceUsage(one, TestNow() + kHour, 8, kHour);
  EXPECT_NEAR(steps.gpu_seconds, one.gpu_seconds, 1e-6);
}

// An attempt that ended at E before the record's time is taken back over
// [E, at]: the same as having advanced at E with the GPUs released then.
TEST(FairShareTest, SpanTakenBackEqualsEndingThen) {
  const absl::Time start = TestNow();
  const absl::Time end = start + absl::Minutes(10);
  const absl::Time now = start + absl::Minutes(40);
  // Truth: 4 GPUs over [start, end], none after.
  DecayedUsage truth = AdvanceUsage({}, start, 4, kHour);
  truth = AdvanceUsage(truth, end, 4, kHour);
  truth = AdvanceUsage(truth, now, 0, kHour);
  // Late settlement: counted until now, then [end, now] taken back.
  DecayedUsage late = AdvanceUsage({}, start, 4, kHour);
  late = AdvanceUsage(late, now, 4, kHour);
  late = AddSpan(late, -4, end, now, kHour);
  EXPECT_NEAR(late.gpu_seconds, truth.gpu_seconds, 1e-6);
  EXPECT_EQ(late.at, now);
}

TEST(FairShareTest, EdgeCases) {
  DecayedUsage u{100, TestNow()};
  // Going back in time changes nothing; a zero half-life counts as 1 s.
  EXPECT_EQ(AdvanceUsage(u, TestNow() - kHour, 5, kHour).gpu_seconds, 100);
  EXPECT_NEAR(UsageAt(u, TestNow() + absl::Seconds(1), 0, absl::ZeroDuration()),
              50, 1e-9);
  // Never below zero, and an unused record stays unused.
  EXPECT_EQ(AddSpan(u, -1000, TestNow() - kHour, TestNow(), kHour).gpu_seconds,
            0);
  EXPECT_EQ(AddSpan({}, 5, TestNow() - kHour, TestNow(), kHour).at,
            absl::InfinitePast());
  // Key: GPU-hours per weight; weight 0 counts as 1.
  EXPECT_DOUBLE_EQ(FairShareKey(7200, 2), 1.0);
  EXPECT_DOUBLE_EQ(FairShareKey(7200, 0), 2.0);
}

}  // namespace
}  // namespace joule::scheduler
