// Issue #11 regressions at the controller level, over several rounds:
// ClusterManager driven directly with a FakeClock, a MemoryStore and fake
// agents (their GPUs draw at most the limit last commanded, as a driver
// would). Defects: 1 (claims: one wave of victims, claimant placed on
// exactly the claimed GPUs, across a restart), 2 (preempted while STARTING
// keeps its reason), 4 (a victim's GPUs drop to their minimum limit before
// the grace: the reported draw meets the cap at the next report), 5
// (priority-aware capping), 8 (a cap below the idle floor).

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
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

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kW = 1000;
constexpr int64_t kKw = 1000 * kW;

// rack-a: n1 n2 n3, rack-b: n4 (1 kW base; 8 × H100, 200..700 W, idle
// 70 W). acme has a contract for 8 H100. After test::kH100HgxSite.
constexpr char kConfig[] = R"pb(
  domain { name: "rack-a" parent: "site" kind: "rack" cap: "100kW" }
  domain { name: "rack-b" parent: "site" kind: "rack" cap: "100kW" }
  node { name: "n1" domain: "rack-a" }
  node { name: "n2" domain: "rack-a" }
  node { name: "n3" domain: "rack-a" }
  node { name: "n4" domain: "rack-b" }
  tenant { name: "acme" }
  tenant { name: "beta" }
  scheduler { default_node_model: "hgx" stop_grace: "2s" }
)pb";

class Cluster;

class Link final : public AgentLink {
 public:
  Link(std::string node, Cluster* c) : node_(std::move(node)), c_(c) {}
  void Send(const v1::DaemonMessage& msg) override;

 private:
  std::string node_;
  Cluster* c_;
};

// The fake agents and the manager over one store.
class Cluster {
 public:
  Cluster() {
    auto cfg = config::ParseClusterConfig(
        absl::StrCat(test::kH100HgxSite, kConfig), "test.conf");
    EXPECT_TRUE(cfg.ok()) << cfg.status();
    config_ = *std::move(cfg);
    NewManager();
  }
  // A restart of jouled: a new manager over the same store, loaded; the
  // agents keep running and register again.
  void Restart() {
    std::vector<std::string> nodes;
    for (const auto& [n, l] : links_) nodes.push_back(n);
    links_.clear();
    NewManager();
    ASSERT_TRUE(cm_->Load().ok());
    for (const std::string& n : nodes) AddNode(n);
  }
  ClusterManager& cm() { return *cm_; }
  FakeClock& clock() { return clock_; }
  storage::MemoryStore& store() { return store_; }

  void AddNode(const std::string& node) {
    v1::RegisterRequest req =
        test::FakeRegistration(node, 8, absl::StrCat("GPU-", node, "-"));
    for (const auto& [key, j] : jobs_[node]) {
      v1::RunningJob* r = req.add_running_jobs();
      r->set_job_id(j.id);
      r->set_attempt(j.attempt);
      for (uint32_t g : j.gpus) r->add_gpu_indices(g);
    }
    auto link = std::make_unique<Link>(node, this);
    auto resp = test::ConnectAgent(*cm_, req, link.get());
    ASSERT_TRUE(resp.ok()) << resp.status();
    links_[node] = std::move(link);
    Report(node);
  }
  // GPUs of a started job draw 700 W capped at their limit; others 70 W.
  void Report(const std::string& node) {
    v1::NodeReport r;
    r.set_node_name(node);
    *r.mutable_time() = ToProtoTime(clock_.Now());
    std::map<uint32_t, bool> busy;
    for (const auto& [key, j] : jobs_[node]) {
      test::AddReportedJob(&r, j.id, j.attempt, j.gpus);
      for (uint32_t g : j.gpus) busy[g] = j.started;
    }
    for (int i = 0; i < 8; ++i) {
      auto lim = limits_[node].find(i);
      const int64_t limit = lim == limits_[node].end() ? 700 * kW : lim->second;
      test::AddH100Status(
          &r, i, limit, busy[i] ? std::min<int64_t>(700 * kW, limit) : 70 * kW);
    }
    ASSERT_TRUE(cm_->HandleReport(node, r).ok());
  }
  void ReportAll() {
    for (const auto& [n, l] : links_) Report(n);
  }
  void Update(const std::string& node, const std::string& id,
              v1::JobPhase phase, int code = 0) {
    auto it = jobs_[node].find(id);
    ASSERT_NE(it, jobs_[node].end()) << id << " not on " << node;
    v1::JobUpdate u;
    u.set_job_id(id);
    u.set_attempt(it->second.attempt);
    u.set_phase(phase);
    u.set_exit_code(code);
    *u.mutable_time() = ToProtoTime(clock_.Now());
    if (phase == v1::JOB_PHASE_STARTED) {
      it->second.started = true;
    } else {
      jobs_[node].erase(it);
    }
    ASSERT_TRUE(cm_->HandleJobUpdate(node, u).ok());
  }
  void StartAll() {
    for (auto& [node, jobs] : jobs_) {
      std::vector<std::string> ids;
      for (const auto& [id, j] : jobs) {
        if (!j.started) ids.push_back(id);
      }
      for (const std::string& id : ids) Update(node, id, v1::JOB_PHASE_STARTED);
    }
  }
  // Every job told to stop exits (143).
  void StoppedExit() {
    for (auto& [node, ids] : stop_) {
      for (const std::string& id : ids) {
        if (jobs_[node].contains(id)) {
          Update(node, id, v1::JOB_PHASE_EXITED, 143);
        }
      }
    }
    stop_.clear();
  }
  std::string NodeOf(const std::string& id) {
    for (const auto& [node, jobs] : jobs_) {
      if (jobs.contains(id)) return node;
    }
    return "";
  }
  std::vector<uint32_t> GpusOf(const std::string& id) {
    const std::string n = NodeOf(id);
    return n.empty() ? std::vector<uint32_t>{} : jobs_[n][id].gpus;
  }
  std::vector<v1::DaemonMessage> Take() { return std::exchange(log_, {}); }

  std::string Submit(uint32_t gpus, v1::ServiceClass cls, int64_t min_mw = 0,
                     const std::string& tenant = "acme") {
    v1::SubmitJobRequest req;
    v1::JobSpec* s = req.mutable_spec();
    s->set_tenant(tenant);
    s->add_command("sleep");
    s->set_gpus_per_node(gpus);
    s->set_gpu_model("H100");
    s->set_service_class(cls);
    s->set_min_power_limit_mw(min_mw);
    if (min_mw > 0) s->set_power_limit_mw(700 * kW);
    auto job = cm_->SubmitJob(req, "");
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->id() : "";
  }
  v1::Job Job(const std::string& id) {
    auto j = cm_->GetJob(id, "");
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? *j : v1::Job();
  }
  std::vector<v1::Event> Events(const std::string& kind) {
    v1::ListEventsRequest r;
    r.set_kind(kind);
    auto e = cm_->ListEvents(r);
    return e.ok() ? *e : std::vector<v1::Event>();
  }
  v1::PowerDomain Domain(const std::string& name) {
    const v1::GetPowerTreeResponse tree = cm_->PowerTree();
    for (const v1::PowerDomain& d : tree.domains()) {
      if (d.name() == name) return d;
    }
    return v1::PowerDomain();
  }
  int64_t Claims() {
    int64_t n = 0;
    EXPECT_TRUE(store_
                    .Scan(storage::kClaims, "",
                          [&](auto, auto) {
                            ++n;
                            return true;
                          })
                    .ok());
    return n;
  }
  std::map<std::string, int>& preempted() { return preempted_; }

  void Record(const std::string& node, const v1::DaemonMessage& m) {
    log_.push_back(m);
    if (m.has_start_job()) {
      Run r;
      r.id = m.start_job().job_id();
      r.attempt = m.start_job().attempt();
      r.gpus.assign(m.start_job().gpu_indices().begin(),
                    m.start_job().gpu_indices().end());
      // No GPU is ever given to two attempts.
      for (const auto& [id, other] : jobs_[node]) {
        for (uint32_t g : r.gpus) {
          EXPECT_EQ(std::count(other.gpus.begin(), other.gpus.end(), g), 0)
              << r.id << " started on GPU " << g << " of " << node
              << " held by " << id;
        }
      }
      for (uint32_t g : r.gpus)
        limits_[node][g] = m.start_job().power_limit_mw();
      jobs_[node][r.id] = r;
    }
    if (m.has_set_power_limit()) {
      limits_[node][m.set_power_limit().gpu_index()] =
          m.set_power_limit().power_limit_mw();
    }
    if (m.has_stop_job()) {
      stop_[node].insert(m.stop_job().job_id());
      if (absl::StrContains(m.stop_job().reason(), "preempt")) {
        ++preempted_[m.stop_job().job_id()];
      }
    }
  }

 private:
  struct Run {
    std::string id;
    uint32_t attempt = 0;
    std::vector<uint32_t> gpus;
    bool started = false;
  };
  void NewManager() {
    cm_.reset();
    ClusterManagerOptions o = test::ManagerOptions(config_, &store_, &clock_);
    o.report_interval = absl::Milliseconds(500);
    o.contracted_gpus = [](absl::Time) {
      absl::flat_hash_map<std::string,
                          absl::flat_hash_map<std::string, uint32_t>>
          c;
      c["acme"]["H100"] = 8;
      return c;
    };
    cm_ = std::make_unique<ClusterManager>(std::move(o));
  }

  FakeClock clock_;
  storage::MemoryStore store_;
  config::ClusterConfig config_;
  std::unique_ptr<ClusterManager> cm_;
  std::map<std::string, std::unique_ptr<Link>> links_;
  std::vector<v1::DaemonMessage> log_;
  std::map<std::string, std::map<std::string, Run>> jobs_;
  std::map<std::string, std::map<uint32_t, int64_t>> limits_;
  std::map<std::string, std::set<std::string>> stop_;
  std::map<std::string, int> preempted_;
};

void Link::Send(const v1::DaemonMessage& msg) { c_->Record(node_, msg); }

// 4 nodes full of 32 one-GPU spot jobs (beta), then acme's reserved 8-GPU
// job R.
std::string FillAndSubmitReserved(Cluster& c) {
  for (const char* n : {"n1", "n2", "n3", "n4"}) c.AddNode(n);
  for (int i = 0; i < 32; ++i) {
    c.Submit(1, v1::SERVICE_CLASS_SPOT, 0, "beta");
    c.cm().ScheduleOnce();  // one at a time: distinct start times
    c.StartAll();
    c.clock().Advance(absl::Seconds(1));
  }
  c.ReportAll();
  c.Take();
  return c.Submit(8, v1::SERVICE_CLASS_RESERVED);
}

TEST(ClaimDaemonTest, OneWaveOfVictimsAndTheClaimantGetsExactlyTheirGpus) {
  Cluster c;
  const std::string r = FillAndSubmitReserved(c);
  c.cm().ScheduleOnce();
  ASSERT_EQ(c.preempted().size(), 8u);
  EXPECT_EQ(c.Claims(), 1);
  ASSERT_EQ(c.Events("claim").size(), 1u);
  // The victims are all on one node; their GPUs.
  std::set<std::string> victim_nodes;
  std::set<uint32_t> victim_gpus;
  for (const auto& [id, n] : c.preempted()) {
    victim_nodes.insert(c.NodeOf(id));
    for (uint32_t g : c.GpusOf(id)) victim_gpus.insert(g);
  }
  ASSERT_EQ(victim_nodes.size(), 1u);
  const std::string node = *victim_nodes.begin();
  EXPECT_EQ(victim_gpus.size(), 8u);
  // Victims ignore SIGTERM: rounds every 500 ms pick no new victims.
  for (int round = 0; round < 4; ++round) {
    c.clock().Advance(absl::Milliseconds(500));
    c.ReportAll();
    c.cm().ControlPowerOnce();
    c.cm().ScheduleOnce();
    EXPECT_EQ(c.preempted().size(), 8u) << "round " << round;
    EXPECT_THAT(c.Job(r).reason(), HasSubstr("(claimed; 8 still stopping)"));
  }
  // They exit and are requeued; R starts on exactly the claimed GPUs, and
  // no victim is placed back there.
  c.StoppedExit();
  c.cm().ScheduleOnce();
  EXPECT_EQ(c.Job(r).state(), v1::JOB_STATE_STARTING);
  EXPECT_EQ(c.NodeOf(r), node);
  const std::vector<uint32_t> got = c.GpusOf(r);
  EXPECT_EQ(std::set<uint32_t>(got.begin(), got.end()), victim_gpus);
  for (const auto& [id, n] : c.preempted()) {
    EXPECT_EQ(n, 1) << id << " preempted twice";
    EXPECT_EQ(c.Job(id).state(), v1::JOB_STATE_PENDING) << id;
  }
  EXPECT_EQ(c.Claims(), 0);
  EXPECT_THAT(c.Events("claim").back().message(), HasSubstr("fulfilled"));
}

TEST(ClaimDaemonTest, ClaimSurvivesARestart) {
  Cluster c;
  const std::string r = FillAndSubmitReserved(c);
  c.cm().ScheduleOnce();
  ASSERT_EQ(c.preempted().size(), 8u);
  std::set<uint32_t> victim_gpus;
  std::string node;
  for (const auto& [id, n] : c.preempted()) {
    node = c.NodeOf(id);
    for (uint32_t g : c.GpusOf(id)) victim_gpus.insert(g);
  }
  c.Restart();
  c.cm().ScheduleOnce();
  c.cm().ScheduleOnce();
  EXPECT_EQ(c.preempted().size(), 8u) << "new victims after the restart";
  EXPECT_EQ(c.Claims(), 1);
  c.StoppedExit();  // the stops sent before the restart
  for (const auto& [id, n] : c.preempted()) {
    if (!c.NodeOf(id).empty())
      c.Update(c.NodeOf(id), id, v1::JOB_PHASE_EXITED, 143);
  }
  c.cm().ScheduleOnce();
  EXPECT_EQ(c.Job(r).state(), v1::JOB_STATE_STARTING);
  EXPECT_EQ(c.NodeOf(r), node);
  const std::vector<uint32_t> got = c.GpusOf(r);
  EXPECT_EQ(std::set<uint32_t>(got.begin(), got.end()), victim_gpus);
}

TEST(ClaimDaemonTest, CancelledClaimantDropsItsClaimWithAnEvent) {
  Cluster c;
  const std::string r = FillAndSubmitReserved(c);
  c.cm().ScheduleOnce();
  ASSERT_EQ(c.Claims(), 1);
  v1::CancelJobRequest req;
  req.set_id(r);
  ASSERT_TRUE(c.cm().CancelJob(req, "").ok());
  EXPECT_EQ(c.Claims(), 0);
  EXPECT_THAT(c.Events("claim").back().message(),
              HasSubstr("claim dropped: its job was cancelled"));
  // The freed GPUs go to whoever is next once the victims are gone.
  c.StoppedExit();
  c.cm().ScheduleOnce();
  EXPECT_EQ(c.Claims(), 0);
}

// Defect 2: preempted while STARTING, the job keeps the preemption reason
// when its STARTED arrives, round after round, until it is requeued.
TEST(PreemptReasonTest, PreemptedWhileStartingKeepsItsReason) {
  Cluster c;
  c.AddNode("n1");
  const std::string spot = c.Submit(8, v1::SERVICE_CLASS_SPOT, 0, "beta");
  c.cm().ScheduleOnce();
  ASSERT_EQ(c.Job(spot).state(), v1::JOB_STATE_STARTING);
  const std::string r = c.Submit(8, v1::SERVICE_CLASS_RESERVED);
  c.cm().ScheduleOnce();
  ASSERT_EQ(c.Job(spot).stopping_to(), v1::JOB_STATE_PREEMPTED);
  const std::string why = c.Job(spot).reason();
  EXPECT_THAT(why, HasSubstr("preempted by reserved job " + r));
  c.Update("n1", spot, v1::JOB_PHASE_STARTED);
  for (int round = 0; round < 3; ++round) {
    c.cm().ScheduleOnce();
    c.cm().ControlPowerOnce();
    const v1::Job j = c.Job(spot);
    EXPECT_EQ(j.state(), v1::JOB_STATE_RUNNING);
    EXPECT_EQ(j.reason(), why) << "round " << round;
  }
  c.StoppedExit();
  EXPECT_EQ(c.Job(spot).state(), v1::JOB_STATE_PENDING);
  c.cm().ScheduleOnce();
  EXPECT_EQ(c.Job(r).state(), v1::JOB_STATE_STARTING);
}

// Defect 4: rack-a 14.2 → 9.5 kW: n1, n2 (1 kW base each) and two 8-GPU
// jobs at 700 W (a spot job ignoring SIGTERM and an on-demand one): 2 +
// 11.2 = 13.2 kW reported. The spot job is preempted: its GPUs go to their
// 200 W minimum before the StopJob, so the next report is 2 + 1.6 + 5.6 =
// 9.2 kW ≤ 9.5 kW, with the victim still running.
TEST(CapCutTest, MetInTheReportedDrawAtTheNextReport) {
  Cluster c;
  c.AddNode("n1");
  c.AddNode("n2");
  const std::string spot = c.Submit(8, v1::SERVICE_CLASS_SPOT, 0, "beta");
  const std::string od = c.Submit(8, v1::SERVICE_CLASS_ON_DEMAND);
  c.cm().ScheduleOnce();
  c.StartAll();
  c.ReportAll();
  EXPECT_EQ(c.Domain("rack-a").reported_mw(), 13'200 * kW);
  c.Take();
  v1::SetPowerCapRequest cap;
  cap.set_domain("rack-a");
  cap.set_cap_mw(9'500 * kW);
  ASSERT_TRUE(c.cm().SetPowerCap(cap).ok());
  c.cm().ControlPowerOnce();
  // Limits first, then the stop.
  const std::vector<v1::DaemonMessage> sent = c.Take();
  int limits = 0;
  bool stopped = false;
  for (const v1::DaemonMessage& m : sent) {
    if (m.has_set_power_limit()) {
      EXPECT_FALSE(stopped) << "limit sent after the StopJob";
      EXPECT_EQ(m.set_power_limit().power_limit_mw(), 200 * kW);
      ++limits;
    }
    if (m.has_stop_job()) {
      EXPECT_EQ(m.stop_job().job_id(), spot);
      stopped = true;
    }
  }
  EXPECT_EQ(limits, 8);
  EXPECT_TRUE(stopped);
  // The projection already counts the victim at its minimum...
  EXPECT_LE(c.Domain("rack-a").measured_mw(), 9'500 * kW);
  // ...and the agents' next report (one interval later) meets the cap.
  for (int round = 0; round < 3; ++round) {
    c.clock().Advance(absl::Milliseconds(500));
    c.ReportAll();
    c.cm().ControlPowerOnce();
    c.cm().ScheduleOnce();
    EXPECT_EQ(c.Domain("rack-a").reported_mw(), 9'200 * kW) << round;
    EXPECT_EQ(c.Job(spot).state(), v1::JOB_STATE_RUNNING);  // in its grace
    EXPECT_EQ(c.Job(od).stopping_to(), v1::JOB_STATE_UNSPECIFIED);
  }
}

// Defect 5: a reserved job (--min-power 300W) and a spot job without
// --min-power in rack-a, cap cut 13.2 → 11 kW: the spot job (at its floor,
// so not throttleable) is preempted; the reserved job keeps 700 W.
TEST(CapCutTest, SpotIsPreemptedBeforeReservedIsThrottled) {
  Cluster c;
  c.AddNode("n1");
  c.AddNode("n2");
  const std::string res = c.Submit(8, v1::SERVICE_CLASS_RESERVED, 300 * kW);
  const std::string spot = c.Submit(8, v1::SERVICE_CLASS_SPOT, 0, "beta");
  c.cm().ScheduleOnce();
  c.StartAll();
  c.ReportAll();
  v1::SetPowerCapRequest cap;
  cap.set_domain("rack-a");
  cap.set_cap_mw(11 * kKw);
  ASSERT_TRUE(c.cm().SetPowerCap(cap).ok());
  for (int round = 0; round < 4; ++round) {
    c.cm().ControlPowerOnce();
    c.clock().Advance(absl::Milliseconds(500));
    c.ReportAll();
    EXPECT_EQ(c.Job(res).allocations(0).power_limit_mw(), 700 * kW) << round;
    EXPECT_EQ(c.Job(spot).stopping_to(), v1::JOB_STATE_PREEMPTED) << round;
  }
  EXPECT_THAT(c.Events("throttle"), IsEmpty());
  c.StoppedExit();
  c.cm().ControlPowerOnce();
  EXPECT_EQ(c.Job(res).allocations(0).power_limit_mw(), 700 * kW);
}

// Defect 8: rack-a with n1, n2, n3 idles at 3 × (1 kW + 8 × 70 W) = 4.68
// kW; a 4 kW cap is accepted with a warning and a power event, and the
// pending reason names it.
TEST(CapBelowIdleTest, AcceptedWithAWarningAndNamedInTheReason) {
  Cluster c;
  for (const char* n : {"n1", "n2", "n3"}) c.AddNode(n);
  EXPECT_EQ(c.Domain("rack-a").idle_floor_mw(), 4'680 * kW);
  v1::SetPowerCapRequest cap;
  cap.set_domain("rack-a");
  cap.set_cap_mw(4 * kKw);
  auto d = c.cm().SetPowerCap(cap);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->cap_mw(), 4 * kKw);
  EXPECT_THAT(
      d->warning(),
      HasSubstr("cap 4.00 kW is below the idle draw 4.68 kW of rack-a"));
  ASSERT_EQ(c.Events("power").size(), 1u);
  EXPECT_THAT(c.Events("power")[0].message(), HasSubstr("below the idle draw"));
  // A cap above the floor gives no warning.
  const std::string job = c.Submit(8, v1::SERVICE_CLASS_ON_DEMAND);
  for (int round = 0; round < 3; ++round) {
    c.cm().ScheduleOnce();
    EXPECT_THAT(c.Job(job).reason(),
                HasSubstr("waiting: cap 4.00 kW is below the idle draw 4.68 "
                          "kW of rack-a"))
        << round;
  }
  cap.set_cap_mw(50 * kKw);
  d = c.cm().SetPowerCap(cap);
  ASSERT_TRUE(d.ok());
  EXPECT_THAT(d->warning(), IsEmpty());
  c.cm().ScheduleOnce();
  EXPECT_EQ(c.Job(job).state(), v1::JOB_STATE_STARTING);
}

}  // namespace
}  // namespace joule::daemon
