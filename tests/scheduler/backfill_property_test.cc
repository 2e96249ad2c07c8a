// Property test over random clusters and queues: backfill never delays the
// head job's reserved start. For each case, the head (highest priority,
// blocked now) has a shadow time T: the earliest end of a running job after
// which it fits. Whatever else Schedule starts in the same call must leave
// the head able to start at T, once every job (running or just started)
// whose limit ends by T is gone.

#include <algorithm>
#include <bit>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "scheduler/policy.h"
#include "tests/scheduler/test_cluster.h"

namespace joule::scheduler {
namespace {

using ::joule::scheduler::testing::kKw;
using ::joule::scheduler::testing::kW;
using ::joule::scheduler::testing::TestNow;

constexpr int64_t kLimit = 700 * kW;
constexpr int64_t kBase = 1 * kKw;

struct Held {
  std::string id;
  std::vector<JobShare> shares;
  int64_t limit_mw = kLimit;
  absl::Time start;
  absl::Time end;
};

struct World {
  std::vector<DomainSnapshot> domains;          // caps only
  std::vector<std::pair<int, uint32_t>> nodes;  // (leaf domain, GPUs)
  std::vector<Held> held;
};

// The snapshot at `at`: jobs whose limit ends by then are gone.
ClusterSnapshot SnapshotAt(const World& w, absl::Time at) {
  ClusterSnapshot s;
  s.now = at;
  s.gpu_models.push_back({"H100", 700 * kW, 200 * kW, 700 * kW});
  s.domains = w.domains;
  auto add = [&s](int leaf, int64_t mw) {
    for (int d = leaf; d >= 0; d = s.domains[d].parent) {
      s.domains[d].committed_mw += mw;
      s.domains[d].measured_mw += mw;
    }
  };
  for (size_t i = 0; i < w.nodes.size(); ++i) {
    NodeSnapshot n;
    n.name = absl::StrCat("n", i);
    n.domain = w.nodes[i].first;
    n.gpu_model = "H100";
    n.gpu_count = w.nodes[i].second;
    n.free_gpus = (uint64_t{1} << n.gpu_count) - 1;
    s.nodes.push_back(n);
    add(n.domain, kBase);
  }
  for (const Held& h : w.held) {
    if (h.end <= at) continue;
    RunningJob r;
    r.id = h.id;
    r.tenant = "t";
    r.start_time = h.start;
    r.max_runtime = h.end - h.start;
    r.gpu_model = "H100";
    r.limit_mw = r.requested_mw = h.limit_mw;
    r.min_mw = 200 * kW;
    r.shares = h.shares;
    for (const JobShare& sh : h.shares) {
      for (uint32_t g : sh.gpus) {
        s.nodes[sh.node].free_gpus &= ~(uint64_t{1} << g);
      }
      const int64_t mw = h.limit_mw * static_cast<int64_t>(sh.gpus.size());
      r.committed_mw += mw;
      add(s.nodes[sh.node].domain, mw);
    }
    s.running.push_back(r);
  }
  return s;
}

bool HeadFits(const World& w, absl::Time at, const PendingJob& head) {
  PolicyConfig cfg;
  cfg.allow_preemption = false;
  const Decisions d =
      Schedule(SnapshotAt(w, at), std::vector<PendingJob>{head}, cfg);
  return d.placements.size() == 1;
}

World RandomWorld(std::mt19937& rng) {
  auto uni = [&rng](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  World w;
  const int racks = uni(1, 3);
  // Site cap between "binds often" and "never binds".
  w.domains.push_back({"site", "site", -1, uni(15, 120) * kKw, 0, 0, 0});
  for (int r = 0; r < racks; ++r) {
    w.domains.push_back(
        {absl::StrCat("r", r), "rack", 0, uni(8, 60) * kKw, 0, 0, 0});
  }
  const int nodes = uni(2, 6);
  for (int i = 0; i < nodes; ++i) {
    w.nodes.push_back({uni(1, racks), uni(0, 1) ? 8u : 4u});
  }
  // Running jobs fill random GPUs, each with a limit ending in the future.
  std::vector<uint64_t> free(nodes);
  for (int i = 0; i < nodes; ++i) {
    free[i] = (uint64_t{1} << w.nodes[i].second) - 1;
  }
  const int jobs = uni(0, 3 * nodes);
  for (int j = 0; j < jobs; ++j) {
    const int n = uni(0, nodes - 1);
    const int want = uni(1, 4);
    Held h;
    h.id = absl::StrCat("run", j);
    JobShare share;
    share.node = n;
    for (int g = 0; g < want && free[n] != 0; ++g) {
      const int bit = std::countr_zero(free[n]);
      free[n] &= free[n] - 1;
      share.gpus.push_back(bit);
    }
    if (share.gpus.empty()) continue;
    h.shares.push_back(share);
    h.start = TestNow() - absl::Minutes(uni(0, 600));
    h.end = TestNow() + absl::Minutes(uni(1, 1440));
    w.held.push_back(h);
  }
  return w;
}

TEST(BackfillPropertyTest, NeverDelaysTheHeadJobsReservedStart) {
  int checked = 0;
  for (uint32_t seed = 1; seed <= 400; ++seed) {
    std::mt19937 rng(seed);
    auto uni = [&rng](int lo, int hi) {
      return std::uniform_int_distribution<int>(lo, hi)(rng);
    };
    World w = RandomWorld(rng);
    std::vector<PendingJob> queue;
    PendingJob head;
    head.id = "head";
    head.tenant = "t";
    head.priority = 10;
    head.gpu_model = "H100";
    head.gpus_per_node = uni(3, 8);
    head.nodes = uni(1, 3) == 3 ? 2 : 1;
    head.max_runtime = absl::Minutes(uni(10, 600));
    queue.push_back(head);
    const int others = uni(3, 15);
    for (int i = 0; i < others; ++i) {
      PendingJob p;
      p.id = absl::StrCat("p", i);
      p.tenant = "t";
      p.seq = static_cast<uint64_t>(i + 1);
      p.gpu_model = "H100";
      p.gpus_per_node = uni(1, 8);
      p.nodes = uni(1, 5) == 5 ? 2 : 1;
      p.power_mw = uni(0, 1) ? 0 : uni(300, 700) * kW;
      p.max_runtime = absl::Minutes(uni(5, 1800));
      queue.push_back(p);
    }
    const ClusterSnapshot now = SnapshotAt(w, TestNow());
    const Decisions d = Schedule(now, queue, PolicyConfig{});
    bool head_placed = false;
    for (const Placement& p : d.placements) head_placed |= p.job_id == "head";
    if (head_placed) continue;
    // The head's shadow time without anything started by this call.
    std::vector<absl::Time> ends;
    for (const Held& h : w.held) ends.push_back(h.end);
    std::sort(ends.begin(), ends.end());
    std::optional<absl::Time> shadow;
    for (absl::Time e : ends) {
      if (HeadFits(w, e, head)) {
        shadow = e;
        break;
      }
    }
    if (!shadow) continue;  // never fits: no reservation to protect
    ASSERT_FALSE(HeadFits(w, TestNow(), head)) << "seed " << seed;
    // Add what Schedule started, each until its limit ends.
    World after = w;
    for (const Placement& p : d.placements) {
      Held h;
      h.id = p.job_id;
      h.shares = p.shares;
      h.limit_mw = p.power_limit_mw;
      h.start = TestNow();
      for (const PendingJob& q : queue) {
        if (q.id == p.job_id) h.end = TestNow() + q.max_runtime;
      }
      after.held.push_back(h);
    }
    EXPECT_TRUE(HeadFits(after, *shadow, head))
        << "seed " << seed << ": backfill delays the head past "
        << absl::FormatTime(*shadow) << " (" << d.placements.size()
        << " started)";
    ++checked;
  }
  // Enough cases actually exercised the property.
  EXPECT_GT(checked, 100);
}

// The head's reservation names the brute-force shadow time: the first end
// of a running job after which the head fits (Reserve gallops over the
// running jobs by end, then bisects; this checks it finds that same end),
// or says that it does not fit even when all running jobs end.
TEST(BackfillPropertyTest, ShadowTimeIsTheFirstEndAfterWhichTheHeadFits) {
  int with_shadow = 0;
  for (uint32_t seed = 1; seed <= 400; ++seed) {
    std::mt19937 rng(seed);
    auto uni = [&rng](int lo, int hi) {
      return std::uniform_int_distribution<int>(lo, hi)(rng);
    };
    World w = RandomWorld(rng);
    PendingJob head;
    head.id = "head";
    head.tenant = "t";
    head.gpu_model = "H100";
    head.gpus_per_node = uni(3, 8);
    head.nodes = uni(1, 3) == 3 ? 2 : 1;
    head.max_runtime = absl::Minutes(uni(10, 600));
    if (HeadFits(w, TestNow(), head)) continue;
    PolicyConfig cfg;
    cfg.allow_preemption = false;
    const Decisions d =
        Schedule(SnapshotAt(w, TestNow()), std::vector<PendingJob>{head}, cfg);
    ASSERT_EQ(d.waits.size(), 1u) << "seed " << seed;
    if (d.waits[0].kind == WaitKind::kInfeasible) continue;  // never fits
    const std::string& reason = d.waits[0].reason;
    std::vector<absl::Time> ends;
    for (const Held& h : w.held) ends.push_back(h.end);
    std::sort(ends.begin(), ends.end());
    std::optional<absl::Time> shadow;
    for (absl::Time e : ends) {
      if (HeadFits(w, e, head)) {
        shadow = e;
        break;
      }
    }
    if (!shadow) {
      EXPECT_TRUE(absl::StrContains(
          reason, "does not fit even when all running jobs end"))
          << "seed " << seed << ": " << reason;
      continue;
    }
    // Ends are whole minutes from now, so the reason's seconds are exact.
    const std::string expected =
        absl::StrCat("next to start, expected in ",
                     absl::FormatDuration(
                         absl::Trunc(*shadow - TestNow(), absl::Seconds(1))));
    EXPECT_TRUE(absl::StrContains(reason, expected))
        << "seed " << seed << ": " << reason << " (want " << expected << ")";
    ++with_shadow;
  }
  EXPECT_GT(with_shadow, 100);
}

}  // namespace
}  // namespace joule::scheduler
