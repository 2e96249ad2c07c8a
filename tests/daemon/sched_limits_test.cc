// Issue 11, part B, in the controller (ClusterManager with a FakeClock and
// fake agents, rounds driven by the test): fair share counting running jobs
// (defect 6) and identical after a restart, time limits and backfill
// (defect 7), a job that ended while jouled was down (defect 3), quotas,
// dependencies and holds, a gang's reason.

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "config/cluster_config.h"
#include "daemon/cluster_manager.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/fair_share.h"
#include "storage/memory_store.h"
#include "tests/daemon/manager_fixture.h"

namespace joule::daemon {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr int64_t kW = 1000;
constexpr int kGpus = 8;

// site (1 MW) > rack-a (100 kW): n1..n4, 8 × H100 each, base 1 kW.
// Tenants acme, beta, gamma; acme may run 16 on-demand GPUs.
std::string Config(const std::string& extra = "") {
  return absl::StrCat(
      test::kH100HgxSite,
      R"pb(
        domain { name: "rack-a" parent: "site" kind: "rack" cap: "100kW" }
        node { name: "n1" domain: "rack-a" }
        node { name: "n2" domain: "rack-a" }
        node { name: "n3" domain: "rack-a" }
        node { name: "n4" domain: "rack-a" }
        scheduler { default_node_model: "hgx" fair_share_half_life: "24h" }
      )pb",
      extra);
}

class Link final : public AgentLink {
 public:
  explicit Link(std::vector<v1::DaemonMessage>* log) : log_(log) {}
  void Send(const v1::DaemonMessage& msg) override { log_->push_back(msg); }

 private:
  std::vector<v1::DaemonMessage>* log_;
};

class SchedLimits : public ::testing::Test {
 protected:
  void SetUp() override { Make(Config()); }

  void Make(const std::string& config_text) {
    auto cfg = config::ParseClusterConfig(config_text, "test.conf");
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    config_ = *cfg;
    NewManager();
    for (const char* t : {"acme", "beta", "gamma"}) {
      v1::Tenant tenant;
      tenant.set_name(t);
      auto created = cm_->CreateTenant(tenant);  // again after a Make()
      ASSERT_TRUE(created.ok() || absl::IsAlreadyExists(created.status()))
          << created.status();
    }
  }
  // A fresh manager over the same store and clock, loaded (a restart).
  void NewManager() {
    cm_.reset();
    cm_ = std::make_unique<ClusterManager>(
        test::ManagerOptions(config_, &store_, &clock_));
    ASSERT_TRUE(cm_->Load().ok());
  }
  // Registers `node`; `exited` are attempts that ended while it was away.
  void AddNode(
      const std::string& node,
      const std::vector<std::pair<std::string, uint32_t>>& running = {},
      const std::vector<std::pair<std::string, uint32_t>>& exited = {}) {
    v1::RegisterRequest req = test::FakeRegistration(
        node, kGpus, absl::StrCat("GPU-", node, "-"), "10.0.0.1");
    for (const auto& [id, attempt] : running) {
      v1::RunningJob* r = req.add_running_jobs();
      r->set_job_id(id);
      r->set_attempt(attempt);
    }
    for (const auto& [id, attempt] : exited) {
      v1::RunningJob* r = req.add_running_jobs();
      r->set_job_id(id);
      r->set_attempt(attempt);
      r->set_exited(true);
    }
    links_[node] = std::make_unique<Link>(&sent_[node]);
    auto resp = test::ConnectAgent(*cm_, req, links_[node].get());
    ASSERT_TRUE(resp.ok()) << resp.status();
    Report(node);
  }
  void Report(const std::string& node) {
    v1::NodeReport r;
    r.set_node_name(node);
    *r.mutable_time() = ToProtoTime(clock_.Now());
    for (const auto& [id, attempt] : running_[node]) {
      v1::RunningJob* j = r.add_jobs();
      j->set_job_id(id);
      j->set_attempt(attempt);
    }
    for (int i = 0; i < kGpus; ++i) {
      v1::GpuStatus* g = r.add_gpus();
      g->set_index(i);
      g->set_model("H100");
      g->set_healthy(true);
      g->set_power_limit_mw(700 * kW);
      g->set_power_mw(70 * kW);
    }
    ASSERT_TRUE(cm_->HandleReport(node, r).ok());
  }
  // One round; every job it starts reports STARTED at once.
  std::vector<std::string> Round() {
    for (auto& [node, log] : sent_) log.clear();
    cm_->ScheduleOnce();
    std::vector<std::string> started;
    for (auto& [node, log] : sent_) {
      for (const v1::DaemonMessage& m : log) {
        if (!m.has_start_job()) continue;
        const v1::StartJob& s = m.start_job();
        last_start_[s.job_id()] = s;
        running_[node][s.job_id()] = s.attempt();
        if (s.node_rank() == 0) started.push_back(s.job_id());
        v1::JobUpdate u;
        u.set_job_id(s.job_id());
        u.set_attempt(s.attempt());
        u.set_phase(v1::JOB_PHASE_STARTED);
        *u.mutable_time() = ToProtoTime(clock_.Now());
        EXPECT_TRUE(cm_->HandleJobUpdate(node, u).ok());
      }
    }
    return started;
  }
  v1::JobUpdate Exit(const std::string& node, const std::string& id, int code,
                     absl::Time at) {
    v1::JobUpdate u;
    u.set_job_id(id);
    u.set_attempt(running_[node][id]);
    u.set_phase(v1::JOB_PHASE_EXITED);
    u.set_exit_code(code);
    *u.mutable_time() = ToProtoTime(at);
    running_[node].erase(id);
    return u;
  }
  void Exited(const std::string& node, const std::string& id, int code = 0) {
    ASSERT_TRUE(
        cm_->HandleJobUpdate(node, Exit(node, id, code, clock_.Now())).ok());
  }
  static v1::JobSpec Spec(const std::string& tenant, uint32_t gpus,
                          uint32_t nodes = 1) {
    v1::JobSpec s;
    s.set_tenant(tenant);
    s.add_command("train");
    s.set_gpus_per_node(gpus);
    s.set_nodes(nodes);
    s.set_gpu_model("H100");
    s.set_service_class(v1::SERVICE_CLASS_ON_DEMAND);
    return s;
  }
  absl::StatusOr<v1::Job> TrySubmit(const v1::JobSpec& spec) {
    v1::SubmitJobRequest req;
    *req.mutable_spec() = spec;
    return cm_->SubmitJob(req, "");
  }
  std::string Submit(const v1::JobSpec& spec) {
    auto j = TrySubmit(spec);
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? j->id() : "";
  }
  v1::Job Job(const std::string& id) { return *cm_->GetJob(id, ""); }
  double Usage(const std::string& tenant) {
    for (const v1::Tenant& t : cm_->ListTenants()) {
      if (t.name() == tenant) return t.fair_share_gpu_seconds();
    }
    return -1;
  }

  FakeClock clock_;
  storage::MemoryStore store_;
  config::ClusterConfig config_;
  std::unique_ptr<ClusterManager> cm_;
  std::map<std::string, std::unique_ptr<Link>> links_;
  std::map<std::string, std::vector<v1::DaemonMessage>> sent_;
  std::map<std::string, std::map<std::string, uint32_t>> running_;
  std::map<std::string, v1::StartJob> last_start_;
};

// Defect 6: acme holds 24 GPUs (n1..n3) for 10 h, beta none; gamma's job on
// n4 ends. acme's next job was submitted before beta's, but beta's starts
// first: acme's running GPUs count (24 · 86,400/ln 2 · (1 − 2^(−10/24)) ≈
// 750,425 GPU-seconds), beta's usage is 0. Usage is the same, to the bit,
// after a restart at the same time.
TEST_F(SchedLimits, Defect6RunningJobsCountAndSurviveRestart) {
  for (const char* n : {"n1", "n2", "n3", "n4"}) AddNode(n);
  std::vector<std::string> acme;
  for (int i = 0; i < 3; ++i) acme.push_back(Submit(Spec("acme", 8)));
  const std::string g = Submit(Spec("gamma", 8));
  EXPECT_EQ(Round().size(), 4u);
  clock_.Advance(absl::Hours(10));
  const std::string a_next = Submit(Spec("acme", 8));
  const std::string b_first = Submit(Spec("beta", 8));
  EXPECT_THAT(Round(), IsEmpty());  // nothing free
  const double expected = scheduler::UsageAt(
      {0, clock_.Now() - absl::Hours(10)}, clock_.Now(), 24, absl::Hours(24));
  EXPECT_NEAR(Usage("acme"), expected, 1e-6);
  EXPECT_NEAR(Usage("acme"), 750425, 100);
  EXPECT_EQ(Usage("beta"), 0);
  // Rounds go by; gamma's job ends; beta's job takes n4.
  clock_.Advance(absl::Minutes(1));
  EXPECT_THAT(Round(), IsEmpty());
  Exited("n4", g);
  EXPECT_THAT(Round(), UnorderedElementsAre(b_first));
  EXPECT_EQ(Job(a_next).state(), v1::JOB_STATE_PENDING);
  // Restart at the same instant: the same usage, bit for bit.
  clock_.Advance(absl::Minutes(5));
  const double acme_before = Usage("acme"), gamma_before = Usage("gamma");
  EXPECT_GT(gamma_before, 0);
  NewManager();
  EXPECT_EQ(Usage("acme"), acme_before);
  EXPECT_EQ(Usage("gamma"), gamma_before);
}

// Defect 3 in the controller: a job ends while jouled is down; after the
// restart the agent reports it exited (with its real end time); the job
// succeeds and its attempt, billing and fair share end then.
TEST_F(SchedLimits, Defect3EndedWhileDownSettledAsItEnded) {
  AddNode("n1");
  const std::string id = Submit(Spec("acme", 4));
  ASSERT_EQ(Round().size(), 1u);
  const absl::Time start = clock_.Now();
  clock_.Advance(absl::Seconds(6));
  const absl::Time ended = clock_.Now();
  clock_.Advance(absl::Seconds(10));  // jouled is down meanwhile
  NewManager();
  const v1::JobUpdate exit = Exit("n1", id, 0, ended);  // the agent's
  AddNode("n1", {}, {{id, 1}});
  EXPECT_EQ(Job(id).state(), v1::JOB_STATE_RUNNING);  // not lost
  ASSERT_TRUE(cm_->HandleJobUpdate("n1", exit).ok());
  const v1::Job j = Job(id);
  EXPECT_EQ(j.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(j.exit_code(), 0);
  EXPECT_EQ(FromProtoTime(j.attempts(0).end_time()), ended);
  // 4 GPUs over 6 s, decayed to now.
  scheduler::DecayedUsage u =
      scheduler::AdvanceUsage({}, ended, 0, absl::Hours(24));
  u = scheduler::AddSpan(u, 4, start, ended, absl::Hours(24));
  EXPECT_NEAR(Usage("acme"),
              scheduler::UsageAt(u, clock_.Now(), 0, absl::Hours(24)), 1e-9);
  EXPECT_NEAR(Usage("acme"), 24, 0.01);
}

// Defect 7: every job gets a limit (on-demand default 24h), backfill uses
// it. t0: H (4 GPUs) on n1; t0+1h: L1, L2 (8 GPUs) on n2, n3, P (6) on n4.
// big (8 GPUs) fits on n1 once H ends (t0+24h, its shadow time; S = {n1}).
// small (2 GPUs, default 24h) starts on n4 (not in S); small2 would need n1
// and waits "would delay"; quick (1h limit, ends before the shadow time)
// may use n1. Without limits every job of the model waited ("its start time
// is unknown").
TEST_F(SchedLimits, Defect7DefaultLimitsAndBackfill) {
  for (const char* n : {"n1", "n2", "n3", "n4"}) AddNode(n);
  const std::string h = Submit(Spec("acme", 4));
  ASSERT_EQ(Round().size(), 1u);
  clock_.Advance(absl::Hours(1));
  const std::string l1 = Submit(Spec("acme", 8));
  const std::string l2 = Submit(Spec("acme", 8));
  const std::string p = Submit(Spec("acme", 6));
  ASSERT_EQ(Round().size(), 3u);
  EXPECT_EQ(Job(p).allocations(0).node(), "n4");
  EXPECT_EQ(FromProtoDuration(Job(l1).time_limit()), absl::Hours(24));
  EXPECT_EQ(FromProtoDuration(last_start_[l1].max_runtime()), absl::Hours(24));
  const std::string big = Submit(Spec("gamma", 8));
  const std::string small = Submit(Spec("gamma", 2));
  const std::string small2 = Submit(Spec("gamma", 2));
  v1::JobSpec q = Spec("gamma", 2);
  *q.mutable_max_runtime() = ToProtoDuration(absl::Hours(1));
  const std::string quick = Submit(q);
  clock_.Advance(absl::Seconds(1));
  EXPECT_THAT(Round(), UnorderedElementsAre(small, quick));
  EXPECT_THAT(Job(big).reason(), HasSubstr("expected in 22h59m"));
  EXPECT_EQ(Job(small).allocations(0).node(), "n4");
  EXPECT_EQ(Job(quick).allocations(0).node(), "n1");
  EXPECT_THAT(Job(small2).reason(), HasSubstr("would delay job " + big));
  // Several rounds: big keeps its reservation; quick ends within its limit.
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(absl::Minutes(10));
    EXPECT_THAT(Round(), IsEmpty());
  }
  Exited("n1", quick);
  EXPECT_THAT(Round(), IsEmpty());
  // H ends: big starts on n1.
  Exited("n1", h);
  EXPECT_THAT(Round(), UnorderedElementsAre(big));
  EXPECT_EQ(Job(big).allocations(0).node(), "n1");
  (void)l2;

  // A limit above the class's is refused, naming the field.
  v1::JobSpec too_long = Spec("acme", 1);
  *too_long.mutable_max_runtime() = ToProtoDuration(absl::Hours(200));
  auto r = TrySubmit(too_long);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "spec.max_runtime: 200h is above the on-demand limit 168h "
            "(scheduler.time_limit max_runtime_limit)");
}

// Quotas: acme's config quota (16 on-demand GPUs, 3 pending jobs); a third
// 8-GPU job waits naming the quota without blocking beta; set-quota raises
// it at run time (persisted); over max pending is refused at submit.
TEST_F(SchedLimits, QuotaFromConfigAndAtRunTime) {
  Make(Config(R"pb(
    tenant {
      name: "acme"
      quota {
        max_running_gpus { service_class: "on-demand" gpus: 16 }
        max_pending_jobs: 3
      }
    }
  )pb"));
  for (const char* n : {"n1", "n2", "n3", "n4"}) AddNode(n);
  const std::string a1 = Submit(Spec("acme", 8));
  const std::string a2 = Submit(Spec("acme", 8));
  const std::string a3 = Submit(Spec("acme", 8));
  auto refused = TrySubmit(Spec("acme", 1));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("max_pending_jobs 3"));
  const std::string b1 = Submit(Spec("beta", 8));
  EXPECT_THAT(Round(), UnorderedElementsAre(a1, a2, b1));
  EXPECT_EQ(Job(a3).reason(),
            "over quota: tenant acme runs 16 on-demand GPUs + 8 needed > "
            "max_running_gpus 16");
  EXPECT_THAT(Round(), IsEmpty());  // next round: the same
  v1::SetTenantQuotaRequest set;
  set.set_tenant("acme");
  set.mutable_quota()->set_max_running_gpus_on_demand(24);
  auto t = cm_->SetTenantQuota(set);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->quota().max_running_gpus_on_demand(), 24u);
  EXPECT_FALSE(t->quota().has_max_pending_jobs());  // replaced as a whole
  EXPECT_THAT(Round(), UnorderedElementsAre(a3));
  // The run-time quota survives a restart.
  NewManager();
  for (const v1::Tenant& x : cm_->ListTenants()) {
    if (x.name() == "acme") {
      EXPECT_EQ(x.quota().max_running_gpus_on_demand(), 24u);
    }
  }
  set.set_tenant("nobody");
  EXPECT_EQ(cm_->SetTenantQuota(set).status().code(),
            absl::StatusCode::kNotFound);
}

// --after: B starts once A succeeded; C fails when D fails; an unknown
// dependency is refused at submit.
TEST_F(SchedLimits, DependenciesOverRounds) {
  AddNode("n1");
  const std::string a = Submit(Spec("acme", 2));
  v1::JobSpec after_a = Spec("acme", 2);
  after_a.add_after(a);
  const std::string b = Submit(after_a);
  const std::string d = Submit(Spec("acme", 2));
  v1::JobSpec after_d = Spec("acme", 2);
  after_d.add_after(d);
  const std::string c = Submit(after_d);
  EXPECT_THAT(Round(), UnorderedElementsAre(a, d));
  EXPECT_THAT(Round(), IsEmpty());
  EXPECT_EQ(Job(b).reason(),
            absl::StrCat("waiting for ", a, " (it is running) to succeed"));
  Exited("n1", a, 0);
  Exited("n1", d, 3);
  EXPECT_THAT(Round(), UnorderedElementsAre(b));
  EXPECT_EQ(Job(c).state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(Job(c).reason(), absl::StrCat("dependency ", d, " failed"));
  v1::JobSpec bad = Spec("acme", 1);
  bad.add_after("job-999999");
  auto r = TrySubmit(bad);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("spec.after[0]"));
  // Another tenant's job is not a dependency it may name.
  v1::JobSpec other = Spec("beta", 1);
  other.add_after(b);
  EXPECT_EQ(TrySubmit(other).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// job hold / release over rounds, and who may.
TEST_F(SchedLimits, HoldAndRelease) {
  AddNode("n1");
  const std::string id = Submit(Spec("acme", 2));
  auto held = cm_->HoldJob(id, true, "acme");
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_TRUE(held->held());
  EXPECT_THAT(Round(), IsEmpty());
  EXPECT_THAT(Job(id).reason(), HasSubstr("held"));
  EXPECT_THAT(Round(), IsEmpty());
  EXPECT_EQ(cm_->HoldJob(id, false, "beta").status().code(),
            absl::StatusCode::kNotFound);
  // Held survives a restart.
  NewManager();
  AddNode("n1");
  EXPECT_TRUE(Job(id).held());
  EXPECT_THAT(Round(), IsEmpty());
  ASSERT_TRUE(cm_->HoldJob(id, false, "").ok());
  EXPECT_THAT(Round(), UnorderedElementsAre(id));
  EXPECT_EQ(cm_->HoldJob(id, true, "").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// A gang's running reason names all its nodes.
TEST_F(SchedLimits, GangReasonNamesAllNodes) {
  for (const char* n : {"n1", "n2", "n3"}) AddNode(n);
  const std::string id = Submit(Spec("acme", 8, 3));
  EXPECT_THAT(Round(), UnorderedElementsAre(id));
  EXPECT_EQ(Job(id).reason(), "running on n1, n2, n3");
}

}  // namespace
}  // namespace joule::daemon
