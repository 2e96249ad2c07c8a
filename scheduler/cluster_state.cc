#include "scheduler/cluster_state.h"

#include <algorithm>
#include <bit>
#include <limits>
#include <tuple>

#include "absl/container/flat_hash_set.h"

namespace joule::scheduler::internal {
namespace {

constexpr int64_t kMinInt64 = std::numeric_limits<int64_t>::min();

uint32_t BitToK(int bit) { return bit == 0 ? kMaxGpusPerNode : bit; }
uint64_t KBit(uint32_t k) { return uint64_t{1} << (k & 63); }

}  // namespace

uint64_t ClusterState::CountMask(uint32_t count) {
  return count >= 64 ? ~uint64_t{0} : (uint64_t{1} << count) - 1;
}

int64_t ClusterState::AdmissionCap(const DomainSnapshot& d) {
  // Admission works against the cap less the domain's reserve.
  return d.cap_mw - std::max<int64_t>(0, d.admission_reserve_mw);
}

int64_t ClusterState::StartCommitted(const DomainSnapshot& d,
                                     bool committed_at_least_measured) {
  return committed_at_least_measured ? std::max(d.committed_mw, d.measured_mw)
                                     : d.committed_mw;
}

// Greedy selection of nodes for one shape, tracking the power the already
// picked nodes add to each domain. Nodes must be offered best fit first.
// Because the constraints are per-domain capacities on a tree (a laminar
// matroid), greedy finds a full set whenever one exists among the offers.
class ClusterState::Picker {
 public:
  Picker(const ClusterState& s, int64_t need) : s_(s), need_(need) {}

  // Whether one more node under `leaf` fits every domain on its path.
  bool Fits(int leaf) const {
    if (!s_.enforce_power_) return true;
    for (int d = leaf; d >= 0; d = s_.parent_[d]) {
      if (s_.committed_[d] + Extra(d) + need_ > s_.cap_[d]) return false;
    }
    return true;
  }
  // Largest overshoot on the path of one more node under `leaf`, and where.
  std::pair<int64_t, int> Over(int leaf) const {
    std::pair<int64_t, int> worst{kMinInt64, -1};
    for (int d = leaf; d >= 0; d = s_.parent_[d]) {
      int64_t over = s_.committed_[d] + Extra(d) + need_ - s_.cap_[d];
      if (over > worst.first) worst = {over, d};
    }
    return worst;
  }
  void Add(int node, int leaf) {
    picked_.push_back(node);
    for (int d = leaf; d >= 0; d = s_.parent_[d]) extra_[d] += need_;
  }
  int64_t Extra(int d) const {
    if (extra_.empty()) return 0;
    auto it = extra_.find(d);
    return it == extra_.end() ? 0 : it->second;
  }
  size_t size() const { return picked_.size(); }
  std::vector<int> Take() { return std::move(picked_); }

 private:
  const ClusterState& s_;
  const int64_t need_;
  std::vector<int> picked_;
  absl::flat_hash_map<int, int64_t> extra_;
};

ClusterState::ClusterState(const ClusterSnapshot& snapshot, bool enforce_power,
                           bool committed_at_least_measured, PowerFit power_fit)
    : enforce_power_(enforce_power), power_fit_(power_fit) {
  for (const GpuModelSpec& spec : snapshot.gpu_models) {
    if (model_index_.contains(spec.name)) continue;
    model_index_[spec.name] = static_cast<int>(model_names_.size());
    model_names_.push_back(spec.name);
  }
  const size_t models = model_names_.size();
  const int num_domains = static_cast<int>(snapshot.domains.size());
  parent_.resize(num_domains);
  depth_.resize(num_domains);
  cap_.resize(num_domains);
  committed_.resize(num_domains);
  has_nodes_.assign(num_domains, false);
  domain_models_.assign(num_domains, 0);
  domain_free_gpus_.assign(num_domains, 0);
  domain_gpus_.assign(num_domains, 0);
  for (int d = 0; d < num_domains; ++d) {
    const DomainSnapshot& dom = snapshot.domains[d];
    parent_[d] = (dom.parent >= 0 && dom.parent < d) ? dom.parent : -1;
    depth_[d] = parent_[d] < 0 ? 0 : depth_[parent_[d]] + 1;
    cap_[d] = AdmissionCap(dom);
    committed_[d] = StartCommitted(dom, committed_at_least_measured);
  }

  const int num_nodes = static_cast<int>(snapshot.nodes.size());
  node_model_.resize(num_nodes);
  node_leaf_.resize(num_nodes);
  gpu_count_.resize(num_nodes);
  free_.resize(num_nodes);
  healthy_.resize(num_nodes);
  eligible_.resize(num_nodes);
  hidden_.assign(num_nodes, false);
  nodes_with_gpus_.assign(models, std::vector<int64_t>(kMaxGpusPerNode + 1, 0));
  const std::string* last_model = nullptr;  // most nodes share a model
  int last_index = -1;
  for (int n = 0; n < num_nodes; ++n) {
    const NodeSnapshot& node = snapshot.nodes[n];
    if (last_model == nullptr || *last_model != node.gpu_model) {
      auto it = model_index_.find(node.gpu_model);
      last_model = &node.gpu_model;
      last_index = it == model_index_.end() ? -1 : it->second;
    }
    node_model_[n] = last_index;
    node_leaf_[n] =
        (node.domain >= 0 && node.domain < num_domains) ? node.domain : -1;
    gpu_count_[n] = std::min(node.gpu_count, kMaxGpusPerNode);
    free_[n] = node.free_gpus & CountMask(gpu_count_[n]);
    healthy_[n] = free_[n];
    eligible_[n] =
        node.schedulable && node_model_[n] >= 0 && node_leaf_[n] >= 0;
    if (node_model_[n] >= 0 && node_leaf_[n] >= 0) {
      for (uint32_t g = 0; g <= gpu_count_[n]; ++g) {
        ++nodes_with_gpus_[node_model_[n]][g];
      }
      has_nodes_[node_leaf_[n]] = true;
      for (int d = node_leaf_[n]; d >= 0; d = parent_[d]) {
        domain_models_[d] |= uint64_t{1} << (node_model_[n] & 63);
      }
    }
  }
  std::vector<bool> names_leaf(num_domains, false);
  for (int n = 0; n < num_nodes; ++n) {
    if (node_leaf_[n] >= 0) names_leaf[node_leaf_[n]] = true;
  }
  for (int d = 0; d < num_domains; ++d) {
    if (names_leaf[d]) node_leaves_.push_back(d);
  }
  RecomputeMaxLeafCap();
  for (int n = 0; n < num_nodes; ++n) {
    if (!eligible_[n]) continue;
    for (int d = node_leaf_[n]; d >= 0; d = parent_[d]) {
      domain_gpus_[d] += gpu_count_[n];
      domain_free_gpus_[d] += std::popcount(free_[n]);
    }
  }
  for (const RunningJob& job : snapshot.running) {
    for (const JobShare& share : job.shares) {
      if (share.node < 0 || share.node >= num_nodes) continue;
      for (uint32_t gpu : share.gpus) {
        if (gpu < gpu_count_[share.node]) {
          healthy_[share.node] |= uint64_t{1} << gpu;
        }
      }
    }
  }

  max_gpus_.assign(models, 0);
  for (size_t m = 0; m < models; ++m) {
    for (uint32_t g = 1; g <= kMaxGpusPerNode; ++g) {
      if (nodes_with_gpus_[m][g] > 0) max_gpus_[m] = g;
    }
  }
  free_count_.assign(models, std::vector<int64_t>(kMaxGpusPerNode + 1, 0));
  leaves_.resize(models);
  for (auto& per_k : leaves_) per_k.resize(kMaxGpusPerNode + 1);
  leaf_kbits_.assign(static_cast<size_t>(num_domains) * models, 0);
  for (int n = 0; n < num_nodes; ++n) IndexAdd(n);
}

int ClusterState::ModelIndex(const std::string& name) const {
  auto it = model_index_.find(name);
  return it == model_index_.end() ? -1 : it->second;
}

int64_t ClusterState::NodesWithGpus(int m, uint32_t g) const {
  if (m < 0 || g > kMaxGpusPerNode) return 0;
  return nodes_with_gpus_[m][g];
}

uint32_t ClusterState::MaxGpus(int m) const {
  if (m < 0 || m >= model_count()) return 0;
  return max_gpus_[m];
}

int64_t ClusterState::NodesWithFree(int m, uint32_t g) const {
  if (m < 0) return 0;
  int64_t total = 0;
  for (uint32_t k = std::max<uint32_t>(g, 1); k <= kMaxGpusPerNode; ++k) {
    total += free_count_[m][k];
  }
  return total;
}

void ClusterState::AppendNodesWithFree(int m, uint32_t g,
                                       std::vector<int>* out) const {
  if (m < 0 || m >= model_count()) return;
  for (uint32_t k = std::max<uint32_t>(g, 1); k <= kMaxGpusPerNode; ++k) {
    for (const auto& [unused, leaf] : leaves_[m][k]) {
      const absl::btree_set<int>& nodes = leaf_nodes_.at(Key(leaf, m, k));
      out->insert(out->end(), nodes.begin(), nodes.end());
    }
  }
}

void ClusterState::IndexAdd(int n) {
  if (!eligible_[n] || hidden_[n]) return;
  const uint32_t k = std::popcount(free_[n]);
  if (k == 0) return;
  const int m = node_model_[n];
  const int leaf = node_leaf_[n];
  absl::btree_set<int>& nodes = leaf_nodes_[Key(leaf, m, k)];
  if (nodes.empty()) {
    leaves_[m][k].insert({headroom(leaf), leaf});
    LeafBits(leaf, m) |= KBit(k);
  }
  nodes.insert(n);
  ++free_count_[m][k];
}

void ClusterState::IndexRemove(int n) {
  if (!eligible_[n] || hidden_[n]) return;
  const uint32_t k = std::popcount(free_[n]);
  if (k == 0) return;
  const int m = node_model_[n];
  const int leaf = node_leaf_[n];
  auto it = leaf_nodes_.find(Key(leaf, m, k));
  if (it == leaf_nodes_.end()) return;
  it->second.erase(n);
  if (it->second.empty()) {
    leaf_nodes_.erase(it);
    leaves_[m][k].erase({headroom(leaf), leaf});
    LeafBits(leaf, m) &= ~KBit(k);
  }
  --free_count_[m][k];
}

void ClusterState::SetFree(int n, uint64_t mask) {
  if (mask == free_[n]) return;
  if (journal_ && !touched_node_[n]) {
    touched_node_[n] = true;
    journal_free_.push_back({n, free_[n]});
  }
  if (eligible_[n]) {
    const int64_t delta = std::popcount(mask) - std::popcount(free_[n]);
    for (int d = node_leaf_[n]; d >= 0; d = parent_[d]) {
      domain_free_gpus_[d] += delta;
    }
  }
  IndexRemove(n);
  free_[n] = mask;
  IndexAdd(n);
}

void ClusterState::AddPower(int n, int64_t delta) {
  if (delta == 0) return;
  for (int d = node_leaf_[n]; d >= 0; d = parent_[d]) AddCommitted(d, delta);
}

void ClusterState::AddCommitted(int d, int64_t delta) {
  if (journal_ && !touched_domain_[d]) {
    touched_domain_[d] = true;
    journal_committed_.push_back({d, committed_[d]});
  }
  const int64_t old_headroom = headroom(d);
  committed_[d] += delta;
  Rekey(d, old_headroom);
}

void ClusterState::Rekey(int d, int64_t old_headroom) {
  if (!has_nodes_[d] || headroom(d) == old_headroom) return;
  // Re-key this leaf in every bucket it sits in.
  for (int m = 0; m < model_count(); ++m) {
    uint64_t bits = LeafBits(d, m);
    while (bits != 0) {
      const int bit = std::countr_zero(bits);
      bits &= bits - 1;
      auto& set = leaves_[m][BitToK(bit)];
      set.erase({old_headroom, d});
      set.insert({headroom(d), d});
    }
  }
}

void ClusterState::RecomputeMaxLeafCap() {
  max_leaf_cap_ = 1;
  for (int d : node_leaves_) max_leaf_cap_ = std::max(max_leaf_cap_, cap_[d]);
}

void ClusterState::Allocate(absl::Span<const NodeAlloc> allocs) {
  ++version_;
  for (const NodeAlloc& a : allocs) {
    if (a.node < 0 || a.node >= static_cast<int>(free_.size())) continue;
    SetFree(a.node, free_[a.node] & ~a.gpus);
    if (node_leaf_[a.node] >= 0) AddPower(a.node, a.power_mw);
  }
}

void ClusterState::Release(absl::Span<const NodeAlloc> allocs) {
  ++version_;
  for (const NodeAlloc& a : allocs) {
    if (a.node < 0 || a.node >= static_cast<int>(free_.size())) continue;
    SetFree(a.node, free_[a.node] | (a.gpus & healthy_[a.node]));
    if (node_leaf_[a.node] >= 0) AddPower(a.node, -a.power_mw);
  }
}

void ClusterState::Hide(int n) {
  if (hidden_[n]) return;
  IndexRemove(n);
  hidden_[n] = true;
}

void ClusterState::Unhide(int n) {
  if (!hidden_[n]) return;
  hidden_[n] = false;
  IndexAdd(n);
}

uint64_t ClusterState::PickGpus(int n, uint32_t g) const {
  uint64_t out = 0;
  uint64_t free = free_[n];
  for (uint32_t i = 0; i < g && free != 0; ++i) {
    const uint64_t low = free & (~free + 1);
    out |= low;
    free &= free - 1;
  }
  return out;
}

bool ClusterState::PathFits(int leaf, int64_t need) const {
  if (!enforce_power_) return true;
  for (int d = leaf; d >= 0; d = parent_[d]) {
    if (committed_[d] + need > cap_[d]) return false;
  }
  return true;
}

int64_t ClusterState::LeafCount(int leaf, int m, uint32_t g) const {
  int64_t count = 0;
  uint64_t bits = LeafBits(leaf, m);
  while (bits != 0) {
    const int bit = std::countr_zero(bits);
    bits &= bits - 1;
    const uint32_t k = BitToK(bit);
    if (k < g) continue;
    auto it = leaf_nodes_.find(Key(leaf, m, k));
    if (it != leaf_nodes_.end()) count += it->second.size();
  }
  return count;
}

void ClusterState::LeafNodes(int leaf, int m, uint32_t g,
                             std::vector<std::pair<uint32_t, int>>* out) const {
  const size_t start = out->size();
  uint64_t bits = LeafBits(leaf, m);
  while (bits != 0) {
    const int bit = std::countr_zero(bits);
    bits &= bits - 1;
    const uint32_t k = BitToK(bit);
    if (k < g) continue;
    auto it = leaf_nodes_.find(Key(leaf, m, k));
    if (it == leaf_nodes_.end()) continue;
    for (int n : it->second) out->push_back({k, n});
  }
  std::sort(out->begin() + start, out->end());
}

std::optional<std::vector<int>> ClusterState::Find(const Shape& shape) const {
  if (shape.model < 0 || shape.model >= model_count() || shape.gpus == 0 ||
      shape.gpus > kMaxGpusPerNode || shape.nodes == 0) {
    return std::nullopt;
  }
  if (NodesWithFree(shape.model, shape.gpus) < shape.nodes) return std::nullopt;
  if (shape.nodes > 1) {
    if (auto nodes = FindOneLeaf(shape)) return nodes;
    if (auto nodes = FindOneRow(shape)) return nodes;
  }
  return FindAnywhere(shape);
}

std::optional<std::vector<int>> ClusterState::FindAnywhere(
    const Shape& shape) const {
  if (shape.nodes == 1 && power_fit_ != PowerFit::kLeaf) {
    return FindScored(shape);
  }
  const int m = shape.model;
  Picker picker(*this, shape.need_mw);
  for (uint32_t k = shape.gpus; k <= kMaxGpusPerNode; ++k) {
    const auto& set = leaves_[m][k];
    auto it = enforce_power_ ? set.lower_bound({shape.need_mw, kMinInt64})
                             : set.begin();
    for (; it != set.end(); ++it) {
      const int leaf = it->second;
      if (!picker.Fits(leaf)) continue;
      const absl::btree_set<int>& nodes = leaf_nodes_.at(Key(leaf, m, k));
      for (int n : nodes) {
        // Nodes of one leaf share a path: once one fails, all do.
        if (!picker.Fits(leaf)) break;
        picker.Add(n, leaf);
        if (picker.size() == shape.nodes) {
          std::vector<int> out = picker.Take();
          std::sort(out.begin(), out.end());
          return out;
        }
      }
    }
  }
  return std::nullopt;
}

std::optional<std::vector<int>> ClusterState::FindScored(
    const Shape& shape) const {
  const int m = shape.model;
  std::vector<DomainFill> path;
  absl::flat_hash_map<int, int64_t> sibling_best;
  for (uint32_t k = shape.gpus; k <= kMaxGpusPerNode; ++k) {
    const auto& set = leaves_[m][k];
    auto it = enforce_power_ ? set.lower_bound({shape.need_mw, kMinInt64})
                             : set.begin();
    int best_leaf = -1;
    int64_t best_score = 0;
    // kEveryLevel sums a term per domain, and siblings share every term but
    // their own: a leaf whose own term is no better than a fitting
    // sibling's cannot win. parent -> that sibling's term.
    sibling_best.clear();
    // Leaves come in ascending headroom, so ties keep the kLeaf order.
    for (; it != set.end(); ++it) {
      const int leaf = it->second;
      const int64_t own =
          cap_[leaf] > 0
              ? static_cast<int64_t>(
                    static_cast<__int128>(headroom(leaf) - shape.need_mw) *
                    1'000'000 / cap_[leaf])
              : 0;
      const bool prune = power_fit_ == PowerFit::kEveryLevel;
      // Every later leaf has at least this headroom, so at least this own
      // term (over the largest leaf cap), and every term is >= 0 once the
      // path fits: none of them can beat best_score.
      if (prune && best_leaf >= 0 && enforce_power_ &&
          static_cast<__int128>(headroom(leaf) - shape.need_mw) * 1'000'000 >=
              static_cast<__int128>(best_score) * max_leaf_cap_) {
        break;
      }
      if (prune) {
        auto sb = sibling_best.find(parent_[leaf]);
        if (sb != sibling_best.end() && sb->second <= own) continue;
      }
      if (!PathFits(leaf, shape.need_mw)) continue;
      if (prune) sibling_best[parent_[leaf]] = own;
      path.clear();
      for (int d = leaf; d >= 0; d = parent_[d]) {
        path.push_back(
            {cap_[d], headroom(d), domain_free_gpus_[d], domain_gpus_[d]});
      }
      const int64_t score = PowerFitScore(
          power_fit_, path, enforce_power_ ? shape.need_mw : 0, shape.gpus);
      if (best_leaf < 0 || score < best_score) {
        best_leaf = leaf;
        best_score = score;
      }
    }
    if (best_leaf >= 0) {
      return std::vector<int>{*leaf_nodes_.at(Key(best_leaf, m, k)).begin()};
    }
  }
  return std::nullopt;
}

std::optional<std::vector<int>> ClusterState::FindOneLeaf(
    const Shape& shape) const {
  const int m = shape.model;
  const int64_t total = shape.need_mw * shape.nodes;
  absl::flat_hash_set<int> seen;
  std::vector<std::pair<int64_t, int>> leaves;  // (headroom, leaf)
  for (uint32_t k = shape.gpus; k <= kMaxGpusPerNode; ++k) {
    const auto& set = leaves_[m][k];
    auto it =
        enforce_power_ ? set.lower_bound({total, kMinInt64}) : set.begin();
    for (; it != set.end(); ++it) {
      if (!seen.insert(it->second).second) continue;
      if (LeafCount(it->second, m, shape.gpus) >= shape.nodes) {
        leaves.push_back(*it);
      }
    }
  }
  std::sort(leaves.begin(), leaves.end());
  std::vector<std::pair<uint32_t, int>> nodes;
  for (const auto& [headroom, leaf] : leaves) {
    if (!PathFits(leaf, total)) continue;
    nodes.clear();
    LeafNodes(leaf, m, shape.gpus, &nodes);
    std::vector<int> out;
    for (size_t i = 0; i < shape.nodes; ++i) out.push_back(nodes[i].second);
    std::sort(out.begin(), out.end());
    return out;
  }
  return std::nullopt;
}

std::optional<std::vector<int>> ClusterState::FindOneRow(
    const Shape& shape) const {
  const int m = shape.model;
  const int64_t total = shape.need_mw * shape.nodes;
  // Row -> usable node count (bounded by each leaf's power headroom).
  absl::flat_hash_map<int, int64_t> row_count;
  absl::flat_hash_map<int, std::vector<int>> row_leaves;
  absl::flat_hash_set<int> seen;
  for (uint32_t k = shape.gpus; k <= kMaxGpusPerNode; ++k) {
    const auto& set = leaves_[m][k];
    auto it = enforce_power_ ? set.lower_bound({shape.need_mw, kMinInt64})
                             : set.begin();
    for (; it != set.end(); ++it) {
      const int leaf = it->second;
      const int row = parent_[leaf];
      if (row < 0 || !seen.insert(leaf).second) continue;
      int64_t count = LeafCount(leaf, m, shape.gpus);
      if (enforce_power_ && shape.need_mw > 0) {
        count = std::min(count, it->first / shape.need_mw);
      }
      row_count[row] += count;
      row_leaves[row].push_back(leaf);
    }
  }
  std::vector<std::pair<int64_t, int>> rows;  // (headroom, row)
  for (const auto& [row, count] : row_count) {
    if (count >= shape.nodes && PathFits(row, total)) {
      rows.push_back({headroom(row), row});
    }
  }
  std::sort(rows.begin(), rows.end());
  for (const auto& [unused, row] : rows) {
    // Best fit within the row: fewest free left, then least leaf headroom.
    std::vector<std::tuple<uint32_t, int64_t, int, int>> cands;
    std::vector<std::pair<uint32_t, int>> nodes;
    for (int leaf : row_leaves[row]) {
      nodes.clear();
      LeafNodes(leaf, m, shape.gpus, &nodes);
      for (const auto& [k, n] : nodes) {
        cands.push_back({k, headroom(leaf), leaf, n});
      }
    }
    std::sort(cands.begin(), cands.end());
    Picker picker(*this, shape.need_mw);
    for (const auto& [k, h, leaf, n] : cands) {
      if (!picker.Fits(leaf)) continue;
      picker.Add(n, leaf);
      if (picker.size() == shape.nodes) {
        std::vector<int> out = picker.Take();
        std::sort(out.begin(), out.end());
        return out;
      }
    }
  }
  return std::nullopt;
}

bool ClusterState::Fits(const Shape& shape, absl::Span<const int> nodes) const {
  if (nodes.size() != shape.nodes) return false;
  Picker picker(*this, shape.need_mw);
  for (int n : nodes) {
    if (n < 0 || n >= static_cast<int>(free_.size()) || !eligible_[n] ||
        node_model_[n] != shape.model ||
        static_cast<uint32_t>(std::popcount(free_[n])) < shape.gpus ||
        !picker.Fits(node_leaf_[n])) {
      return false;
    }
    picker.Add(n, node_leaf_[n]);
  }
  return true;
}

std::optional<Blocker> ClusterState::PowerBlocker(const Shape& shape) const {
  if (!enforce_power_ || shape.model < 0 || shape.model >= model_count() ||
      shape.gpus == 0 || shape.gpus > kMaxGpusPerNode) {
    return std::nullopt;
  }
  const int m = shape.model;
  Picker picker(*this, shape.need_mw);
  std::optional<Blocker> best;
  int64_t best_over = 0;
  for (uint32_t k = shape.gpus; k <= kMaxGpusPerNode; ++k) {
    for (const auto& [unused, leaf] : leaves_[m][k]) {
      for (int n : leaf_nodes_.at(Key(leaf, m, k))) {
        if (picker.Fits(leaf)) {
          picker.Add(n, leaf);
          continue;
        }
        auto [over, d] = picker.Over(leaf);
        if (!best || over < best_over) {
          best_over = over;
          best = Blocker{d, committed_[d] + picker.Extra(d), shape.need_mw,
                         cap_[d]};
        }
        break;
      }
    }
  }
  return best;
}

}  // namespace joule::scheduler::internal
