// joule-sim: hand-checkable scenarios (a cap that admits two jobs, a cap cut
// that throttles then preempts, a contract with overage), importers on the
// real public traces and on malformed rows, and determinism.

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sim/cluster.h"
#include "sim/pricing.h"
#include "sim/report.h"
#include "sim/simulator.h"
#include "sim/workload.h"

namespace joule::sim {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kW = 1000;

// site > rack (cap) > `nodes` H100 nodes of `gpus` GPUs, base power 0.
SimCluster OneRack(int nodes, uint32_t gpus, int64_t rack_cap_mw) {
  SimCluster c;
  SimGpuModel h100;
  EXPECT_TRUE(LookupSimGpu("H100", &h100));
  c.models.push_back(h100);
  c.domains.push_back({"site", "site", -1, kUnlimitedMw});
  c.domains.push_back({"rack-a", "rack", 0, rack_cap_mw});
  for (int i = 0; i < nodes; ++i) {
    c.nodes.push_back({absl::StrCat("n", i), 1, 0, gpus, 0});
  }
  return c;
}

Workload Csv(const std::string& text) {
  auto w = ParseCanonicalCsv(text, "test.csv");
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? *w : Workload{};
}

SimOptions Exact(PolicyKind p) {
  SimOptions o;
  o.policy = p;
  o.power_noise = 0;
  return o;
}

const LevelStats& Level(const SimResult& r, const std::string& level) {
  for (const LevelStats& l : r.levels) {
    if (l.level == level) return l;
  }
  static LevelStats none;
  ADD_FAILURE() << "no level " << level;
  return none;
}

// Three 1-GPU nodes; rack cap 1,500 W. Committed power counts the three
// free GPUs at idle, 3 × 70 = 210 W, and each job adds its 700 W limit minus
// the 70 W its GPU counted at: 210 + 630 = 840, + 630 = 1,470 <= 1,500, and
// a third would make 2,100 > 1,500. So the cap admits exactly two: A and B
// run 0..100 s, C waits for them and runs 100..200 s. Measured = 2 × 700 +
// one idle GPU 70 W = 1,470 W <= cap.
TEST(SimScenario, CapAdmitsExactlyTwoJobs) {
  const SimCluster c = OneRack(3, 1, 1500 * kW);
  const Workload w =
      Csv("job_id,tenant,submit_time_s,duration_s,gpus_per_node,load\n"
          "A,t,0,100,1,1\nB,t,0,100,1,1\nC,t,0,100,1,1\n");
  SimInputs in{&c, &w};
  auto r = Simulate(in, Exact(PolicyKind::kAllocated));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->jobs_completed, 3);
  EXPECT_EQ(r->attempts, 3);
  EXPECT_DOUBLE_EQ(r->makespan_s, 200);
  EXPECT_DOUBLE_EQ(r->queue_delay_p50_s, 0);
  EXPECT_DOUBLE_EQ(r->queue_delay_p99_s, 100);
  EXPECT_NEAR(r->queue_delay_mean_s, 100.0 / 3, 1e-9);
  EXPECT_DOUBLE_EQ(Level(*r, "rack").seconds_over_cap, 0);
  EXPECT_DOUBLE_EQ(Level(*r, "rack").max_measured_w, 1470);
  EXPECT_EQ(r->throttle_actions, 0);
  // 300 GPU-s; GPU energy 3 × 700 W × 100 s.
  EXPECT_NEAR(r->gpu_hours_allocated, 300.0 / 3600, 1e-12);
  EXPECT_NEAR(r->gpu_energy_kwh, 3 * 700.0 * 100 / 3.6e6, 1e-12);

  // Oblivious places all three at once: 2,100 W for 100 s, 600 W over.
  auto o = Simulate(in, Exact(PolicyKind::kOblivious));
  ASSERT_TRUE(o.ok());
  EXPECT_DOUBLE_EQ(o->makespan_s, 100);
  EXPECT_DOUBLE_EQ(Level(*o, "rack").seconds_over_cap, 100);
  EXPECT_DOUBLE_EQ(Level(*o, "rack").watt_seconds_over_cap, 600.0 * 100);
  EXPECT_EQ(Level(*o, "rack").domains_ever_over, 1);
}

// Two 1-GPU nodes, rack cap 10 kW; A (on-demand, min 400 W) and B (spot,
// min = its 700 W limit) run from 0. At 50 s the cap drops to 900 W:
// excess 500 W. Priority-aware capping (power_control.h): spot first; B
// cannot be throttled (at its floor), so it is preempted (saves 630 W), and
// on-demand A is never throttled. B cannot come back while A runs:
// committed = A's 700 + B's free GPU at idle 70 = 770, and B would add
// 700 - 70 = 630: 1,400 > 900. A ends at 100 s; then committed = 2 × 70 =
// 140, + 630 = 770 <= 900, and B restarts from scratch at the 100 s tick
// and ends at 200 s.
TEST(SimScenario, CapCutPreemptsSpotBeforeThrottlingOnDemand) {
  SimCluster c = OneRack(2, 1, 10'000 * kW);
  const Workload w =
      Csv("job_id,tenant,submit_time_s,duration_s,class,min_power_w,load\n"
          "A,t,0,100,on-demand,400,1\n"
          "B,t,0,100,spot,700,1\n");
  auto caps =
      ParseCapEvents("time_s,domain,new_cap\n50,rack-a,900W\n", "caps.csv", c);
  ASSERT_TRUE(caps.ok()) << caps.status();
  SimInputs in{&c, &w, &*caps};
  auto r = Simulate(in, Exact(PolicyKind::kAllocated));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->throttle_actions, 0);
  EXPECT_EQ(r->preemptions_power, 1);
  EXPECT_EQ(r->restore_actions, 0);
  EXPECT_EQ(r->jobs_completed, 2);
  EXPECT_EQ(r->attempts, 3);
  EXPECT_NEAR(r->gpu_hours_lost_to_preemption, 50.0 / 3600, 1e-12);
  EXPECT_DOUBLE_EQ(r->makespan_s, 200);
  // Over cap only in the instant of the cut: the loop acts at the same tick.
  EXPECT_DOUBLE_EQ(Level(*r, "rack").seconds_over_cap, 0);
  EXPECT_NEAR(ThrottleSpeed(400 * kW, 700 * kW, 0.4, 0.5), 0.799438, 1e-6);

  // Oblivious does nothing about the cut: 1,400 W vs 900 W from 50 to 100 s.
  auto o = Simulate(in, Exact(PolicyKind::kOblivious));
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->throttle_actions + o->preemptions_power, 0);
  EXPECT_DOUBLE_EQ(Level(*o, "rack").seconds_over_cap, 50);
  EXPECT_DOUBLE_EQ(Level(*o, "rack").watt_seconds_over_cap, 500.0 * 50);
}

// Two 1-GPU nodes running A and B (700 W each, not throttleable); at 50 s
// the rack cap drops to 750 W until 100 s. Measured 1,400 W, excess 650 W:
// preempting one job saves 700 - 70 idle = 630 W < 650 W (its GPU still
// draws idle), so the loop preempts both at once (1,400 - 1,260 = 140 W).
// Committed counts the two free GPUs at idle, 140 W, and a job would add
// 700 - 70 = 630 W: 770 > 750, so neither is re-admitted before the cap
// comes back; both restart at the 100 s tick and end at 300 s. Lost: 50 +
// 50 GPU-s. With free GPUs not counted at idle (the daemon before; here an
// accounted idle of 0), committed was 0 + 700 <= 750: the scheduler
// re-admitted a job at every tick and the loop preempted it at the next:
// 6 preemptions.
TEST(SimScenario, CapBelowIdlePlusJobDoesNotReadmit) {
  SimCluster c = OneRack(2, 1, 10'000 * kW);
  const Workload w =
      Csv("job_id,tenant,submit_time_s,duration_s,load\n"
          "A,t,0,200,1\nB,t,0,200,1\n");
  auto caps = ParseCapEvents(
      "time_s,domain,new_cap\n50,rack-a,750W\n100,rack-a,10kW\n", "caps.csv",
      c);
  ASSERT_TRUE(caps.ok()) << caps.status();
  SimInputs in{&c, &w, &*caps};
  auto r = Simulate(in, Exact(PolicyKind::kAllocated));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->preemptions_power, 2);
  EXPECT_EQ(r->attempts, 4);
  EXPECT_EQ(r->jobs_completed, 2);
  EXPECT_NEAR(r->gpu_hours_lost_to_preemption, 100.0 / 3600, 1e-12);
  EXPECT_DOUBLE_EQ(r->makespan_s, 300);

  c.models[0].accounted_idle_mw = 0;
  auto before = Simulate(in, Exact(PolicyKind::kAllocated));
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->preemptions_power, 6);
  EXPECT_EQ(before->jobs_completed, 2);
}

// acme holds 1 H100 for 2026-01-01 (one day) at $2.00/GPU-h: take-or-pay
// 24 × $2.00 = $48.00. Its reserved 1-GPU job starts at 23:00 and runs two
// hours: 23:00-24:00 is covered, 00:00-01:00 has no active contract, so it
// is reserved-overage at the on-demand price $4.00. bob's on-demand 2-GPU
// job of 30 minutes: 1 GPU-h × $4.00. Spot 1 GPU × 1 h × $1.50.
TEST(SimScenario, ContractAndOverageRevenue) {
  const SimCluster c = OneRack(1, 8, kUnlimitedMw);
  const Workload w = Csv(
      "job_id,tenant,submit_time_s,duration_s,gpus_per_node,gpu_model,class\n"
      "r1,acme,82800,7200,1,H100,reserved\n"
      "o1,bob,0,1800,2,H100,on-demand\n"
      "s1,bob,0,3600,1,H100,spot\n");
  auto pricing = ParsePricingFile(
      "# test prices\n"
      "gpu-hour H100 on-demand 4.00\n"
      "gpu-hour H100 spot 1.50\n"
      "contract acme H100 1 2026-01-01 2026-01-02 2.00 overage=3.00\n",
      "prices.txt");
  ASSERT_TRUE(pricing.ok()) << pricing.status();
  SimInputs in{&c, &w, nullptr, nullptr, &*pricing};
  SimOptions o = Exact(PolicyKind::kAllocated);
  o.tick_ms = 1000;
  auto r = Simulate(in, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->jobs_completed, 3);
  EXPECT_EQ(r->revenue_cents["reserved"], 4800);
  EXPECT_EQ(r->revenue_cents["reserved-overage"], 400);
  EXPECT_EQ(r->revenue_cents["on-demand"], 400);
  EXPECT_EQ(r->revenue_cents["spot"], 150);
  EXPECT_EQ(r->revenue_total_cents, 4800 + 400 + 400 + 150);
  EXPECT_EQ(r->backlog_cents, 0);  // the contract is over
}

// Inference usage through the ledger: 2M input tokens at $0.50/1M + 1M
// output at $1.50/1M = $2.50.
TEST(SimScenario, InferenceUsageIsBilled) {
  const SimCluster c = OneRack(1, 8, kUnlimitedMw);
  const Workload w = Csv("job_id,submit_time_s,duration_s\nj,0,60\n");
  auto usage = ParseUsageEvents(
      "timestamp,tenant,model,requests,input_tokens,output_tokens,"
      "idempotency_key\n"
      "2026-01-01T00:00:30Z,acme,llama,1,2000000,1000000,k1\n"
      "2026-01-01T00:00:30Z,acme,llama,1,2000000,1000000,k1\n",
      "usage.csv");
  ASSERT_TRUE(usage.ok()) << usage.status();
  auto pricing =
      ParsePricingFile("inference llama input=0:0.50 output=0:1.50\n", "p.txt");
  ASSERT_TRUE(pricing.ok()) << pricing.status();
  SimInputs in{&c, &w, nullptr, &*usage, &*pricing};
  auto r = Simulate(in, Exact(PolicyKind::kAllocated));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->usage_events, 1);  // the duplicate key counts once
  EXPECT_EQ(r->revenue_cents["inference"], 250);
  EXPECT_TRUE(r->billing_errors.empty());
}

// Time limits as jouled applies them (scheduler/time_limits.h): a spot job
// that gives no limit gets the spot default 12h and is killed there; a 13h
// on-demand job (default 24h) completes. With --no-time-limits both
// complete.
TEST(SimScenario, ClassDefaultTimeLimitsAsJouled) {
  const SimCluster c = OneRack(2, 1, 10'000 * kW);
  const Workload w =
      Csv("job_id,tenant,submit_time_s,duration_s,gpus_per_node,class\n"
          "S,t,0,46800,1,spot\nO,t,0,46800,1,on-demand\n");
  SimInputs in{&c, &w};
  SimOptions o = Exact(PolicyKind::kAllocated);
  o.tick_ms = 600'000;
  auto r = Simulate(in, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->jobs_completed, 1);
  EXPECT_EQ(r->jobs_killed_max_runtime, 1);
  o.time_limits = false;
  r = Simulate(in, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->jobs_completed, 2);
  EXPECT_EQ(r->jobs_killed_max_runtime, 0);
}

TEST(SimDeterminism, SameSeedSameReport) {
  auto c = SyntheticCluster(
      "nodes=64,gpus-per-node=8,gpu-model=H100,nodes-per-rack=8,"
      "racks-per-row=4,rows-per-hall=2");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(ApplyCapFractions("rack=0.7,row=0.65,site=0.6", &*c).ok());
  const Workload w = SyntheticWorkload(300, c->TotalGpus(), 8, 0.6, 5, 7);
  SimInputs in{&*c, &w};
  RunInfo info;
  auto run = [&](uint64_t seed) {
    std::vector<SimResult> results;
    for (PolicyKind p : {PolicyKind::kOblivious, PolicyKind::kAllocated,
                         PolicyKind::kMeasured}) {
      SimOptions o;
      o.policy = p;
      o.seed = seed;
      auto r = Simulate(in, o);
      EXPECT_TRUE(r.ok()) << r.status();
      results.push_back(*r);
    }
    return ReportJson(info, results, /*include_runtime=*/false);
  };
  const std::string a = run(42);
  EXPECT_EQ(a, run(42));
  EXPECT_NE(a, run(43));  // the power noise differs
  EXPECT_THAT(a, HasSubstr("\"policy\": \"measured\""));
}

TEST(SimKeptState, EveryCallDecidesAsAFreshBuild) {
  // joule-sim keeps the policy's state between Schedule calls and marks
  // every change of its snapshot on it; with verify_kept_state each call is
  // repeated on a fresh build and any difference fails the run. Saturated
  // (queueing, backfill, reserved preemption, throttling), every policy.
  auto c = SyntheticCluster(
      "nodes=64,gpus-per-node=8,gpu-model=H100,nodes-per-rack=8,"
      "racks-per-row=4,rows-per-hall=2");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(ApplyCapFractions("rack=0.7,row=0.65,site=0.6", &*c).ok());
  const Workload w = SyntheticWorkload(600, c->TotalGpus(), 8, 1.3, 5, 3);
  SimInputs in{&*c, &w};
  for (PolicyKind p : {PolicyKind::kOblivious, PolicyKind::kAllocated,
                       PolicyKind::kMeasured, PolicyKind::kMeasuredPlus}) {
    SimOptions o;
    o.policy = p;
    o.verify_kept_state = true;
    o.max_sim_ms = 8 * 3600 * 1000;
    auto r = Simulate(in, o);
    ASSERT_TRUE(r.ok()) << PolicyName(p) << ": " << r.status();
    EXPECT_GT(r->schedule_calls, 100) << PolicyName(p);
    EXPECT_GT(r->attempts, 50) << PolicyName(p);
  }
}

// ------------------------------------------------------------ importers ----

// JOULE_SHARED_DATA, else the build's default (tests/CMakeLists.txt), else
// ../shared/data from the working directory.
std::string SharedData(const std::string& file) {
  const char* env = std::getenv("JOULE_SHARED_DATA");
#ifdef JOULE_DEFAULT_SHARED_DATA
  const char* def = JOULE_DEFAULT_SHARED_DATA;
#else
  const char* def = "../shared/data";
#endif
  return absl::StrCat(env != nullptr ? env : def, "/", file);
}

// The first `n` lines of a file, or "" when it is not there.
std::string Head(const std::string& path, int n) {
  std::ifstream in(path);
  std::string out, line;
  for (int i = 0; i < n && std::getline(in, line); ++i) out += line + "\n";
  return out;
}

TEST(SimImport, AlibabaPodListFirstRows) {
  const std::string text =
      Head(SharedData("alibaba_gpu2023_openb_pod_list_default.csv"), 40);
  if (text.empty()) GTEST_SKIP() << "shared data not available";
  auto w = ParseAlibabaOpenb(text, "pods.csv");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->stats.rows, 39);
  ASSERT_GT(w->jobs.size(), 2u);
  // openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0
  const SimJobSpec& j0 = w->jobs[0];
  EXPECT_EQ(j0.id, "openb-pod-0000");
  EXPECT_EQ(j0.submit_ms, 0);
  EXPECT_EQ(j0.duration_ms, int64_t{12537496} * 1000);
  EXPECT_EQ(j0.gpus_per_node, 1u);
  EXPECT_EQ(w->tenants[j0.tenant], "openb-ls");
  EXPECT_FLOAT_EQ(j0.load_scale, 1.0f);
  // openb-pod-0001: 460 milli-GPU -> one whole GPU at 0.46 of the load.
  EXPECT_EQ(w->jobs[1].id, "openb-pod-0001");
  EXPECT_FLOAT_EQ(w->jobs[1].load_scale, 0.46f);
}

TEST(SimImport, AlibabaNodeListWholeFile) {
  const std::string path =
      SharedData("alibaba_gpu2023_openb_node_list_all_node.csv");
  if (Head(path, 1).empty()) GTEST_SKIP() << "shared data not available";
  RackLayout layout;
  auto c = ClusterFromAlibabaNodeList(path, layout);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->nodes.size(), 1523u);
  EXPECT_EQ(c->nodes[0].name, "openb-node-0000");
  EXPECT_EQ(c->nodes[0].gpus, 0u);  // CPU-only node kept for its base power
  EXPECT_GE(c->ModelIndex("G2"), 0);
  EXPECT_GE(c->ModelIndex("T4"), 0);
  EXPECT_EQ(c->TotalGpus(), 6212);
}

TEST(SimImport, AcmePowerCdf) {
  const std::string text =
      Head(SharedData("acme_gpu_power_cdf_seren.csv"), 2000);
  if (text.empty()) GTEST_SKIP() << "shared data not available";
  auto cdf = LoadCdf::Parse(text, "cdf.csv", 400 * kW, 50 * kW);
  ASSERT_TRUE(cdf.ok()) << cdf.status();
  // Median 96.5 W -> (96.5 - 50) / 350.
  EXPECT_NEAR(cdf->Sample(0.5), 46.5 / 350, 0.01);
  EXPECT_GT(cdf->Sample(0.95), 0.9);
}

TEST(SimImport, CanonicalDefaultsAndErrors) {
  auto w = ParseCanonicalCsv(
      std::string(kCanonicalHeader) +
          "\n,,5,60,,,,,,,,\nx,acme,1.5,30,8,2,H100,spot,3,500,300,0.5\n",
      "jobs.csv");
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->jobs.size(), 2u);
  const SimJobSpec& x = w->jobs[0];  // sorted by submit
  EXPECT_EQ(x.id, "x");
  EXPECT_EQ(x.submit_ms, 1500);
  EXPECT_EQ(x.nodes, 2u);
  EXPECT_EQ(x.gpus_per_node, 8u);
  EXPECT_EQ(x.cls, scheduler::ServiceClass::kSpot);
  EXPECT_EQ(x.power_mw, 500 * kW);
  EXPECT_EQ(x.min_power_mw, 300 * kW);
  EXPECT_FLOAT_EQ(x.load, 0.5f);
  const SimJobSpec& d = w->jobs[1];
  EXPECT_EQ(d.id, "job-2");
  EXPECT_EQ(w->tenants[d.tenant], "default");
  EXPECT_EQ(d.cls, scheduler::ServiceClass::kOnDemand);
  EXPECT_LT(d.load, 0);

  auto bad = ParseCanonicalCsv(
      "job_id,submit_time_s,duration_s\na,0,10\nb,zero,10\n", "jobs.csv");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("jobs.csv:3: submit_time_s"));
  bad = ParseCanonicalCsv(
      "job_id,submit_time_s,duration_s,class\na,0,10,gold\n", "jobs.csv");
  EXPECT_THAT(bad.status().message(), HasSubstr("jobs.csv:2: class"));
  bad = ParseCanonicalCsv("submit_time_s,duration_s\n1,2,3\n", "jobs.csv");
  EXPECT_THAT(bad.status().message(), HasSubstr("jobs.csv:2: row"));
  bad = ParseCanonicalCsv("submit_time_s,duration_s,load\n1,2,1.5\n", "j.csv");
  EXPECT_THAT(bad.status().message(), HasSubstr("j.csv:2: load"));
}

TEST(SimImport, AlibabaMalformedRows) {
  const std::string header =
      "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
      "creation_time,deletion_time,scheduled_time\n";
  auto bad = ParseAlibabaOpenb(
      header +
          "p0,1,1,1,1000,,LS,Running,0,10,0\np1,1,1,x,1000,,LS,Running,0,"
          "10,0\n",
      "pods.csv");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("pods.csv:3: num_gpu"));
  bad = ParseAlibabaOpenb(header + "p0,1,1,1,1000,,LS\n", "pods.csv");
  EXPECT_THAT(bad.status().message(), HasSubstr("pods.csv:2: row"));
  bad = ParseAlibabaOpenb("name,oops\n", "pods.csv");
  EXPECT_THAT(bad.status().message(), HasSubstr("pods.csv:1: header"));
  // Pending, CPU-only and zero-length pods are skipped and counted.
  auto ok = ParseAlibabaOpenb(
      header +
          "p0,1,1,1,1000,,BE,Pending,0,10,\np1,1,1,0,0,,LS,Running,0,10,0\n"
          "p2,1,1,2,1000,,BE,Running,5,5,5\np3,1,1,4,1000,,BE,Failed,1,9,2\n",
      "pods.csv");
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_EQ(ok->jobs.size(), 1u);
  EXPECT_EQ(ok->jobs[0].duration_ms, 7000);
  EXPECT_EQ(ok->jobs[0].cls, scheduler::ServiceClass::kSpot);
  EXPECT_EQ(ok->stats.skipped.size(), 3u);
}

TEST(SimImport, Sacct) {
  const std::string text =
      "JobID|User|Account|Submit|Start|End|AllocTRES|Partition|QOS|State\n"
      "100|alice|physics|2025-03-01T10:00:00|2025-03-01T10:05:00|"
      "2025-03-01T11:05:00|billing=16,cpu=16,gres/gpu=16,mem=128G,node=2|gpu|"
      "normal|COMPLETED\n"
      "100.batch|||2025-03-01T10:05:00|2025-03-01T10:05:00|"
      "2025-03-01T11:05:00|cpu=8,mem=64G,node=1|||COMPLETED\n"
      "101|bob||2025-03-01T09:00:00|2025-03-01T09:00:10|2025-03-01T09:30:10|"
      "cpu=4,gres/gpu:a100=1,node=1|gpu|scavenger|TIMEOUT\n"
      "102|carol|chem|2025-03-01T12:00:00|Unknown|Unknown||gpu|normal|"
      "PENDING\n"
      "103|dave|chem|2025-03-01T12:00:00|2025-03-01T12:00:00|"
      "2025-03-01T12:10:00|cpu=4,mem=8G,node=1|cpu|normal|COMPLETED\n";
  auto w = ParseSacct(text, "sacct.txt");
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->jobs.size(), 2u);
  const SimJobSpec& b = w->jobs[0];  // bob submitted first
  EXPECT_EQ(b.id, "101");
  EXPECT_EQ(w->tenants[b.tenant], "bob");  // no account
  EXPECT_EQ(b.submit_ms, 0);
  EXPECT_EQ(b.duration_ms, 1800 * 1000);
  EXPECT_EQ(b.gpu_model, "A100");
  EXPECT_EQ(b.cls, scheduler::ServiceClass::kSpot);
  const SimJobSpec& a = w->jobs[1];
  EXPECT_EQ(w->tenants[a.tenant], "physics");
  EXPECT_EQ(a.submit_ms, 3600 * 1000);
  EXPECT_EQ(a.nodes, 2u);
  EXPECT_EQ(a.gpus_per_node, 8u);
  EXPECT_EQ(a.duration_ms, 3600 * 1000);
  EXPECT_EQ(w->stats.skipped.size(), 2u);  // never started; no GPUs

  auto bad = ParseSacct(
      "JobID|User|Account|Submit|Start|End|AllocTRES|Partition|QOS|State\n"
      "1|a|b|2025-03-01T10:00:00|2025-03-01T10:00:00|2025-03-01T11:00:00|"
      "gres/gpu=1|p|q|COMPLETED\n"
      "2|a|b|yesterday|2025-03-01T10:00:00|2025-03-01T11:00:00|gres/gpu=1|p|q|"
      "COMPLETED\n",
      "sacct.txt");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("sacct.txt:3: Submit"));
  bad = ParseSacct(
      "JobID|User|Account|Submit|Start|End|AllocTRES|Partition|QOS|State\n"
      "1|a|b|2025-03-01T10:00:00\n",
      "sacct.txt");
  EXPECT_THAT(bad.status().message(), HasSubstr("sacct.txt:2: row"));
  bad = ParseSacct(
      "JobID|User|Account|Submit|Start|End|AllocTRES|Partition|QOS|State\n"
      "1|a|b|2025-03-01T10:00:00|2025-03-01T10:00:00|2025-03-01T11:00:00|"
      "gres/gpu=many|p|q|COMPLETED\n",
      "sacct.txt");
  EXPECT_THAT(bad.status().message(), HasSubstr("sacct.txt:2: AllocTRES"));
}

TEST(SimImport, CapEventsUsageAndPricingErrors) {
  const SimCluster c = OneRack(1, 8, kUnlimitedMw);
  auto e = ParseCapEvents(
      "time_s,domain,new_cap\n10,rack-a,5kW\n20,rack-z,1kW\n", "caps.csv", c);
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(e.status().message(), HasSubstr("caps.csv:3: domain"));
  e = ParseCapEvents("10,rack-a,lots\n", "caps.csv", c);
  EXPECT_THAT(e.status().message(), HasSubstr("caps.csv:1: new_cap"));
  auto u = ParseUsageEvents(
      "timestamp,tenant,model,requests,input_tokens,output_tokens,"
      "idempotency_key\nnot-a-time,acme,m,1,2,3,k\n",
      "usage.csv");
  ASSERT_FALSE(u.ok());
  EXPECT_THAT(u.status().message(), HasSubstr("line 2"));
  auto p = ParsePricingFile("gpu-hour H100 on-demand 2\ngpu-hour H100 gold 1\n",
                            "p.txt");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("p.txt:2:"));
}

TEST(SimCluster, SyntheticAndCapFractions) {
  auto c = SyntheticCluster(
      "nodes=20,gpus-per-node=8,gpu-model=H100,nodes-per-rack=8,"
      "racks-per-row=2,rows-per-hall=1,base-power=1kW");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->nodes.size(), 20u);
  EXPECT_EQ(c->TotalGpus(), 160);
  // site, 2 halls, 2 rows, 3 racks.
  EXPECT_EQ(c->domains.size(), 8u);
  ASSERT_TRUE(ApplyCapFractions("rack=0.5,site=0.7", &*c).ok());
  const int rack = c->DomainIndex("rack-0-0-0");
  ASSERT_GE(rack, 0);
  // 8 nodes: base 8 kW + 0.5 × 8 × 8 × 700 W.
  EXPECT_EQ(c->domains[rack].cap_mw, 8'000'000 + 22'400'000);
  EXPECT_EQ(c->domains[0].cap_mw, 20'000'000 + 78'400'000);
  EXPECT_FALSE(ApplyCapFractions("aisle=0.5", &*c).ok());
  EXPECT_FALSE(SyntheticCluster("nodes=4,gpu-model=Z9").ok());
  EXPECT_FALSE(SyntheticCluster("gpus-per-node=8").ok());
}

// The idle power committed power counts a free GPU at, as
// ClusterManager::IdleMwLocked: the config's idle_power; else a tenth of the
// default limit (TDP) for a model some node has; else 0. A free GPU still
// draws the catalogue idle (H200: 75 W).
TEST(SimCluster, ConfigIdleAsTheDaemonAccountsIt) {
  config::ClusterConfig cfg;
  cfg.gpu_models.push_back({"H200", 700'000, 0, 0, 0});
  cfg.gpu_models.push_back({"A100", 400'000, 0, 0, 45'000});
  cfg.gpu_models.push_back({"L40S", 350'000, 0, 0, 0});
  cfg.domains.push_back({"site", "", "site", 100'000'000});
  cfg.nodes.push_back({"n0", "site", 0});
  auto c = ClusterFromConfig(cfg, 8, "H200");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->models.size(), 3u);
  EXPECT_EQ(c->models[0].idle_mw, 75'000);
  EXPECT_EQ(c->models[0].AccountedIdleMw(), 70'000);  // 700 W / 10
  EXPECT_EQ(c->models[1].AccountedIdleMw(), 45'000);  // configured
  EXPECT_EQ(c->models[2].AccountedIdleMw(), 0);       // no node has it
  EXPECT_TRUE(c->models[0].listed);
  // A model the config does not list: as the agents report it.
  auto b = ClusterFromConfig(cfg, 8, "B200");
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->models.size(), 4u);
  EXPECT_FALSE(b->models[3].listed);
  EXPECT_EQ(b->models[3].AccountedIdleMw(), 100'000);  // 1000 W / 10
  EXPECT_EQ(b->models[0].AccountedIdleMw(), 0);  // H200: no node now
}

}  // namespace
}  // namespace joule::sim
