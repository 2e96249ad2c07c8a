#include "daemon/power_history.h"

#include "daemon/ops_events.h"
#include "gtest/gtest.h"

namespace joule::daemon {
namespace {

v1::GetPowerTreeResponse Tree(int64_t cap_mw, int64_t measured_mw) {
  v1::GetPowerTreeResponse t;
  v1::PowerDomain* d = t.add_domains();
  d->set_name("site");
  d->set_cap_mw(cap_mw);
  d->set_committed_mw(measured_mw / 2);
  d->set_measured_mw(measured_mw);
  return t;
}

TEST(PowerHistory, KeepsTheLastSpanOnePointPerStep) {
  // 1 min at 10 s: 6 points; 8 samples 10 s apart keep the last 6.
  PowerHistory h(absl::Minutes(1), absl::Seconds(10));
  ASSERT_EQ(h.capacity(), 6u);
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(h.Add(t0 + absl::Seconds(10 * i), Tree(1000, i * 100)));
  }
  std::vector<PowerHistory::Point> p = h.Points("site");
  ASSERT_EQ(p.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(p[i].time, t0 + absl::Seconds(10 * (i + 2)));  // oldest first
    EXPECT_EQ(p[i].measured_mw, (i + 2) * 100);
    EXPECT_EQ(p[i].committed_mw, (i + 2) * 50);
  }
  EXPECT_TRUE(h.Points("rack").empty());
}

TEST(PowerHistory, IgnoresSamplesCloserThanAStep) {
  PowerHistory h(absl::Hours(1), absl::Seconds(5));
  EXPECT_EQ(h.capacity(), 720u);  // 3600 s / 5 s
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_TRUE(h.Add(t0, Tree(1000, 1)));
  EXPECT_FALSE(h.Add(t0 + absl::Seconds(4), Tree(1000, 2)));
  EXPECT_TRUE(h.Add(t0 + absl::Seconds(5), Tree(1000, 3)));
  ASSERT_EQ(h.Points("site").size(), 2u);
  EXPECT_EQ(h.Points("site")[1].measured_mw, 3);
}

TEST(OpsEvents, LevelsAndCauses) {
  struct Case {
    const char* kind;
    const char* message;
    log::Level level;
    const char* cause;
  };
  const Case cases[] = {
      {"throttle",
       "per-GPU limit -> 500 W: rack rk1 measured 12 kW > cap 11 kW",
       log::Level::kWarn, "cap"},
      {"restore", "per-GPU limit -> 700 W: restore to 700 W per GPU",
       log::Level::kInfo, "restore"},
      {"preempt",
       "preempted by reserved job job-000002 of tenant a "
       "(contracted capacity)",
       log::Level::kWarn, "contract"},
      {"preempt",
       "site measured 2 MW > cap 1 MW; throttling to minimum was "
       "not enough",
       log::Level::kWarn, "cap"},
      {"node", "unreachable: no report for 5s", log::Level::kWarn, "other"},
      {"node", "ready: reports resumed", log::Level::kInfo, "other"},
      {"cap", "cap 20 kW -> 19 kW", log::Level::kInfo, "cap"},
  };
  for (const Case& c : cases) {
    v1::Event e;
    e.set_kind(c.kind);
    e.set_message(c.message);
    EXPECT_EQ(EventLevel(e), c.level) << c.message;
    EXPECT_EQ(EventCause(e), c.cause) << c.message;
  }
}

}  // namespace
}  // namespace joule::daemon
