// Layer-2 tests of the cluster manager: ClusterManager driven directly (no
// gRPC, no threads: the tests call ScheduleOnce / ControlPowerOnce /
// CheckLiveness themselves) with a FakeClock, a MemoryStore (RocksDbStore for
// the restart test) and a fake agent per node that records the commands it
// receives and answers with reports and job updates the test chooses.

#include "daemon/cluster_manager.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "config/cluster_config.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "storage/memory_store.h"
#include "storage/rocksdb_store.h"
#include "tests/daemon/manager_fixture.h"

namespace joule::daemon {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

constexpr int64_t kW = 1000;        // mW
constexpr int64_t kKw = 1000 * kW;  // mW
constexpr int kGpusPerNode = 8;

// ------------------------------------------------------------- config ----

// site (1 MW)
//   rack-a (cap configurable, 100 kW by default): n1 n2 n3
//   rack-b (100 kW): n4
// Every node: 1 kW base, 8 × H100 (limits 200..700 W, TDP 700 W, idle 70 W).
// Only the nodes a test registers count towards power.
struct ConfigOptions {
  std::string rack_a_cap = "100kW";
  std::string lost_job_policy;  // empty: the default ("fail")
};

std::string ConfigText(const ConfigOptions& o) {
  return absl::StrCat(
      test::kH100HgxSite,
      R"pb(
        domain { name: "rack-a" parent: "site" kind: "rack" cap: ")pb",
      o.rack_a_cap,
      R"pb(" }
           domain { name: "rack-b" parent: "site" kind: "rack" cap: "100kW" }
           node { name: "n1" domain: "rack-a" }
           node { name: "n2" domain: "rack-a" }
           node { name: "n3" domain: "rack-a" }
           node { name: "n4" domain: "rack-b" }
           tenant { name: "acme" }
           tenant { name: "beta" }
           scheduler { default_node_model: "hgx"
                       unreachable_requeue_after: "30s"
                       stop_grace: "2s"
      )pb",
      o.lost_job_policy.empty()
          ? ""
          : absl::StrCat("  lost_job_policy: \"", o.lost_job_policy, "\"\n"),
      "}\n");
}

// ---------------------------------------------------------- fake agents ----

struct Sent {
  std::string node;
  v1::DaemonMessage msg;
};

// What a fake agent runs: from the StartJob commands it received.
struct AgentJob {
  uint32_t attempt = 0;
  std::vector<uint32_t> gpus;
  bool started = false;
};

class TestCluster;

// One agent's stream: records every command, and (through the cluster) keeps
// the fake agent's list of jobs.
class FakeLink final : public AgentLink {
 public:
  FakeLink(std::string node, TestCluster* cluster)
      : node_(std::move(node)), cluster_(cluster) {}
  void Send(const v1::DaemonMessage& msg) override;
  const std::vector<v1::DaemonMessage>& received() const { return received_; }

 private:
  std::string node_;
  TestCluster* cluster_;
  std::vector<v1::DaemonMessage> received_;
};

class TestCluster {
 public:
  explicit TestCluster(ConfigOptions o = {}, storage::Store* store = nullptr)
      : store_(store != nullptr ? store : &memory_) {
    auto cfg = config::ParseClusterConfig(ConfigText(o), "test.conf");
    EXPECT_TRUE(cfg.ok()) << cfg.status();
    config_ = *std::move(cfg);
    contracts_["acme"]["H100"] = 64;
    NewManager();
  }

  // A fresh ClusterManager over the same store and clock (not loaded).
  void NewManager() {
    manager_.reset();
    ClusterManagerOptions opts = test::ManagerOptions(config_, store_, &clock_);
    opts.contracted_gpus = [this](absl::Time) { return contracts_; };
    manager_ = std::make_unique<ClusterManager>(std::move(opts));
  }
  void DropManager() { manager_.reset(); }

  ClusterManager& cm() { return *manager_; }
  FakeClock& clock() { return clock_; }
  storage::MemoryStore& memory() { return memory_; }

  v1::RegisterRequest RegisterRequest(const std::string& node) const {
    v1::RegisterRequest req = test::FakeRegistration(
        node, kGpusPerNode, absl::StrCat("GPU-", node, "-"),
        absl::StrCat("10.0.0.", node.substr(1)));
    for (v1::GpuInfo& g : *req.mutable_gpus()) {
      g.set_memory_total_bytes(80ull << 30);
    }
    return req;
  }

  // Register (listing what the fake agent still runs), attach a new link
  // (the old one is detached first, as a broken stream would be) and send
  // one report.
  void AddNode(const std::string& node) {
    v1::RegisterRequest req = RegisterRequest(node);
    for (const auto& [id, j] : agents_[node]) {
      v1::RunningJob* r = req.add_running_jobs();
      r->set_job_id(id);
      r->set_attempt(j.attempt);
      for (uint32_t g : j.gpus) r->add_gpu_indices(g);
    }
    Register(req);
    Report(node);
  }
  void Register(const v1::RegisterRequest& req) {
    const std::string& node = req.node_name();
    if (links_[node] != nullptr)
      manager_->DetachAgent(node, links_[node].get());
    auto link = std::make_unique<FakeLink>(node, this);
    auto resp = test::ConnectAgent(*manager_, req, link.get());
    ASSERT_TRUE(resp.ok()) << resp.status();
    ASSERT_EQ(resp->node_name(), node);
    old_links_.push_back(std::move(links_[node]));
    links_[node] = std::move(link);
  }

  // One report: GPUs of a started job draw `busy` (capped by the limit the
  // daemon last set on that GPU, as the driver would), others `idle`.
  void Report(const std::string& node, int64_t busy = 700 * kW,
              int64_t idle = 70 * kW) {
    v1::NodeReport r;
    r.set_node_name(node);
    *r.mutable_time() = ToProtoTime(clock_.Now());
    std::map<uint32_t, bool> busy_gpu;
    for (const auto& [id, j] : agents_[node]) {
      test::AddReportedJob(&r, id, j.attempt, j.gpus);
      for (uint32_t g : j.gpus) busy_gpu[g] = j.started;
    }
    for (int i = 0; i < kGpusPerNode; ++i) {
      auto lim = limits_[node].find(i);
      const int64_t limit = lim == limits_[node].end() ? 700 * kW : lim->second;
      test::AddH100Status(&r, i, limit,
                          busy_gpu[i] ? std::min(busy, limit) : idle);
    }
    ASSERT_TRUE(manager_->HandleReport(node, r).ok());
  }

  // The fake agent's process for `job` on `node` started.
  void Started(const std::string& node, const std::string& job) {
    auto it = agents_[node].find(job);
    ASSERT_NE(it, agents_[node].end())
        << job << " was never started on " << node;
    it->second.started = true;
    v1::JobUpdate u;
    u.set_job_id(job);
    u.set_attempt(it->second.attempt);
    u.set_phase(v1::JOB_PHASE_STARTED);
    *u.mutable_time() = ToProtoTime(clock_.Now());
    ASSERT_TRUE(manager_->HandleJobUpdate(node, u).ok());
  }
  // The process exited with `code`.
  void Exited(const std::string& node, const std::string& job, int code) {
    auto it = agents_[node].find(job);
    ASSERT_NE(it, agents_[node].end())
        << job << " was never started on " << node;
    v1::JobUpdate u;
    u.set_job_id(job);
    u.set_attempt(it->second.attempt);
    u.set_phase(v1::JOB_PHASE_EXITED);
    u.set_exit_code(code);
    u.set_message(code == 0 ? "" : absl::StrCat("exit code ", code));
    *u.mutable_time() = ToProtoTime(clock_.Now());
    agents_[node].erase(it);
    ASSERT_TRUE(manager_->HandleJobUpdate(node, u).ok());
  }
  // Every job on every node that has an unstarted process reports STARTED.
  void StartAll() {
    for (auto& [node, jobs] : agents_) {
      std::vector<std::string> ids;
      for (const auto& [id, j] : jobs) {
        if (!j.started) ids.push_back(id);
      }
      for (const std::string& id : ids) Started(node, id);
    }
  }
  // The agent process on `node` died: it forgets its jobs.
  void ForgetJobs(const std::string& node) {
    agents_[node].clear();
    limits_[node].clear();
  }
  const std::map<std::string, AgentJob>& AgentJobs(const std::string& node) {
    return agents_[node];
  }
  // The node the fake agents run `job` on (first rank), "" if none.
  std::string NodeOf(const std::string& job) {
    for (const auto& [node, jobs] : agents_) {
      if (jobs.contains(job)) return node;
    }
    return "";
  }

  // Every command sent since the last call, in send order.
  std::vector<Sent> Take() { return std::exchange(log_, {}); }

  static v1::JobSpec Spec(uint32_t gpus = 8,
                          v1::ServiceClass cls = v1::SERVICE_CLASS_ON_DEMAND,
                          int32_t priority = 0,
                          const std::string& tenant = "acme") {
    v1::JobSpec s;
    s.set_tenant(tenant);
    s.set_name("train");
    s.add_command("python");
    s.add_command("train.py");
    s.set_gpus_per_node(gpus);
    s.set_gpu_model("H100");
    s.set_service_class(cls);
    s.set_priority(priority);
    return s;
  }
  std::string Submit(const v1::JobSpec& spec,
                     const std::string& request_id = "") {
    v1::SubmitJobRequest req;
    *req.mutable_spec() = spec;
    req.set_request_id(request_id);
    auto job = manager_->SubmitJob(req, "");
    EXPECT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job.ok() ? job->state() : v1::JOB_STATE_UNSPECIFIED,
              v1::JOB_STATE_PENDING);
    return job.ok() ? job->id() : "";
  }
  v1::Job Job(const std::string& id) {
    auto j = manager_->GetJob(id, "");
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? *j : v1::Job();
  }
  std::vector<v1::Job> Jobs() {
    auto jobs = manager_->ListJobs(v1::ListJobsRequest(), "");
    EXPECT_TRUE(jobs.ok()) << jobs.status();
    return jobs.ok() ? *jobs : std::vector<v1::Job>();
  }
  v1::Node Node(const std::string& name) {
    auto n = manager_->GetNode(name);
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : v1::Node();
  }
  std::vector<v1::Event> Events(const std::string& kind) {
    v1::ListEventsRequest r;
    r.set_kind(kind);
    auto e = manager_->ListEvents(r);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *e : std::vector<v1::Event>();
  }
  std::vector<std::string> EventSubjects(const std::string& kind) {
    std::vector<std::string> out;
    for (const v1::Event& e : Events(kind)) out.push_back(e.subject());
    return out;
  }
  v1::PowerDomain Domain(const std::string& name) {
    const v1::GetPowerTreeResponse tree = manager_->PowerTree();
    for (const v1::PowerDomain& d : tree.domains()) {
      if (d.name() == name) return d;
    }
    ADD_FAILURE() << "no domain " << name;
    return v1::PowerDomain();
  }
  void SetCap(const std::string& domain, int64_t cap_mw) {
    v1::SetPowerCapRequest r;
    r.set_domain(domain);
    r.set_cap_mw(cap_mw);
    r.set_reason("test");
    auto d = manager_->SetPowerCap(r);
    ASSERT_TRUE(d.ok()) << d.status();
    ASSERT_EQ(d->cap_mw(), cap_mw);
  }
  int64_t TableSize(std::string_view table) {
    int64_t n = 0;
    EXPECT_TRUE(store_
                    ->Scan(table, "",
                           [&](auto, auto) {
                             ++n;
                             return true;
                           })
                    .ok());
    return n;
  }

 private:
  friend class FakeLink;
  void Record(const std::string& node, const v1::DaemonMessage& msg) {
    log_.push_back({node, msg});
    if (msg.has_start_job()) {
      const v1::StartJob& s = msg.start_job();
      AgentJob j;
      j.attempt = s.attempt();
      j.gpus.assign(s.gpu_indices().begin(), s.gpu_indices().end());
      agents_[node][s.job_id()] = j;
      for (uint32_t g : j.gpus) limits_[node][g] = s.power_limit_mw();
    }
    if (msg.has_set_power_limit()) {
      limits_[node][msg.set_power_limit().gpu_index()] =
          msg.set_power_limit().power_limit_mw();
    }
  }

  FakeClock clock_;
  storage::MemoryStore memory_;
  storage::Store* store_;
  config::ClusterConfig config_;
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, uint32_t>>
      contracts_;
  std::unique_ptr<ClusterManager> manager_;
  std::map<std::string, std::unique_ptr<FakeLink>> links_;
  std::vector<std::unique_ptr<FakeLink>> old_links_;
  std::vector<Sent> log_;
  std::map<std::string, std::map<std::string, AgentJob>> agents_;
  std::map<std::string, std::map<uint32_t, int64_t>> limits_;  // node -> gpu
};

void FakeLink::Send(const v1::DaemonMessage& msg) {
  received_.push_back(msg);
  cluster_->Record(node_, msg);
}

std::vector<std::string> StartedJobs(const std::vector<Sent>& sent) {
  std::vector<std::string> out;
  for (const Sent& s : sent) {
    if (s.msg.has_start_job()) out.push_back(s.msg.start_job().job_id());
  }
  return out;
}
std::vector<std::string> StoppedJobs(const std::vector<Sent>& sent) {
  std::vector<std::string> out;
  for (const Sent& s : sent) {
    if (s.msg.has_stop_job()) out.push_back(s.msg.stop_job().job_id());
  }
  return out;
}
bool HasState(const v1::Job& job, v1::JobState state) {
  for (const v1::JobTransition& t : job.history()) {
    if (t.state() == state) return true;
  }
  return false;
}
std::vector<std::string> RunningOn(const v1::Node& n) {
  return {n.running_jobs().begin(), n.running_jobs().end()};
}

// ================================================== 1. reactive power loop ==
//
// rack-a holds n1 and n2 (1 kW base each). Four jobs, 4 GPUs each, 700 W per
// GPU, min 400 W per GPU, all drawing 700 W per GPU:
//   measured(rack-a) = 2 × 1 kW + 16 × 700 W = 13.2 kW.
// Jobs (submitted in this order, so ids run S5 < S0 < OD < RES):
//   S5  spot       priority  5
//   S0  spot       priority  0
//   OD  on-demand  priority -10   (lower priority than the spot jobs: the
//   RES reserved   priority -20    class, not the priority, must come first)
// Order (priority-aware capping): throttle spot (S0, then S5), preempt spot,
// throttle OD, preempt OD, throttle RES, preempt RES (last resort).
// Throttling one job to its minimum saves 4 × (700 - 400) W = 1.2 kW.
// Preempting a job throttled to 400 W saves 4 × (400 - 200) W = 0.8 kW at
// once: its GPUs go to their 200 W minimum for the stop grace.
struct Act {
  std::string job;  // S5 S0 OD RES
  char kind;        // 'T' throttle (SetPowerLimit × 4 GPUs), 'P' preempt
  int64_t limit_w;  // per GPU, for 'T'
};
bool operator==(const Act& a, const Act& b) {
  return a.job == b.job && a.kind == b.kind && a.limit_w == b.limit_w;
}
std::ostream& operator<<(std::ostream& os, const Act& a) {
  return os << a.job << ":" << a.kind << ":" << a.limit_w;
}

struct CapCase {
  std::string name;
  int64_t cap_w;
  std::vector<Act> want;              // in command order
  std::vector<std::string> restored;  // in restore order, after the cap rises
  bool reserved_preempted = false;
};

void PrintTo(const CapCase& c, std::ostream* os) { *os << c.name; }

class PowerLoopTest : public ::testing::TestWithParam<CapCase> {};

TEST_P(PowerLoopTest, ThrottlesPreemptsAndRestores) {
  const CapCase& c = GetParam();
  TestCluster t;
  t.AddNode("n1");
  t.AddNode("n2");
  std::map<std::string, std::string> id;  // label -> job id
  std::map<std::string, std::string> label;
  auto submit = [&](const std::string& l, v1::ServiceClass cls, int32_t prio) {
    v1::JobSpec s = TestCluster::Spec(4, cls, prio);
    s.set_power_limit_mw(700 * kW);
    s.set_min_power_limit_mw(400 * kW);
    id[l] = t.Submit(s);
    label[id[l]] = l;
  };
  submit("S5", v1::SERVICE_CLASS_SPOT, 5);
  submit("S0", v1::SERVICE_CLASS_SPOT, 0);
  submit("OD", v1::SERVICE_CLASS_ON_DEMAND, -10);
  submit("RES", v1::SERVICE_CLASS_RESERVED, -20);
  t.cm().ScheduleOnce();
  ASSERT_EQ(StartedJobs(t.Take()).size(), 4u);
  ASSERT_EQ(t.Job(id["RES"]).effective_class(), v1::SERVICE_CLASS_RESERVED);
  t.StartAll();
  t.Report("n1");
  t.Report("n2");
  // Under the initial 100 kW cap nothing happens.
  t.cm().ControlPowerOnce();
  ASSERT_THAT(t.Take(), IsEmpty());

  t.SetCap("rack-a", c.cap_w * kW);
  t.cm().ControlPowerOnce();
  const std::vector<Sent> sent = t.Take();

  // Compact the commands into per-job actions, in order; check that each
  // throttle went to exactly the job's 4 GPUs on its node.
  std::vector<Act> got;
  std::map<std::string, std::set<uint32_t>> throttled_gpus;
  for (const Sent& s : sent) {
    if (s.msg.has_set_power_limit() &&
        absl::StartsWith(s.msg.set_power_limit().reason(), "stopping:")) {
      // A victim's GPUs to their minimum, before its StopJob.
      EXPECT_EQ(s.msg.set_power_limit().power_limit_mw(), 200 * kW);
      continue;
    }
    if (s.msg.has_set_power_limit()) {
      const uint32_t gpu = s.msg.set_power_limit().gpu_index();
      std::string job;
      for (const auto& [jid, j] : t.AgentJobs(s.node)) {
        if (std::find(j.gpus.begin(), j.gpus.end(), gpu) != j.gpus.end()) {
          job = label[jid];
        }
      }
      const Act a{job, 'T', s.msg.set_power_limit().power_limit_mw() / kW};
      if (got.empty() || !(got.back() == a)) got.push_back(a);
      EXPECT_TRUE(throttled_gpus[job].insert(gpu).second) << "GPU set twice";
    } else if (s.msg.has_stop_job()) {
      got.push_back(Act{label[s.msg.stop_job().job_id()], 'P', 0});
      EXPECT_EQ(s.msg.stop_job().attempt(), 1u);
      EXPECT_EQ(FromProtoDuration(s.msg.stop_job().grace_period()),
                absl::Seconds(2));
      EXPECT_EQ(s.node, t.NodeOf(s.msg.stop_job().job_id()));
    } else {
      ADD_FAILURE() << "unexpected command " << s.msg.ShortDebugString();
    }
  }
  EXPECT_THAT(got, ElementsAreArray(c.want));
  for (const auto& [job, gpus] : throttled_gpus) {
    EXPECT_EQ(gpus.size(), 4u) << job;
  }

  // The job records and the events follow the commands.
  std::vector<std::string> want_throttle_events, want_preempt_events;
  std::set<std::string> preempted;
  for (const Act& a : c.want) {
    const v1::Job job = t.Job(id[a.job]);
    EXPECT_EQ(job.state(), v1::JOB_STATE_RUNNING) << a.job;
    if (a.kind == 'T') {
      want_throttle_events.push_back(id[a.job]);
      EXPECT_GE(a.limit_w, 400) << "below the job's min power";
      EXPECT_EQ(job.allocations(0).power_limit_mw(), a.limit_w * kW) << a.job;
      EXPECT_EQ(job.stopping_to(), v1::JOB_STATE_UNSPECIFIED) << a.job;
    } else {
      want_preempt_events.push_back(id[a.job]);
      preempted.insert(a.job);
      EXPECT_EQ(job.stopping_to(), v1::JOB_STATE_PREEMPTED) << a.job;
    }
  }
  EXPECT_THAT(t.EventSubjects("throttle"),
              ElementsAreArray(want_throttle_events));
  EXPECT_THAT(t.EventSubjects("preempt"),
              ElementsAreArray(want_preempt_events));
  EXPECT_EQ(preempted.contains("RES"), c.reserved_preempted)
      << "a reserved job is preempted only as the last resort";

  // Nothing changed, so a second round does nothing more.
  t.cm().ControlPowerOnce();
  EXPECT_THAT(t.Take(), IsEmpty());

  // The cap rises again: every throttled (not preempted) job goes back to
  // its requested 700 W, most important first (reserved, on-demand, spot;
  // higher priority first).
  t.SetCap("rack-a", 100 * kKw);
  t.cm().ControlPowerOnce();
  std::vector<std::string> restored;
  std::map<std::string, int> restored_gpus;
  for (const Sent& s : t.Take()) {
    ASSERT_TRUE(s.msg.has_set_power_limit()) << s.msg.ShortDebugString();
    EXPECT_EQ(s.msg.set_power_limit().power_limit_mw(), 700 * kW);
    std::string job;
    for (const auto& [jid, j] : t.AgentJobs(s.node)) {
      const uint32_t gpu = s.msg.set_power_limit().gpu_index();
      if (std::find(j.gpus.begin(), j.gpus.end(), gpu) != j.gpus.end()) {
        job = label[jid];
      }
    }
    if (restored.empty() || restored.back() != job) restored.push_back(job);
    restored_gpus[job]++;
  }
  EXPECT_THAT(restored, ElementsAreArray(c.restored));
  std::vector<std::string> want_restore_events;
  for (const std::string& l : c.restored) {
    EXPECT_EQ(restored_gpus[l], 4) << l;
    want_restore_events.push_back(id[l]);
    EXPECT_EQ(t.Job(id[l]).allocations(0).power_limit_mw(), 700 * kW) << l;
  }
  EXPECT_THAT(t.EventSubjects("restore"),
              ElementsAreArray(want_restore_events));

  // The preempted jobs' agents report EXITED (SIGTERM): each job is PENDING
  // again, with PREEMPTED in its history, attempt 1 closed, GPUs freed.
  t.clock().Advance(absl::Seconds(2));
  for (const std::string& l : preempted) {
    const std::string node = t.NodeOf(id[l]);
    t.Exited(node, id[l], 143);
    const v1::Job job = t.Job(id[l]);
    EXPECT_EQ(job.state(), v1::JOB_STATE_PENDING) << l;
    EXPECT_EQ(job.stopping_to(), v1::JOB_STATE_UNSPECIFIED) << l;
    EXPECT_TRUE(HasState(job, v1::JOB_STATE_PREEMPTED)) << l;
    EXPECT_EQ(job.history(job.history_size() - 1).state(),
              v1::JOB_STATE_PENDING);
    EXPECT_THAT(job.allocations(), IsEmpty());
    ASSERT_EQ(job.attempts_size(), 1) << l;
    EXPECT_EQ(FromProtoTime(job.attempts(0).end_time()), t.clock().Now()) << l;
    EXPECT_THAT(job.attempts(0).outcome(), HasSubstr("preempted")) << l;
    const std::vector<std::string> on = RunningOn(t.Node(node));
    EXPECT_EQ(std::count(on.begin(), on.end(), id[l]), 0) << l;
  }
  // Jobs not preempted are still running.
  for (const auto& [l, jid] : id) {
    if (!preempted.contains(l)) {
      EXPECT_EQ(t.Job(jid).state(), v1::JOB_STATE_RUNNING) << l;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Caps, PowerLoopTest,
    ::testing::Values(
        // excess = 13.2 - 12.6 = 0.6 kW: S0 alone, 700 - ceil(600 W / 4) =
        // 550 W per GPU.
        CapCase{"SpotAbsorbsSmallExcess", 12'600, {{"S0", 'T', 550}}, {"S0"}},
        // excess 2.7 kW: S0 → 400 (saves 1.2, 1.5 left), S5 → 400 (0.3
        // left); spot is preempted before on-demand is touched: S0 (0.8).
        CapCase{"SpotPreemptedBeforeOnDemandIsThrottled",
                10'500,
                {{"S0", 'P', 0}, {"S5", 'T', 400}},
                {"S5"}},
        // excess 3.9 kW: spot throttled (2.4), S0 preempted (0.8, 0.7
        // left), S5 preempted (0.8): OD and RES keep 700 W.
        CapCase{"BothSpotJobsGoFirst",
                9'300,
                {{"S0", 'P', 0}, {"S5", 'P', 0}},
                {}},
        // excess 5.2 kW: spot gone (2.4 + 1.6, 1.2 left); OD → 400 W
        // (1.2): RES untouched.
        CapCase{"OnDemandThrottledAfterSpotIsGone",
                8'000,
                {{"S0", 'P', 0}, {"S5", 'P', 0}, {"OD", 'T', 400}},
                {"OD"}},
        // excess 9.2 kW: spot 4.0 (5.2 left), OD 1.2 + 0.8 (3.2 left), RES
        // → 400 W (1.2; 2.0 left), RES preempted as the last resort (0.8).
        CapCase{"ReservedPreemptedAsTheLastResort",
                4'000,
                {{"S0", 'P', 0}, {"S5", 'P', 0}, {"OD", 'P', 0}, {"RES", 'P', 0}},
                {},
                true}),
    [](const auto& info) { return info.param.name; });

// ============================================================ 2. liveness ==

TEST(ClusterManagerLivenessTest, UnreachableThenReadyThenRequeued) {
  TestCluster t;  // heartbeat timeout 5 s; unreachable_requeue_after 30 s
  t.AddNode("n1");
  t.AddNode("n4");
  const std::string job = t.Submit(TestCluster::Spec(8));
  const std::string other = t.Submit(TestCluster::Spec(8));
  t.cm().ScheduleOnce();
  ASSERT_EQ(StartedJobs(t.Take()).size(), 2u);
  t.StartAll();
  const std::string silent = t.NodeOf(job);
  const std::string alive = t.NodeOf(other);
  ASSERT_NE(silent, alive);
  auto tick = [&](absl::Duration d) {
    t.clock().Advance(d);
    t.Report(alive);
    t.cm().CheckLiveness();
  };

  // 5 s without a report is not more than the 5 s timeout.
  tick(absl::Seconds(5));
  EXPECT_EQ(t.Node(silent).state(), v1::NODE_STATE_READY);
  // 6 s is.
  tick(absl::Seconds(1));
  EXPECT_EQ(t.Node(silent).state(), v1::NODE_STATE_UNREACHABLE);
  EXPECT_EQ(t.Node(silent).power_mw(), 0);
  EXPECT_EQ(t.Node(alive).state(), v1::NODE_STATE_READY);
  std::vector<v1::Event> node_events = t.Events("node");
  ASSERT_FALSE(node_events.empty());
  EXPECT_EQ(node_events.back().subject(), silent);
  EXPECT_THAT(node_events.back().message(), HasSubstr("unreachable"));

  // A report makes it READY again; its job was never touched.
  t.Report(silent);
  EXPECT_EQ(t.Node(silent).state(), v1::NODE_STATE_READY);
  EXPECT_THAT(t.Events("node").back().message(), HasSubstr("ready"));
  EXPECT_EQ(t.Job(job).state(), v1::JOB_STATE_RUNNING);

  // Silent again: unreachable after 6 s, requeued only once unreachable for
  // more than 30 s.
  const absl::Time last_seen = t.clock().Now();  // its last report
  tick(absl::Seconds(6));
  ASSERT_EQ(t.Node(silent).state(), v1::NODE_STATE_UNREACHABLE);
  tick(absl::Seconds(30));
  EXPECT_EQ(t.Job(job).state(), v1::JOB_STATE_RUNNING);
  EXPECT_THAT(RunningOn(t.Node(silent)), ElementsAre(job));
  EXPECT_THAT(t.Take(), IsEmpty());
  tick(absl::Seconds(1));
  const v1::Job requeued = t.Job(job);
  EXPECT_EQ(requeued.state(), v1::JOB_STATE_PENDING) << requeued.reason();
  EXPECT_THAT(requeued.reason(), HasSubstr("unreachable"));
  EXPECT_THAT(requeued.allocations(), IsEmpty());
  ASSERT_EQ(requeued.attempts_size(), 1);
  // The attempt ends at the last report that showed it running, not when
  // the daemon gave up on the node (37 s later).
  EXPECT_EQ(FromProtoTime(requeued.attempts(0).end_time()), last_seen);
  EXPECT_FALSE(requeued.attempts(0).outcome().empty());
  EXPECT_THAT(RunningOn(t.Node(silent)), IsEmpty());
  // The other node's job was not touched.
  EXPECT_EQ(t.Job(other).state(), v1::JOB_STATE_RUNNING);

  // The silent node comes back still running the old attempt: it is told to
  // stop it (the scheduler considers those GPUs free).
  t.Report(silent);
  std::vector<Sent> sent = t.Take();
  ASSERT_EQ(StoppedJobs(sent), std::vector<std::string>{job});
  EXPECT_EQ(sent[0].node, silent);
  EXPECT_EQ(sent[0].msg.stop_job().attempt(), 1u);
  // Told once, not on every report.
  t.Report(silent);
  EXPECT_THAT(t.Take(), IsEmpty());
  // Until its process is confirmed gone, its GPUs go to no new attempt.
  t.cm().ScheduleOnce();
  EXPECT_THAT(StartedJobs(t.Take()), IsEmpty());
  EXPECT_EQ(t.Job(job).state(), v1::JOB_STATE_PENDING);
  t.Exited(silent, job, 143);
  EXPECT_EQ(t.Job(job).state(), v1::JOB_STATE_PENDING);  // stale: ignored
  t.Report(silent);  // no longer shows it: the GPUs are free again

  // The next round starts attempt 2.
  t.cm().ScheduleOnce();
  sent = t.Take();
  ASSERT_EQ(StartedJobs(sent), std::vector<std::string>{job});
  EXPECT_EQ(sent[0].msg.start_job().attempt(), 2u);
  EXPECT_EQ(t.Job(job).attempt(), 2u);
  EXPECT_EQ(t.Job(job).state(), v1::JOB_STATE_STARTING);
}

// ======================================================= 3. agent restart ==

struct RestartCase {
  std::string name;
  std::string lost_job_policy;
  v1::JobState running_becomes;
};

void PrintTo(const RestartCase& c, std::ostream* os) { *os << c.name; }

class AgentRestartTest : public ::testing::TestWithParam<RestartCase> {};

TEST_P(AgentRestartTest, LostJobsFollowThePolicy) {
  TestCluster t({.lost_job_policy = GetParam().lost_job_policy});
  t.AddNode("n1");
  const std::string running = t.Submit(TestCluster::Spec(4));
  const std::string starting = t.Submit(TestCluster::Spec(4));
  t.cm().ScheduleOnce();
  ASSERT_EQ(StartedJobs(t.Take()).size(), 2u);
  t.Started("n1", running);
  ASSERT_EQ(t.Job(running).state(), v1::JOB_STATE_RUNNING);
  ASSERT_EQ(t.Job(starting).state(), v1::JOB_STATE_STARTING);
  ASSERT_EQ(RunningOn(t.Node("n1")).size(), 2u);

  // The agent restarts and runs nothing.
  t.clock().Advance(absl::Seconds(10));
  t.ForgetJobs("n1");
  t.AddNode("n1");

  const v1::Job r = t.Job(running);
  EXPECT_EQ(r.state(), GetParam().running_becomes) << r.reason();
  EXPECT_THAT(r.reason(), HasSubstr("lost"));
  ASSERT_EQ(r.attempts_size(), 1);
  // A lost attempt ends at the last report that showed it running; no
  // report did after its start, so it ends where it started (the agent's
  // restart 10 s later is not billed).
  EXPECT_EQ(FromProtoTime(r.attempts(0).end_time()),
            t.clock().Now() - absl::Seconds(10));
  EXPECT_THAT(r.attempts(0).outcome(), HasSubstr("lost"));
  if (r.state() == v1::JOB_STATE_PENDING) {
    EXPECT_THAT(r.allocations(), IsEmpty());
  }

  const v1::Job s = t.Job(starting);
  EXPECT_EQ(s.state(), v1::JOB_STATE_PENDING) << s.reason();
  ASSERT_EQ(s.attempts_size(), 1);
  EXPECT_THAT(s.attempts(0).outcome(), HasSubstr("lost"));
  EXPECT_THAT(s.allocations(), IsEmpty());

  // GPUs freed.
  EXPECT_THAT(RunningOn(t.Node("n1")), IsEmpty());
  const v1::Node n1 = t.Node("n1");
  for (const v1::GpuStatus& g : n1.gpus()) EXPECT_EQ(g.job_id(), "");

  // The next round starts attempt 2 of the requeued jobs.
  t.cm().ScheduleOnce();
  std::vector<std::string> restarted = StartedJobs(t.Take());
  std::vector<std::string> want = {starting};
  if (GetParam().running_becomes == v1::JOB_STATE_PENDING) {
    want.push_back(running);
  }
  EXPECT_THAT(restarted, UnorderedElementsAreArray(want));
  EXPECT_EQ(t.Job(starting).attempt(), 2u);
}

INSTANTIATE_TEST_SUITE_P(
    Policies, AgentRestartTest,
    ::testing::Values(RestartCase{"DefaultFails", "", v1::JOB_STATE_FAILED},
                      RestartCase{"Fail", "fail", v1::JOB_STATE_FAILED},
                      RestartCase{"Requeue", "requeue", v1::JOB_STATE_PENDING}),
    [](const auto& info) { return info.param.name; });

TEST(ClusterManagerAgentTest, RestartedAgentKeepsJobsItStillRunsAndStopsStale) {
  TestCluster t;
  t.AddNode("n1");
  const std::string kept = t.Submit(TestCluster::Spec(4));
  t.cm().ScheduleOnce();
  t.StartAll();
  t.Take();
  // The agent reconnects still running `kept` and a stale attempt of a job
  // the daemon never placed there.
  v1::RegisterRequest req = t.RegisterRequest("n1");
  v1::RunningJob* r = req.add_running_jobs();
  r->set_job_id(kept);
  r->set_attempt(1);
  v1::RunningJob* stale = req.add_running_jobs();
  stale->set_job_id("job-424242");
  stale->set_attempt(3);
  t.Register(req);
  EXPECT_EQ(t.Job(kept).state(), v1::JOB_STATE_RUNNING);
  EXPECT_THAT(RunningOn(t.Node("n1")), ElementsAre(kept));
  // The stop must reach the agent on its new stream.
  const std::vector<Sent> sent = t.Take();
  ASSERT_EQ(StoppedJobs(sent), std::vector<std::string>{"job-424242"});
  EXPECT_EQ(sent[0].msg.stop_job().attempt(), 3u);
}

// ============================================================ 4. placement ==
//
// rack-a cap 15 kW, n1..n3 registered: base 3 × 1 kW = 3 kW, plus 24 free
// GPUs idle at 70 W = 1.68 kW: 4.68 kW committed. An 8-GPU job at 700 W adds
// 8 × (700 − 70) W = 5.04 kW: two fit (4.68 + 2 × 5.04 = 14.76 kW ≤ 15 kW),
// a third does not (14.76 + 5.04 = 19.8 kW > 15 kW) although n3's 8 GPUs
// are free.

TEST(ClusterManagerPlacementTest, RackCapAdmitsTwoOfThreeThenTheThird) {
  TestCluster t({.rack_a_cap = "15kW"});
  t.AddNode("n1");
  t.AddNode("n2");
  t.AddNode("n3");
  const std::string a = t.Submit(TestCluster::Spec(8));
  const std::string b = t.Submit(TestCluster::Spec(8));
  const std::string c = t.Submit(TestCluster::Spec(8));
  t.cm().ScheduleOnce();
  std::vector<Sent> sent = t.Take();
  EXPECT_THAT(StartedJobs(sent), UnorderedElementsAre(a, b));
  EXPECT_NE(t.NodeOf(a), t.NodeOf(b));
  for (const Sent& s : sent) {
    EXPECT_EQ(s.msg.start_job().gpu_indices_size(), 8);
    EXPECT_EQ(s.msg.start_job().power_limit_mw(), 700 * kW);
    EXPECT_EQ(s.msg.start_job().num_nodes(), 1u);
  }
  const v1::Job waiting = t.Job(c);
  EXPECT_EQ(waiting.state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(waiting.reason(), HasSubstr("rack-a"));
  EXPECT_THAT(waiting.reason(), HasSubstr("14.8 kW"));  // committed
  EXPECT_THAT(waiting.reason(), HasSubstr("5.04 kW"));  // needed
  EXPECT_THAT(waiting.reason(), HasSubstr("15.0 kW"));  // cap
  EXPECT_EQ(t.Domain("rack-a").committed_mw(), 14'760 * kW);

  t.StartAll();
  t.cm().ScheduleOnce();  // still no room
  EXPECT_THAT(t.Take(), IsEmpty());

  // a finishes with code 0: SUCCEEDED, its power is free, c starts.
  t.clock().Advance(absl::Minutes(5));
  const std::string a_node = t.NodeOf(a);
  t.Exited(a_node, a, 0);
  const v1::Job done = t.Job(a);
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.exit_code(), 0);
  ASSERT_EQ(done.attempts_size(), 1);
  EXPECT_EQ(FromProtoTime(done.attempts(0).end_time()) -
                FromProtoTime(done.attempts(0).start_time()),
            absl::Minutes(5));
  t.cm().ScheduleOnce();
  sent = t.Take();
  ASSERT_EQ(StartedJobs(sent), std::vector<std::string>{c});
  EXPECT_NE(t.NodeOf(c), t.NodeOf(b));
  EXPECT_EQ(t.Job(c).state(), v1::JOB_STATE_STARTING);
}

// ============================================================= 5. gang job ==

// Either rank may fail first; the job's exit code is the failing rank's
// (3), not the 143 of the rank that was stopped because of it.
class ClusterManagerGangTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(ClusterManagerGangTest, OneRankFailsStopsTheOtherThenFailed) {
  const uint32_t failing = GetParam();
  const uint32_t other = 1 - failing;
  TestCluster t;
  t.AddNode("n1");
  t.AddNode("n2");
  v1::JobSpec spec = TestCluster::Spec(8);
  spec.set_nodes(2);
  const std::string job = t.Submit(spec);
  t.cm().ScheduleOnce();
  const std::vector<Sent> sent = t.Take();
  ASSERT_EQ(sent.size(), 2u);
  std::map<uint32_t, std::string> rank_node;
  std::set<std::string> masters;
  for (const Sent& s : sent) {
    ASSERT_TRUE(s.msg.has_start_job());
    const v1::StartJob& st = s.msg.start_job();
    EXPECT_EQ(st.job_id(), job);
    EXPECT_EQ(st.num_nodes(), 2u);
    EXPECT_EQ(st.gpu_indices_size(), 8);
    rank_node[st.node_rank()] = s.node;
    masters.insert(st.master_addr());
  }
  ASSERT_EQ(rank_node.size(), 2u);
  EXPECT_TRUE(rank_node.contains(0) && rank_node.contains(1));
  EXPECT_NE(rank_node[0], rank_node[1]);
  ASSERT_EQ(masters.size(), 1u);
  EXPECT_EQ(*masters.begin(), absl::StrCat("10.0.0.", rank_node[0].substr(1)));

  t.StartAll();
  EXPECT_EQ(t.Job(job).state(), v1::JOB_STATE_RUNNING);

  // The failing rank exits with code 3: the other is told to stop; the job
  // is not over.
  t.clock().Advance(absl::Minutes(1));
  t.Exited(rank_node[failing], job, 3);
  std::vector<Sent> stop = t.Take();
  ASSERT_EQ(StoppedJobs(stop), std::vector<std::string>{job});
  EXPECT_EQ(stop[0].node, rank_node[other]);
  v1::Job mid = t.Job(job);
  EXPECT_EQ(mid.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(mid.stopping_to(), v1::JOB_STATE_FAILED);

  // The other rank ends (SIGTERM): FAILED, with the failing rank named.
  t.clock().Advance(absl::Seconds(1));
  t.Exited(rank_node[other], job, 143);
  const v1::Job done = t.Job(job);
  EXPECT_EQ(done.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(done.reason(), HasSubstr(absl::StrCat("rank ", failing)));
  EXPECT_EQ(done.exit_code(), 3);
  ASSERT_EQ(done.attempts_size(), 1);
  EXPECT_EQ(FromProtoTime(done.attempts(0).end_time()), t.clock().Now());
  EXPECT_THAT(RunningOn(t.Node("n1")), IsEmpty());
  EXPECT_THAT(RunningOn(t.Node("n2")), IsEmpty());
  EXPECT_THAT(t.Take(), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(FailingRank, ClusterManagerGangTest,
                         ::testing::Values(0u, 1u));

// =============================================================== 6. cancel ==

TEST(ClusterManagerCancelTest, PendingIsCancelledAtOnce) {
  TestCluster t;
  t.AddNode("n1");
  const std::string job = t.Submit(TestCluster::Spec(8));
  v1::CancelJobRequest req;
  req.set_id(job);
  auto r = t.cm().CancelJob(req, "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(t.Job(job).state(), v1::JOB_STATE_CANCELLED);
  t.cm().ScheduleOnce();
  EXPECT_THAT(t.Take(), IsEmpty());
  // Stored as cancelled.
  auto raw = t.memory().Get(storage::kJobs, job);
  ASSERT_TRUE(raw.ok() && raw->has_value());
  v1::Job stored;
  ASSERT_TRUE(stored.ParseFromString(**raw));
  EXPECT_EQ(stored.state(), v1::JOB_STATE_CANCELLED);
  // Twice: refused.
  EXPECT_EQ(t.cm().CancelJob(req, "").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ClusterManagerCancelTest, RunningIsStoppedThenCancelled) {
  TestCluster t;
  t.AddNode("n1");
  const std::string job = t.Submit(TestCluster::Spec(8));
  t.cm().ScheduleOnce();
  t.StartAll();
  t.Take();
  v1::CancelJobRequest req;
  req.set_id(job);
  req.set_reason("user asked");
  auto r = t.cm().CancelJob(req, "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(r->stopping_to(), v1::JOB_STATE_CANCELLED);
  std::vector<Sent> sent = t.Take();
  ASSERT_EQ(StoppedJobs(sent), std::vector<std::string>{job});
  // Its GPUs go to their minimum limit first, then the StopJob.
  ASSERT_EQ(sent.size(), 9u);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(sent[i].msg.set_power_limit().power_limit_mw(), 200 * kW);
  }
  sent.erase(sent.begin(), sent.begin() + 8);
  EXPECT_EQ(sent[0].node, "n1");
  EXPECT_EQ(FromProtoDuration(sent[0].msg.stop_job().grace_period()),
            absl::Seconds(2));
  // The process dies of SIGTERM (non-zero): CANCELLED, not FAILED.
  t.clock().Advance(absl::Seconds(1));
  t.Exited("n1", job, 143);
  const v1::Job done = t.Job(job);
  EXPECT_EQ(done.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(done.reason(), "user asked");
  EXPECT_EQ(FromProtoTime(done.attempts(0).end_time()), t.clock().Now());
  EXPECT_THAT(RunningOn(t.Node("n1")), IsEmpty());
}

// =========================================================== 7. validation ==

struct BadSubmit {
  std::string name;
  std::function<void(v1::JobSpec&)> edit;
  absl::StatusCode code;
  std::string field;  // the error names it
};

void PrintTo(const BadSubmit& c, std::ostream* os) { *os << c.name; }

class SubmitValidationTest : public ::testing::TestWithParam<BadSubmit> {};

TEST_P(SubmitValidationTest, RefusedAndNothingChanged) {
  TestCluster t;
  t.AddNode("n1");
  t.Submit(TestCluster::Spec(8));
  const int64_t writes = t.memory().write_count();
  const int64_t stored = t.TableSize(storage::kJobs);
  const std::vector<v1::Job> before = t.Jobs();
  ASSERT_EQ(before.size(), 1u);

  v1::JobSpec spec = TestCluster::Spec(8);
  GetParam().edit(spec);
  v1::SubmitJobRequest req;
  *req.mutable_spec() = spec;
  req.set_request_id("retry-1");
  auto r = t.cm().SubmitJob(req, "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), GetParam().code) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(GetParam().field));

  EXPECT_EQ(t.memory().write_count(), writes);
  EXPECT_EQ(t.TableSize(storage::kJobs), stored);
  EXPECT_EQ(t.TableSize(storage::kJobsIdem), 0);
  const std::vector<v1::Job> after = t.Jobs();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_TRUE(MessageDifferencer::Equals(before[0], after[0]));
  // The next accepted job takes the next id: the refused one used none.
  EXPECT_EQ(t.Submit(TestCluster::Spec(8)), "job-000002");
}

INSTANTIATE_TEST_SUITE_P(
    Specs, SubmitValidationTest,
    ::testing::Values(
        BadSubmit{"ZeroGpus", [](v1::JobSpec& s) { s.set_gpus_per_node(0); },
                  absl::StatusCode::kInvalidArgument, "spec.gpus_per_node"},
        BadSubmit{"MoreGpusThanAnyNode",
                  [](v1::JobSpec& s) { s.set_gpus_per_node(9); },
                  absl::StatusCode::kInvalidArgument,
                  "spec.gpus_per_node: 9 GPUs of H100"},
        BadSubmit{
            "UnknownModel", [](v1::JobSpec& s) { s.set_gpu_model("B300"); },
            absl::StatusCode::kInvalidArgument, "spec.gpu_model: \"B300\""},
        BadSubmit{"UnknownTenant",
                  [](v1::JobSpec& s) { s.set_tenant("nobody"); },
                  absl::StatusCode::kNotFound, "spec.tenant: \"nobody\""},
        BadSubmit{"MinPowerAbovePower",
                  [](v1::JobSpec& s) {
                    s.set_power_limit_mw(500 * kW);
                    s.set_min_power_limit_mw(600 * kW);
                  },
                  absl::StatusCode::kInvalidArgument,
                  "spec.min_power_limit_mw"},
        BadSubmit{"PowerAboveModelMax",
                  [](v1::JobSpec& s) { s.set_power_limit_mw(800 * kW); },
                  absl::StatusCode::kInvalidArgument, "spec.power_limit_mw"},
        BadSubmit{"NoCommand", [](v1::JobSpec& s) { s.clear_command(); },
                  absl::StatusCode::kInvalidArgument, "spec.command"}),
    [](const auto& info) { return info.param.name; });

TEST(ClusterManagerValidationTest, SetPowerCapRefusedAndNothingChanged) {
  TestCluster t;
  t.AddNode("n1");
  const int64_t writes = t.memory().write_count();
  struct Case {
    std::string domain;
    int64_t cap_mw;
    absl::StatusCode code;
    std::string field;
  };
  for (const Case& c :
       {Case{"rack-a", -1, absl::StatusCode::kInvalidArgument, "cap_mw"},
        Case{"rack-z", 5 * kKw, absl::StatusCode::kNotFound,
             "domain: \"rack-z\""}}) {
    v1::SetPowerCapRequest r;
    r.set_domain(c.domain);
    r.set_cap_mw(c.cap_mw);
    auto d = t.cm().SetPowerCap(r);
    ASSERT_FALSE(d.ok()) << c.domain;
    EXPECT_EQ(d.status().code(), c.code) << d.status();
    EXPECT_THAT(d.status().message(), HasSubstr(c.field));
  }
  EXPECT_EQ(t.memory().write_count(), writes);
  EXPECT_EQ(t.TableSize(storage::kDomains), 0);
  EXPECT_EQ(t.Domain("rack-a").cap_mw(), 100 * kKw);
  EXPECT_THAT(t.Events("cap"), IsEmpty());
}

// ============================================================== 8. restart ==

TEST(ClusterManagerRestartTest, ReloadKeepsJobsNodesAndCaps) {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "joule-cm-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const std::string dir = tmpl;
  auto open = [&] {
    auto s = storage::RocksDbStore::Open({.path = dir + "/db"});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  };
  std::vector<v1::Job> before;
  std::vector<v1::Event> events_before;
  std::vector<v1::Node> nodes_before;
  std::string succeeded, failed, running, preempted, starting, cancelled,
      pending;
  {
    std::unique_ptr<storage::RocksDbStore> store = open();
    ASSERT_NE(store, nullptr);
    TestCluster t({}, store.get());
    t.AddNode("n1");
    t.AddNode("n2");
    // Two jobs that ran and ended.
    succeeded = t.Submit(TestCluster::Spec(4));
    failed = t.Submit(TestCluster::Spec(4));
    t.cm().ScheduleOnce();
    t.StartAll();
    t.clock().Advance(absl::Minutes(1));
    t.Exited(t.NodeOf(succeeded), succeeded, 0);
    t.Exited(t.NodeOf(failed), failed, 1);
    // Running, spot (to be preempted), starting.
    running = t.Submit(TestCluster::Spec(4));
    preempted = t.Submit(TestCluster::Spec(4, v1::SERVICE_CLASS_SPOT));
    starting = t.Submit(TestCluster::Spec(4));
    t.cm().ScheduleOnce();
    ASSERT_EQ(StartedJobs(t.Take()).size(), 5u);
    t.Started(t.NodeOf(running), running);
    t.Started(t.NodeOf(preempted), preempted);
    t.Report("n1");
    t.Report("n2");
    // measured = 2 kW + 8 × 700 W + 8 × 70 W = 8.16 kW; cap 6.2 kW → 1.96
    // kW over; nothing is throttleable (min = limit), so the spot job goes
    // (saves 4 × (700 - 200) W = 2.0 kW at once: its GPUs drop to their
    // 200 W minimum for the grace).
    t.SetCap("rack-a", 6'200 * kW);
    t.cm().ControlPowerOnce();
    ASSERT_EQ(StoppedJobs(t.Take()), std::vector<std::string>{preempted});
    t.clock().Advance(absl::Seconds(2));
    t.Exited(t.NodeOf(preempted), preempted, 143);
    ASSERT_EQ(t.Job(preempted).state(), v1::JOB_STATE_PENDING);
    cancelled = t.Submit(TestCluster::Spec(4));
    v1::CancelJobRequest cancel;
    cancel.set_id(cancelled);
    ASSERT_TRUE(t.cm().CancelJob(cancel, "").ok());
    pending = t.Submit(TestCluster::Spec(4));
    v1::Tenant tenant;
    tenant.set_name("gamma");
    tenant.set_fair_share_weight(3);
    ASSERT_TRUE(t.cm().CreateTenant(tenant).ok());

    before = t.Jobs();
    events_before = t.Events("");
    nodes_before = t.cm().ListNodes();
    t.DropManager();
  }
  ASSERT_EQ(before.size(), 7u);
  std::map<std::string, v1::JobState> want_state = {
      {succeeded, v1::JOB_STATE_SUCCEEDED},
      {failed, v1::JOB_STATE_FAILED},
      {running, v1::JOB_STATE_RUNNING},
      {preempted, v1::JOB_STATE_PENDING},
      {starting, v1::JOB_STATE_STARTING},
      {cancelled, v1::JOB_STATE_CANCELLED},
      {pending, v1::JOB_STATE_PENDING}};
  for (const v1::Job& j : before) {
    EXPECT_EQ(j.state(), want_state[j.id()]) << j.id();
  }

  std::unique_ptr<storage::RocksDbStore> store = open();
  ASSERT_NE(store, nullptr);
  TestCluster t({}, store.get());
  t.clock().Advance(absl::Minutes(10));
  ASSERT_TRUE(t.cm().Load().ok());

  // Every job: same state, attempts and history.
  const std::vector<v1::Job> after = t.Jobs();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    std::string diff;
    MessageDifferencer d;
    d.ReportDifferencesToString(&diff);
    EXPECT_TRUE(d.Compare(before[i], after[i]))
        << before[i].id() << ": " << diff;
  }
  const v1::Job p = t.Job(preempted);
  EXPECT_TRUE(HasState(p, v1::JOB_STATE_PREEMPTED));
  EXPECT_EQ(p.attempts_size(), 1);

  // Nodes: known, UNREACHABLE until they report; allocations kept.
  std::vector<v1::Node> nodes = t.cm().ListNodes();
  ASSERT_EQ(nodes.size(), 2u);
  for (size_t i = 0; i < nodes.size(); ++i) {
    EXPECT_EQ(nodes[i].name(), nodes_before[i].name());
    EXPECT_EQ(nodes[i].state(), v1::NODE_STATE_UNREACHABLE);
    EXPECT_EQ(nodes[i].domain(), "rack-a");
    EXPECT_EQ(nodes[i].base_power_mw(), 1 * kKw);
    EXPECT_EQ(nodes[i].gpus_size(), kGpusPerNode);
    EXPECT_EQ(nodes[i].address(), nodes_before[i].address());
    EXPECT_THAT(RunningOn(nodes[i]),
                UnorderedElementsAreArray(RunningOn(nodes_before[i])));
  }
  // The cap override, tenants and events survive.
  EXPECT_EQ(t.Domain("rack-a").cap_mw(), 6'200 * kW);
  bool gamma = false;
  for (const v1::Tenant& tn : t.cm().ListTenants())
    gamma |= tn.name() == "gamma";
  EXPECT_TRUE(gamma);
  EXPECT_EQ(t.Events("").size(), events_before.size());

  // A report brings a node back; updates of loaded attempts still count.
  const std::string node = nodes_before[0].name();
  t.Report(node);
  EXPECT_EQ(t.Node(node).state(), v1::NODE_STATE_READY);
  v1::JobUpdate u;
  u.set_job_id(running);
  u.set_attempt(1);
  u.set_phase(v1::JOB_PHASE_EXITED);
  *u.mutable_time() = ToProtoTime(t.clock().Now());
  std::string running_node;
  for (const v1::Node& n : nodes_before) {
    for (const std::string& j : n.running_jobs()) {
      if (j == running) running_node = n.name();
    }
  }
  ASSERT_TRUE(t.cm().HandleJobUpdate(running_node, u).ok());
  EXPECT_EQ(t.Job(running).state(), v1::JOB_STATE_SUCCEEDED);
  // Ids continue after the last one.
  EXPECT_EQ(t.Submit(TestCluster::Spec(4)), "job-000008");

  t.DropManager();
  store.reset();
  std::filesystem::remove_all(dir);
}

// =========================================================== 9. idempotency ==

TEST(ClusterManagerIdempotencyTest, SameRequestIdSameJob) {
  TestCluster t;
  t.AddNode("n1");
  v1::SubmitJobRequest req;
  *req.mutable_spec() = TestCluster::Spec(8);
  req.set_request_id("req-1");
  auto first = t.cm().SubmitJob(req, "");
  ASSERT_TRUE(first.ok()) << first.status();
  const int64_t writes = t.memory().write_count();
  auto second = t.cm().SubmitJob(req, "");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->id(), first->id());
  EXPECT_EQ(t.Jobs().size(), 1u);
  EXPECT_EQ(t.memory().write_count(), writes);  // a retry writes nothing

  // The same request id with another spec is refused.
  v1::SubmitJobRequest other = req;
  other.mutable_spec()->set_gpus_per_node(4);
  auto third = t.cm().SubmitJob(other, "");
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(third.status().message(), HasSubstr("request_id"));
  EXPECT_EQ(t.Jobs().size(), 1u);
  EXPECT_EQ(t.memory().write_count(), writes);

  // Request ids are per tenant.
  v1::SubmitJobRequest beta = req;
  beta.mutable_spec()->set_tenant("beta");
  auto fourth = t.cm().SubmitJob(beta, "");
  ASSERT_TRUE(fourth.ok()) << fourth.status();
  EXPECT_NE(fourth->id(), first->id());
  EXPECT_EQ(t.Jobs().size(), 2u);

  // After a restart (same store), the retry still finds the job.
  t.NewManager();
  ASSERT_TRUE(t.cm().Load().ok());
  auto again = t.cm().SubmitJob(req, "");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->id(), first->id());
  EXPECT_EQ(t.Jobs().size(), 2u);
}

TEST(ClusterManagerIdempotencyTest, SameSpecWithEnvInAnotherOrderIsARetry) {
  TestCluster t;
  t.AddNode("n1");
  v1::SubmitJobRequest a;
  *a.mutable_spec() = TestCluster::Spec(8);
  a.set_request_id("req-env");
  v1::SubmitJobRequest b = a;
  // The same map, built in opposite orders.
  for (int i = 0; i < 32; ++i) {
    (*a.mutable_spec()->mutable_env())[absl::StrCat("VAR_", i)] = "x";
    (*b.mutable_spec()->mutable_env())[absl::StrCat("VAR_", 31 - i)] = "x";
  }
  ASSERT_TRUE(MessageDifferencer::Equals(a, b));
  auto first = t.cm().SubmitJob(a, "");
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = t.cm().SubmitJob(b, "");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->id(), first->id());
  EXPECT_EQ(t.Jobs().size(), 1u);
}

// The loop's periodic round (ScheduleIfChanged) is skipped while nothing a
// decision depends on changed, and still places the waiting job in the
// round after a change: rack-a's 15 kW cap admits two 8-GPU jobs of three
// (as RackCapAdmitsTwoOfThreeThenTheThird), c waits; a's exit frees room.
TEST(ClusterManagerRoundGateTest, PeriodicRoundSkipsUntilAChangeThenPlaces) {
  TestCluster t({.rack_a_cap = "15kW"});
  t.AddNode("n1");
  t.AddNode("n2");
  t.AddNode("n3");
  const std::string a = t.Submit(TestCluster::Spec(8));
  const std::string b = t.Submit(TestCluster::Spec(8));
  const std::string c = t.Submit(TestCluster::Spec(8));
  t.cm().ScheduleOnce();
  EXPECT_THAT(StartedJobs(t.Take()), UnorderedElementsAre(a, b));
  t.StartAll();
  // The first periodic round sees what the last one placed: it runs.
  EXPECT_TRUE(t.cm().ScheduleIfChanged());
  EXPECT_THAT(t.Take(), IsEmpty());
  // Nothing changed since: skipped, over several rounds and 3 s.
  for (int i = 0; i < 3; ++i) {
    t.clock().Advance(absl::Seconds(1));
    EXPECT_FALSE(t.cm().ScheduleIfChanged()) << "round " << i;
  }
  EXPECT_EQ(t.Job(c).state(), v1::JOB_STATE_PENDING);
  // 5 s after the last full round one runs anyway (and places nothing).
  t.clock().Advance(absl::Seconds(2));
  EXPECT_TRUE(t.cm().ScheduleIfChanged());
  EXPECT_THAT(t.Take(), IsEmpty());
  EXPECT_FALSE(t.cm().ScheduleIfChanged());
  // a ends: the next round runs and starts c.
  t.Exited(t.NodeOf(a), a, 0);
  EXPECT_TRUE(t.cm().ScheduleIfChanged());
  EXPECT_EQ(StartedJobs(t.Take()), std::vector<std::string>{c});
  EXPECT_EQ(t.Job(c).state(), v1::JOB_STATE_STARTING);
}

}  // namespace
}  // namespace joule::daemon
