// Placement throughput of the power-aware policy (scheduler::Schedule) on a
// 10,000-node / 80,000-GPU cluster with a 5-level power tree (site > hall >
// row > rack > node) and 100,000 queued jobs of mixed shapes.
//
//   build-sim/bin/bench_policy --benchmark_repetitions=5
//
// Counters: placements/s (jobs started per second of Schedule time) and
// decisions/s (every pending job gets a placement or a wait).

#include <time.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "scheduler/policy.h"

namespace joule::scheduler {
namespace {

constexpr int64_t kW = 1000;

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Rates per wall second (the benchmark's own) and per CPU second of the
// calling thread (what the policy costs on one core, without the waits a
// shared machine adds).
void Report(benchmark::State& state, int64_t placements, int64_t decisions,
            double cpu_s) {
  state.counters["placements/s"] = benchmark::Counter(
      static_cast<double>(placements), benchmark::Counter::kIsRate);
  state.counters["decisions/s"] = benchmark::Counter(
      static_cast<double>(decisions), benchmark::Counter::kIsRate);
  state.counters["placements/cpu_s"] = placements / cpu_s;
  state.counters["placed_per_call"] =
      static_cast<double>(placements) / state.iterations();
}
constexpr int kNodes = 10'000;
constexpr uint32_t kGpus = 8;
constexpr int kNodesPerRack = 8, kRacksPerRow = 16, kRowsPerHall = 10;

// Caps: base + fraction × TDP below (rack 0.8, row 0.75, hall 1.0, site 0.7).
ClusterSnapshot EmptyCluster() {
  ClusterSnapshot s;
  s.now = absl::FromUnixSeconds(1767225600);
  s.gpu_models.push_back({"H100", 700 * kW, 200 * kW, 700 * kW});
  const int64_t node_base = 1000 * kW, node_tdp = kGpus * 700 * kW;
  auto cap = [&](int nodes, double f) {
    return nodes * node_base + static_cast<int64_t>(nodes * node_tdp * f);
  };
  s.domains.push_back({"site", "site", -1, cap(kNodes, 0.7), 0, 0});
  int node = 0;
  for (int h = 0; node < kNodes; ++h) {
    const int hall = static_cast<int>(s.domains.size());
    s.domains.push_back({absl::StrCat("hall-", h), "hall", 0, 0, 0, 0});
    int hall_nodes = 0;
    for (int r = 0; r < kRowsPerHall && node < kNodes; ++r) {
      const int row = static_cast<int>(s.domains.size());
      s.domains.push_back(
          {absl::StrCat("row-", h, "-", r), "row", hall, 0, 0, 0});
      int row_nodes = 0;
      for (int k = 0; k < kRacksPerRow && node < kNodes; ++k) {
        const int rack = static_cast<int>(s.domains.size());
        s.domains.push_back(
            {absl::StrCat("rack-", h, "-", r, "-", k), "rack", row, 0, 0, 0});
        int n = 0;
        for (; n < kNodesPerRack && node < kNodes; ++n, ++node) {
          NodeSnapshot ns;
          ns.name = absl::StrCat("node-", node);
          ns.domain = rack;
          ns.gpu_model = "H100";
          ns.gpu_count = kGpus;
          ns.free_gpus = (uint64_t{1} << kGpus) - 1;
          ns.measured_mw = node_base + kGpus * 70 * kW;
          s.nodes.push_back(std::move(ns));
        }
        s.domains[rack].cap_mw = cap(n, 0.8);
        row_nodes += n;
      }
      s.domains[row].cap_mw = cap(row_nodes, 0.75);
      hall_nodes += row_nodes;
    }
    s.domains[hall].cap_mw = cap(hall_nodes, 1.0);
  }
  for (const NodeSnapshot& n : s.nodes) {
    for (int d = n.domain; d >= 0; d = s.domains[d].parent) {
      s.domains[d].committed_mw += node_base;
      s.domains[d].measured_mw += n.measured_mw;
    }
  }
  for (int t = 0; t < 100; ++t) s.tenants[absl::StrCat("tenant-", t)];
  return s;
}

// 100,000 jobs: 1/2/4/8 GPUs on one node (95%) or 2..16-node gangs of 8,
// 10% reserved / 70% on-demand / 20% spot, per-GPU limits 400..700 W.
std::vector<PendingJob> Queue(int n) {
  std::mt19937_64 rng(1);
  static constexpr uint32_t kShapes[] = {1, 1, 1, 2, 2, 4, 8, 8};
  std::vector<PendingJob> q;
  q.reserve(n);
  for (int i = 0; i < n; ++i) {
    PendingJob p;
    p.id = absl::StrCat("j", i);
    p.tenant = absl::StrCat("tenant-", rng() % 100);
    const uint64_t c = rng() % 10;
    p.cls = c == 0  ? ServiceClass::kReserved
            : c < 8 ? ServiceClass::kOnDemand
                    : ServiceClass::kSpot;
    p.priority = static_cast<int32_t>(rng() % 3);
    p.seq = i;
    if (rng() % 20 == 0) {
      p.gpus_per_node = 8;
      p.nodes = 2 + rng() % 15;
    } else {
      p.gpus_per_node = kShapes[rng() % 8];
    }
    p.gpu_model = "H100";
    p.power_mw = (400 + 100 * (rng() % 4)) * kW;
    p.max_runtime = absl::Minutes(10 + rng() % 600);
    q.push_back(std::move(p));
  }
  return q;
}

// One call on an empty cluster with every job considered: fills the
// cluster up to its GPUs or power.
void BM_ScheduleEmptyCluster(benchmark::State& state) {
  const ClusterSnapshot snap = EmptyCluster();
  const std::vector<PendingJob> q = Queue(100'000);
  PolicyConfig cfg;
  cfg.max_jobs_considered = 0;
  int64_t placements = 0, decisions = 0;
  double cpu = 0;
  for (auto _ : state) {
    const double c0 = ThreadCpuSeconds();
    Decisions d = Schedule(snap, q, cfg);
    cpu += ThreadCpuSeconds() - c0;
    placements += static_cast<int64_t>(d.placements.size());
    decisions += static_cast<int64_t>(d.placements.size() + d.waits.size());
    benchmark::DoNotOptimize(d);
  }
  Report(state, placements, decisions, cpu);
}
BENCHMARK(BM_ScheduleEmptyCluster)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The steady state: the cluster half full (the first call's placements,
// every other one kept running), 100,000 queued, default config (10,000
// considered per call).
void BM_ScheduleBusyCluster(benchmark::State& state) {
  ClusterSnapshot snap = EmptyCluster();
  std::vector<PendingJob> q = Queue(150'000);
  PolicyConfig cfg;
  cfg.max_jobs_considered = 0;
  const Decisions first =
      Schedule(snap, absl::MakeConstSpan(q).subspan(100'000), cfg);
  for (size_t i = 0; i < first.placements.size(); i += 2) {
    const Placement& p = first.placements[i];
    RunningJob r;
    r.id = p.job_id;
    r.tenant = "tenant-0";
    r.cls = p.effective_class;
    r.start_time = snap.now - absl::Minutes(5);
    r.max_runtime = absl::Hours(1);
    r.shares = p.shares;
    r.gpu_model = p.gpu_model;
    r.limit_mw = r.requested_mw = p.power_limit_mw;
    r.min_mw = p.min_power_mw;
    int64_t gpus = 0;
    for (const JobShare& s : p.shares) {
      for (uint32_t g : s.gpus)
        snap.nodes[s.node].free_gpus &= ~(uint64_t{1} << g);
      gpus += static_cast<int64_t>(s.gpus.size());
      for (int d = snap.nodes[s.node].domain; d >= 0;
           d = snap.domains[d].parent) {
        snap.domains[d].committed_mw +=
            p.power_limit_mw * static_cast<int64_t>(s.gpus.size());
      }
    }
    r.committed_mw = gpus * p.power_limit_mw;
    r.measured_per_gpu_mw = p.power_limit_mw;
    snap.running.push_back(std::move(r));
  }
  q.resize(100'000);
  PolicyConfig def;  // max_jobs_considered 10,000
  int64_t placements = 0, decisions = 0;
  double cpu = 0;
  for (auto _ : state) {
    const double c0 = ThreadCpuSeconds();
    Decisions d = Schedule(snap, q, def);
    cpu += ThreadCpuSeconds() - c0;
    placements += static_cast<int64_t>(d.placements.size());
    decisions += static_cast<int64_t>(d.placements.size() + d.waits.size());
    benchmark::DoNotOptimize(d);
  }
  Report(state, placements, decisions, cpu);
  state.counters["running"] = static_cast<double>(snap.running.size());
}
BENCHMARK(BM_ScheduleBusyCluster)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace joule::scheduler

BENCHMARK_MAIN();
