// Hardening of the cluster manager against what agents and callers send
// (issue #10): telemetry bounds, daemon-owned job times, re-adoption after
// an agent restart, GPUs of old attempts kept from new ones, node limits,
// the STARTING timeout and node removal. ClusterManager driven directly
// with a FakeClock and a MemoryStore; no threads.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "config/cluster_config.h"
#include "daemon/cluster_manager.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/memory_store.h"
#include "tests/daemon/manager_fixture.h"

namespace joule::daemon {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kW = 1000;  // mW

// site (1 MW) > rack (100 kW): n1, n2; 8 x H100 (200..700 W, idle 70 W).
std::string Config(const std::string& extra_scheduler = "") {
  return absl::StrCat(
      test::kH100HgxSite,
      R"pb(
        domain { name: "rack" parent: "site" kind: "rack" cap: "100kW" }
        node { name: "n1" domain: "rack" }
        node { name: "n2" domain: "rack" }
        tenant { name: "acme" }
        scheduler { default_node_model: "hgx" default_domain: "rack")pb",
      extra_scheduler, "}\n");
}

class Link final : public AgentLink {
 public:
  void Send(const v1::DaemonMessage& m) override { sent.push_back(m); }
  std::vector<v1::DaemonMessage> sent;
};

class Harden : public ::testing::Test {
 protected:
  void SetUp() override { Make(Config()); }
  void Make(const std::string& text) {
    auto cfg = config::ParseClusterConfig(text, "test.conf");
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    cm_ = std::make_unique<ClusterManager>(
        test::ManagerOptions(*cfg, &store_, &clock_));
  }
  static v1::RegisterRequest Reg(const std::string& node) {
    v1::RegisterRequest r;
    r.set_node_name(node);
    r.set_address("127.0.0.1");
    test::AddH100Gpus(&r, 8);
    return r;
  }
  void Attach(const std::string& node, const v1::RegisterRequest& req) {
    if (links_[node]) cm_->DetachAgent(node, links_[node].get());
    auto resp = cm_->RegisterAgent(req);
    ASSERT_TRUE(resp.ok()) << resp.status();
    links_[node] = std::make_unique<Link>();
    v1::AgentHello h;
    h.set_node_name(node);
    h.set_session_id(resp->session_id());
    ASSERT_TRUE(cm_->AttachAgent(h, links_[node].get()).ok());
  }
  // A report: every GPU at `mw`, listing `jobs` ("id" attempt 1, GPUs 0-7).
  v1::NodeReport Report(const std::string& node, int64_t mw,
                        std::vector<std::string> jobs = {}) {
    v1::NodeReport r;
    r.set_node_name(node);
    for (int i = 0; i < 8; ++i) {
      v1::GpuStatus* g = r.add_gpus();
      g->set_index(i);
      g->set_healthy(true);
      g->set_power_mw(mw);
      g->set_power_limit_mw(700 * kW);
      g->set_energy_mj(energy_[node]);
    }
    for (const std::string& id : jobs) {
      v1::RunningJob* j = r.add_jobs();
      j->set_job_id(id);
      j->set_attempt(1);
      for (uint32_t g = 0; g < 8; ++g) j->add_gpu_indices(g);
    }
    return r;
  }
  std::string Submit() {
    v1::SubmitJobRequest req;
    req.mutable_spec()->set_tenant("acme");
    req.mutable_spec()->add_command("sleep");
    req.mutable_spec()->set_gpus_per_node(8);
    auto j = cm_->SubmitJob(req, "");
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? j->id() : "";
  }
  v1::JobUpdate Update(const std::string& id, v1::JobPhase phase,
                       absl::Time t) {
    v1::JobUpdate u;
    u.set_job_id(id);
    u.set_attempt(1);
    u.set_phase(phase);
    *u.mutable_time() = ToProtoTime(t);
    return u;
  }
  v1::Job Job(const std::string& id) { return *cm_->GetJob(id, ""); }
  int64_t RackMeasured() {
    const v1::GetPowerTreeResponse tree = cm_->PowerTree();
    for (const auto& d : tree.domains()) {
      if (d.name() == "rack") return d.measured_mw();
    }
    return -1;
  }
  std::vector<v1::Event> Events(const std::string& kind) {
    v1::ListEventsRequest r;
    r.set_kind(kind);
    return *cm_->ListEvents(r);
  }
  // Which nodes got a StartJob since the last call.
  std::vector<std::string> Started() {
    std::vector<std::string> out;
    for (auto& [node, link] : links_) {
      for (const auto& m : link->sent) {
        if (m.has_start_job()) out.push_back(node);
      }
      link->sent.clear();
    }
    return out;
  }

  FakeClock clock_;
  storage::MemoryStore store_;
  std::unique_ptr<ClusterManager> cm_;
  std::map<std::string, std::unique_ptr<Link>> links_;
  std::map<std::string, uint64_t> energy_;
};

// Physics: a report outside the bounds is refused whole, with an event
// naming the node and the field, and never moves domain sums.
TEST_F(Harden, OutOfBoundsReportsAreRefused) {
  Attach("n1", Reg("n1"));
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 100 * kW)).ok());
  const int64_t before = RackMeasured();
  // 1 kW base + 8 x 100 W.
  EXPECT_EQ(before, 1000 * kW + 8 * 100 * kW);
  struct Case {
    std::string field;
    std::function<void(v1::GpuStatus*)> poison;
  };
  const std::vector<Case> cases = {
      {"report.gpus[0].power_mw", [](auto* g) { g->set_power_mw(-1e10); }},
      {"report.gpus[0].power_mw", [](auto* g) { g->set_power_mw(INT64_MAX); }},
      // 2 x 700 W max limit = 1400 W is the most a GPU may draw.
      {"report.gpus[0].power_mw",
       [](auto* g) { g->set_power_mw(1400 * kW + 1); }},
      {"report.gpus[0].utilization_pct",
       [](auto* g) { g->set_utilization_pct(101); }},
      {"report.gpus[0].temperature_c",
       [](auto* g) { g->set_temperature_c(5000); }},
      {"report.gpus[0].memory_used_bytes",
       [](auto* g) {
         g->set_memory_total_bytes(80);
         g->set_memory_used_bytes(81);
       }},
      {"report.gpus[0].health_detail",
       [](auto* g) { g->set_health_detail(std::string(2000, 'x')); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    v1::NodeReport r = Report("n1", 100 * kW);
    c.poison(r.mutable_gpus(0));
    ASSERT_TRUE(cm_->HandleReport("n1", r).ok());  // the stream stays up
    EXPECT_EQ(RackMeasured(), before);
    std::vector<v1::Event> ev = Events("telemetry");
    ASSERT_FALSE(ev.empty());
    EXPECT_EQ(ev.back().subject(), "n1");
    EXPECT_THAT(ev.back().message(), HasSubstr(c.field));
    EXPECT_THAT(ev.back().message(), HasSubstr("n1"));
  }
  // The same refusal again is not a new event.
  const size_t events = Events("telemetry").size();
  v1::NodeReport r = Report("n1", 100 * kW);
  r.mutable_gpus(0)->set_health_detail(std::string(2000, 'x'));
  ASSERT_TRUE(cm_->HandleReport("n1", r).ok());
  EXPECT_EQ(Events("telemetry").size(), events);
  // A good report counts again: 1 kW + 8 x 200 W.
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 200 * kW)).ok());
  EXPECT_EQ(RackMeasured(), 1000 * kW + 8 * 200 * kW);
}

// An energy counter that goes down is a reset: an event, not negative
// energy.
TEST_F(Harden, EnergyResetIsAnEvent) {
  Attach("n1", Reg("n1"));
  energy_["n1"] = 5'000'000;
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 100 * kW)).ok());
  energy_["n1"] = 10;
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 100 * kW)).ok());
  std::vector<v1::Event> ev = Events("gpu");
  ASSERT_FALSE(ev.empty());
  EXPECT_THAT(ev.back().message(), HasSubstr("energy counter reset"));
  EXPECT_EQ(cm_->GetNode("n1")->energy_mj(), 8 * 10u);
}

// Job times are the daemon's: an agent's clock an hour behind or ahead
// moves neither the start before StartJob nor the end past receipt.
TEST_F(Harden, AgentTimesAreClampedToTheDaemons) {
  Attach("n1", Reg("n1"));
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 70 * kW)).ok());
  const std::string id = Submit();
  cm_->ScheduleOnce();
  const absl::Time sent = clock_.Now();
  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(cm_->HandleJobUpdate("n1", Update(id, v1::JOB_PHASE_STARTED,
                                                sent - absl::Hours(1)))
                  .ok());
  clock_.Advance(absl::Seconds(10));
  v1::JobUpdate end =
      Update(id, v1::JOB_PHASE_EXITED, clock_.Now() + absl::Hours(1));
  ASSERT_TRUE(cm_->HandleJobUpdate("n1", end).ok());
  const v1::JobAttempt a = Job(id).attempts(0);
  EXPECT_EQ(FromProtoTime(a.start_time()), sent);
  EXPECT_EQ(FromProtoTime(a.end_time()), clock_.Now());
}

// A rank's reported energy is bounded by its GPUs at twice their max limit
// for the attempt's duration (+1 s): 8 x 1,400 W x (10 s + 1 s) =
// 123,200,000 mJ at most.
TEST_F(Harden, ImpossibleJobEnergyIsClamped) {
  Attach("n1", Reg("n1"));
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 70 * kW)).ok());
  const std::string id = Submit();
  cm_->ScheduleOnce();
  ASSERT_TRUE(cm_->HandleJobUpdate(
                     "n1", Update(id, v1::JOB_PHASE_STARTED, clock_.Now()))
                  .ok());
  clock_.Advance(absl::Seconds(10));
  v1::JobUpdate u = Update(id, v1::JOB_PHASE_EXITED, clock_.Now());
  u.set_energy_mj(uint64_t{1} << 62);
  ASSERT_TRUE(cm_->HandleJobUpdate("n1", u).ok());
  EXPECT_EQ(Job(id).attempts(0).energy_mj(), 8u * 1'400'000 * 11);
  std::vector<v1::Event> ev = Events("telemetry");
  ASSERT_FALSE(ev.empty());
  EXPECT_THAT(ev.back().message(), HasSubstr("job_update.energy_mj"));
}

// Billing issue #12 item 6: an agent SIGKILLed 5 s after the start and
// restarted 30 s later without the job: the attempt ends at the last report
// that showed it (5 s), not at the re-registration (35 s).
TEST_F(Harden, LostJobEndsAtItsLastSighting) {
  Attach("n1", Reg("n1"));
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 70 * kW)).ok());
  const std::string id = Submit();
  cm_->ScheduleOnce();
  const absl::Time start = clock_.Now();
  ASSERT_TRUE(
      cm_->HandleJobUpdate("n1", Update(id, v1::JOB_PHASE_STARTED, start))
          .ok());
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 500 * kW, {id})).ok());
  clock_.Advance(absl::Seconds(30));
  Attach("n1", Reg("n1"));  // restarted; runs nothing
  const v1::Job j = Job(id);
  ASSERT_EQ(j.attempts_size(), 1);
  EXPECT_EQ(FromProtoTime(j.attempts(0).end_time()) -
                FromProtoTime(j.attempts(0).start_time()),
            absl::Seconds(5));
}

// An agent back after a crash lists an attempt that ended meanwhile as
// exited: the attempt is kept (not settled as lost), and the EXITED update
// that follows gives the real exit code.
TEST_F(Harden, ExitedWhileAwayKeepsTheRealExitCode) {
  Attach("n1", Reg("n1"));
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 70 * kW)).ok());
  const std::string id = Submit();
  cm_->ScheduleOnce();
  ASSERT_TRUE(cm_->HandleJobUpdate(
                     "n1", Update(id, v1::JOB_PHASE_STARTED, clock_.Now()))
                  .ok());
  clock_.Advance(absl::Seconds(3));
  const absl::Time ended = clock_.Now();
  clock_.Advance(absl::Seconds(20));
  v1::RegisterRequest reg = Reg("n1");
  v1::RunningJob* r = reg.add_running_jobs();
  r->set_job_id(id);
  r->set_attempt(1);
  r->set_exited(true);
  Attach("n1", reg);
  EXPECT_EQ(Job(id).state(), v1::JOB_STATE_RUNNING);
  for (const auto& m : links_["n1"]->sent) EXPECT_FALSE(m.has_stop_job());
  v1::JobUpdate u = Update(id, v1::JOB_PHASE_EXITED, ended);
  u.set_exit_code(7);
  ASSERT_TRUE(cm_->HandleJobUpdate("n1", u).ok());
  const v1::Job j = Job(id);
  EXPECT_EQ(j.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(j.exit_code(), 7);
  EXPECT_EQ(FromProtoTime(j.attempts(0).end_time()), ended);
}

// An old attempt the agent still runs holds its GPUs: no new attempt gets
// them until a report shows its processes gone.
TEST_F(Harden, StaleAttemptKeepsItsGpusUntilGone) {
  Attach("n1", Reg("n1"));
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 70 * kW)).ok());
  const std::string id = Submit();
  cm_->ScheduleOnce();
  ASSERT_EQ(Started(), std::vector<std::string>{"n1"});
  // No STARTED within the timeout: requeued, attempt 1 over for the daemon.
  clock_.Advance(absl::Seconds(61));
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 70 * kW)).ok());
  cm_->CheckLiveness();
  ASSERT_EQ(Job(id).state(), v1::JOB_STATE_PENDING);
  // The agent reports attempt 1 running after all (its start was slow).
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 500 * kW, {id})).ok());
  cm_->ScheduleOnce();
  EXPECT_THAT(Started(), IsEmpty());  // only a stop went out
  EXPECT_EQ(Job(id).state(), v1::JOB_STATE_PENDING);
  // Gone: attempt 2 may have the GPUs.
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 70 * kW)).ok());
  cm_->ScheduleOnce();
  EXPECT_EQ(Started(), std::vector<std::string>{"n1"});
  EXPECT_EQ(Job(id).attempt(), 2u);
}

// A job that no agent confirms within scheduler.starting_timeout (60 s by
// default) is requeued with a reason.
TEST_F(Harden, StartingPastTimeoutIsRequeued) {
  Attach("n1", Reg("n1"));
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 70 * kW)).ok());
  const std::string id = Submit();
  cm_->ScheduleOnce();
  clock_.Advance(absl::Seconds(59));
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 70 * kW)).ok());
  cm_->CheckLiveness();
  EXPECT_EQ(Job(id).state(), v1::JOB_STATE_STARTING);
  clock_.Advance(absl::Seconds(2));
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 70 * kW)).ok());
  cm_->CheckLiveness();
  const v1::Job j = Job(id);
  EXPECT_EQ(j.state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(j.reason(), HasSubstr("not started within 1m"));
  EXPECT_THAT(j.reason(), HasSubstr("n1"));
}

// `node remove`: refused while a job is placed on the node or its agent
// reports; then the node is gone.
TEST_F(Harden, RemoveNode) {
  Attach("n1", Reg("n1"));
  ASSERT_TRUE(cm_->HandleReport("n1", Report("n1", 70 * kW)).ok());
  const std::string id = Submit();
  cm_->ScheduleOnce();
  absl::Status s = cm_->RemoveNode("n1");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr(id));
  v1::CancelJobRequest cancel;
  cancel.set_id(id);
  ASSERT_TRUE(cm_->CancelJob(cancel, "").ok());
  ASSERT_TRUE(
      cm_->HandleJobUpdate("n1", Update(id, v1::JOB_PHASE_EXITED, clock_.Now()))
          .ok());
  ASSERT_EQ(Job(id).state(), v1::JOB_STATE_CANCELLED);
  s = cm_->RemoveNode("n1");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);  // reporting
  EXPECT_THAT(s.message(), HasSubstr("connected"));
  cm_->DetachAgent("n1", links_["n1"].get());
  EXPECT_TRUE(cm_->RemoveNode("n1").ok());
  EXPECT_EQ(cm_->GetNode("n1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(RackMeasured(), 0);
  EXPECT_EQ(cm_->RemoveNode("n1").code(), absl::StatusCode::kNotFound);
}

// The domain the ops log names for a node is the node view's, without
// building the view; unknown nodes have none.
TEST_F(Harden, NodeDomainIsTheViewsDomain) {
  Attach("n1", Reg("n1"));
  EXPECT_EQ(cm_->NodeDomain("n1"), "rack");
  EXPECT_EQ(cm_->NodeDomain("n1"), cm_->GetNode("n1")->domain());
  EXPECT_EQ(cm_->NodeDomain("n9"), "");
}

// New nodes: at most scheduler.max_nodes, and at most
// max_registrations_per_second of them per second.
TEST_F(Harden, NodeCountAndRegistrationRateAreCapped) {
  Make(Config("max_nodes: 3 max_registrations_per_second: 2"));
  EXPECT_TRUE(cm_->RegisterAgent(Reg("a1")).ok());
  EXPECT_TRUE(cm_->RegisterAgent(Reg("a2")).ok());
  EXPECT_EQ(cm_->RegisterAgent(Reg("a3")).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(cm_->RegisterAgent(Reg("a1")).ok());  // known: not counted
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(cm_->RegisterAgent(Reg("a3")).ok());
  absl::Status s = cm_->RegisterAgent(Reg("a4")).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("max_nodes"));
}

// Register values are bounded; each refusal names its field.
TEST_F(Harden, RegisterValuesAreBounded) {
  struct Case {
    std::string field;
    std::function<void(v1::RegisterRequest*)> poison;
  };
  const std::vector<Case> cases = {
      {"node_name", [](auto* r) { r->set_node_name(".."); }},
      {"node_name", [](auto* r) { r->set_node_name(std::string(129, 'a')); }},
      {"address", [](auto* r) { r->set_address(std::string(10 << 20, 'a')); }},
      {"address", [](auto* r) { r->set_address("a b"); }},
      {"gpus",
       [](auto* r) {
         for (int i = 8; i < 65; ++i) *r->add_gpus() = r->gpus(0);
       }},
      {"gpus[0].max_power_limit_mw",
       [](auto* r) { r->mutable_gpus(0)->set_max_power_limit_mw(INT64_MAX); }},
      {"gpus[0].model", [](auto* r) { r->mutable_gpus(0)->set_model("../x"); }},
      {"running_jobs[0].job_id",
       [](auto* r) { r->add_running_jobs()->set_job_id("../../x"); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    v1::RegisterRequest r = Reg("n1");
    c.poison(&r);
    absl::Status s = cm_->RegisterAgent(r).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.field + ":"));
  }
  EXPECT_THAT(cm_->ListNodes(), IsEmpty());
}

}  // namespace
}  // namespace joule::daemon
