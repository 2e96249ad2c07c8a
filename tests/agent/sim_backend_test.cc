#include "agent/sim_backend.h"

#include "gtest/gtest.h"

namespace joule::agent {
namespace {

SimGpuOptions H100() {
  SimGpuOptions o;
  o.count = 2;
  o.tdp_mw = 700'000;
  o.idle_mw = 70'000;
  o.min_limit_mw = 200'000;
  o.max_limit_mw = 700'000;
  return o;
}

TEST(SimGpuPowerTest, IdleLoadAndLimit) {
  const SimGpuOptions o = H100();
  EXPECT_EQ(SimGpuPowerMw(o, 0.0, 700'000), 70'000);   // idle
  EXPECT_EQ(SimGpuPowerMw(o, 1.0, 700'000), 700'000);  // TDP
  // 70 W + 0.5 × (700 − 70) W = 385 W
  EXPECT_EQ(SimGpuPowerMw(o, 0.5, 700'000), 385'000);
  EXPECT_EQ(SimGpuPowerMw(o, 1.0, 300'000), 300'000);  // capped by the limit
}

TEST(SimGpuBackendTest, EnergyIsTheIntegralOfPower) {
  FakeClock clock;
  SimGpuBackend gpus(H100(), &clock);
  gpus.SetLoad(0, 1.0);
  clock.Advance(absl::Seconds(10));  // GPU0 at 700 W, GPU1 idle at 70 W
  auto s = gpus.Sample();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)[0].energy_mj(), 7'000'000u);  // 700 W × 10 s = 7000 J
  EXPECT_EQ((*s)[1].energy_mj(), 700'000u);    // 70 W × 10 s = 700 J
  ASSERT_TRUE(gpus.SetPowerLimit(0, 300'000).ok());
  clock.Advance(absl::Milliseconds(2500));  // 300 W × 2.5 s = 750 J
  s = gpus.Sample();
  EXPECT_EQ((*s)[0].energy_mj(), 7'750'000u);
  EXPECT_EQ((*s)[0].power_mw(), 300'000);
  EXPECT_EQ((*s)[0].power_limit_mw(), 300'000);
  EXPECT_EQ((*s)[0].utilization_pct(), 100u);
  // GPU1: 700 J + 70 W × 2.5 s = 875 J so far. Sub-millijoule steps are not
  // lost: 70 W × 1 µs = 70 µJ, 20000 times = 1.4 J.
  for (int i = 0; i < 20000; ++i) {
    clock.Advance(absl::Microseconds(1));
    gpus.Sample().IgnoreError();
  }
  EXPECT_EQ((*gpus.Sample())[1].energy_mj(), 700'000u + 175'000u + 1'400u);
}

TEST(SimGpuBackendTest, LimitIsClampedToRange) {
  FakeClock clock;
  SimGpuBackend gpus(H100(), &clock);
  EXPECT_EQ(*gpus.SetPowerLimit(0, 50'000), 200'000);     // below min
  EXPECT_EQ(*gpus.SetPowerLimit(0, 9'000'000), 700'000);  // above max
  EXPECT_FALSE(gpus.SetPowerLimit(7, 300'000).ok());      // no such GPU
}

TEST(SimGpuBackendTest, TemperatureFollowsPower) {
  FakeClock clock;
  SimGpuBackend gpus(H100(), &clock);
  gpus.SetLoad(0, 1.0);
  clock.Advance(absl::Minutes(10));
  auto s = *gpus.Sample();
  EXPECT_GT(s[0].temperature_c(), s[1].temperature_c() + 30);
}

TEST(SimGpuBackendTest, DiscoverGivesStableUuids) {
  FakeClock clock;
  SimGpuBackend a(H100(), &clock), b(H100(), &clock);
  auto ga = a.Discover(), gb = b.Discover();
  ASSERT_EQ(ga.size(), 2u);
  EXPECT_EQ(ga[0].uuid(), gb[0].uuid());
  EXPECT_NE(ga[0].uuid(), ga[1].uuid());
}

}  // namespace
}  // namespace joule::agent
