// cli/power_text.h: what `job show` says of an efficiency job's knee.
#include "cli/power_text.h"

#include "gtest/gtest.h"

namespace joule::cli {
namespace {

v1::Job Efficiency(int64_t permille, bool learned, int64_t samples) {
  v1::Job j;
  j.mutable_spec()->set_power_mode(v1::POWER_MODE_EFFICIENCY);
  v1::EfficiencyKnee* k = j.mutable_efficiency_knee();
  k->set_share_permille(permille);
  k->set_learned(learned);
  k->set_samples(samples);
  k->set_workload("acme/train/H100");
  return j;
}

TEST(EfficiencyKneeTextTest, LearnedConfigAndNone) {
  EXPECT_EQ(EfficiencyKneeText(Efficiency(420, true, 240)),
            "0.42 of its limit over idle, learned from 240 samples of "
            "acme/train/H100");
  EXPECT_EQ(EfficiencyKneeText(Efficiency(500, false, 12)),
            "0.50 of its limit over idle, the config's efficiency_knee "
            "(acme/train/H100: 12 samples, not enough to learn yet)");
  // Performance mode, or no knee sent: nothing to say.
  v1::Job perf = Efficiency(420, true, 240);
  perf.mutable_spec()->set_power_mode(v1::POWER_MODE_PERFORMANCE);
  EXPECT_EQ(EfficiencyKneeText(perf), "");
  v1::Job none;
  none.mutable_spec()->set_power_mode(v1::POWER_MODE_EFFICIENCY);
  EXPECT_EQ(EfficiencyKneeText(none), "");
}

}  // namespace
}  // namespace joule::cli
