#pragma once

// Internal to joule_scheduler: the policy's mutable working copy of a
// ClusterSnapshot and the free-capacity index that makes placement fast.
// Not part of the public API; use policy.h.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"
#include "scheduler/power_fit.h"
#include "scheduler/types.h"

namespace joule::scheduler::internal {

inline constexpr uint32_t kMaxGpusPerNode = 64;

// One node's part of a job: its GPUs (bitmask) and the power it commits.
struct NodeAlloc {
  int node = -1;
  uint64_t gpus = 0;
  int64_t power_mw = 0;
};

// A request for `nodes` nodes of GPU model `model`, each with `gpus` free
// GPUs and `need_mw` of power headroom on every domain above it.
struct Shape {
  int model = -1;
  uint32_t gpus = 1;
  uint32_t nodes = 1;
  int64_t need_mw = 0;  // per node
};

// The domain that keeps a shape from fitting, for reason text.
struct Blocker {
  int domain = -1;
  int64_t committed_mw = 0;  // including the shape's own earlier nodes
  int64_t need_mw = 0;
  int64_t cap_mw = 0;
};

// Owns the free GPU masks of every node and the committed power of every
// domain, derived from a snapshot and changed by Allocate/Release, plus an
// index of schedulable nodes by (model, free GPU count, leaf headroom).
//
// Invariants: a node is in the index iff it is schedulable, has a known
// model and leaf, is not hidden, and has at least one free GPU; it sits in
// the bucket (model, popcount(free)) under its leaf, and each leaf is keyed by
// its current headroom (cap - committed). Allocate and Release are exact
// inverses, so trial changes can be rolled back.
//
// A KeptState (kept_state.h) keeps one instance between Schedule calls: it
// applies a snapshot's changes with SetNode and SetDomain, and a call's own
// changes are undone by Rollback (StartJournal records them), so the state
// equals one built afresh from the same snapshot (SameAs).
//
// Not thread-safe; one Schedule call at a time uses one instance.
class ClusterState {
 public:
  // Healthy GPUs of a node = free ones plus those held by running jobs.
  // committed_at_least_measured: a domain's committed power starts at
  // max(committed_mw, measured_mw).
  // power_fit: how Find picks among single-node candidates (power_fit.h).
  ClusterState(const ClusterSnapshot& snapshot, bool enforce_power,
               bool committed_at_least_measured = false,
               PowerFit power_fit = PowerFit::kLeaf);
  ClusterState(const ClusterState&) = delete;
  ClusterState& operator=(const ClusterState&) = delete;

  // The admission cap of a domain (cap less its reserve) and the power the
  // state starts from as committed there: the one rule for building and
  // for SetDomain.
  static int64_t AdmissionCap(const DomainSnapshot& d);
  static int64_t StartCommitted(const DomainSnapshot& d,
                                bool committed_at_least_measured);
  // A node's GPU mask as the state sees it: bits below its gpu_count.
  static uint64_t CountMask(uint32_t gpu_count);

  bool enforce_power() const { return enforce_power_; }
  int model_count() const { return static_cast<int>(model_names_.size()); }
  // -1 if unknown.
  int ModelIndex(const std::string& name) const;

  int parent(int d) const { return parent_[d]; }
  // The admission cap: DomainSnapshot::cap_mw - admission_reserve_mw.
  int64_t cap(int d) const { return cap_[d]; }
  int64_t committed(int d) const { return committed_[d]; }
  int64_t headroom(int d) const { return cap_[d] - committed_[d]; }
  int depth(int d) const { return depth_[d]; }
  bool has_model(int d, int m) const {
    return domain_models_[d] & (uint64_t{1} << (m & 63));
  }

  int node_model(int n) const { return node_model_[n]; }
  int node_leaf(int n) const { return node_leaf_[n]; }
  uint64_t free_gpus(int n) const { return free_[n]; }
  uint64_t healthy_gpus(int n) const { return healthy_[n]; }
  uint32_t gpu_count(int n) const { return gpu_count_[n]; }
  bool eligible(int n) const { return eligible_[n]; }
  int node_count() const { return static_cast<int>(free_.size()); }
  int domain_count() const { return static_cast<int>(parent_.size()); }

  // Nodes (any state) of model `m` with at least `g` GPUs in total.
  int64_t NodesWithGpus(int m, uint32_t g) const;
  // Largest gpu_count of any node of model m (0 if none).
  uint32_t MaxGpus(int m) const;
  // Schedulable nodes of model `m` with at least `g` free GPUs.
  int64_t NodesWithFree(int m, uint32_t g) const;

  // Appends every indexed node of model `m` with at least `g` free GPUs.
  void AppendNodesWithFree(int m, uint32_t g, std::vector<int>* out) const;

  // The best-fit nodes for `shape` (nodes > 1: one leaf, else one row, else
  // anywhere; best fit = fewest free GPUs left, then least leaf headroom
  // left, then lowest index), or nullopt.
  std::optional<std::vector<int>> Find(const Shape& shape) const;
  // Whether `nodes` can take `shape` now (GPUs and power).
  bool Fits(const Shape& shape, absl::Span<const int> nodes) const;
  // For a shape with enough free GPUs that does not fit: the domain over its
  // cap on the candidate closest to fitting.
  std::optional<Blocker> PowerBlocker(const Shape& shape) const;

  // The lowest `g` free GPUs of node `n` (assumes enough are free).
  uint64_t PickGpus(int n, uint32_t g) const;

  void Allocate(absl::Span<const NodeAlloc> allocs);
  void Release(absl::Span<const NodeAlloc> allocs);
  // Changes with every Allocate and Release (not with Hide and Unhide):
  // while it is unchanged, Find and Fits give the same answers.
  uint64_t version() const { return version_; }
  // Hide keeps a node out of Find until Unhide (its state still changes).
  void Hide(int n);
  void Unhide(int n);

  // Deltas (cluster_state_delta.cc). A node's schedulable flag, free and
  // healthy GPUs (its model, leaf and GPU count stay; a change there needs
  // a new state). Healthy = free plus those held by running jobs.
  void SetNode(int n, bool schedulable, uint64_t free, uint64_t healthy);
  // A domain's admission cap and committed power (AdmissionCap,
  // StartCommitted of its snapshot).
  void SetDomain(int d, int64_t cap, int64_t committed);
  // Whether `snapshot` has the nodes, domains and models this state was
  // built from (names aside): otherwise SetNode/SetDomain cannot bring the
  // state to it.
  bool SameShape(const ClusterSnapshot& snapshot) const;
  // From StartJournal on, every change of free GPUs and committed power is
  // recorded; Rollback restores what was there at StartJournal (nothing
  // may be hidden then) and stops recording.
  void StartJournal();
  void Rollback();
  // Equal in every value and index entry (tests); `why` names the first
  // difference.
  bool SameAs(const ClusterState& other, std::string* why) const;

 private:
  class Picker;

  uint64_t Key(int leaf, int m, uint32_t k) const {
    return (static_cast<uint64_t>(leaf) * model_names_.size() + m) *
               (kMaxGpusPerNode + 1) +
           k;
  }
  uint64_t& LeafBits(int leaf, int m) {
    return leaf_kbits_[static_cast<size_t>(leaf) * model_names_.size() + m];
  }
  uint64_t LeafBits(int leaf, int m) const {
    return leaf_kbits_[static_cast<size_t>(leaf) * model_names_.size() + m];
  }
  // Nodes of model m under `leaf` with at least g free GPUs (indexed only).
  int64_t LeafCount(int leaf, int m, uint32_t g) const;
  // Appends the indexed nodes of `leaf` with >= g free GPUs, best fit first.
  void LeafNodes(int leaf, int m, uint32_t g,
                 std::vector<std::pair<uint32_t, int>>* out) const;
  bool PathFits(int leaf, int64_t need) const;

  std::optional<std::vector<int>> FindOneLeaf(const Shape& shape) const;
  std::optional<std::vector<int>> FindOneRow(const Shape& shape) const;
  std::optional<std::vector<int>> FindAnywhere(const Shape& shape) const;
  // Single-node shapes with power_fit != kLeaf: PowerFitScore over the
  // fitting leaves of the smallest free-GPU count that has one.
  std::optional<std::vector<int>> FindScored(const Shape& shape) const;

  void IndexAdd(int n);
  void IndexRemove(int n);
  void SetFree(int n, uint64_t mask);
  void AddPower(int n, int64_t delta);
  // Re-keys domain d's leaf entries after its headroom was old_headroom.
  void Rekey(int d, int64_t old_headroom);
  void AddCommitted(int d, int64_t delta);
  void RecomputeMaxLeafCap();

  const bool enforce_power_;
  const PowerFit power_fit_;
  std::vector<std::string> model_names_;
  absl::flat_hash_map<std::string, int> model_index_;

  std::vector<int> parent_;
  std::vector<int> depth_;
  std::vector<int64_t> cap_;
  std::vector<int64_t> committed_;
  std::vector<bool> has_nodes_;
  std::vector<uint64_t> domain_models_;  // bit m: a node of model m below
  // Free and all GPUs of eligible nodes below each domain (for PowerFit).
  std::vector<int64_t> domain_free_gpus_;
  std::vector<int64_t> domain_gpus_;
  int64_t max_leaf_cap_ = 1;      // largest cap of a domain holding nodes
  std::vector<int> node_leaves_;  // the domains nodes name, ascending

  std::vector<int> node_model_;
  std::vector<int> node_leaf_;
  std::vector<uint32_t> gpu_count_;
  std::vector<uint64_t> free_;
  std::vector<uint64_t> healthy_;
  std::vector<bool> eligible_;  // schedulable, known model and leaf
  std::vector<bool> hidden_;
  uint64_t version_ = 1;

  // [m][g]: nodes of model m with gpu_count >= g, any state.
  std::vector<std::vector<int64_t>> nodes_with_gpus_;
  std::vector<uint32_t> max_gpus_;  // [m]: largest gpu_count of model m
  // [m][k]: indexed nodes with exactly k free GPUs.
  std::vector<std::vector<int64_t>> free_count_;
  // [m][k]: (headroom, leaf) for leaves with an indexed node of model m with
  // exactly k free GPUs.
  std::vector<std::vector<absl::btree_set<std::pair<int64_t, int>>>> leaves_;
  // Key(leaf, m, k) -> those nodes.
  absl::flat_hash_map<uint64_t, absl::btree_set<int>> leaf_nodes_;
  // [leaf * models + m]: bit k set iff leaf_nodes_[Key(leaf, m, k)] is
  // non-empty (k in 1..63; k = 64 uses bit 0).
  std::vector<uint64_t> leaf_kbits_;

  // The journal (StartJournal): first-touch values of free masks and
  // committed power.
  bool journal_ = false;
  std::vector<std::pair<int, uint64_t>> journal_free_;
  std::vector<std::pair<int, int64_t>> journal_committed_;
  std::vector<bool> touched_node_;
  std::vector<bool> touched_domain_;
};

}  // namespace joule::scheduler::internal
