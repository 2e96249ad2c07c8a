// Issue #11 with real jouled, simulated agents and joulectl: defect 1
// (claims: a reserved 8-GPU job preempts exactly one node's spot jobs, once,
// and gets exactly their GPUs) and defect 4 (a cap cut that needs a
// preemption is met in the agents' reported draw while the victim, ignoring
// SIGTERM, is still in its stop grace).
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

// rk1 (cap 100 kW) with n1 and n2: 1 kW base, 8 simulated H100 each.
std::string Config(const std::string& grace) {
  return ConfigBuilder()
      .Domain("rk1", "100kW")
      .Nodes(2, "rk1")
      .Scheduler("stop_grace: \"" + grace + "\"")
      .Text();
}

class ClaimsE2E : public ::testing::Test {
 protected:
  void Start(const std::string& grace) {
    Cluster::Options o;
    o.config_text = Config(grace);
    cluster_ = std::make_unique<Cluster>(o);
    ASSERT_NO_FATAL_FAILURE(
        StartCluster(*cluster_, {"n1", "n2"}, {"acme", "beta"}));
  }
  std::string Submit(std::vector<std::string> args) {
    return SubmitJob(*cluster_, std::move(args));
  }
  v1::Job Job(const std::string& id) { return ShowJob(*cluster_, id); }
  v1::PowerDomain Rack() {
    v1::GetPowerTreeResponse t;
    cluster_->CtlJson({"power", "tree"}, &t);
    for (const auto& d : t.domains()) {
      if (d.name() == "rk1") return d;
    }
    return v1::PowerDomain();
  }
  std::unique_ptr<Cluster> cluster_;
};

// Spot jobs that ignore SIGTERM (killed at the end of the grace).
const std::vector<std::string> kStubborn = {"--", "sh", "-c",
                                            "trap '' TERM; sleep 300"};

TEST_F(ClaimsE2E, ReservedJobPreemptsOneNodeOnceAndGetsExactlyThoseGpus) {
  Start("1s");
  // acme: a contract for 8 H100 this month.
  const absl::CivilDay today = absl::ToCivilDay(absl::Now(), absl::UTCTimeZone());
  const absl::CivilMonth month(today);
  ASSERT_EQ(cluster_
                ->Ctl({"contract", "create", "--tenant", "acme", "--gpu-model",
                       "H100", "--gpus", "8", "--start",
                       absl::FormatCivilTime(today), "--end",
                       absl::FormatCivilTime(absl::CivilDay(month + 1)),
                       "--rate", "1.00"})
                .exit_code,
            0);
  std::vector<std::string> spot;
  for (int i = 0; i < 16; ++i) {
    std::vector<std::string> args = {"--tenant", "beta", "--gpus", "1",
                                     "--gpu-model", "H100", "--class", "spot"};
    args.insert(args.end(), kStubborn.begin(), kStubborn.end());
    spot.push_back(Submit(args));
  }
  ASSERT_TRUE(WaitFor([&] {
    for (const std::string& id : spot) {
      if (Job(id).state() != v1::JOB_STATE_RUNNING) return false;
    }
    return true;
  }));
  const std::string r =
      Submit({"--tenant", "acme", "--gpus", "8", "--gpu-model", "H100",
              "--class", "reserved", "--", "sleep", "300"});
  ASSERT_TRUE(
      WaitFor([&] { return Job(r).state() == v1::JOB_STATE_RUNNING; },
              absl::Seconds(30)));
  // Let a few more rounds pass (500 ms apart at most), then count.
  absl::SleepFor(absl::Seconds(1));
  std::map<std::string, int> preempted;  // job -> times
  v1::ListEventsResponse ev;
  cluster_->CtlJson({"events", "--kind", "preempt"}, &ev);
  for (const auto& e : ev.events()) preempted[e.subject()]++;
  EXPECT_EQ(preempted.size(), 8u);
  const v1::Job rj = Job(r);
  ASSERT_EQ(rj.allocations_size(), 1);
  std::set<uint32_t> victim_gpus;
  for (const auto& [id, n] : preempted) {
    EXPECT_EQ(n, 1) << id;
    const v1::Job v = Job(id);
    ASSERT_GE(v.attempts_size(), 1) << id;
    const v1::Allocation& al = v.attempts(0).allocations(0);
    EXPECT_EQ(al.node(), rj.allocations(0).node()) << id;
    for (uint32_t g : al.gpu_indices()) victim_gpus.insert(g);
    // Requeued, never placed back on the claimed GPUs.
    EXPECT_EQ(v.state(), v1::JOB_STATE_PENDING) << id;
  }
  const std::set<uint32_t> got(rj.allocations(0).gpu_indices().begin(),
                               rj.allocations(0).gpu_indices().end());
  EXPECT_EQ(got, victim_gpus);
  // The other node's 8 spot jobs still run.
  int running = 0;
  for (const std::string& id : spot) {
    running += Job(id).state() == v1::JOB_STATE_RUNNING;
  }
  EXPECT_EQ(running, 8);
}

// rk1: 2 × 1 kW + spot 8 × 700 W + on-demand 8 × 700 W = 13.2 kW; cap cut
// to 9.5 kW. The spot job (no --min-power, so not throttleable) is
// preempted: its GPUs go to 200 W at once, and the agents' next reports
// show 2 + 1.6 + 5.6 = 9.2 kW while it is still in its 30 s grace.
TEST_F(ClaimsE2E, CapCutIsMetInTheReportedDrawDuringTheGrace) {
  Start("30s");
  std::vector<std::string> args = {"--tenant", "beta", "--gpus", "8",
                                   "--gpu-model", "H100", "--class", "spot"};
  args.insert(args.end(), kStubborn.begin(), kStubborn.end());
  const std::string spot = Submit(args);
  const std::string od = Submit({"--tenant", "acme", "--gpus", "8",
                                 "--gpu-model", "H100", "--", "sleep", "300"});
  ASSERT_TRUE(WaitFor([&] {
    return Job(spot).state() == v1::JOB_STATE_RUNNING &&
           Job(od).state() == v1::JOB_STATE_RUNNING &&
           Rack().reported_mw() > 11'000'000;
  }));
  ASSERT_EQ(cluster_->Ctl({"power", "set-cap", "rk1", "9.5kW", "--yes"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return Rack().reported_mw() <= 9'500'000; },
                      absl::Seconds(10)));
  // Still in its grace: the cap held without waiting for it to exit.
  const v1::Job j = Job(spot);
  EXPECT_EQ(j.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(j.stopping_to(), v1::JOB_STATE_PREEMPTED);
  EXPECT_EQ(Job(od).stopping_to(), v1::JOB_STATE_UNSPECIFIED);
  EXPECT_LE(Rack().measured_mw(), 9'500'000);
  ASSERT_EQ(cluster_->Ctl({"job", "cancel", od}).exit_code, 0);
}

}  // namespace
}  // namespace joule::e2e
