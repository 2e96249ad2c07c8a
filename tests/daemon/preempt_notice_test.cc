// Preemption notice (issue 11): the spec's rules (validation::JobSpec), the
// operator's bound at submit (CheckPreemptGrace) and the notice a stop sends
// (NoticeFor), table-driven; then the controller over several power rounds
// with a FakeClock and a fake agent: a preemption's StopJob carries the
// job's signal and grace, a cancel keeps SIGTERM and stop_grace, and a
// victim's GPUs stay at their minimum limit for a long grace even when the
// cap is raised again (never restored while it stops).
#include "daemon/preempt_notice.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "config/cluster_config.h"
#include "daemon/cluster_manager.h"
#include "daemon/validation.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/memory_store.h"
#include "tests/daemon/manager_fixture.h"

namespace joule::daemon {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kW = 1000;

v1::JobSpec Spec(const std::string& signal, int64_t grace_s) {
  v1::JobSpec s;
  s.set_tenant("acme");
  s.add_command("train");
  s.set_gpus_per_node(1);
  s.set_preempt_signal(signal);
  if (grace_s != -1) s.mutable_preempt_grace()->set_seconds(grace_s);
  return s;
}

TEST(PreemptNoticeTest, SpecRules) {
  struct Case {
    std::string signal;
    int64_t grace_s;    // -1: unset
    std::string error;  // "" = accepted, else in the message
  };
  const Case cases[] = {
      {"", -1, ""},
      {"SIGUSR1", 60, ""},
      {"SIGTERM", 0, ""},          // 0: SIGKILL right after the signal
      {"SIGQUIT", 24 * 3600, ""},  // 24 h is the most
      {"SIGKILL", 60, "spec.preempt_signal: \"SIGKILL\" is not one of"},
      {"usr1", 60, "spec.preempt_signal"},  // joulectl canonicalizes
      {"10", 60, "spec.preempt_signal"},
      {"SIGUSR1", 24 * 3600 + 1, "spec.preempt_grace: is 86401 s"},
      {"SIGUSR1", -5, "spec.preempt_grace: must not be negative"},
  };
  for (const Case& c : cases) {
    const absl::Status st = validation::JobSpec(Spec(c.signal, c.grace_s));
    if (c.error.empty()) {
      EXPECT_TRUE(st.ok()) << c.signal << " " << c.grace_s << ": " << st;
    } else {
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.signal;
      EXPECT_THAT(std::string(st.message()), HasSubstr(c.error)) << st;
    }
  }
}

TEST(PreemptNoticeTest, OperatorBoundAtSubmit) {
  struct Case {
    int64_t grace_s;  // -1: unset
    int64_t max_s;
    bool ok;
  };
  const Case cases[] = {
      {-1, 0, true},     // no notice asked: nothing to bound
      {300, 300, true},  // the bound itself
      {301, 300, false}, {0, 0, true}, {1, 0, false},
  };
  for (const Case& c : cases) {
    const absl::Status st =
        CheckPreemptGrace(Spec("SIGUSR1", c.grace_s), absl::Seconds(c.max_s));
    EXPECT_EQ(st.ok(), c.ok) << c.grace_s << " vs " << c.max_s << ": " << st;
    if (!c.ok) {
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(st.message()), HasSubstr("spec.preempt_grace: "));
      EXPECT_THAT(std::string(st.message()), HasSubstr("max_preempt_grace"));
    }
  }
}

TEST(PreemptNoticeTest, WhatAStopSends) {
  // stop_grace 5s, max_preempt_grace 300s unless a case says otherwise.
  struct Case {
    std::string signal;
    int64_t grace_s;  // -1: unset
    v1::JobState target;
    int64_t max_s;
    std::string want;  // NoticeText
  };
  const Case cases[] = {
      // A preemption gives the job its notice.
      {"SIGUSR1", 60, v1::JOB_STATE_PREEMPTED, 300,
       "SIGUSR1, SIGKILL after 1m"},
      // Only a signal: the grace is stop_grace.
      {"SIGUSR2", -1, v1::JOB_STATE_PREEMPTED, 300,
       "SIGUSR2, SIGKILL after 5s"},
      // Only a grace: SIGTERM.
      {"", 120, v1::JOB_STATE_PREEMPTED, 300, "SIGTERM, SIGKILL after 2m"},
      {"", -1, v1::JOB_STATE_PREEMPTED, 300, "SIGTERM, SIGKILL after 5s"},
      {"SIGINT", 0, v1::JOB_STATE_PREEMPTED, 300, "SIGINT, SIGKILL after 0s"},
      // Stored under a larger bound, preempted under 60s: cut to it.
      {"SIGUSR1", 200, v1::JOB_STATE_PREEMPTED, 60,
       "SIGUSR1, SIGKILL after 1m (cut to max_preempt_grace)"},
      // The operator's stop_grace for jobs without a notice is not cut.
      {"", -1, v1::JOB_STATE_PREEMPTED, 1, "SIGTERM, SIGKILL after 5s"},
      // A cancel or a failed rank keeps SIGTERM and stop_grace.
      {"SIGUSR1", 60, v1::JOB_STATE_CANCELLED, 300,
       "SIGTERM, SIGKILL after 5s"},
      {"SIGUSR1", 60, v1::JOB_STATE_FAILED, 300, "SIGTERM, SIGKILL after 5s"},
  };
  for (const Case& c : cases) {
    const StopNotice n = NoticeFor(Spec(c.signal, c.grace_s), c.target,
                                   absl::Seconds(5), absl::Seconds(c.max_s));
    EXPECT_EQ(NoticeText(n), c.want) << c.signal << " " << c.grace_s;
  }
}

// rack-a (cap 100 kW): n1, 1 kW base, 8 × H100 (200..700 W, idle 70 W).
// After test::kH100HgxSite.
constexpr char kConfig[] = R"pb(
  domain { name: "rack-a" parent: "site" kind: "rack" cap: "100kW" }
  node { name: "n1" domain: "rack-a" }
  tenant { name: "acme" }
  tenant { name: "beta" }
  scheduler {
    default_node_model: "hgx"
    stop_grace: "2s"
    max_preempt_grace: "10m"
  }
)pb";

// One fake agent (n1) whose GPUs draw 700 W capped at their limit while a
// started job holds them; it records what jouled sends and never exits a
// job by itself (a job in a long grace).
class Node final : public AgentLink {
 public:
  Node() {
    auto cfg = config::ParseClusterConfig(absl::StrCat(test::kH100HgxSite, kConfig), "test.conf");
    EXPECT_TRUE(cfg.ok()) << cfg.status();
    ClusterManagerOptions o;
    o.config = *std::move(cfg);
    o.store = &store_;
    o.clock = &clock_;
    o.report_interval = absl::Milliseconds(500);
    cm_ = std::make_unique<ClusterManager>(std::move(o));
    for (int i = 0; i < 8; ++i) limits_[i] = 700 * kW;
    auto resp =
        test::ConnectAgent(*cm_, test::FakeRegistration("n1", 8, "GPU-"), this);
    EXPECT_TRUE(resp.ok()) << resp.status();
    Report();
  }
  void Send(const v1::DaemonMessage& m) override {
    sent_.push_back(m);
    if (m.has_start_job()) {
      jobs_[m.start_job().job_id()] = {m.start_job().attempt(),
                                       {m.start_job().gpu_indices().begin(),
                                        m.start_job().gpu_indices().end()}};
      for (uint32_t g : m.start_job().gpu_indices()) {
        limits_[g] = m.start_job().power_limit_mw();
      }
    }
    if (m.has_set_power_limit()) {
      limits_[m.set_power_limit().gpu_index()] =
          m.set_power_limit().power_limit_mw();
    }
  }
  void Start(const std::string& id) {
    v1::JobUpdate u;
    u.set_job_id(id);
    u.set_attempt(jobs_[id].attempt);
    u.set_phase(v1::JOB_PHASE_STARTED);
    *u.mutable_time() = ToProtoTime(clock_.Now());
    ASSERT_TRUE(cm_->HandleJobUpdate("n1", u).ok());
  }
  void Report() {
    v1::NodeReport r;
    r.set_node_name("n1");
    *r.mutable_time() = ToProtoTime(clock_.Now());
    std::map<uint32_t, bool> busy;
    for (const auto& [id, j] : jobs_) {
      v1::RunningJob* rj = r.add_jobs();
      rj->set_job_id(id);
      rj->set_attempt(j.attempt);
      for (uint32_t g : j.gpus) {
        rj->add_gpu_indices(g);
        busy[g] = true;
      }
    }
    for (int i = 0; i < 8; ++i) {
      v1::GpuStatus* g = r.add_gpus();
      g->set_index(i);
      g->set_model("H100");
      g->set_healthy(true);
      g->set_power_limit_mw(limits_[i]);
      g->set_power_mw(busy[i] ? std::min<int64_t>(700 * kW, limits_[i])
                              : 70 * kW);
    }
    ASSERT_TRUE(cm_->HandleReport("n1", r).ok());
  }
  std::string Submit(uint32_t gpus, v1::ServiceClass cls, int64_t min_mw,
                     const std::string& signal, int64_t grace_s) {
    v1::SubmitJobRequest req;
    v1::JobSpec* s = req.mutable_spec();
    s->set_tenant("beta");
    s->add_command("sleep");
    s->set_gpus_per_node(gpus);
    s->set_gpu_model("H100");
    s->set_service_class(cls);
    if (min_mw > 0) {
      s->set_min_power_limit_mw(min_mw);
      s->set_power_limit_mw(700 * kW);
    }
    s->set_preempt_signal(signal);
    if (grace_s >= 0) s->mutable_preempt_grace()->set_seconds(grace_s);
    auto job = cm_->SubmitJob(req, "");
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->id() : "";
  }
  void SetCap(int64_t mw) {
    v1::SetPowerCapRequest cap;
    cap.set_domain("rack-a");
    cap.set_cap_mw(mw);
    ASSERT_TRUE(cm_->SetPowerCap(cap).ok());
  }
  v1::Job Job(const std::string& id) {
    auto j = cm_->GetJob(id, "");
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? *j : v1::Job();
  }
  // The StopJob commands sent so far, by job.
  std::map<std::string, v1::StopJob> Stops() const {
    std::map<std::string, v1::StopJob> out;
    for (const v1::DaemonMessage& m : sent_) {
      if (m.has_stop_job()) out[m.stop_job().job_id()] = m.stop_job();
    }
    return out;
  }
  ClusterManager& cm() { return *cm_; }
  FakeClock& clock() { return clock_; }
  std::map<uint32_t, int64_t>& limits() { return limits_; }
  std::vector<uint32_t> GpusOf(const std::string& id) { return jobs_[id].gpus; }

 private:
  struct Run {
    uint32_t attempt = 0;
    std::vector<uint32_t> gpus;
  };
  FakeClock clock_;
  storage::MemoryStore store_;
  std::unique_ptr<ClusterManager> cm_;
  std::vector<v1::DaemonMessage> sent_;
  std::map<std::string, Run> jobs_;
  std::map<uint32_t, int64_t> limits_;
};

// n1: spot S (4 GPUs, --min-power 400W, notice SIGUSR1 / 5 min) and
// on-demand O (4 GPUs): 1 kW + 8 × 700 W = 6.6 kW.
//   cap 5.6 kW: S is throttled (to 450 W: 1 + 4 × 0.45 + 2.8 = 5.6 kW);
//   cap 4.7 kW: S at 400 W still gives 5.4 kW, so S is preempted: its GPUs
//     go to 200 W (1 + 0.8 + 2.8 = 4.6 kW) and it gets its notice;
//   cap 100 kW again: room enough to restore S to 700 W, but it is
//     stopping: for its whole 5-minute grace (600 rounds of 500 ms) its
//     GPUs stay at 200 W and the reported draw stays 4.6 kW.
TEST(PreemptNoticeDaemonTest, LongGraceKeepsTheVictimAtItsMinimumLimit) {
  Node n;
  const std::string s =
      n.Submit(4, v1::SERVICE_CLASS_SPOT, 400 * kW, "SIGUSR1", 300);
  const std::string o = n.Submit(4, v1::SERVICE_CLASS_ON_DEMAND, 0, "", -1);
  n.cm().ScheduleOnce();
  n.Start(s);
  n.Start(o);
  n.Report();
  n.SetCap(5'600 * kW);
  for (int round = 0; round < 4; ++round) {
    n.cm().ControlPowerOnce();
    n.clock().Advance(absl::Milliseconds(500));
    n.Report();
  }
  const int64_t throttled = n.Job(s).allocations(0).power_limit_mw();
  ASSERT_LT(throttled, 700 * kW);  // so a restore would have room to act
  ASSERT_TRUE(n.Stops().empty());
  n.SetCap(4'700 * kW);
  for (int round = 0; round < 4 && n.Stops().empty(); ++round) {
    n.cm().ControlPowerOnce();
    n.clock().Advance(absl::Milliseconds(500));
    n.Report();
  }
  const auto stops = n.Stops();
  ASSERT_EQ(stops.size(), 1u);
  const v1::StopJob& stop = stops.begin()->second;
  EXPECT_EQ(stop.job_id(), s);
  EXPECT_EQ(stop.signal(), "SIGUSR1");
  EXPECT_EQ(FromProtoDuration(stop.grace_period()), absl::Minutes(5));
  EXPECT_THAT(n.Job(s).reason(),
              HasSubstr("(notice: SIGUSR1, SIGKILL after 5m)"));
  n.SetCap(100'000 * kW);
  for (int round = 0; round < 600; ++round) {
    n.cm().ControlPowerOnce();
    n.cm().ScheduleOnce();
    n.clock().Advance(absl::Milliseconds(500));
    n.Report();
    for (uint32_t g : n.GpusOf(s)) {
      ASSERT_EQ(n.limits()[g], 200 * kW) << "GPU " << g << " round " << round;
    }
    ASSERT_EQ(n.Job(s).stopping_to(), v1::JOB_STATE_PREEMPTED) << round;
  }
  // O, not stopping, was never throttled and keeps 700 W.
  EXPECT_EQ(n.Job(o).allocations(0).power_limit_mw(), 700 * kW);
}

// A cancel by the user keeps today's stop: SIGTERM (no signal field) and
// stop_grace (2s), whatever notice the job asked for.
TEST(PreemptNoticeDaemonTest, CancelKeepsSigtermAndTheStopGrace) {
  Node n;
  const std::string s = n.Submit(4, v1::SERVICE_CLASS_SPOT, 0, "SIGUSR1", 300);
  n.cm().ScheduleOnce();
  n.Start(s);
  v1::CancelJobRequest cancel;
  cancel.set_id(s);
  ASSERT_TRUE(n.cm().CancelJob(cancel, "").ok());
  const auto stops = n.Stops();
  ASSERT_EQ(stops.size(), 1u);
  EXPECT_EQ(stops.at(s).signal(), "");
  EXPECT_EQ(FromProtoDuration(stops.at(s).grace_period()), absl::Seconds(2));
  EXPECT_THAT(n.Job(s).reason(), ::testing::Not(HasSubstr("notice")));
}

// Above the operator's bound (10m here) a submit is refused and nothing is
// stored.
TEST(PreemptNoticeDaemonTest, SubmitAboveTheBoundIsRefused) {
  Node n;
  v1::SubmitJobRequest req;
  req.mutable_spec()->set_tenant("beta");
  req.mutable_spec()->add_command("sleep");
  req.mutable_spec()->set_gpus_per_node(1);
  req.mutable_spec()->mutable_preempt_grace()->set_seconds(601);
  auto job = n.cm().SubmitJob(req, "");
  ASSERT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(job.status().message()),
              HasSubstr("spec.preempt_grace: 10m1s is more than this "
                        "cluster's max_preempt_grace 10m"));
  v1::ListJobsRequest list;
  auto jobs = n.cm().ListJobs(list, "");
  ASSERT_TRUE(jobs.ok());
  EXPECT_TRUE(jobs->empty());
}

}  // namespace
}  // namespace joule::daemon
