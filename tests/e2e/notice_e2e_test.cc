// Preemption notice (issue 11) with real jouled, a simulated agent and
// joulectl: a spot job submitted with `--preempt-signal SIGUSR1
// --preempt-grace 20s` gets SIGUSR1 (not SIGTERM) when a reserved job's claim
// preempts it, writes its checkpoint during the grace while its GPUs run at
// their minimum limit (as the agent reports them), exits by itself, ends
// preempted and is requeued; later rounds preempt it no more. Bad notices
// are refused naming the field (joulectl exit 2 or 1, raw gRPC
// INVALID_ARGUMENT).
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.grpc.pb.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

using ::testing::HasSubstr;

// rk1 with n1: 1 kW base, 8 simulated H100 (200..700 W). Jobs without a
// notice get 1s; a notice may be at most 2m.
std::string Config() {
  return ConfigBuilder()
      .Domain("rk1", "100kW")
      .Node("n1", "rk1")
      .Scheduler("stop_grace: \"1s\" max_preempt_grace: \"2m\"")
      .Text();
}

class NoticeE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    Cluster::Options o;
    o.config_text = Config();
    cluster_ = std::make_unique<Cluster>(o);
    ASSERT_NO_FATAL_FAILURE(StartCluster(*cluster_, {"n1"}, {"acme", "beta"}));
  }
  std::string Submit(std::vector<std::string> args) {
    return SubmitJob(*cluster_, std::move(args));
  }
  v1::Job Job(const std::string& id) { return ShowJob(*cluster_, id); }
  // The limits n1's agent last reported for the GPUs in `gpus`.
  std::vector<int64_t> ReportedLimits(const v1::Allocation& al) {
    v1::Node n;
    cluster_->CtlJson({"node", "show", "n1"}, &n);
    std::vector<int64_t> out;
    for (uint32_t g : al.gpu_indices()) {
      for (const v1::GpuStatus& s : n.gpus()) {
        if (s.index() == g) out.push_back(s.power_limit_mw());
      }
    }
    return out;
  }
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(NoticeE2E, SpotJobGetsItsSignalCheckpointsInTheGraceAndEndsPreempted) {
  // acme: a contract for 8 H100 this month, so its reserved job may claim
  // n1's GPUs.
  const absl::CivilDay today =
      absl::ToCivilDay(absl::Now(), absl::UTCTimeZone());
  const absl::CivilMonth month(today);
  ASSERT_EQ(
      cluster_
          ->Ctl({"contract", "create", "--tenant", "acme", "--gpu-model",
                 "H100", "--gpus", "8", "--start", absl::FormatCivilTime(today),
                 "--end", absl::FormatCivilTime(absl::CivilDay(month + 1)),
                 "--rate", "1.00"})
          .exit_code,
      0);
  const std::string ckpt = cluster_->dir() + "/ckpt";
  const std::string release = cluster_->dir() + "/release";
  const std::string started = cluster_->dir() + "/started";
  // On SIGUSR1: write the checkpoint (and which signal came), then finish
  // "checkpointing" once the test has looked at the GPUs (the release
  // file), and exit 0. SIGTERM would kill the shell without a checkpoint.
  const std::string script =
      "trap 'echo USR1 >> " + ckpt + "; while [ ! -e " + release +
      " ]; do sleep 0.05; done; exit 0' USR1; echo up > " + started +
      "; while true; do sleep 0.05; done";
  const std::string spot =
      Submit({"--tenant", "beta", "--gpus", "8", "--gpu-model", "H100",
              "--class", "spot", "--preempt-signal", "SIGUSR1",
              "--preempt-grace", "20s", "--", "sh", "-c", script});
  ASSERT_TRUE(WaitFor([&] {
    return Job(spot).state() == v1::JOB_STATE_RUNNING &&
           !ReadFile(started).empty();
  }));
  // job show and job list -o json carry the notice.
  const CtlResult show = cluster_->Ctl({"job", "show", spot});
  EXPECT_THAT(show.out, HasSubstr("preempt:  SIGUSR1, SIGKILL after 20s"));
  v1::ListJobsResponse list;
  cluster_->CtlJson({"job", "list"}, &list);
  ASSERT_EQ(list.jobs_size(), 1);
  EXPECT_EQ(list.jobs(0).spec().preempt_signal(), "SIGUSR1");
  EXPECT_EQ(list.jobs(0).spec().preempt_grace().seconds(), 20);
  const v1::Allocation victim = Job(spot).allocations(0);
  for (int64_t mw : ReportedLimits(victim)) EXPECT_EQ(mw, 700'000);

  const std::string r =
      Submit({"--tenant", "acme", "--gpus", "8", "--gpu-model", "H100",
              "--class", "reserved", "--", "sleep", "300"});
  // The notice arrived: the checkpoint is written while the job is still
  // in its grace (release not yet given), and the agent reports its GPUs
  // at their minimum limit meanwhile.
  ASSERT_TRUE(
      WaitFor([&] { return !ReadFile(ckpt).empty(); }, absl::Seconds(20)));
  ASSERT_TRUE(WaitFor([&] {
    for (int64_t mw : ReportedLimits(victim)) {
      if (mw != 200'000) return false;
    }
    return true;
  }));
  const v1::Job in_grace = Job(spot);
  EXPECT_EQ(in_grace.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(in_grace.stopping_to(), v1::JOB_STATE_PREEMPTED);
  EXPECT_THAT(in_grace.reason(),
              HasSubstr("notice: SIGUSR1, SIGKILL after 20s"));
  EXPECT_NE(Job(r).state(), v1::JOB_STATE_RUNNING);  // still claimed
  WriteFile(release, "go\n");

  // The spot job ends preempted (by itself: exit 0, not SIGKILL) and is
  // requeued; the reserved job gets its GPUs.
  ASSERT_TRUE(WaitFor([&] { return Job(r).state() == v1::JOB_STATE_RUNNING; },
                      absl::Seconds(30)));
  // Several more rounds: the spot job is preempted once and not re-placed.
  absl::SleepFor(absl::Seconds(1));
  const v1::Job done = Job(spot);
  EXPECT_EQ(done.state(), v1::JOB_STATE_PENDING);
  ASSERT_GE(done.attempts_size(), 1);
  EXPECT_THAT(done.attempts(0).outcome(), HasSubstr("preempted: "));
  EXPECT_THAT(done.attempts(0).outcome(),
              HasSubstr("notice: SIGUSR1, SIGKILL after 20s"));
  EXPECT_EQ(done.exit_code(), 0);
  bool was_preempted = false;
  for (const auto& h : done.history()) {
    was_preempted |= h.state() == v1::JOB_STATE_PREEMPTED;
  }
  EXPECT_TRUE(was_preempted);
  EXPECT_EQ(ReadFile(ckpt), "USR1\n");  // one notice, one checkpoint
  v1::ListEventsResponse ev;
  cluster_->CtlJson({"events", "--kind", "preempt"}, &ev);
  int preempts = 0;
  for (const auto& e : ev.events()) preempts += e.subject() == spot;
  EXPECT_EQ(preempts, 1);
  ASSERT_EQ(cluster_->Ctl({"job", "cancel", r}).exit_code, 0);
  ASSERT_EQ(cluster_->Ctl({"job", "cancel", spot}).exit_code, 0);
}

TEST_F(NoticeE2E, BadNoticesAreRefusedNamingTheField) {
  const std::vector<std::string> base = {
      "job", "submit", "--tenant", "beta", "--gpus", "1", "--class", "spot"};
  struct Case {
    std::vector<std::string> flags;
    int exit_code;
    std::string says;
  };
  const Case cases[] = {
      // Not on the allow-list: joulectl refuses it itself.
      {{"--preempt-signal", "SIGKILL"}, 2, "--preempt-signal"},
      {{"--preempt-signal", "9"}, 2, "--preempt-signal"},
      {{"--preempt-grace", "-1s"}, 2, "--preempt-grace"},
      {{"--preempt-grace", "soon"}, 2, "--preempt-grace"},
      // Above this cluster's max_preempt_grace (2m): jouled refuses it.
      {{"--preempt-grace", "3m"}, 1, "spec.preempt_grace"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = base;
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    args.insert(args.end(), {"--", "true"});
    const CtlResult r = cluster_->Ctl(args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.flags[1] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.says)) << c.flags[1];
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // usr1 is SIGUSR1; 2m is the bound itself.
  const std::string ok = Submit({"--tenant", "beta", "--gpus", "1", "--class",
                                 "spot", "--preempt-signal", "usr1",
                                 "--preempt-grace", "2m", "--", "true"});
  EXPECT_EQ(Job(ok).spec().preempt_signal(), "SIGUSR1");

  // Raw gRPC, past joulectl's checks.
  auto stub = v1::JobService::NewStub(cluster_->Channel());
  v1::SubmitJobRequest req;
  v1::JobSpec* s = req.mutable_spec();
  s->set_tenant("beta");
  s->add_command("true");
  s->set_gpus_per_node(1);
  s->set_preempt_signal("SIGSTOP");
  grpc::ClientContext ctx;
  cluster_->Authorize(&ctx);
  v1::SubmitJobResponse resp;
  const grpc::Status st = stub->SubmitJob(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("spec.preempt_signal: "));
  v1::ListJobsResponse list;
  cluster_->CtlJson({"job", "list"}, &list);
  EXPECT_EQ(list.jobs_size(), 1);  // nothing else was submitted
}

}  // namespace
}  // namespace joule::e2e
