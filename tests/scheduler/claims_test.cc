// Claims over several Schedule calls (issue #11, defect 1): a reserved job
// that preempts gets a claim; later rounds hold the claimed GPUs for it,
// pick no new victims, and place it on exactly those GPUs once the victims
// are gone. RoundSim plays the daemon's part between calls: it marks
// victims as stopping (as ClusterManager::SnapshotLocked does), turns a
// preempting placement into a claim, ends stopping jobs, requeues them.

#include "scheduler/claims.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/policy.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using testing::ClusterBuilder;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using testing::kKw;
using testing::kW;
using testing::Pending;
using testing::TestNow;

// The daemon between rounds, on a snapshot it owns.
class RoundSim {
 public:
  explicit RoundSim(ClusterSnapshot snap) : snap_(std::move(snap)) {}

  ClusterSnapshot& snap() { return snap_; }
  std::vector<PendingJob>& pending() { return pending_; }
  std::map<std::string, int>& times_preempted() { return preempted_; }

  // One round: Schedule, then apply as ScheduleOnce does.
  Decisions Round(const PolicyConfig& config = PolicyConfig{}) {
    snap_.now += absl::Seconds(1);
    const Decisions d = Schedule(snap_, pending_, config);
    for (const Wait& w : d.dropped_claims) Erase(w.job_id);
    for (const Placement& p : d.placements) {
      const PendingJob* job = FindPending(p.job_id);
      if (job == nullptr) continue;
      if (!p.preempt.empty()) {
        ClaimSnapshot c;
        c.job_id = p.job_id;
        c.victims = p.preempt;
        c.shares = p.shares;
        c.power_per_gpu_mw = p.power_limit_mw;
        for (const std::string& v : p.preempt) {
          RunningJob* r = FindRunning(v);
          // Stopping: neither throttled nor preempted again.
          r->cls = ServiceClass::kReserved;
          r->min_mw = r->limit_mw;
          r->measured_per_gpu_mw = 0;
          stopping_.insert(v);
          ++preempted_[v];
        }
        Erase(p.job_id);
        snap_.claims.push_back(std::move(c));
        continue;
      }
      Erase(p.job_id);  // a claimant placed: its claim is fulfilled
      RunningJob r;
      r.id = p.job_id;
      r.tenant = job->tenant;
      r.cls = p.effective_class;
      r.priority = job->priority;
      r.start_time = snap_.now;
      r.gpu_model = p.gpu_model;
      r.limit_mw = r.requested_mw = p.power_limit_mw;
      r.min_mw = p.min_power_mw;
      r.measured_per_gpu_mw = p.power_limit_mw;
      r.shares = p.shares;
      int64_t gpus = 0;
      for (const JobShare& s : p.shares) {
        uint64_t mask = 0;
        for (uint32_t g : s.gpus) mask |= uint64_t{1} << g;
        // No GPU is ever given twice.
        EXPECT_EQ(snap_.nodes[s.node].free_gpus & mask, mask)
            << p.job_id << " placed on a GPU that is not free";
        snap_.nodes[s.node].free_gpus &= ~mask;
        gpus += s.gpus.size();
      }
      r.committed_mw = gpus * r.limit_mw;
      AddPower(r, +1);
      snap_.running.push_back(std::move(r));
      pending_.erase(pending_.begin() + (job - pending_.data()));
    }
    CheckNoGpuHeldTwice();
    return d;
  }

  // Ends every stopping job (`only`: those of that list) and requeues it.
  void EndStopping(std::set<std::string> only = {}) {
    std::vector<RunningJob> keep;
    for (RunningJob& r : snap_.running) {
      if (!stopping_.contains(r.id) ||
          (!only.empty() && !only.contains(r.id))) {
        keep.push_back(std::move(r));
        continue;
      }
      stopping_.erase(r.id);
      for (const JobShare& s : r.shares) {
        for (uint32_t g : s.gpus)
          snap_.nodes[s.node].free_gpus |= uint64_t{1} << g;
      }
      AddPower(r, -1);
      PendingJob p = Pending(r.id, r.shares[0].gpus.size(), r.shares.size(),
                             ServiceClass::kSpot, r.priority, ++seq_);
      pending_.push_back(p);
    }
    snap_.running = std::move(keep);
  }

  // A node is lost: unschedulable, its jobs requeued (as the daemon does).
  void LoseNode(int n) {
    snap_.nodes[n].schedulable = false;
    std::vector<RunningJob> keep;
    for (RunningJob& r : snap_.running) {
      bool on = false;
      for (const JobShare& s : r.shares) on = on || s.node == n;
      if (!on) {
        keep.push_back(std::move(r));
        continue;
      }
      stopping_.erase(r.id);
      for (const JobShare& s : r.shares) {
        for (uint32_t g : s.gpus)
          snap_.nodes[s.node].free_gpus |= uint64_t{1} << g;
      }
      AddPower(r, -1);
      pending_.push_back(Pending(r.id, r.shares[0].gpus.size(), r.shares.size(),
                                 ServiceClass::kSpot, r.priority, ++seq_));
    }
    snap_.running = std::move(keep);
  }

  const ClaimSnapshot* Claim(const std::string& id) const {
    for (const ClaimSnapshot& c : snap_.claims) {
      if (c.job_id == id) return &c;
    }
    return nullptr;
  }
  const RunningJob* Running(const std::string& id) const {
    for (const RunningJob& r : snap_.running) {
      if (r.id == id) return &r;
    }
    return nullptr;
  }

  void CheckNoGpuHeldTwice() const {
    std::map<std::pair<int, uint32_t>, std::string> holder;
    for (const RunningJob& r : snap_.running) {
      for (const JobShare& s : r.shares) {
        for (uint32_t g : s.gpus) {
          auto [it, inserted] = holder.try_emplace({s.node, g}, r.id);
          EXPECT_TRUE(inserted) << "GPU " << g << " of node " << s.node
                                << " held by " << it->second << " and " << r.id;
          EXPECT_FALSE(snap_.nodes[s.node].free_gpus & (uint64_t{1} << g));
        }
      }
    }
  }

 private:
  void Erase(const std::string& id) {
    std::erase_if(snap_.claims,
                  [&](const ClaimSnapshot& c) { return c.job_id == id; });
  }
  PendingJob* FindPending(const std::string& id) {
    for (PendingJob& p : pending_) {
      if (p.id == id) return &p;
    }
    return nullptr;
  }
  RunningJob* FindRunning(const std::string& id) {
    for (RunningJob& r : snap_.running) {
      if (r.id == id) return &r;
    }
    return nullptr;
  }
  void AddPower(const RunningJob& r, int sign) {
    for (const JobShare& s : r.shares) {
      const int64_t mw =
          sign * static_cast<int64_t>(s.gpus.size()) * r.limit_mw;
      for (int d = snap_.nodes[s.node].domain; d >= 0;
           d = snap_.domains[d].parent) {
        snap_.domains[d].committed_mw += mw;
        snap_.domains[d].measured_mw += mw;
      }
    }
  }

  ClusterSnapshot snap_;
  std::vector<PendingJob> pending_;
  std::set<std::string> stopping_;
  std::map<std::string, int> preempted_;
  uint64_t seq_ = 100;
};

// 4 nodes × 8 H100 full of 32 one-GPU spot jobs (s00 started first, s31
// last); tenant rt has a contract for 8 H100 and submits one reserved
// 8-GPU job R.
RoundSim FullClusterWithReservedJob() {
  ClusterBuilder b;
  const int rack = b.Domain("r1", "rack", -1);
  std::vector<int> nodes;
  for (int i = 0; i < 4; ++i)
    nodes.push_back(b.Node("n" + std::to_string(i), rack));
  for (int i = 0; i < 32; ++i) {
    RunningJob& r = b.Run(absl::StrFormat("s%02d", i), {nodes[i / 8]}, 1,
                          ServiceClass::kSpot);
    r.start_time = TestNow() - absl::Minutes(60 - i);
  }
  b.Tenant("rt").contracted_gpus["H100"] = 8;
  RoundSim sim(b.Build());
  PendingJob r = Pending("R", 8, 1, ServiceClass::kReserved);
  r.tenant = "rt";
  sim.pending().push_back(r);
  return sim;
}

TEST(ClaimTest, PreemptsOneNodeOnceAndPlacesTheClaimantOnExactlyThoseGpus) {
  RoundSim sim = FullClusterWithReservedJob();
  // Round 1: R preempts the 8 jobs of one node (n3: the most recently
  // started) and gets a claim on its 8 GPUs.
  Decisions d = sim.Round();
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].preempt.size(), 8u);
  const ClaimSnapshot* c = sim.Claim("R");
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->shares.size(), 1u);
  const int node = c->shares[0].node;
  EXPECT_EQ(c->shares[0].gpus.size(), 8u);
  // Rounds 2-4, victims ignoring SIGTERM (500 ms apart in the report):
  // no new victims, R waits on its claim.
  for (int round = 0; round < 3; ++round) {
    d = sim.Round();
    EXPECT_THAT(d.placements, IsEmpty()) << "round " << round + 2;
    ASSERT_EQ(d.waits.size(), 1u);
    EXPECT_THAT(d.waits[0].reason,
                ::testing::HasSubstr("(claimed; 8 still stopping)"));
  }
  // Half the victims exit and are requeued: their 4 freed GPUs stay held
  // for R; the requeued spot jobs find nothing free.
  std::set<std::string> half;
  for (size_t i = 0; i < 4; ++i) half.insert(c->victims[i]);
  sim.EndStopping(half);
  d = sim.Round();
  EXPECT_THAT(d.placements, IsEmpty());
  // The rest exit: R goes on exactly the claimed GPUs, the requeued jobs
  // still wait (everything else is full).
  sim.EndStopping();
  d = sim.Round();
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].job_id, "R");
  EXPECT_THAT(d.placements[0].preempt, IsEmpty());
  ASSERT_EQ(d.placements[0].shares.size(), 1u);
  EXPECT_EQ(d.placements[0].shares[0].node, node);
  EXPECT_THAT(d.placements[0].shares[0].gpus,
              ElementsAre(0, 1, 2, 3, 4, 5, 6, 7));
  EXPECT_EQ(sim.Claim("R"), nullptr);
  // 8 distinct victims, each preempted once; none was re-placed.
  EXPECT_EQ(sim.times_preempted().size(), 8u);
  for (const auto& [id, n] : sim.times_preempted()) {
    EXPECT_EQ(n, 1) << id;
    EXPECT_EQ(sim.Running(id), nullptr) << id << " re-placed";
  }
  // Later rounds change nothing.
  d = sim.Round();
  EXPECT_THAT(d.placements, IsEmpty());
}

TEST(ClaimTest, VictimsThatExitAtOnceAreNotPlacedBackOnClaimedGpus) {
  RoundSim sim = FullClusterWithReservedJob();
  sim.Round();
  const ClaimSnapshot* c = sim.Claim("R");
  ASSERT_NE(c, nullptr);
  // Every victim exits before the next round and is requeued first in
  // queue order... but R is reserved, and the claimed GPUs are R's.
  sim.EndStopping();
  const Decisions d = sim.Round();
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].job_id, "R");
  for (const auto& [id, n] : sim.times_preempted()) EXPECT_EQ(n, 1) << id;
}

TEST(ClaimTest, DroppedWhenAClaimedNodeIsLostAndTheJobPreemptsAgain) {
  RoundSim sim = FullClusterWithReservedJob();
  sim.Round();
  const ClaimSnapshot* c = sim.Claim("R");
  ASSERT_NE(c, nullptr);
  const int node = c->shares[0].node;
  sim.LoseNode(node);
  const Decisions d = sim.Round();
  ASSERT_EQ(d.dropped_claims.size(), 1u);
  EXPECT_THAT(d.dropped_claims[0].reason,
              ::testing::HasSubstr("drained or unreachable"));
  // Scheduled as usual in the same call: a new claim elsewhere.
  ASSERT_NE(sim.Claim("R"), nullptr);
  EXPECT_NE(sim.Claim("R")->shares[0].node, node);
}

TEST(ClaimTest, DroppedWhenItsJobIsNoLongerPending) {
  RoundSim sim = FullClusterWithReservedJob();
  sim.Round();
  sim.pending().clear();  // cancelled
  sim.pending().push_back(Pending("other", 1));
  const Decisions d = sim.Round();
  ASSERT_EQ(d.dropped_claims.size(), 1u);
  EXPECT_EQ(d.dropped_claims[0].job_id, "R");
}

TEST(ClaimTest, DroppedWhenTheFreedGpusNoLongerFitThePower) {
  RoundSim sim = FullClusterWithReservedJob();
  sim.Round();
  sim.EndStopping();
  // A cap cut meanwhile: 4 kW base + 24 × 700 W = 20.8 kW committed; R
  // needs 5.6 kW more; cap 22 kW.
  sim.snap().domains[0].cap_mw = 22 * kKw;
  const Decisions d = sim.Round();
  ASSERT_EQ(d.dropped_claims.size(), 1u);
  EXPECT_THAT(d.dropped_claims[0].reason,
              ::testing::HasSubstr("power no longer fits: rack r1"));
}

// Fewest victims over several rounds: node A holds a (4-GPU spot, started
// an hour ago) and 4 reserved GPUs; node B four 1-GPU spot jobs (started
// 1-4 minutes ago, the most preemptable by recency) and 4 reserved GPUs.
// A 4-GPU reserved claimant frees 4 GPUs with 1 victim on A (a) rather
// than 4 on B; while a stops, no new victim is picked; then R gets exactly
// a's GPUs 0-3 on A, and a, requeued, is not placed back on them.
TEST(ClaimTest, FewestVictimsOverSeveralRounds) {
  ClusterBuilder b;
  const int rack = b.Domain("r1", "rack", -1);
  const int na = b.Node("A", rack);
  const int nb = b.Node("B", rack);
  b.Run("a", {na}, 4, ServiceClass::kSpot).start_time =
      TestNow() - absl::Hours(1);
  b.Run("ra", {na}, 4, ServiceClass::kReserved);
  for (int i = 1; i <= 4; ++i) {
    b.Run("s" + std::to_string(i), {nb}, 1, ServiceClass::kSpot).start_time =
        TestNow() - absl::Minutes(i);
  }
  b.Run("rb", {nb}, 4, ServiceClass::kReserved);
  b.Tenant("rt").contracted_gpus["H100"] = 8;
  RoundSim sim(b.Build());
  PendingJob r = Pending("R", 4, 1, ServiceClass::kReserved);
  r.tenant = "rt";
  sim.pending().push_back(r);
  // Round 1: 1 victim (a) on A, claim on A's GPUs 0-3.
  Decisions d = sim.Round();
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_THAT(d.placements[0].preempt, ElementsAre("a"));
  const ClaimSnapshot* c = sim.Claim("R");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->shares[0].node, na);
  EXPECT_THAT(c->shares[0].gpus, ElementsAre(0, 1, 2, 3));
  // Rounds 2-3, a ignoring SIGTERM: nothing new preempted.
  for (int round = 2; round <= 3; ++round) {
    d = sim.Round();
    EXPECT_THAT(d.placements, IsEmpty()) << "round " << round;
  }
  // a exits and is requeued (spot): R gets exactly its GPUs; a waits.
  sim.EndStopping();
  d = sim.Round();
  ASSERT_EQ(d.placements.size(), 1u);
  EXPECT_EQ(d.placements[0].job_id, "R");
  EXPECT_EQ(d.placements[0].shares[0].node, na);
  EXPECT_THAT(d.placements[0].shares[0].gpus, ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(sim.Running("a"), nullptr);
  // Only a was ever preempted, once; B's four jobs still run.
  EXPECT_EQ(sim.times_preempted().size(), 1u);
  EXPECT_EQ(sim.times_preempted()["a"], 1);
  for (int i = 1; i <= 4; ++i) {
    EXPECT_NE(sim.Running("s" + std::to_string(i)), nullptr) << i;
  }
  d = sim.Round();
  EXPECT_THAT(d.placements, IsEmpty());
}

// Property: over random clusters and queues, across rounds with victims
// exiting at random, node losses and restarts (a restart rebuilds the
// snapshot from what the daemon persisted: running jobs and claims, which
// RoundSim keeps as they are), no GPU is held by two jobs, and each
// preemption frees at most what the claimant needs plus one node's
// fragmentation (the GPUs already free on the claimed node), with no more
// victims than the fewest that could have made room on any node, every one
// of them needed, all on the claimant's node.
TEST(ClaimPropertyTest, NoDoubleHoldingAndNoOverPreemption) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 60; ++trial) {
    ClusterBuilder b;
    const int rack = b.Domain("r1", "rack", -1);
    const int nodes = 2 + rng() % 4;
    std::vector<int> ns;
    for (int i = 0; i < nodes; ++i)
      ns.push_back(b.Node("n" + std::to_string(i), rack));
    int jobs = 0;
    for (int n : ns) {
      uint32_t used = rng() % 3;  // some GPUs left free
      while (used < 8) {
        const uint32_t g = std::min<uint32_t>(8 - used, 1 + rng() % 4);
        RunningJob& r =
            b.Run("j" + std::to_string(jobs++), {n}, g,
                  rng() % 2 ? ServiceClass::kSpot : ServiceClass::kOnDemand);
        r.priority = rng() % 3;
        r.start_time = TestNow() - absl::Minutes(rng() % 100);
        used += g;
      }
    }
    b.Tenant("rt").contracted_gpus["H100"] = 64;
    RoundSim sim(b.Build());
    for (int k = 0; k < 3; ++k) {
      PendingJob r = Pending("R" + std::to_string(k), 1 + rng() % 8, 1,
                             ServiceClass::kReserved, 0, k);
      r.tenant = "rt";
      sim.pending().push_back(r);
    }
    for (int round = 0; round < 12; ++round) {
      // Free GPUs per node before the round, for the over-preemption bound.
      std::vector<int> free_before;
      for (const NodeSnapshot& n : sim.snap().nodes) {
        free_before.push_back(std::popcount(n.free_gpus));
      }
      std::vector<ClaimSnapshot> claims_before = sim.snap().claims;
      const ClusterSnapshot snap_before = sim.snap();
      std::string dump;
      for (const RunningJob& r : sim.snap().running) {
        dump += r.id + "@" + std::to_string(r.shares[0].node) + ":";
        for (uint32_t g : r.shares[0].gpus) dump += std::to_string(g) + ",";
        dump += " ";
      }
      dump += "| claims ";
      for (const ClaimSnapshot& c : sim.snap().claims) {
        dump += c.job_id + "@" + std::to_string(c.shares[0].node) + ":";
        for (uint32_t g : c.shares[0].gpus) dump += std::to_string(g) + ",";
        dump += " ";
      }
      dump += "| free ";
      for (const NodeSnapshot& n : sim.snap().nodes)
        dump += std::to_string(n.free_gpus) + " ";
      dump += "| pending ";
      for (const PendingJob& p : sim.pending()) dump += p.id + " ";
      const bool failed_before = ::testing::Test::HasFailure();
      const Decisions d = sim.Round();
      if (!failed_before && ::testing::Test::HasFailure()) {
        std::string dec;
        for (const Placement& p : d.placements) {
          dec += p.job_id + "@" + std::to_string(p.shares[0].node) + ":";
          for (uint32_t g : p.shares[0].gpus) dec += std::to_string(g) + ",";
          dec += " preempt " + std::to_string(p.preempt.size()) + "; ";
        }
        for (const Wait& w : d.dropped_claims)
          dec += "drop " + w.job_id + " " + w.reason + "; ";
        ADD_FAILURE() << "trial " << trial << " round " << round << " "
                      << failed_before << "\n"
                      << dump << "\n"
                      << dec;
        return;
      }
      // Lower bounds on what was free on each node when the policy decided
      // (the snapshot's free GPUs less every claimed GPU and less what
      // earlier placements of the round took), and the jobs it could
      // preempt (spot/on-demand in the snapshot, not yet preempted).
      std::vector<uint64_t> free_lb;
      for (const NodeSnapshot& n : snap_before.nodes) {
        free_lb.push_back(n.free_gpus);
      }
      for (const ClaimSnapshot& c : claims_before) {
        for (const JobShare& s : c.shares) {
          for (uint32_t g : s.gpus) free_lb[s.node] &= ~(uint64_t{1} << g);
        }
      }
      std::set<std::string> gone;
      for (const Placement& p : d.placements) {
        if (!p.preempt.empty()) {
          // Fewest victims: no schedulable node could have made room with
          // fewer (per node, its largest victims first; an upper bound on
          // the best, as free_lb is a lower bound on what was free).
          size_t fewest = SIZE_MAX;
          for (size_t n = 0; n < snap_before.nodes.size(); ++n) {
            if (!snap_before.nodes[n].schedulable) continue;
            int64_t missing = static_cast<int64_t>(p.shares[0].gpus.size()) -
                              std::popcount(free_lb[n]);
            std::vector<int64_t> sizes;
            for (const RunningJob& r : snap_before.running) {
              if (r.cls == ServiceClass::kReserved || gone.contains(r.id) ||
                  r.shares[0].node != static_cast<int>(n)) {
                continue;
              }
              sizes.push_back(r.shares[0].gpus.size());
            }
            std::sort(sizes.rbegin(), sizes.rend());
            size_t k = 0;
            while (missing > 0 && k < sizes.size()) missing -= sizes[k++];
            if (missing <= 0) fewest = std::min(fewest, k);
          }
          EXPECT_LE(p.preempt.size(), fewest) << "trial " << trial;
          // Each victim is needed: the GPUs of the victims the claimant
          // does not take are fewer than any victim's.
          int64_t taken_from_victims = 0, victim_gpus = 0, smallest = 64;
          for (const std::string& v : p.preempt) {
            const RunningJob* r = sim.Running(v);
            ASSERT_NE(r, nullptr);
            // Single-node victims, all on the claimant's node.
            EXPECT_EQ(r->shares[0].node, p.shares[0].node) << v;
            const int64_t g = r->shares[0].gpus.size();
            victim_gpus += g;
            smallest = std::min(smallest, g);
            for (uint32_t x : r->shares[0].gpus) {
              for (uint32_t y : p.shares[0].gpus) taken_from_victims += x == y;
            }
            gone.insert(v);
          }
          EXPECT_LT(victim_gpus - taken_from_victims, smallest)
              << "trial " << trial << ": a victim was not needed";
        }
        for (const JobShare& s : p.shares) {
          for (uint32_t g : s.gpus) free_lb[s.node] &= ~(uint64_t{1} << g);
        }
      }
      for (const Placement& p : d.placements) {
        if (p.preempt.empty()) continue;
        int64_t freed = 0;
        for (const std::string& v : p.preempt) {
          const RunningJob* r = sim.Running(v);
          ASSERT_NE(r, nullptr);
          for (const JobShare& s : r->shares) freed += s.gpus.size();
        }
        int64_t need = 0;
        for (const JobShare& s : p.shares) need += s.gpus.size();
        // Beyond what was missing on the node, at most one victim's
        // fragment: < 8 GPUs (each kept victim is needed).
        EXPECT_LE(
            freed,
            std::max<int64_t>(0, need - free_before[p.shares[0].node]) + 7)
            << "trial " << trial;
        // Never new victims for a job whose claim stands.
        bool dropped = false;
        for (const Wait& w : d.dropped_claims)
          dropped = dropped || w.job_id == p.job_id;
        for (const ClaimSnapshot& c : claims_before) {
          if (!dropped)
            EXPECT_NE(c.job_id, p.job_id) << "new victims for a claimant";
        }
      }
      switch (rng() % 5) {
        case 0:
        case 1:
          sim.EndStopping();
          break;
        case 2:
          if (rng() % 4 == 0) sim.LoseNode(rng() % nodes);
          break;
        default:
          break;  // victims still stopping; or a restart: same state
      }
    }
  }
}

}  // namespace
}  // namespace joule::scheduler
