#include "scheduler/time_limits.h"

#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace joule::scheduler {
namespace {

struct LimitCase {
  std::string name;
  ServiceClass cls;
  absl::Duration requested;
  absl::Duration want;  // ZeroDuration: refused
};

// Defaults out of the box: reserved 24h / 336h, on-demand 24h / 168h,
// spot 12h / 72h.
TEST(TimeLimitsTest, ResolveTable) {
  const TimeLimits limits;
  const LimitCase cases[] = {
      {"none gets on-demand default", ServiceClass::kOnDemand,
       absl::ZeroDuration(), absl::Hours(24)},
      {"none gets spot default", ServiceClass::kSpot, absl::ZeroDuration(),
       absl::Hours(12)},
      {"asked kept", ServiceClass::kSpot, absl::Hours(2), absl::Hours(2)},
      {"at the limit kept", ServiceClass::kOnDemand, absl::Hours(168),
       absl::Hours(168)},
      {"above the limit refused", ServiceClass::kOnDemand, absl::Hours(200),
       absl::ZeroDuration()},
      {"reserved may ask 14 days", ServiceClass::kReserved, absl::Hours(336),
       absl::Hours(336)},
      {"negative refused", ServiceClass::kReserved, absl::Seconds(-1),
       absl::ZeroDuration()},
  };
  for (const LimitCase& c : cases) {
    SCOPED_TRACE(c.name);
    auto got = ResolveMaxRuntime(c.cls, c.requested, limits);
    if (c.want == absl::ZeroDuration()) {
      ASSERT_FALSE(got.ok());
      EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_TRUE(absl::StartsWith(got.status().message(), "spec.max_runtime:"))
          << got.status();
    } else {
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(*got, c.want);
    }
  }
  EXPECT_EQ(ResolveMaxRuntime(ServiceClass::kOnDemand, absl::Hours(200), limits)
                .status()
                .message(),
            "spec.max_runtime: 200h is above the on-demand limit 168h "
            "(scheduler.time_limit max_runtime_limit)");
}

TEST(TimeLimitsTest, EffectiveNeverZero) {
  TimeLimits limits;
  limits.For(ServiceClass::kSpot).default_max_runtime = absl::Minutes(30);
  EXPECT_EQ(
      EffectiveMaxRuntime(ServiceClass::kSpot, absl::ZeroDuration(), limits),
      absl::Minutes(30));
  EXPECT_EQ(EffectiveMaxRuntime(ServiceClass::kSpot, absl::Hours(100), limits),
            absl::Hours(100));  // already accepted: kept as it is
}

}  // namespace
}  // namespace joule::scheduler
