// Issue 11, part B, end to end with real processes: a job that ends while
// jouled is down is settled as it ended (defect 3); time limits, quotas,
// dependencies and holds through joulectl.
#include <signal.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "common/proto_time.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

std::string OneNodeConfig() {
  return ConfigBuilder()
      .Domain("rk1", "100kW")
      .Node("n1", "rk1")
      .Scheduler("stop_grace: \"1s\"")
      .Text();
}

class SchedLimitsE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    Cluster::Options o;
    o.config_text = OneNodeConfig();
    cluster_ = std::make_unique<Cluster>(o);
    ASSERT_NO_FATAL_FAILURE(StartCluster(*cluster_, {"n1"}));
  }
  v1::Job Job(const std::string& id) {
    v1::Job j;
    cluster_->CtlJson({"job", "show", id}, &j);
    return j;
  }
  void CheckSettledAsEnded(bool agent_too);
  std::unique_ptr<Cluster> cluster_;
};

// Defect 3: `sleep 6`, jouled SIGKILLed while it runs (with `agent_too`,
// the agent too: the job supervisor keeps running the job and its state
// dir remembers the exit) and restarted after the job ended: the job is
// SUCCEEDED with exit code 0, and its attempt ends when the process ended
// (before jouled came back), not when the restarted daemon heard of it.
void SchedLimitsE2E::CheckSettledAsEnded(bool agent_too) {
  CtlResult r = cluster_->Ctl(
      {"job", "submit", "--tenant", "acme", "--gpus", "1", "--", "sleep", "6"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string id(absl::StripAsciiWhitespace(r.out));
  ASSERT_TRUE(
      WaitFor([&] { return Job(id).state() == v1::JOB_STATE_RUNNING; }));
  cluster_->KillDaemon(SIGKILL);
  if (agent_too) cluster_->KillAgent("n1", SIGKILL);
  // Without jouled until the job's process is gone: sleep 6 plus a margin.
  absl::SleepFor(absl::Seconds(10));
  const absl::Time restarted = absl::Now();
  cluster_->StartDaemon();
  if (agent_too) cluster_->StartAgent("n1");
  ASSERT_TRUE(WaitFor([&] {
    const v1::JobState s = Job(id).state();
    return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED;
  })) << Job(id).DebugString();
  const v1::Job j = Job(id);
  EXPECT_EQ(j.state(), v1::JOB_STATE_SUCCEEDED) << j.DebugString();
  EXPECT_EQ(j.exit_code(), 0);
  ASSERT_EQ(j.attempts_size(), 1);
  const absl::Time start = FromProtoTime(j.attempts(0).start_time());
  const absl::Time end = FromProtoTime(j.attempts(0).end_time());
  // The daemon's start time is when the agent reported STARTED, a little
  // after the process began.
  EXPECT_GE(end - start, absl::Seconds(5)) << j.DebugString();
  EXPECT_LT(end, restarted) << j.DebugString();
  EXPECT_TRUE(absl::StartsWith(j.attempts(0).outcome(), "succeeded"))
      << j.DebugString();
  // No event calls the job lost.
  v1::ListEventsResponse events;
  cluster_->CtlJson({"events", "--kind", "job"}, &events);
  for (const auto& e : events.events()) {
    if (e.subject() == id) {
      EXPECT_FALSE(absl::StrContains(e.message(), "lost")) << e.message();
    }
  }
}

TEST_F(SchedLimitsE2E, JobEndingWhileDaemonIsDownSucceeds) {
  CheckSettledAsEnded(/*agent_too=*/false);
}

TEST_F(SchedLimitsE2E, JobEndingWhileDaemonAndAgentAreDownSucceeds) {
  CheckSettledAsEnded(/*agent_too=*/true);
}

// Limits, quotas, dependencies and holds through joulectl.
TEST_F(SchedLimitsE2E, LimitsQuotasDependenciesAndHoldsThroughTheCli) {
  auto submit = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"job",  "submit", "--tenant",
                                     "acme", "--gpus", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return cluster_->Ctl(args);
  };
  CtlResult first = submit({"--", "sleep", "60"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::string a(absl::StripAsciiWhitespace(first.out));
  ASSERT_TRUE(WaitFor([&] { return Job(a).state() == v1::JOB_STATE_RUNNING; }));
  CtlResult show = cluster_->Ctl({"job", "show", a});
  EXPECT_TRUE(absl::StrContains(show.out, "limit:    24h (on-demand default)"))
      << show.out;

  // Above the class's limit: refused (exit 1), naming the field.
  CtlResult too_long = submit({"--max-runtime", "200h", "--", "true"});
  EXPECT_EQ(too_long.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(
      too_long.err, "spec.max_runtime: 200h is above the on-demand limit 168h"))
      << too_long.err;

  // A quota of 1 on-demand GPU: the next job waits naming it.
  CtlResult q = cluster_->Ctl(
      {"tenant", "set-quota", "acme", "--max-gpus", "on-demand=1"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(q.out, "tenant acme quota: on-demand 1\n");
  CtlResult second = submit({"--", "true"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const std::string b(absl::StripAsciiWhitespace(second.out));
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(Job(b).reason(), "over quota: tenant acme");
  })) << Job(b).DebugString();
  CtlResult bad =
      cluster_->Ctl({"tenant", "set-quota", "acme", "--max-gpus", "gold=1"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  const std::string tenant_token = cluster_->CreateToken("tenant", "acme");
  CtlResult denied =
      cluster_->Ctl({"--token", tenant_token, "tenant", "set-quota", "acme"});
  EXPECT_EQ(denied.exit_code, 1) << denied.err;

  // Hold (as the tenant), release, and a dependency on the running job.
  CtlResult hold = cluster_->Ctl({"--token", tenant_token, "job", "hold", b});
  ASSERT_EQ(hold.exit_code, 0) << hold.err;
  EXPECT_TRUE(Job(b).held());
  CtlResult after = submit({"--after", a, "--", "true"});
  ASSERT_EQ(after.exit_code, 0) << after.err;
  const std::string c(absl::StripAsciiWhitespace(after.out));
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(Job(c).reason(), "waiting for " + a);
  })) << Job(c).DebugString();
  CtlResult shown = cluster_->Ctl({"job", "show", c});
  EXPECT_TRUE(absl::StrContains(shown.out, "after:    " + a)) << shown.out;
  ASSERT_EQ(cluster_->Ctl({"job", "release", b}).exit_code, 0);
  EXPECT_FALSE(Job(b).held());
  // Cancelling the dependency fails the dependent job.
  ASSERT_EQ(cluster_->Ctl({"job", "cancel", a}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return Job(c).state() == v1::JOB_STATE_FAILED; }))
      << Job(c).DebugString();
  EXPECT_EQ(Job(c).reason(), "dependency " + a + " was cancelled");
}

}  // namespace
}  // namespace joule::e2e
