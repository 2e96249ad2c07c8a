// measured-plus's per-job commitment in the daemon (issue 16): jouled
// commits what scheduler/measured_window.h's rule says, the same rule
// joule-sim applies, chosen by the config's scheduler.plus_commit
// ("percentile": p50; "floor-clamp": clamp(floor, p50, p95)) and switched
// by a config reload. A real ClusterManager over a FakeClock and one fake
// agent whose GPUs draw what the test says, over many report rounds.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "config/cluster_config.h"
#include "daemon/cluster_manager.h"
#include "daemon/config_reload.h"
#include "gtest/gtest.h"
#include "scheduler/measured_window.h"
#include "storage/memory_store.h"
#include "tests/daemon/manager_fixture.h"

namespace joule::daemon {
namespace {

constexpr int64_t kW = 1000;  // mW

// rack-a (100 kW, no power pressure): n1, 1 kW base, 8 × H100 (200..700 W,
// idle 70 W); measured-plus with the default floors (on-demand 0.8: an
// on-demand job at 700 W gets 70 + 0.8 × 630 = 574 W). After
// test::kH100HgxSite; `plus` is the scheduler.plus_commit line.
std::string ConfigText(const std::string& plus) {
  return absl::StrCat(
      test::kH100HgxSite, R"pb(
        domain { name: "rack-a" parent: "site" kind: "rack" cap: "100kW" }
        node { name: "n1" domain: "rack-a" }
        tenant { name: "acme" }
        scheduler { default_node_model: "hgx" admission: "measured-plus"
      )pb",
      plus, "\n}\n");
}

config::ClusterConfig Parse(const std::string& plus) {
  auto cfg = config::ParseClusterConfig(ConfigText(plus), "test.conf");
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  return cfg.ok() ? *cfg : config::ClusterConfig();
}

// One fake agent (n1): each Report() says the started job's GPUs draw
// `draw_mw` (capped at their limit), free GPUs 70 W. Over `store` (a
// restart: loaded first) or its own.
class OneNode final : public AgentLink {
 public:
  explicit OneNode(const std::string& plus, storage::Store* store = nullptr) {
    ClusterManagerOptions o = test::ManagerOptions(
        Parse(plus), store != nullptr ? store : &store_, &clock_);
    o.report_interval = absl::Seconds(1);  // one sample = one 1 s report
    cm_ = std::make_unique<ClusterManager>(std::move(o));
    EXPECT_TRUE(cm_->Load().ok());
    auto resp =
        test::ConnectAgent(*cm_, test::FakeRegistration("n1", 8, "GPU-"), this);
    EXPECT_TRUE(resp.ok()) << resp.status();
    Report(0);
  }
  void Send(const v1::DaemonMessage& m) override {
    if (m.has_start_job()) {
      job_ = m.start_job().job_id();
      attempt_ = m.start_job().attempt();
      gpus_.assign(m.start_job().gpu_indices().begin(),
                   m.start_job().gpu_indices().end());
      for (uint32_t g : gpus_) limits_[g] = m.start_job().power_limit_mw();
    }
    if (m.has_set_power_limit()) {
      limits_[m.set_power_limit().gpu_index()] =
          m.set_power_limit().power_limit_mw();
    }
  }
  // Submits an 8-GPU on-demand job (700 W, no min power, named `name`,
  // in efficiency mode if asked).
  std::string Submit(const std::string& name = "", bool efficiency = false) {
    v1::SubmitJobRequest req;
    v1::JobSpec* s = req.mutable_spec();
    s->set_tenant("acme");
    s->set_name(name);
    s->add_command("train");
    s->set_gpus_per_node(8);
    s->set_gpu_model("H100");
    if (efficiency) s->set_power_mode(v1::POWER_MODE_EFFICIENCY);
    auto job = cm_->SubmitJob(req, "");
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->id() : "";
  }
  // Submit, then a round places it and the agent starts it.
  std::string SubmitAndStart(const std::string& name = "",
                             bool efficiency = false) {
    const std::string id = Submit(name, efficiency);
    cm_->ScheduleOnce();
    v1::JobUpdate u;
    u.set_job_id(job_);
    u.set_attempt(attempt_);
    u.set_phase(v1::JOB_PHASE_STARTED);
    *u.mutable_time() = ToProtoTime(clock_.Now());
    EXPECT_TRUE(cm_->HandleJobUpdate("n1", u).ok());
    return id;
  }
  // One report of the job's GPUs at `draw_mw` each; returns the per-GPU
  // draw reported (capped at the limit). `limit_mw` > 0: the job's GPUs
  // say they run at that limit.
  int64_t Report(int64_t draw_mw, int64_t limit_mw = 0) {
    v1::NodeReport r;
    r.set_node_name("n1");
    *r.mutable_time() = ToProtoTime(clock_.Now());
    std::map<uint32_t, bool> busy;
    if (!job_.empty()) {
      test::AddReportedJob(&r, job_, attempt_, gpus_);
      for (uint32_t g : gpus_) busy[g] = true;
    }
    int64_t reported = 0;
    for (uint32_t i = 0; i < 8; ++i) {
      int64_t limit = limits_.contains(i) ? limits_[i] : 700 * kW;
      if (busy[i] && limit_mw > 0) limit = limit_mw;
      v1::GpuStatus* g = test::AddH100Status(
          &r, i, limit, busy[i] ? std::min(draw_mw, limit) : 70 * kW);
      g->set_max_power_limit_mw(700 * kW);
      g->set_utilization_pct(busy[i] ? 90 : 0);
      if (busy[i]) reported = g->power_mw();
    }
    EXPECT_TRUE(cm_->HandleReport("n1", r).ok());
    return reported;
  }
  // rack-a's committed power: 1 kW base + 8 × the job's commitment.
  int64_t CommittedPerGpuMw() {
    const v1::GetPowerTreeResponse tree = cm_->PowerTree();
    for (const auto& d : tree.domains()) {
      if (d.name() == "rack-a") return (d.committed_mw() - 1'000 * kW) / 8;
    }
    ADD_FAILURE() << "no rack-a";
    return 0;
  }
  ClusterManager& cm() { return *cm_; }
  FakeClock& clock() { return clock_; }

 private:
  FakeClock clock_;
  storage::MemoryStore store_;
  std::unique_ptr<ClusterManager> cm_;
  std::string job_;
  uint32_t attempt_ = 0;
  std::vector<uint32_t> gpus_;
  std::map<uint32_t, int64_t> limits_;
};

// The draw of report `i`: nine at 500 W, then one at 650 W. Over the 60 s
// window (60 reports): p50 = 500 W, p95 = 650 W (6 of 60 are 650 W). The
// job's floor is 574 W (on-demand 0.8), between the two: the clamp commits
// 574 W, p50 commits 500 W.
int64_t DrawOf(int i) { return i % 10 == 9 ? 650 * kW : 500 * kW; }

struct CommitCase {
  std::string name;
  std::string plus;  // the scheduler.plus_commit line
  scheduler::MeasuredCommitRule rule;
  int64_t after_a_minute_w;  // per GPU, after 90 reports
};

class PlusCommitDaemonTest : public ::testing::TestWithParam<CommitCase> {};

// Every round the daemon commits what the rule gives for the same samples
// in a window of the sim's options: the limit (700 W) for the first 4 s,
// then the rule's value.
TEST_P(PlusCommitDaemonTest, CommitsWhatTheSharedRuleSaysEveryRound) {
  const CommitCase& c = GetParam();
  OneNode n(c.plus);
  const std::string id = n.SubmitAndStart();
  ASSERT_EQ(n.cm().GetJob(id, "")->min_power_limit_mw(), 574 * kW);
  scheduler::MeasuredWindow window;
  const scheduler::MeasuredWindowOptions options;
  for (int i = 0; i < 90; ++i) {
    n.clock().Advance(absl::Seconds(1));
    const int64_t drew = n.Report(DrawOf(i));
    window.Add(drew, 1000, options);
    n.cm().ControlPowerOnce();
    const int64_t want =
        window.CommitPerGpuMw(c.rule, options, 700 * kW, 574 * kW);
    ASSERT_EQ(n.CommittedPerGpuMw(), want) << "report " << i;
    if (i < 4) ASSERT_EQ(want, 700 * kW) << i;  // under 5 s of history
  }
  EXPECT_EQ(n.CommittedPerGpuMw(), c.after_a_minute_w * kW);
}

INSTANTIATE_TEST_SUITE_P(
    Rules, PlusCommitDaemonTest,
    ::testing::Values(CommitCase{"DefaultIsP50", "",
                                 scheduler::MeasuredPlusRule(), 500},
                      CommitCase{"Percentile", "plus_commit: \"percentile\"",
                                 scheduler::MeasuredPlusRule(), 500},
                      CommitCase{"FloorClamp", "plus_commit: \"floor-clamp\"",
                                 scheduler::FloorClampRule(), 574}),
    [](const auto& info) { return info.param.name; });

// A config reload switches the rule for the jobs already running: p50
// (500 W) -> clamp (574 W) -> p50 again, with no new samples needed.
TEST(PlusCommitDaemonTest, ConfigReloadSwitchesTheRuleOfRunningJobs) {
  OneNode n("");
  n.SubmitAndStart();
  for (int i = 0; i < 60; ++i) {
    n.clock().Advance(absl::Seconds(1));
    n.Report(DrawOf(i));
  }
  ASSERT_EQ(n.CommittedPerGpuMw(), 500 * kW);
  const config::ClusterConfig p50 = Parse("");
  const config::ClusterConfig clamp = Parse("plus_commit: \"floor-clamp\"");
  auto plan = DiffConfig(p50, clamp);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->settings.size(), 1u);
  EXPECT_EQ(plan->settings[0].Text(),
            "scheduler.plus_commit percentile -> floor-clamp");
  ASSERT_TRUE(n.cm().ApplyConfigReload(*plan, "test").ok());
  EXPECT_EQ(n.CommittedPerGpuMw(), 574 * kW);
  // Over more rounds it stays the clamp's value.
  for (int i = 60; i < 80; ++i) {
    n.clock().Advance(absl::Seconds(1));
    n.Report(DrawOf(i));
    n.cm().ControlPowerOnce();
    ASSERT_EQ(n.CommittedPerGpuMw(), 574 * kW) << i;
  }
  auto back = DiffConfig(clamp, p50);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(n.cm().ApplyConfigReload(*back, "test").ok());
  EXPECT_EQ(n.CommittedPerGpuMw(), 500 * kW);
}

// The knee jouled learns survives a restart, and `job show` says which one
// an efficiency job of the workload gets. The old jouled's job is lost at
// the restart (its agent no longer runs it), which frees n1. 20 reports at a
// 259 W limit (share (259 − 70) / 630 = 300 ‰) drawing 259 W at 90 %, 20 at 700
// W drawing 700 W at 90 %: energy per work 259 / 90 < 700 / 90, so the knee is
// 300 ‰ (not the config's 500 ‰). After the restart an efficiency job named
// "train" runs at 70 + 0.3 × 630 = 259 W.
TEST(LearnedKneeDaemonTest, SurvivesARestartAndTheJobSaysItIsLearned) {
  storage::MemoryStore store;
  {
    OneNode n("", &store);
    const std::string id = n.SubmitAndStart("train");
    for (int i = 0; i < 20; ++i) {
      n.clock().Advance(absl::Seconds(1));
      n.Report(700 * kW, 259 * kW);
      n.Report(700 * kW, 700 * kW);
    }
    ASSERT_EQ(n.cm().FlushKneesOnce(), 1u);
    // Within the minute nothing more is written, whatever comes in.
    n.Report(700 * kW, 259 * kW);
    EXPECT_EQ(n.cm().FlushKneesOnce(), 0u);
    EXPECT_FALSE(id.empty());
  }
  OneNode n("", &store);  // jouled restarted over the same store
  const std::string e = n.Submit("train", /*efficiency=*/true);
  v1::Job pending = *n.cm().GetJob(e, "");
  EXPECT_TRUE(pending.efficiency_knee().learned());
  EXPECT_EQ(pending.efficiency_knee().share_permille(), 300);
  EXPECT_EQ(pending.efficiency_knee().workload(), "acme/train/H100");
  EXPECT_EQ(pending.efficiency_knee().samples(), 320);  // 40 reports × 8 GPUs
  n.cm().ScheduleOnce();
  const v1::Job placed = *n.cm().GetJob(e, "");
  EXPECT_EQ(placed.power_limit_mw(), 259 * kW);
  EXPECT_TRUE(placed.efficiency_knee().learned());
  EXPECT_EQ(placed.efficiency_knee().share_permille(), 300);
  // Another workload of the tenant has learned nothing: the config's knee,
  // 70 + 0.5 × 630 = 385 W.
  const std::string other = n.Submit("infer", /*efficiency=*/true);
  const v1::Job o = *n.cm().GetJob(other, "");
  EXPECT_FALSE(o.efficiency_knee().learned());
  EXPECT_EQ(o.efficiency_knee().share_permille(), 500);
}

// GetPowerTree (joulectl power tree's "admission mode:", the dashboard)
// names the mode as the config does; measured-plus was shown as
// "allocated".
TEST(PowerTreeTest, NamesTheAdmissionModeAsTheConfigDoes) {
  for (const std::string mode : {"allocated", "measured", "measured-plus"}) {
    auto cfg = config::ParseClusterConfig(
        absl::StrCat(test::kH100HgxSite, "scheduler { admission: \"", mode,
                     "\" }\n"),
        "test.conf");
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    storage::MemoryStore store;
    FakeClock clock;
    ClusterManager cm(test::ManagerOptions(*cfg, &store, &clock));
    ASSERT_TRUE(cm.Load().ok());
    EXPECT_EQ(cm.PowerTree().admission_mode(), mode);
  }
}

}  // namespace
}  // namespace joule::daemon
