// Property tests on random clusters and one full-size run: whatever the
// policy decides, no GPU is handed out twice, every placement fits every cap
// on its path, preemption only takes spot/on-demand jobs for effective
// reserved ones, and every pending job gets exactly one decision.

#include <chrono>
#include <cstdint>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "scheduler/policy.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using ::joule::scheduler::testing::ClusterBuilder;
using ::joule::scheduler::testing::kKw;
using ::joule::scheduler::testing::kW;
using ::joule::scheduler::testing::Pending;
using ::joule::scheduler::testing::TestNow;

// Replays `d` on the snapshot and checks it. Running jobs' committed power
// is GPUs × limit per node (as ClusterBuilder builds it).
void CheckDecisions(const ClusterSnapshot& snap,
                    const std::vector<PendingJob>& pending, const Decisions& d,
                    const PolicyConfig& config) {
  absl::flat_hash_map<std::string, const PendingJob*> by_id;
  for (const PendingJob& p : pending) by_id[p.id] = &p;
  absl::flat_hash_set<std::string> decided;
  for (const Placement& p : d.placements) {
    ASSERT_TRUE(decided.insert(p.job_id).second) << p.job_id;
  }
  for (const Wait& w : d.waits) {
    ASSERT_TRUE(decided.insert(w.job_id).second) << w.job_id;
    ASSERT_FALSE(w.reason.empty());
  }
  ASSERT_EQ(decided.size(), pending.size());

  std::vector<uint64_t> free(snap.nodes.size());
  for (size_t n = 0; n < snap.nodes.size(); ++n) {
    free[n] = snap.nodes[n].free_gpus;
  }
  std::vector<int64_t> committed(snap.domains.size());
  bool caps_hold = true;
  for (size_t i = 0; i < snap.domains.size(); ++i) {
    committed[i] = snap.domains[i].committed_mw;
    caps_hold = caps_hold && committed[i] <= snap.domains[i].cap_mw;
  }
  auto add_power = [&](int node, int64_t mw) {
    for (int dom = snap.nodes[node].domain; dom >= 0;
         dom = snap.domains[dom].parent) {
      committed[dom] += mw;
    }
  };
  absl::flat_hash_map<std::string, const RunningJob*> running;
  for (const RunningJob& r : snap.running) running[r.id] = &r;
  absl::flat_hash_set<std::string> preempted;

  for (const Placement& p : d.placements) {
    const PendingJob& job = *by_id.at(p.job_id);
    if (!p.preempt.empty()) {
      ASSERT_TRUE(config.allow_preemption);
      ASSERT_EQ(p.effective_class, ServiceClass::kReserved) << p.job_id;
    }
    for (const std::string& v : p.preempt) {
      ASSERT_TRUE(preempted.insert(v).second) << v;
      const RunningJob& r = *running.at(v);
      ASSERT_NE(r.cls, ServiceClass::kReserved) << v;
      for (const JobShare& s : r.shares) {
        for (uint32_t g : s.gpus) free[s.node] |= uint64_t{1} << g;
        add_power(s.node, -static_cast<int64_t>(s.gpus.size()) * r.limit_mw);
      }
    }
    ASSERT_EQ(p.shares.size(), job.nodes) << p.job_id;
    if (!job.gpu_model.empty()) {
      ASSERT_EQ(p.gpu_model, job.gpu_model);
    }
    absl::flat_hash_set<int> nodes;
    for (const JobShare& s : p.shares) {
      ASSERT_TRUE(nodes.insert(s.node).second) << p.job_id;
      const NodeSnapshot& node = snap.nodes[s.node];
      ASSERT_TRUE(node.schedulable);
      ASSERT_EQ(node.gpu_model, p.gpu_model);
      ASSERT_EQ(s.gpus.size(), job.gpus_per_node) << p.job_id;
      for (uint32_t g : s.gpus) {
        ASSERT_TRUE(free[s.node] & (uint64_t{1} << g))
            << p.job_id << " takes busy GPU " << g << " on " << node.name;
        free[s.node] &= ~(uint64_t{1} << g);
      }
      add_power(s.node, static_cast<int64_t>(s.gpus.size()) * p.power_limit_mw);
    }
    if (config.enforce_power && caps_hold) {
      for (size_t i = 0; i < committed.size(); ++i) {
        ASSERT_LE(committed[i], snap.domains[i].cap_mw)
            << "after " << p.job_id << " domain " << snap.domains[i].name;
      }
    }
  }
}

struct Random {
  explicit Random(uint32_t seed) : rng(seed) {}
  int Int(int lo, int hi) {  // inclusive
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  }
  std::mt19937 rng;
};

// A small random cluster: site → 2 halls → 2 rows → 3 racks → 1..4 nodes,
// partly filled with running jobs, caps somewhere between tight and loose.
ClusterSnapshot RandomCluster(Random& r) {
  ClusterBuilder b;
  const int site = b.Domain("s", "site", -1);
  std::vector<int> racks;
  for (int h = 0; h < 2; ++h) {
    const int hall = b.Domain(absl::StrCat("h", h), "hall", site);
    for (int w = 0; w < 2; ++w) {
      const int row = b.Domain(absl::StrCat("w", h, w), "row", hall);
      for (int k = 0; k < 3; ++k) {
        racks.push_back(b.Domain(absl::StrCat("r", h, w, k), "rack", row));
      }
    }
  }
  int job = 0;
  for (int rack : racks) {
    const int count = r.Int(1, 4);
    for (int i = 0; i < count; ++i) {
      const bool h100 = r.Int(0, 3) != 0;
      const int n =
          b.Node(absl::StrCat("n", rack, "_", i), rack, h100 ? "H100" : "A100",
                 h100 ? 8 : 4, 1 * kKw, r.Int(0, 9) != 0);
      int left = h100 ? 8 : 4;
      while (left > 0 && r.Int(0, 2) != 0) {
        const int g = std::min(left, 1 << r.Int(0, 2));
        left -= g;
        RunningJob& rj = b.Run(absl::StrCat("run", job++), {n}, g,
                               static_cast<ServiceClass>(r.Int(0, 2)),
                               (h100 ? 700 : 400) * kW);
        rj.priority = r.Int(0, 3);
        rj.start_time = TestNow() - absl::Minutes(r.Int(1, 600));
        if (r.Int(0, 1)) rj.max_runtime = absl::Minutes(r.Int(601, 1200));
      }
    }
  }
  b.Tenant("t").contracted_gpus["H100"] = r.Int(0, 24);
  b.Tenant("u").weight = 2;
  b.Tenant("u").recent_gpu_hours = r.Int(0, 100);
  ClusterSnapshot snap = b.Build();
  // Caps: committed + 0..12 kW of headroom, at every level.
  for (DomainSnapshot& d : snap.domains) {
    d.cap_mw = d.committed_mw + r.Int(0, 12) * kKw;
  }
  return snap;
}

std::vector<PendingJob> RandomPending(Random& r, int count) {
  std::vector<PendingJob> out;
  for (int i = 0; i < count; ++i) {
    const bool gang = r.Int(0, 9) == 0;
    PendingJob p =
        Pending(absl::StrCat("p", i), 1 << r.Int(0, 3), gang ? r.Int(2, 3) : 1,
                static_cast<ServiceClass>(r.Int(0, 2)), r.Int(0, 3), i);
    p.tenant = r.Int(0, 1) ? "t" : "u";
    const int model = r.Int(0, 4);
    p.gpu_model = model == 0 ? "" : (model == 1 ? "A100" : "H100");
    if (p.gpu_model == "A100" && p.gpus_per_node > 4) p.gpus_per_node = 4;
    if (r.Int(0, 2) == 0) p.power_mw = r.Int(2, 7) * 100 * kW;
    if (r.Int(0, 1)) p.max_runtime = absl::Minutes(r.Int(10, 900));
    out.push_back(std::move(p));
  }
  return out;
}

TEST(ScheduleProperties, RandomClustersKeepEveryInvariant) {
  int placed = 0, preempting = 0;
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    Random r(seed);
    const ClusterSnapshot snap = RandomCluster(r);
    const std::vector<PendingJob> pending = RandomPending(r, 40);
    PolicyConfig config;
    config.backfill = seed % 4 != 0;
    config.allow_preemption = seed % 5 != 0;
    config.enforce_power = seed % 7 != 0;
    const Decisions d = Schedule(snap, pending, config);
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    CheckDecisions(snap, pending, d, config);
    if (::testing::Test::HasFatalFailure()) return;
    placed += d.placements.size();
    for (const Placement& p : d.placements) preempting += !p.preempt.empty();
    // Deterministic.
    const Decisions again = Schedule(snap, pending, config);
    ASSERT_EQ(again.placements.size(), d.placements.size());
    for (size_t i = 0; i < d.placements.size(); ++i) {
      ASSERT_EQ(again.placements[i].job_id, d.placements[i].job_id);
    }
  }
  // The random inputs must actually exercise placement and preemption.
  EXPECT_GT(placed, 1000);
  EXPECT_GT(preempting, 5);
}

// 10,000 nodes / 80,000 GPUs under a 5-level tree (site, building, hall,
// row, rack), 100,000 pending jobs, everything considered. Rack cap 50 kW
// binds on power; 70 kW on GPUs (10 nodes: 10 kW base + 80×700 W = 66 kW).
// 10,000 nodes / 80,000 GPUs: site → 2 buildings → 2 halls → 10 rows → 25
// racks of 10 nodes (8 H100 each, 1 kW base).
ClusterBuilder BigCluster(int64_t rack_cap_mw) {
  ClusterBuilder b;
  const int site = b.Domain("site", "site", -1);
  int node = 0;
  for (int bu = 0; bu < 2; ++bu) {
    const int building = b.Domain(absl::StrCat("b", bu), "building", site);
    for (int h = 0; h < 2; ++h) {
      const int hall = b.Domain(absl::StrCat("h", bu, h), "hall", building);
      for (int w = 0; w < 10; ++w) {
        const int row = b.Domain(absl::StrCat("w", bu, h, w), "row", hall);
        for (int k = 0; k < 25; ++k) {
          const int rack = b.Domain(absl::StrCat("r", bu, h, w, k), "rack", row,
                                    rack_cap_mw);
          for (int i = 0; i < 10; ++i) {
            b.Node(absl::StrCat("n", node++), rack);
          }
        }
      }
    }
  }
  return b;
}

Decisions TimedSchedule(const ClusterSnapshot& snap,
                        const std::vector<PendingJob>& pending,
                        const PolicyConfig& config) {
  const auto start = std::chrono::steady_clock::now();
  Decisions d = Schedule(snap, pending, config);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  int64_t gpus = 0, preempted = 0;
  for (const Placement& p : d.placements) {
    for (const JobShare& s : p.shares) gpus += s.gpus.size();
    preempted += p.preempt.size();
  }
  std::cout << "[ scale    ] " << pending.size()
            << " pending: " << d.placements.size() << " placements (" << gpus
            << " GPUs, " << preempted << " preemptions), " << d.waits.size()
            << " waits in " << seconds
            << " s = " << static_cast<int64_t>(d.placements.size() / seconds)
            << " placements/s\n";
  return d;
}

int64_t PlacedGpus(const Decisions& d) {
  int64_t gpus = 0;
  for (const Placement& p : d.placements) {
    for (const JobShare& s : p.shares) gpus += s.gpus.size();
  }
  return gpus;
}

// 100,000 pending jobs on an empty cluster, everything considered. Rack cap
// 50 kW binds on power; 70 kW on GPUs (10 kW base + 80×700 W = 66 kW).
struct ScaleCase {
  std::string name;
  int64_t rack_cap_mw;
  int64_t min_gpus;
  int64_t max_gpus;
};

class ScheduleScale : public ::testing::TestWithParam<ScaleCase> {};

TEST_P(ScheduleScale, TenThousandNodes) {
  const ScaleCase& c = GetParam();
  const ClusterSnapshot snap = BigCluster(c.rack_cap_mw).Build();
  ASSERT_EQ(snap.nodes.size(), 10000u);
  std::vector<PendingJob> pending;
  const uint32_t sizes[] = {1, 1, 1, 2, 2, 4, 8};
  for (int i = 0; i < 100000; ++i) {
    const bool gang = i % 100 == 0;
    PendingJob p =
        Pending(absl::StrCat("p", i), gang ? 8 : sizes[i % 7], gang ? 2 : 1,
                static_cast<ServiceClass>(i % 3 == 0), i % 4, i);
    p.tenant = absl::StrCat("t", i % 10);
    p.max_runtime = absl::Minutes(10 + i % 50);
    pending.push_back(std::move(p));
  }
  PolicyConfig config;
  config.max_jobs_considered = 0;
  const Decisions d = TimedSchedule(snap, pending, config);
  CheckDecisions(snap, pending, d, config);
  EXPECT_LE(PlacedGpus(d), c.max_gpus);
  EXPECT_GE(PlacedGpus(d), c.min_gpus);
}

INSTANTIATE_TEST_SUITE_P(
    Scale, ScheduleScale,
    ::testing::Values(
        // 50 kW - 10 kW base = 40 kW = 57 GPUs at 700 W per rack.
        ScaleCase{"PowerBound", 50 * kKw, 55000, 57000},
        // Power never binds: every GPU can be used.
        ScaleCase{"GpuBound", 70 * kKw, 78000, 80000}),
    [](const auto& info) { return info.param.name; });

// A full cluster of 20,000 spot/on-demand jobs (4 GPUs each); 2,000 reserved
// jobs within contract (500 each of 1, 2, 4, 8 GPUs) must preempt their way
// in.
TEST(ScheduleScale, ReservedJobsPreemptOnAFullCluster) {
  ClusterBuilder b = BigCluster(100 * kKw);
  for (int n = 0; n < 10000; ++n) {
    for (int half = 0; half < 2; ++half) {
      RunningJob& r =
          b.Run(absl::StrCat("run", n, "_", half), {n}, 4,
                half ? ServiceClass::kSpot : ServiceClass::kOnDemand);
      r.priority = n % 5;
      r.start_time = TestNow() - absl::Minutes(n % 97);
    }
  }
  b.Tenant("rt").contracted_gpus["H100"] = 100000;
  const ClusterSnapshot snap = b.Build();
  std::vector<PendingJob> pending;
  for (int i = 0; i < 2000; ++i) {
    PendingJob p = Pending(absl::StrCat("p", i), 1 << (i % 4), 1,
                           ServiceClass::kReserved, i % 3, i);
    p.tenant = "rt";
    pending.push_back(std::move(p));
  }
  PolicyConfig config;
  const Decisions d = TimedSchedule(snap, pending, config);
  CheckDecisions(snap, pending, d, config);
  ASSERT_EQ(d.placements.size(), pending.size());
  // Each node holds a 4-GPU spot job (_1) and a 4-GPU on-demand job (_0).
  // Jobs of up to 4 GPUs only ever need spot victims; an 8-GPU job needs a
  // whole node, so at most one on-demand victim.
  int on_demand_victims = 0;
  for (const Placement& p : d.placements) {
    const uint32_t gpus = p.shares[0].gpus.size();
    int od = 0;
    for (const std::string& id : p.preempt) od += absl::EndsWith(id, "_0");
    EXPECT_LE(od, gpus == 8 ? 1 : 0) << p.job_id;
    on_demand_victims += od;
  }
  EXPECT_LE(on_demand_victims, 500);
}

}  // namespace
}  // namespace joule::scheduler
