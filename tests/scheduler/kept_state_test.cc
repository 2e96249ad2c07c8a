// Property test of KeptState (scheduler/kept_state.h): over many random
// rounds of changes to one snapshot kept in place (jobs placed by the
// policy, jobs ended by swap-remove, nodes drained or losing GPUs, caps,
// reserves and committed power moved, a job's commitment changed, now and
// then a node changing model), Schedule with the kept state gives the same
// Decisions as Schedule building everything from the snapshot, and after
// each call the kept state equals one built afresh. A change left unmarked
// is caught (AMissedMarkIsCaught).

#include "scheduler/kept_state.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "scheduler/cluster_state.h"
#include "scheduler/policy.h"
#include "scheduler/working_state.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using ::joule::scheduler::testing::kKw;
using ::joule::scheduler::testing::kW;
using ::joule::scheduler::testing::TestNow;

std::string Text(const Decisions& d) {
  std::string out;
  for (const Placement& p : d.placements) {
    absl::StrAppend(&out, "P ", p.job_id, " ", p.gpu_model, " ",
                    p.power_limit_mw, "/", p.requested_limit_mw, "/",
                    p.min_power_mw, " c", static_cast<int>(p.effective_class),
                    " [");
    for (const JobShare& s : p.shares) {
      absl::StrAppend(&out, s.node, ":", absl::StrJoin(s.gpus, ","), " ");
    }
    absl::StrAppend(&out, "] x", absl::StrJoin(p.preempt, ","), "\n");
  }
  for (const Wait& w : d.waits) {
    absl::StrAppend(&out, "W ", w.job_id, " ", static_cast<int>(w.kind), " ",
                    w.reason, "\n");
  }
  for (const Wait& w : d.dropped_claims) {
    absl::StrAppend(&out, "D ", w.job_id, " ", w.reason, "\n");
  }
  return out;
}

// Whether `kept` (after a call) equals the state built from `snap`.
::testing::AssertionResult KeptEqualsFresh(KeptState& kept,
                                           const ClusterSnapshot& snap,
                                           const PolicyConfig& cfg) {
  internal::KeptWork& w = kept.work();
  internal::ClusterState fresh(snap, cfg.enforce_power,
                               cfg.committed_at_least_measured, cfg.power_fit);
  std::string why;
  if (!w.state->SameAs(fresh, &why)) {
    return ::testing::AssertionFailure() << "state: " << why;
  }
  if (w.active.size() != snap.running.size()) {
    return ::testing::AssertionFailure() << "active size";
  }
  for (size_t i = 0; i < snap.running.size(); ++i) {
    const internal::Active a =
        internal::ActiveOf(snap.running[i], static_cast<int32_t>(i), fresh);
    const internal::Active& k = w.active[i];
    bool same = a.running == k.running && a.cls == k.cls &&
                a.priority == k.priority && a.start == k.start &&
                a.end == k.end && !k.gone && a.allocs.size() == k.allocs.size();
    for (size_t j = 0; same && j < a.allocs.size(); ++j) {
      same = a.allocs[j].node == k.allocs[j].node &&
             a.allocs[j].gpus == k.allocs[j].gpus &&
             a.allocs[j].power_mw == k.allocs[j].power_mw;
    }
    if (!same) return ::testing::AssertionFailure() << "active " << i;
  }
  return ::testing::AssertionSuccess();
}

// A random cluster kept in one snapshot, changed in place as joule-sim
// does, every change marked on `kept` (unless `skip_marks`).
class World {
 public:
  World(uint64_t seed, KeptState* kept) : rng_(seed), kept_(kept) {
    snap_.now = TestNow();
    snap_.gpu_models.push_back({"H100", 700 * kW, 200 * kW, 700 * kW});
    snap_.gpu_models.push_back({"A100", 400 * kW, 100 * kW, 400 * kW});
    AddDomain("site", "site", -1, Pick(200, 400) * kKw);
    const int rows = Pick(1, 3);
    for (int r = 0; r < rows; ++r) {
      const int row =
          AddDomain(absl::StrCat("row", r), "row", 0, Pick(60, 200) * kKw);
      const int racks = Pick(1, 3);
      for (int k = 0; k < racks; ++k) {
        const int rack = AddDomain(absl::StrCat("rack", r, k), "rack", row,
                                   Pick(20, 80) * kKw);
        const int nodes = Pick(1, 4);
        for (int n = 0; n < nodes; ++n) {
          NodeSnapshot node;
          node.name = absl::StrCat("n", snap_.nodes.size());
          node.domain = rack;
          node.gpu_model = Pick(0, 3) == 0 ? "A100" : "H100";
          node.gpu_count = Pick(0, 2) == 0 ? 4 : 8;
          node.free_gpus = (uint64_t{1} << node.gpu_count) - 1;
          snap_.nodes.push_back(node);
          AddPower(rack, 1 * kKw);
        }
      }
    }
    snap_.tenants["a"].contracted_gpus["H100"] = 8;
    snap_.tenants["b"].recent_gpu_hours = 3;
  }

  ClusterSnapshot& snap() { return snap_; }
  bool skip_marks = false;

  std::vector<PendingJob> Queue() {
    std::vector<PendingJob> q;
    const int n = Pick(0, 12);
    for (int i = 0; i < n; ++i) {
      PendingJob p;
      p.id = absl::StrCat("p", next_id_++);
      p.tenant = Pick(0, 1) == 0 ? "a" : "b";
      p.cls = static_cast<ServiceClass>(Pick(0, 2));
      p.priority = Pick(0, 2);
      p.seq = next_id_;
      p.gpus_per_node = Pick(0, 3) == 0 ? 8 : Pick(1, 4);
      p.nodes = Pick(0, 4) == 0 ? 2 : 1;
      p.gpu_model = Pick(0, 4) == 0 ? "" : (Pick(0, 3) == 0 ? "A100" : "H100");
      p.power_mw = Pick(0, 2) == 0 ? Pick(200, 700) * kW : 0;
      if (Pick(0, 2) == 0) p.min_power_mw = 200 * kW;
      if (Pick(0, 1) == 0) p.max_runtime = absl::Minutes(Pick(10, 600));
      q.push_back(p);
    }
    return q;
  }

  // Starts the placements (a placement that preempts ends its victims).
  void Apply(const Decisions& d, const std::vector<PendingJob>& q) {
    for (const Placement& p : d.placements) {
      if (!p.preempt.empty()) {
        for (const std::string& v : p.preempt) {
          for (size_t i = 0; i < snap_.running.size(); ++i) {
            if (snap_.running[i].id == v) {
              End(i);
              break;
            }
          }
        }
        continue;
      }
      RunningJob r;
      r.id = p.job_id;
      for (const PendingJob& j : q) {
        if (j.id == p.job_id) {
          r.tenant = j.tenant;
          r.priority = j.priority;
          r.max_runtime = j.max_runtime;
        }
      }
      r.cls = p.effective_class;
      r.start_time = snap_.now;
      r.shares = p.shares;
      r.gpu_model = p.gpu_model;
      r.limit_mw = p.power_limit_mw;
      int64_t gpus = 0;
      for (const JobShare& s : p.shares) gpus += s.gpus.size();
      r.committed_mw = gpus * p.power_limit_mw;
      for (const JobShare& s : p.shares) {
        uint64_t mask = 0;
        for (uint32_t g : s.gpus) mask |= uint64_t{1} << g;
        snap_.nodes[s.node].free_gpus &= ~mask;
        MarkNode(s.node);
        AddPower(snap_.nodes[s.node].domain,
                 static_cast<int64_t>(s.gpus.size()) * p.power_limit_mw);
      }
      snap_.running.push_back(std::move(r));
      MarkRunning(snap_.running.size() - 1);
    }
  }

  // Random changes of every kind, marked.
  void Perturb() {
    const int changes = Pick(0, 6);
    for (int c = 0; c < changes; ++c) {
      switch (Pick(0, 7)) {
        case 0:
        case 1:
          if (!snap_.running.empty()) End(Pick(0, snap_.running.size() - 1));
          break;
        case 2: {  // drain or return a node
          const int n = Pick(0, snap_.nodes.size() - 1);
          snap_.nodes[n].schedulable = !snap_.nodes[n].schedulable;
          MarkNode(n);
          break;
        }
        case 3: {  // a free GPU turns unhealthy, or an unhealthy one heals
          const int n = Pick(0, snap_.nodes.size() - 1);
          NodeSnapshot& node = snap_.nodes[n];
          const uint64_t bit = uint64_t{1} << Pick(0, node.gpu_count - 1);
          if (node.unhealthy_gpus & bit) {
            node.unhealthy_gpus &= ~bit;
            node.free_gpus |= bit;
          } else if (node.free_gpus & bit) {
            node.free_gpus &= ~bit;
            node.unhealthy_gpus |= bit;
          }
          MarkNode(n);
          break;
        }
        case 4: {  // caps, reserves, committed and measured move (unmarked)
          DomainSnapshot& d = snap_.domains[Pick(0, snap_.domains.size() - 1)];
          d.cap_mw += Pick(-5, 5) * kKw;
          d.admission_reserve_mw = Pick(0, 2) * kKw;
          d.measured_mw += Pick(-3, 3) * kKw;
          d.committed_mw += Pick(-1, 1) * kW;
          break;
        }
        case 5:
          if (!snap_.running.empty()) {  // a job's commitment changes
            const size_t i = Pick(0, snap_.running.size() - 1);
            snap_.running[i].committed_mw += Pick(1, 300) * kW;
            MarkRunning(i);
          }
          break;
        case 6:
          snap_.now += absl::Minutes(Pick(1, 30));
          break;
        case 7:
          if (Pick(0, 9) == 0) {  // a node changes model: a rebuild
            const int n = Pick(0, snap_.nodes.size() - 1);
            NodeSnapshot& node = snap_.nodes[n];
            node.gpu_model = node.gpu_model == "H100" ? "A100" : "H100";
            MarkNode(n);
          }
          break;
      }
    }
  }

  // Ends running[i] as joule-sim does: swap with the last, pop.
  void End(size_t i) {
    const RunningJob& r = snap_.running[i];
    for (const JobShare& s : r.shares) {
      uint64_t mask = 0;
      for (uint32_t g : s.gpus) mask |= uint64_t{1} << g;
      snap_.nodes[s.node].free_gpus |= mask;
      MarkNode(s.node);
      AddPower(snap_.nodes[s.node].domain,
               -static_cast<int64_t>(s.gpus.size()) * r.limit_mw);
    }
    const size_t last = snap_.running.size() - 1;
    if (i != last) {
      snap_.running[i] = std::move(snap_.running[last]);
      MarkRunning(i);
    }
    snap_.running.pop_back();
  }

 private:
  int64_t Pick(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  int AddDomain(std::string name, std::string level, int parent, int64_t cap) {
    DomainSnapshot d;
    d.name = std::move(name);
    d.level = std::move(level);
    d.parent = parent;
    d.cap_mw = cap;
    snap_.domains.push_back(std::move(d));
    return static_cast<int>(snap_.domains.size()) - 1;
  }
  void AddPower(int leaf, int64_t mw) {
    for (int d = leaf; d >= 0; d = snap_.domains[d].parent) {
      snap_.domains[d].committed_mw += mw;
      snap_.domains[d].measured_mw += mw;
    }
  }
  void MarkNode(int n) {
    if (!skip_marks) kept_->NodeChanged(n);
  }
  void MarkRunning(size_t i) {
    if (!skip_marks) kept_->RunningChanged(i);
  }

  std::mt19937_64 rng_;
  KeptState* kept_;
  ClusterSnapshot snap_;
  int next_id_ = 0;
};

std::vector<PolicyConfig> Configs() {
  PolicyConfig allocated;
  PolicyConfig oblivious;
  oblivious.enforce_power = false;
  PolicyConfig plus;
  plus.committed_at_least_measured = true;
  plus.throttle_to_fit = true;
  plus.reserve_best_node = true;
  plus.class_floors.enabled = true;
  plus.power_fit = PowerFit::kEveryLevel;
  PolicyConfig no_backfill;
  no_backfill.backfill = false;
  no_backfill.power_fit = PowerFit::kBalanced;
  return {allocated, oblivious, plus, no_backfill};
}

TEST(KeptStateTest, SameDecisionsAndStateAsAFreshBuildOverRandomChanges) {
  int64_t placed = 0, preempting = 0;
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    for (const PolicyConfig& cfg : Configs()) {
      KeptState kept;
      World world(seed, &kept);
      for (int round = 0; round < 40; ++round) {
        world.Perturb();
        const std::vector<PendingJob> q = world.Queue();
        const Decisions fresh = Schedule(world.snap(), q, cfg);
        const Decisions got = Schedule(world.snap(), q, cfg, &kept);
        ASSERT_EQ(Text(got), Text(fresh))
            << "seed " << seed << " round " << round;
        ASSERT_TRUE(KeptEqualsFresh(kept, world.snap(), cfg))
            << "seed " << seed << " round " << round;
        ASSERT_TRUE(SameDecisions(got, fresh));
        if (!got.waits.empty()) {
          Decisions other = got;
          other.waits.back().reason += ".";
          ASSERT_FALSE(SameDecisions(other, fresh));
        }
        placed += got.placements.size();
        for (const Placement& p : got.placements) {
          preempting += p.preempt.empty() ? 0 : 1;
        }
        world.Apply(got, q);
      }
    }
  }
  // The rounds did exercise placements and preemption.
  EXPECT_GT(placed, 1000);
  EXPECT_GT(preempting, 0);
}

TEST(KeptStateTest, AMissedMarkIsCaught) {
  // The same rounds with the marks left out: the kept state drifts from
  // the snapshot, which the comparison sees (so the test above can fail).
  int caught = 0;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    KeptState kept;
    World world(seed, &kept);
    const PolicyConfig cfg;
    for (int round = 0; round < 20; ++round) {
      world.skip_marks = round > 0;
      world.Perturb();
      const std::vector<PendingJob> q = world.Queue();
      const Decisions got = Schedule(world.snap(), q, cfg, &kept);
      if (!KeptEqualsFresh(kept, world.snap(), cfg)) {
        ++caught;
        break;
      }
      world.Apply(got, q);
    }
  }
  EXPECT_GE(caught, 8);
}

TEST(KeptStateTest, InvalidateRebuilds) {
  KeptState kept;
  World world(7, &kept);
  const PolicyConfig cfg;
  for (int round = 0; round < 20 && world.snap().running.empty(); ++round) {
    const std::vector<PendingJob> q = world.Queue();
    world.Apply(Schedule(world.snap(), q, cfg, &kept), q);
  }
  ASSERT_FALSE(world.snap().running.empty());
  Schedule(world.snap(), {}, cfg, &kept);
  ASSERT_TRUE(KeptEqualsFresh(kept, world.snap(), cfg));
  // A change left unmarked is not seen; Invalidate makes the next call
  // build the state again.
  world.snap().running[0].priority += 5;
  Schedule(world.snap(), {}, cfg, &kept);
  EXPECT_FALSE(KeptEqualsFresh(kept, world.snap(), cfg));
  kept.Invalidate();
  Schedule(world.snap(), {}, cfg, &kept);
  EXPECT_TRUE(KeptEqualsFresh(kept, world.snap(), cfg));
}

}  // namespace
}  // namespace joule::scheduler
