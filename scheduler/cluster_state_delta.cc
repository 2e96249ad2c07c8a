// ClusterState's deltas, journal and comparison (cluster_state.h): what a
// KeptState (kept_state.h) needs to keep one state between Schedule calls.

#include <algorithm>
#include <bit>
#include <string>

#include "absl/strings/str_cat.h"
#include "scheduler/cluster_state.h"

namespace joule::scheduler::internal {

void ClusterState::SetNode(int n, bool schedulable, uint64_t free,
                           uint64_t healthy) {
  const bool eligible =
      schedulable && node_model_[n] >= 0 && node_leaf_[n] >= 0;
  if (eligible == eligible_[n]) {
    healthy_[n] = healthy;
    if (free != free_[n]) {
      ++version_;
      SetFree(n, free);
    }
    return;
  }
  ++version_;
  IndexRemove(n);
  const int64_t sign = eligible ? 1 : -1;
  // The free GPUs counted below each domain are the new mask's (eligible)
  // or the old one's (no longer eligible).
  const uint64_t counted = eligible ? free : free_[n];
  for (int d = node_leaf_[n]; d >= 0; d = parent_[d]) {
    domain_gpus_[d] += sign * gpu_count_[n];
    domain_free_gpus_[d] += sign * std::popcount(counted);
  }
  eligible_[n] = eligible;
  free_[n] = free;
  healthy_[n] = healthy;
  IndexAdd(n);
}

void ClusterState::SetDomain(int d, int64_t cap, int64_t committed) {
  if (cap == cap_[d] && committed == committed_[d]) return;
  ++version_;
  const int64_t old_headroom = headroom(d);
  const bool cap_changed = cap != cap_[d];
  cap_[d] = cap;
  committed_[d] = committed;
  Rekey(d, old_headroom);
  if (cap_changed &&
      std::binary_search(node_leaves_.begin(), node_leaves_.end(), d)) {
    RecomputeMaxLeafCap();
  }
}

bool ClusterState::SameShape(const ClusterSnapshot& s) const {
  if (s.domains.size() != parent_.size() || s.nodes.size() != free_.size() ||
      s.gpu_models.size() < model_names_.size()) {
    return false;
  }
  size_t distinct = 0;
  for (const GpuModelSpec& spec : s.gpu_models) {
    auto it = model_index_.find(spec.name);
    if (it == model_index_.end()) return false;
    if (it->second == static_cast<int>(distinct) &&
        model_names_[distinct] == spec.name) {
      ++distinct;
    }
  }
  if (distinct != model_names_.size()) return false;
  const int num_domains = static_cast<int>(parent_.size());
  for (int d = 0; d < num_domains; ++d) {
    const int p = s.domains[d].parent;
    if (((p >= 0 && p < d) ? p : -1) != parent_[d]) return false;
  }
  return true;
}

void ClusterState::StartJournal() {
  journal_ = true;
  touched_node_.assign(free_.size(), false);
  touched_domain_.assign(parent_.size(), false);
  journal_free_.clear();
  journal_committed_.clear();
}

void ClusterState::Rollback() {
  journal_ = false;
  ++version_;
  for (auto it = journal_free_.rbegin(); it != journal_free_.rend(); ++it) {
    SetFree(it->first, it->second);
  }
  for (auto it = journal_committed_.rbegin(); it != journal_committed_.rend();
       ++it) {
    const int d = it->first;
    const int64_t old_headroom = headroom(d);
    committed_[d] = it->second;
    Rekey(d, old_headroom);
  }
  journal_free_.clear();
  journal_committed_.clear();
}

namespace {

template <typename T>
bool Check(const T& a, const T& b, const char* what, std::string* why) {
  if (a == b) return true;
  *why = absl::StrCat(what, " differs");
  return false;
}

}  // namespace

bool ClusterState::SameAs(const ClusterState& o, std::string* why) const {
  if (!Check(enforce_power_, o.enforce_power_, "enforce_power", why) ||
      !Check(power_fit_, o.power_fit_, "power_fit", why) ||
      !Check(model_names_, o.model_names_, "model_names", why) ||
      !Check(parent_, o.parent_, "parent", why) ||
      !Check(depth_, o.depth_, "depth", why) ||
      !Check(cap_, o.cap_, "cap", why) ||
      !Check(committed_, o.committed_, "committed", why) ||
      !Check(has_nodes_, o.has_nodes_, "has_nodes", why) ||
      !Check(domain_models_, o.domain_models_, "domain_models", why) ||
      !Check(domain_free_gpus_, o.domain_free_gpus_, "domain_free_gpus", why) ||
      !Check(domain_gpus_, o.domain_gpus_, "domain_gpus", why) ||
      !Check(max_leaf_cap_, o.max_leaf_cap_, "max_leaf_cap", why) ||
      !Check(node_leaves_, o.node_leaves_, "node_leaves", why) ||
      !Check(node_model_, o.node_model_, "node_model", why) ||
      !Check(node_leaf_, o.node_leaf_, "node_leaf", why) ||
      !Check(gpu_count_, o.gpu_count_, "gpu_count", why) ||
      !Check(free_, o.free_, "free", why) ||
      !Check(healthy_, o.healthy_, "healthy", why) ||
      !Check(eligible_, o.eligible_, "eligible", why) ||
      !Check(hidden_, o.hidden_, "hidden", why) ||
      !Check(nodes_with_gpus_, o.nodes_with_gpus_, "nodes_with_gpus", why) ||
      !Check(max_gpus_, o.max_gpus_, "max_gpus", why) ||
      !Check(free_count_, o.free_count_, "free_count", why) ||
      !Check(leaves_, o.leaves_, "leaves", why) ||
      !Check(leaf_kbits_, o.leaf_kbits_, "leaf_kbits", why)) {
    return false;
  }
  if (leaf_nodes_.size() != o.leaf_nodes_.size()) {
    *why = "leaf_nodes size differs";
    return false;
  }
  for (const auto& [key, nodes] : leaf_nodes_) {
    auto it = o.leaf_nodes_.find(key);
    if (it == o.leaf_nodes_.end() || it->second != nodes) {
      *why = absl::StrCat("leaf_nodes differ at key ", key);
      return false;
    }
  }
  return true;
}

}  // namespace joule::scheduler::internal
