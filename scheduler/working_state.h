#pragma once

// Internal to joule_scheduler: the jobs holding resources in the policy's
// working state (cluster_state.h), and that state as a KeptState
// (kept_state.h) keeps it between calls. Not part of the public API; use
// policy.h and kept_state.h.

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "scheduler/cluster_state.h"
#include "scheduler/policy.h"
#include "scheduler/power_fit.h"
#include "scheduler/types.h"

namespace joule::scheduler::internal {

// A job holding resources in the working state: running in the snapshot
// or placed by the current call.
struct Active {
  // Index into ClusterSnapshot::running, or -1: placed by this call, with
  // the PendingJob's id in placed_id (the pending job outlives the call).
  int32_t running = -1;
  absl::string_view placed_id;
  ServiceClass cls = ServiceClass::kOnDemand;
  int32_t priority = 0;
  absl::Time start;
  absl::Time end = absl::InfiniteFuture();  // InfiniteFuture = no max_runtime
  absl::InlinedVector<NodeAlloc, 1> allocs;
  bool gone = false;  // preempted by this call

  bool from_snapshot() const { return running >= 0; }
};

// The working copy of snapshot.running[index] on `state`'s nodes: its
// GPUs per node (those below the node's GPU count, on known nodes) and its
// committed_mw split over its shares by GPUs, the last taking the
// remainder.
Active ActiveOf(const RunningJob& r, int32_t index, const ClusterState& state);

// What a KeptState holds: a ClusterState and the working copies of the
// snapshot's running jobs (active[i] = ActiveOf(running[i], i)), equal to
// what a Schedule call builds from the snapshot once Sync has applied the
// changes marked since the last call. A Schedule call changes both while
// it runs and restores them before it returns.
struct KeptWork {
  std::unique_ptr<ClusterState> state;
  std::vector<Active> active;
  // Per node: the indices of `active` holding GPUs there (for its healthy
  // GPUs = free + held).
  std::vector<absl::InlinedVector<int32_t, 2>> on_node;
  // The settings the state was built with.
  bool enforce_power = false;
  bool committed_at_least_measured = false;
  PowerFit power_fit = PowerFit::kLeaf;
  bool invalid = true;  // rebuild at the next Sync
  // Marked since the last Sync (KeptState::NodeChanged, RunningChanged).
  std::vector<int> dirty_nodes;
  std::vector<bool> node_marked;
  std::vector<size_t> dirty_running;

  void MarkNode(int n);
  // Brings state and active to `snapshot` (as a fresh build with `config`
  // would give), from the marks; rebuilds when they cannot.
  void Sync(const ClusterSnapshot& snapshot, const PolicyConfig& config);
  void Rebuild(const ClusterSnapshot& snapshot, const PolicyConfig& config);
  // Healthy GPUs of node n: free ones plus those active jobs hold.
  uint64_t Healthy(int n, uint64_t free) const;
  void Link(int32_t i);
  void Unlink(int32_t i);
};

}  // namespace joule::scheduler::internal
