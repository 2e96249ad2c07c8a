// Issue 3: jobs placed under power caps, run by real agents as real
// processes, kept under caps while they run; state survives a daemon crash.
#include <signal.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

// One rack rk1 (cap 15 kW) under row r1 under the site. Node base power
// 1 kW; H100 at 700 W, idle 70 W. Three nodes: 3 kW base + 24 idle GPUs
// (1.68 kW) = 4.68 kW committed; an 8-GPU job adds 8 × (700 − 70) W =
// 5.04 kW. Two jobs: 14.76 kW <= 15 kW; a third would make it 19.8 kW.
std::string Config(int nodes, const std::string& rack_cap) {
  return ConfigBuilder()
      .Domain("r1", "100kW", "site", "row")
      .Domain("rk1", rack_cap, "r1")
      .Nodes(nodes, "rk1")
      .Scheduler("stop_grace: \"1s\"")
      .Text();
}

class SchedulerE2E : public ::testing::Test {
 protected:
  void Start(int nodes, const std::string& rack_cap) {
    Cluster::Options o;
    o.config_text = Config(nodes, rack_cap);
    cluster_ = std::make_unique<Cluster>(o);
    ASSERT_NO_FATAL_FAILURE(
        StartCluster(*cluster_, NodeNames(nodes), {"acme", "globex"}));
  }
  CtlResult Ctl(std::vector<std::string> args) { return cluster_->Ctl(args); }
  std::string Submit(std::vector<std::string> args) {
    args.insert(args.begin(), {"job", "submit"});
    CtlResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::string(absl::StripAsciiWhitespace(r.out));
  }
  v1::Job Job(const std::string& id) {
    v1::Job j;
    cluster_->CtlJson({"job", "show", id}, &j);
    return j;
  }
  bool InState(const std::string& id, v1::JobState s) {
    return Job(id).state() == s;
  }
  v1::GetPowerTreeResponse Tree() {
    v1::GetPowerTreeResponse t;
    cluster_->CtlJson({"power", "tree"}, &t);
    return t;
  }
  v1::PowerDomain Domain(const std::string& name) {
    const v1::GetPowerTreeResponse tree = Tree();
    for (const auto& d : tree.domains()) {
      if (d.name() == name) return d;
    }
    ADD_FAILURE() << "no domain " << name;
    return {};
  }
  std::vector<v1::Event> Events(const std::string& kind) {
    v1::ListEventsResponse r;
    cluster_->CtlJson({"events", "--kind", kind}, &r);
    return {r.events().begin(), r.events().end()};
  }
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(SchedulerE2E, RackCapAdmitsTwoOfThreeThenTheThird) {
  Start(3, "15kW");
  const std::string a =
      Submit({"--tenant", "acme", "--gpus", "8", "--", "sleep", "2"});
  const std::string b =
      Submit({"--tenant", "acme", "--gpus", "8", "--", "sleep", "30"});
  const std::string c =
      Submit({"--tenant", "globex", "--gpus", "8", "--", "true"});
  ASSERT_TRUE(WaitFor([&] {
    return InState(a, v1::JOB_STATE_RUNNING) &&
           InState(b, v1::JOB_STATE_RUNNING);
  }));
  // committed 4.68 kW + 2 × 5.04 kW = 14.76 kW; + 5.04 kW needed > 15 kW.
  const v1::Job waiting = Job(c);
  EXPECT_EQ(waiting.state(), v1::JOB_STATE_PENDING);
  EXPECT_TRUE(
      absl::StrContains(waiting.reason(),
                        "rack rk1 power 14.8 kW committed + 5.04 kW needed > "
                        "cap 15.0 kW"))
      << waiting.reason();
  v1::PowerDomain rk1 = Domain("rk1");
  EXPECT_EQ(rk1.committed_mw(), 14'760'000);
  EXPECT_LE(rk1.committed_mw(), rk1.cap_mw());
  // When a finishes, c starts and succeeds.
  ASSERT_TRUE(WaitFor([&] { return InState(c, v1::JOB_STATE_SUCCEEDED); },
                      absl::Seconds(30)));
  EXPECT_EQ(Job(a).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(Job(c).exit_code(), 0);
  ASSERT_EQ(Ctl({"job", "cancel", b}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return InState(b, v1::JOB_STATE_CANCELLED); }));
  const v1::Job cancelled = Job(b);
  ASSERT_EQ(cancelled.attempts_size(), 1);
  EXPECT_TRUE(cancelled.attempts(0).has_end_time());
}

TEST_F(SchedulerE2E, NeighboursSeeDistinctGpus) {
  Start(1, "15kW");
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    const std::string out = cluster_->dir() + "/visible." + std::to_string(i);
    ids.push_back(
        Submit({"--tenant", "acme", "--gpus", "4", "--", "/bin/sh", "-c",
                "echo $CUDA_VISIBLE_DEVICES > " + out + "; sleep 2"}));
  }
  // Neighbours: both run at the same time on the one node.
  ASSERT_TRUE(WaitFor([&] {
    return InState(ids[0], v1::JOB_STATE_RUNNING) &&
           InState(ids[1], v1::JOB_STATE_RUNNING);
  }));
  for (const auto& id : ids) {
    ASSERT_TRUE(WaitFor([&] { return InState(id, v1::JOB_STATE_SUCCEEDED); }))
        << Job(id).DebugString();
  }
  std::set<int> seen;
  for (int i = 0; i < 2; ++i) {
    const std::string text =
        ReadFile(cluster_->dir() + "/visible." + std::to_string(i));
    std::vector<std::string> parts =
        absl::StrSplit(absl::StripAsciiWhitespace(text), ',');
    EXPECT_EQ(parts.size(), 4u) << text;
    for (const auto& p : parts) {
      int g = -1;
      ASSERT_TRUE(absl::SimpleAtoi(p, &g)) << text;
      EXPECT_TRUE(seen.insert(g).second) << "GPU " << g << " given twice";
    }
  }
  EXPECT_EQ(seen.size(), 8u);
  // The job's log is served through the agent.
  const std::string logged =
      Submit({"--tenant", "acme", "--gpus", "1", "--", "/bin/sh", "-c",
              "echo hello from $JOULE_JOB_ID"});
  ASSERT_TRUE(
      WaitFor([&] { return InState(logged, v1::JOB_STATE_SUCCEEDED); }));
  CtlResult logs = Ctl({"job", "logs", logged});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out, "hello from " + logged + "\n");
}

TEST_F(SchedulerE2E, LoweredCapPreemptsSpotThenThrottles) {
  Start(1, "15kW");
  // On-demand job, 4 GPUs, may be throttled down to 300 W; spot job, 4 GPUs,
  // not throttleable. Measured: 1 kW + 8 × 700 W = 6.6 kW.
  const std::string od = Submit({"--tenant", "acme", "--gpus", "4",
                                 "--min-power", "300W", "--", "sleep", "60"});
  const std::string spot = Submit({"--tenant", "globex", "--gpus", "4",
                                   "--class", "spot", "--", "sleep", "60"});
  ASSERT_TRUE(WaitFor([&] {
    return InState(od, v1::JOB_STATE_RUNNING) &&
           InState(spot, v1::JOB_STATE_RUNNING) &&
           Domain("rk1").measured_mw() == 6'600'000;
  })) << Tree().DebugString();
  // Cap 4 kW: excess 2.6 kW. Priority-aware capping (docs/scheduling.md):
  // the spot job is preempted before the on-demand job is throttled. Its
  // GPUs drop to their minimum at once, so during its grace the rack is
  // still over (1 kW + 4 x 700 W + 4 x the minimum > 4 kW) and the
  // on-demand job is throttled by what is left, never below its 300 W floor.
  ASSERT_EQ(Ctl({"power", "set-cap", "rk1", "4kW", "--yes"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] {
    v1::PowerDomain d = Domain("rk1");
    return d.measured_mw() <= d.cap_mw() &&
           InState(spot, v1::JOB_STATE_PENDING);
  })) << Tree().DebugString();
  std::vector<v1::Event> throttles = Events("throttle");
  ASSERT_EQ(throttles.size(), 1u);
  EXPECT_EQ(throttles[0].subject(), od);
  std::vector<v1::Event> preempts = Events("preempt");
  ASSERT_EQ(preempts.size(), 1u);
  EXPECT_EQ(preempts[0].subject(), spot);
  EXPECT_LT(preempts[0].seq(), throttles[0].seq());  // spot goes first
  const v1::Job od_job = Job(od);
  EXPECT_EQ(od_job.state(), v1::JOB_STATE_RUNNING);
  const int64_t limit = od_job.allocations(0).power_limit_mw();
  EXPECT_GE(limit, 300'000);
  EXPECT_LT(limit, 700'000);
  // The agent applied the limit: its next report shows it on the job's four
  // GPUs.
  ASSERT_TRUE(WaitFor([&] {
    v1::Node n1;
    cluster_->CtlJson({"node", "show", "n1"}, &n1);
    int at_limit = 0;
    for (const auto& g : n1.gpus()) {
      at_limit += g.job_id() == od &&
                  g.power_limit_mw() == Job(od).allocations(0).power_limit_mw();
    }
    return at_limit == 4;
  }));
  // The preempted spot job keeps its id and history and waits.
  const v1::Job spot_job = Job(spot);
  bool saw_preempted = false;
  for (const auto& h : spot_job.history()) {
    saw_preempted |= h.state() == v1::JOB_STATE_PREEMPTED;
  }
  EXPECT_TRUE(saw_preempted);
  EXPECT_EQ(spot_job.attempts_size(), 1);
  // Cap raised: the on-demand job gets its 700 W back, the spot job runs.
  ASSERT_EQ(Ctl({"power", "set-cap", "rk1", "15kW"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] {
    return Job(od).allocations(0).power_limit_mw() == 700'000 &&
           InState(spot, v1::JOB_STATE_RUNNING);
  }));
  EXPECT_EQ(Events("restore").size(), 1u);
  EXPECT_EQ(Job(spot).attempt(), 2u);
}

TEST_F(SchedulerE2E, DaemonCrashKeepsEveryJobAndState) {
  Start(2, "10kW");
  // 2 kW base + 16 idle GPUs (1.12 kW); one 8-GPU job adds 5.04 kW:
  // 8.16 kW; a second would make it 13.2 kW > 10 kW.
  const std::string done =
      Submit({"--tenant", "acme", "--gpus", "1", "--", "true"});
  ASSERT_TRUE(WaitFor([&] { return InState(done, v1::JOB_STATE_SUCCEEDED); }));
  const std::string running =
      Submit({"--tenant", "acme", "--gpus", "8", "--", "sleep", "60"});
  ASSERT_TRUE(WaitFor([&] { return InState(running, v1::JOB_STATE_RUNNING); }));
  const std::string waiting =
      Submit({"--tenant", "globex", "--gpus", "8", "--", "sleep", "1"});
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(Job(waiting).reason(), "> cap 10.0 kW");
  }));
  const v1::Job running_before = Job(running);

  cluster_->KillDaemon(SIGKILL);
  cluster_->StartDaemon();

  EXPECT_EQ(Job(done).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(Job(waiting).state(), v1::JOB_STATE_PENDING);
  const v1::Job running_after = Job(running);
  EXPECT_EQ(running_after.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(running_after.attempt(), running_before.attempt());
  EXPECT_EQ(running_after.history_size(), running_before.history_size());
  EXPECT_EQ(running_after.allocations(0).node(),
            running_before.allocations(0).node());
  // The agent reconnects and still runs it; the waiting job stays blocked.
  ASSERT_TRUE(WaitForReadyNodes(*cluster_, 2));
  absl::SleepFor(absl::Seconds(1));
  EXPECT_EQ(Job(running).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(Job(waiting).state(), v1::JOB_STATE_PENDING);
  ASSERT_EQ(Ctl({"job", "cancel", running}).exit_code, 0);
  ASSERT_TRUE(
      WaitFor([&] { return InState(running, v1::JOB_STATE_CANCELLED); }));
  ASSERT_TRUE(WaitFor([&] { return InState(waiting, v1::JOB_STATE_SUCCEEDED); },
                      absl::Seconds(30)));
}

TEST_F(SchedulerE2E, BadInputIsRefusedAndChangesNothing) {
  Start(1, "15kW");
  const std::string ok =
      Submit({"--tenant", "acme", "--gpus", "1", "--", "true"});
  v1::ListJobsResponse before;
  cluster_->CtlJson({"job", "list"}, &before);
  const v1::GetPowerTreeResponse tree_before = Tree();
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string want;
  };
  const std::vector<Case> cases = {
      {{"job", "submit", "--tenant", "acme", "--gpus", "0", "--", "true"},
       2,
       "--gpus: must be at least 1"},
      {{"job", "submit", "--tenant", "acme", "--gpus", "16", "--", "true"},
       1,
       "spec.gpus_per_node: 16 GPUs per node is more than any registered node "
       "has (largest: 8)"},
      {{"job", "submit", "--tenant", "acme", "--gpus", "1", "--gpu-model",
        "Z100", "--", "true"},
       1,
       "spec.gpu_model: \"Z100\" is not a known GPU model"},
      {{"job", "submit", "--tenant", "acme", "--gpus", "1", "--class",
        "premium", "--", "true"},
       2,
       "--class: \"premium\" is not one of reserved, on-demand, spot"},
      {{"job", "submit", "--tenant", "nobody", "--gpus", "1", "--", "true"},
       1,
       "spec.tenant: \"nobody\" is not a tenant"},
      {{"power", "set-cap", "rk1", "-5kW"}, 2, "must not be negative"},
      {{"power", "set-cap", "rack-nine", "5kW"},
       1,
       "domain: \"rack-nine\" is not a power domain"},
      {{"power", "set-cap", "rk1", "5 parsecs"}, 2, "unknown unit"},
  };
  for (const Case& c : cases) {
    CtlResult r = Ctl(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.want << ": " << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, c.want)) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  v1::ListJobsResponse after;
  cluster_->CtlJson({"job", "list"}, &after);
  EXPECT_EQ(after.jobs_size(), before.jobs_size());
  EXPECT_EQ(after.jobs(0).id(), ok);
  EXPECT_EQ(Domain("rk1").cap_mw(), 15'000'000);
  EXPECT_EQ(Tree().domains_size(), tree_before.domains_size());
}

}  // namespace
}  // namespace joule::e2e
