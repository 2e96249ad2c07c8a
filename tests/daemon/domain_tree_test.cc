// DomainTree's adaptive admission reserve: jouled steps the shared
// scheduler::AdaptMargin with each domain's committed power, so the
// cap-cut hold (AdaptiveMarginConfig::hold_after_cap_cut) acts in the
// daemon as in joule-sim.

#include "daemon/domain_tree.h"

#include <cstdint>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/cluster_config.h"
#include "gtest/gtest.h"

namespace joule::daemon {
namespace {

constexpr int64_t kKw = 1'000'000;  // mW

struct CutCase {
  const char* name;
  int64_t committed_kw;  // after the cut
  int64_t want_reserve_kw;
};

class DomainTreeMarginTest : public ::testing::TestWithParam<CutCase> {};

// One site domain, cap 1,200 kW, measured 924 kW (below 990‰ of the cap:
// quiet). The cap is cut to 900 kW (near-breach threshold 891 kW) and the
// draw stays at 924, then 899 kW: two near-breaches after the cut.
TEST_P(DomainTreeMarginTest, HoldsAfterACapCutWithinTheCommitments) {
  const CutCase& c = GetParam();
  config::ClusterConfig cfg;
  cfg.domains.push_back({"site", "", "site", 1200 * kKw});
  cfg.scheduler.admission = config::AdmissionMode::kMeasuredPlus;
  absl::Mutex mu;
  DomainTree tree(&mu, &cfg);
  absl::MutexLock lock(&mu);
  const absl::Time t0 = absl::FromUnixSeconds(1'000);
  const absl::Duration interval = absl::Seconds(1);
  tree.AddMeasured(0, 924 * kKw);
  tree.AdaptMargins(t0, interval, {926 * kKw});  // quiet: reserve 30‰
  tree.SetCap(0, 900 * kKw);
  tree.AdaptMargins(t0 + interval, interval, {c.committed_kw * kKw});
  tree.AddMeasured(0, -25 * kKw);  // 899 kW
  tree.AdaptMargins(t0 + 2 * interval, interval, {c.committed_kw * kKw});
  const std::vector<scheduler::DomainSnapshot> snap =
      tree.Snapshot({c.committed_kw * kKw}, {0});
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].admission_reserve_mw, c.want_reserve_kw * kKw);
}

INSTANTIATE_TEST_SUITE_P(
    Cut, DomainTreeMarginTest,
    ::testing::Values(
        // 924 and 899 kW ≤ 926 kW committed: held at 30‰ of 900 = 27 kW.
        CutCase{"WithinTheCommitmentsHolds", 926, 27},
        // 924 and 899 kW > 890 kW committed: noise admission did not count,
        // 30 + 2 × 20 = 70‰ of 900 kW = 63 kW.
        CutCase{"AboveTheCommitmentsRaises", 890, 63}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace joule::daemon
