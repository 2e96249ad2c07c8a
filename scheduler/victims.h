#pragma once

// Victim selection (policy.h rule 5): which running jobs a preempting job
// stops. Pure functions; no clock, no I/O. Schedule (policy.cc) uses them
// for every candidate node, so the daemon and joule-sim share them.
//
// The goal: free exactly what the claimant needs, with the fewest victims,
// then on the fewest nodes, then the most preemptable victims (lowest
// class, lowest priority, most recently started), and only then by best
// fit.
//
// For one target node the need has several dimensions: the GPUs missing on
// the node, and for every domain on its path that is short of power, the
// mW missing there (committed + need − cap). A victim contributes the
// healthy GPUs it holds on the node and the power it holds below each short
// domain. MinimalVictims covers the dimensions in order (GPUs first, then
// the short domains from the leaf up). For each still-uncovered dimension
// it takes the fewest victims that cover it: m = the smallest count whose
// largest contributions reach the need; among the sets of m it takes the
// most preemptable (victims in preemptability order, each taken when the
// need can still be met by m victims with it). For GPUs alone this is exact
// (fewest victims, and of those the most preemptable); with power short as
// well it is greedy per dimension.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "scheduler/types.h"

namespace joule::scheduler {

// What orders victims: spot before on-demand, lower priority first, more
// recently started first, then id.
struct VictimKey {
  ServiceClass cls = ServiceClass::kSpot;
  int32_t priority = 0;
  absl::Time start;
  std::string id;
};

// True when `a` is preempted before `b`.
bool MorePreemptable(const VictimKey& a, const VictimKey& b);

// A running job as one target node sees it.
struct VictimCandidate {
  const VictimKey* key = nullptr;  // not owned
  int64_t gpus = 0;                // healthy GPUs it frees on the target
  // Per short domain of VictimNeed::power_mw: the mW it frees below it.
  std::vector<int64_t> power_mw;
};

struct VictimNeed {
  int64_t gpus = 0;               // GPUs missing on the target (<= 0: none)
  std::vector<int64_t> power_mw;  // per short domain, leaf first: mW missing
};

// Indices into `candidates` of a set covering `need` (see above), in
// preemptability order; nullopt when even all of them do not. Candidates
// beyond kMaxRefined per dimension are chosen by contribution alone.
inline constexpr size_t kMaxRefined = 512;
std::optional<std::vector<size_t>> MinimalVictims(
    const VictimNeed& need, absl::Span<const VictimCandidate> candidates);

// How good a victim set is; lower is better (fewest victims, then fewest
// nodes, then the most preemptable: the sets' keys are compared from the
// most valuable victim down, the less valuable winning).
struct VictimSetCost {
  size_t victims = 0;
  size_t nodes = 0;  // distinct nodes the victims hold
  absl::InlinedVector<const VictimKey*, 4> keys;  // most valuable first
};

// `keys` need not be sorted.
VictimSetCost CostOf(absl::InlinedVector<const VictimKey*, 4> keys,
                     size_t nodes);

// < 0 when `a` is better than `b`, 0 when as good, > 0 when worse.
int CompareVictims(const VictimSetCost& a, const VictimSetCost& b);
inline bool BetterVictims(const VictimSetCost& a, const VictimSetCost& b) {
  return CompareVictims(a, b) < 0;
}

}  // namespace joule::scheduler
