// Job arrays in the daemon (daemon/job_arrays.h): the pure parts
// (ValidateArray, ArrayGate) table-driven, then ClusterManager::SubmitArray /
// CancelArray driven directly with a FakeClock, a MemoryStore and one fake
// agent of 8 GPUs that records the StartJob commands it receives.

#include "daemon/job_arrays.h"

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

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kW = 1000;  // mW

// ------------------------------------------------------------ pure parts ----

TEST(ValidateArrayTest, Bounds) {
  struct Case {
    uint32_t first, last;
    int64_t max_batch_ops;
    bool ok;
    const char* message;
  } cases[] = {
      {0, 999, 0, true, ""},
      {5, 5, 0, true, ""},                       // one task
      {7, 3, 0, false, "must not be above"},     // first > last
      {0, kMaxArrayTasks - 1, 0, true, ""},      // exactly the most
      {0, kMaxArrayTasks, 0, false, "at most"},  // one more
      // etcd-like store, 128 ops per batch: 126 tasks + counters + idem.
      {0, 125, 128, true, ""},
      {0, 126, 128, false, "with this store"},
  };
  for (const Case& c : cases) {
    v1::JobArray a;
    a.set_first(c.first);
    a.set_last(c.last);
    const absl::Status s = ValidateArray(a, c.max_batch_ops);
    EXPECT_EQ(s.ok(), c.ok) << c.first << "-" << c.last << ": " << s;
    if (!c.ok) {
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(s.message(), HasSubstr("array:"));
      EXPECT_THAT(s.message(), HasSubstr(c.message));
    }
  }
  EXPECT_EQ(ArrayTaskId("job-000042", 7), "job-000042_7");
}

v1::Job Task(const std::string& array, uint32_t index, uint32_t max_running,
             v1::JobState state) {
  v1::Job j;
  j.set_id(ArrayTaskId(array, index));
  j.set_array_id(array);
  j.set_array_index(index);
  j.set_array_max_running(max_running);
  j.set_state(state);
  return j;
}

TEST(ArrayGateTest, AdmitsLowestPendingIndicesUpToTheLimit) {
  std::map<std::string, v1::Job> jobs;
  auto add = [&](v1::Job j) { jobs[j.id()] = j; };
  // Array a, limit 3: task 0 running, tasks 1..5 pending -> room for 2:
  // tasks 1 and 2.
  add(Task("a", 0, 3, v1::JOB_STATE_RUNNING));
  for (uint32_t i = 1; i <= 5; ++i) add(Task("a", i, 3, v1::JOB_STATE_PENDING));
  // Array b, limit 1: task 0 starting -> no room.
  add(Task("b", 0, 1, v1::JOB_STATE_STARTING));
  add(Task("b", 1, 1, v1::JOB_STATE_PENDING));
  // Array c, no limit; and a plain job.
  add(Task("c", 0, 0, v1::JOB_STATE_PENDING));
  v1::Job plain;
  plain.set_id("job-000009");
  plain.set_state(v1::JOB_STATE_PENDING);
  add(plain);
  absl::flat_hash_set<std::string> active;
  for (const auto& [id, j] : jobs) active.insert(id);

  ArrayGate gate;
  gate.BeginRound(active, [&](const std::string& id) -> const v1::Job& {
    return jobs.at(id);
  });
  std::vector<std::string> admitted;
  for (const auto& [id, j] : jobs) {
    if (j.state() == v1::JOB_STATE_PENDING && gate.Admits(j)) {
      admitted.push_back(id);
    }
  }
  EXPECT_THAT(admitted, ElementsAre("a_1", "a_2", "c_0", "job-000009"));
}

TEST(ArrayGateTest, DisarmsWhenNoLimitedTaskIsActiveAndArmRearms) {
  std::map<std::string, v1::Job> jobs;
  jobs["a_0"] = Task("a", 0, 1, v1::JOB_STATE_PENDING);
  absl::flat_hash_set<std::string> none;
  absl::flat_hash_set<std::string> active = {"a_0"};
  auto job_of = [&](const std::string& id) -> const v1::Job& {
    return jobs.at(id);
  };
  ArrayGate gate;
  gate.BeginRound(none, job_of);  // nothing limited: disarms
  gate.BeginRound(active, job_of);
  EXPECT_FALSE(gate.Admits(jobs["a_0"])) << "disarmed: counted nothing";
  gate.Arm();
  gate.BeginRound(active, job_of);
  EXPECT_TRUE(gate.Admits(jobs["a_0"]));
}

// ------------------------------------------------------ ClusterManager ----

class RecordingLink final : public AgentLink {
 public:
  void Send(const v1::DaemonMessage& msg) override { sent.push_back(msg); }
  std::vector<v1::DaemonMessage> sent;
};

class ArrayManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cfg = config::ParseClusterConfig(
        R"pb(
          gpu_model { name: "H100" tdp: "700W" idle_power: "70W" }
          node_model { name: "hgx" base_power: "1kW" }
          domain { name: "site" kind: "site" cap: "1MW" }
          node { name: "n1" domain: "site" }
          tenant { name: "acme" }
          tenant { name: "beta" }
          scheduler { default_node_model: "hgx" }
        )pb",
        "test.conf");
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    ClusterManagerOptions opts;
    opts.config = *cfg;
    opts.store = &store_;
    opts.clock = &clock_;
    cm_ = std::make_unique<ClusterManager>(std::move(opts));
    ASSERT_TRUE(cm_->Load().ok());
    auto resp = test::ConnectAgent(
        *cm_, test::FakeRegistration("n1", 8, "GPU-", "10.0.0.1"), &link_);
    ASSERT_TRUE(resp.ok()) << resp.status();
    Report();
  }
  void TearDown() override { cm_->DetachAgent("n1", &link_); }

  void Report() {
    v1::NodeReport r;
    r.set_node_name("n1");
    *r.mutable_time() = ToProtoTime(clock_.Now());
    for (const auto& [id, attempt] : running_) {
      test::AddReportedJob(&r, id, attempt);
    }
    for (int i = 0; i < 8; ++i) test::AddH100Status(&r, i, 700 * kW, 70 * kW);
    ASSERT_TRUE(cm_->HandleReport("n1", r).ok());
  }
  // One scheduling round; the ids of the jobs it started (StartJob sent),
  // each then reported STARTED.
  std::vector<std::string> Round() {
    link_.sent.clear();
    cm_->ScheduleOnce();
    std::vector<std::string> started;
    for (const v1::DaemonMessage& m : link_.sent) {
      if (!m.has_start_job()) continue;
      started.push_back(m.start_job().job_id());
      running_[m.start_job().job_id()] = m.start_job().attempt();
      v1::JobUpdate u;
      u.set_job_id(m.start_job().job_id());
      u.set_attempt(m.start_job().attempt());
      u.set_phase(v1::JOB_PHASE_STARTED);
      *u.mutable_time() = ToProtoTime(clock_.Now());
      EXPECT_TRUE(cm_->HandleJobUpdate("n1", u).ok());
    }
    std::sort(started.begin(), started.end());
    return started;
  }
  void Exit(const std::string& id, int code = 0) {
    v1::JobUpdate u;
    u.set_job_id(id);
    u.set_attempt(running_.at(id));
    u.set_phase(v1::JOB_PHASE_EXITED);
    u.set_exit_code(code);
    *u.mutable_time() = ToProtoTime(clock_.Now());
    running_.erase(id);
    ASSERT_TRUE(cm_->HandleJobUpdate("n1", u).ok());
    Report();
  }
  v1::SubmitJobResponse SubmitArray(uint32_t first, uint32_t last,
                                    uint32_t max_running,
                                    const std::string& caller = "") {
    v1::SubmitJobRequest req;
    v1::JobSpec* s = req.mutable_spec();
    s->set_tenant("acme");
    s->add_command("true");
    s->set_gpus_per_node(1);
    req.mutable_array()->set_first(first);
    req.mutable_array()->set_last(last);
    req.mutable_array()->set_max_running(max_running);
    auto resp = cm_->SubmitArray(req, caller);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? *resp : v1::SubmitJobResponse();
  }
  v1::JobState State(const std::string& id) {
    auto j = cm_->GetJob(id, "");
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? j->state() : v1::JOB_STATE_UNSPECIFIED;
  }

  FakeClock clock_{absl::FromUnixSeconds(1767225600)};
  storage::MemoryStore store_;
  RecordingLink link_;
  std::unique_ptr<ClusterManager> cm_;
  std::map<std::string, uint32_t> running_;  // what the fake agent runs
};

TEST_F(ArrayManagerTest, OneDurableWriteMakesEveryTask) {
  const int64_t writes = store_.write_count();
  const v1::SubmitJobResponse r = SubmitArray(0, 999, 0);
  EXPECT_EQ(store_.write_count() - writes, 1);
  EXPECT_EQ(r.array_tasks(), 1000u);
  EXPECT_EQ(r.job().id(), r.array_id() + "_0");
  v1::ListJobsRequest list;
  list.set_array_id(r.array_id());
  auto tasks = cm_->ListJobs(list, "");
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 1000u);
  for (const v1::Job& j : *tasks) {
    EXPECT_EQ(j.id(), ArrayTaskId(r.array_id(), j.array_index()));
    EXPECT_EQ(j.state(), v1::JOB_STATE_PENDING);
  }
  EXPECT_TRUE(cm_->IsArray(r.array_id()));
  EXPECT_FALSE(cm_->IsArray(r.job().id()));
  // The next plain job's id does not collide with the tasks' sequence.
  v1::SubmitJobRequest one;
  one.mutable_spec()->set_tenant("acme");
  one.mutable_spec()->add_command("true");
  one.mutable_spec()->set_gpus_per_node(1);
  auto plain = cm_->SubmitJob(one, "");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_GT(plain->seq(), tasks->back().seq());
}

TEST_F(ArrayManagerTest, MaxRunningHoldsOverSeveralRounds) {
  // 8 free GPUs, 1-GPU tasks 0..5, at most 2 at once: rounds start {0,1},
  // then nothing until one ends, then the lowest pending index.
  const std::string a = SubmitArray(0, 5, 2).array_id();
  auto id = [&](int i) { return ArrayTaskId(a, i); };
  EXPECT_THAT(Round(), ElementsAre(id(0), id(1)));
  EXPECT_THAT(Round(), ElementsAre());
  Exit(id(0));
  EXPECT_THAT(Round(), ElementsAre(id(2)));
  Exit(id(1));
  Exit(id(2));
  EXPECT_THAT(Round(), ElementsAre(id(3), id(4)));
  Exit(id(3));
  EXPECT_THAT(Round(), ElementsAre(id(5)));
  Exit(id(4));
  Exit(id(5));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(State(id(i)), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(ArrayManagerTest, CancelOneTaskThenTheWholeArray) {
  const std::string a = SubmitArray(0, 9, 0).array_id();
  auto id = [&](int i) { return ArrayTaskId(a, i); };
  // Task 9 alone, as any job.
  v1::CancelJobRequest one;
  one.set_id(id(9));
  ASSERT_TRUE(cm_->CancelJob(one, "").ok());
  EXPECT_EQ(State(id(9)), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(Round().size(), 8u);  // 8 GPUs: tasks 0..7 start
  // The whole array: 8 running tasks are stopped, task 8 (pending) is
  // cancelled at once, task 9 was already.
  v1::CancelJobRequest all;
  all.set_id(a);
  auto r = cm_->CancelArray(all, "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->id(), a);
  EXPECT_THAT(r->reason(), HasSubstr("9 of 10 task(s)"));
  EXPECT_EQ(State(id(8)), v1::JOB_STATE_CANCELLED);
  int stopping = 0;
  for (const v1::DaemonMessage& m : link_.sent) stopping += m.has_stop_job();
  EXPECT_EQ(stopping, 8);
  // Another tenant sees no such array.
  auto other = cm_->CancelArray(all, "beta");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ArrayManagerTest, RefusesBadArraysAndOtherTenants) {
  v1::SubmitJobRequest req;
  req.mutable_spec()->set_tenant("acme");
  req.mutable_spec()->add_command("true");
  req.mutable_spec()->set_gpus_per_node(1);
  req.mutable_array()->set_first(3);
  req.mutable_array()->set_last(1);
  const int64_t writes = store_.write_count();
  auto bad = cm_->SubmitArray(req, "");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("array:"));
  req.mutable_array()->set_last(5);
  auto foreign = cm_->SubmitArray(req, "beta");
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(store_.write_count(), writes) << "nothing changed";
}

}  // namespace
}  // namespace joule::daemon
