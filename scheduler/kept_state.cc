#include "scheduler/kept_state.h"

#include <algorithm>

#include "scheduler/cluster_state.h"
#include "scheduler/working_state.h"

namespace joule::scheduler {
namespace internal {

Active ActiveOf(const RunningJob& r, int32_t index, const ClusterState& state) {
  Active a;
  a.running = index;
  a.cls = r.cls;
  a.priority = r.priority;
  a.start = r.start_time;
  if (r.max_runtime > absl::ZeroDuration()) {
    a.end = r.start_time + r.max_runtime;
  }
  int64_t total_gpus = 0;
  for (const JobShare& s : r.shares) total_gpus += s.gpus.size();
  int64_t assigned = 0;
  int64_t gpus_seen = 0;
  const int num_nodes = state.node_count();
  for (size_t i = 0; i < r.shares.size(); ++i) {
    const JobShare& s = r.shares[i];
    gpus_seen += s.gpus.size();
    // Split committed_mw by GPUs; the last share takes the remainder.
    const int64_t upto =
        total_gpus == 0 ? 0 : r.committed_mw * gpus_seen / total_gpus;
    const int64_t power =
        i + 1 == r.shares.size() ? r.committed_mw - assigned : upto - assigned;
    assigned += power;
    if (s.node < 0 || s.node >= num_nodes) continue;
    uint64_t mask = 0;
    for (uint32_t gpu : s.gpus) {
      if (gpu < state.gpu_count(s.node)) mask |= uint64_t{1} << gpu;
    }
    a.allocs.push_back(NodeAlloc{s.node, mask, power});
  }
  return a;
}

void KeptWork::MarkNode(int n) {
  if (n < 0) return;
  if (static_cast<size_t>(n) >= node_marked.size()) {
    node_marked.resize(n + 1, false);
  }
  if (node_marked[n]) return;
  node_marked[n] = true;
  dirty_nodes.push_back(n);
}

uint64_t KeptWork::Healthy(int n, uint64_t free) const {
  uint64_t healthy = free;
  for (int32_t i : on_node[n]) {
    for (const NodeAlloc& a : active[i].allocs) {
      if (a.node == n) healthy |= a.gpus;
    }
  }
  return healthy;
}

void KeptWork::Link(int32_t i) {
  for (const NodeAlloc& a : active[i].allocs) {
    auto& list = on_node[a.node];
    if (std::find(list.begin(), list.end(), i) == list.end()) {
      list.push_back(i);
    }
    MarkNode(a.node);
  }
}

void KeptWork::Unlink(int32_t i) {
  for (const NodeAlloc& a : active[i].allocs) {
    auto& list = on_node[a.node];
    list.erase(std::remove(list.begin(), list.end(), i), list.end());
    MarkNode(a.node);
  }
}

void KeptWork::Rebuild(const ClusterSnapshot& s, const PolicyConfig& config) {
  enforce_power = config.enforce_power;
  committed_at_least_measured = config.committed_at_least_measured;
  power_fit = config.power_fit;
  state = std::make_unique<ClusterState>(
      s, enforce_power, committed_at_least_measured, power_fit);
  active.clear();
  active.reserve(s.running.size());
  on_node.assign(s.nodes.size(), {});
  for (size_t i = 0; i < s.running.size(); ++i) {
    active.push_back(ActiveOf(s.running[i], static_cast<int32_t>(i), *state));
    Link(static_cast<int32_t>(i));  // the nodes it marks are cleared below
  }
  invalid = false;
  for (int n : dirty_nodes) node_marked[n] = false;
  dirty_nodes.clear();
  dirty_running.clear();
}

void KeptWork::Sync(const ClusterSnapshot& s, const PolicyConfig& config) {
  if (invalid || state == nullptr || config.enforce_power != enforce_power ||
      config.committed_at_least_measured != committed_at_least_measured ||
      config.power_fit != power_fit || !state->SameShape(s)) {
    Rebuild(s, config);
    return;
  }
  // A node that moved, changed model or GPU count: build again.
  for (int n : dirty_nodes) {
    if (n >= state->node_count()) continue;
    const NodeSnapshot& node = s.nodes[n];
    const int leaf = (node.domain >= 0 && node.domain < state->domain_count())
                         ? node.domain
                         : -1;
    if (state->ModelIndex(node.gpu_model) != state->node_model(n) ||
        leaf != state->node_leaf(n) ||
        std::min(node.gpu_count, kMaxGpusPerNode) != state->gpu_count(n)) {
      Rebuild(s, config);
      return;
    }
  }
  // Running jobs: drop the changed ones and those past the new end, then
  // read the changed and the new ones.
  const size_t old_size = active.size();
  const size_t new_size = s.running.size();
  std::sort(dirty_running.begin(), dirty_running.end());
  dirty_running.erase(std::unique(dirty_running.begin(), dirty_running.end()),
                      dirty_running.end());
  for (size_t i : dirty_running) {
    if (i < old_size && i < new_size) Unlink(static_cast<int32_t>(i));
  }
  for (size_t i = new_size; i < old_size; ++i) Unlink(static_cast<int32_t>(i));
  active.resize(new_size);
  for (size_t i : dirty_running) {
    if (i >= old_size || i >= new_size) continue;
    active[i] = ActiveOf(s.running[i], static_cast<int32_t>(i), *state);
    Link(static_cast<int32_t>(i));
  }
  for (size_t i = old_size; i < new_size; ++i) {
    active[i] = ActiveOf(s.running[i], static_cast<int32_t>(i), *state);
    Link(static_cast<int32_t>(i));
  }
  dirty_running.clear();
  for (int n : dirty_nodes) {
    node_marked[n] = false;
    if (n >= state->node_count()) continue;
    const NodeSnapshot& node = s.nodes[n];
    const uint64_t free =
        node.free_gpus & ClusterState::CountMask(state->gpu_count(n));
    state->SetNode(n, node.schedulable, free, Healthy(n, free));
  }
  dirty_nodes.clear();
  for (int d = 0; d < state->domain_count(); ++d) {
    const DomainSnapshot& dom = s.domains[d];
    state->SetDomain(
        d, ClusterState::AdmissionCap(dom),
        ClusterState::StartCommitted(dom, committed_at_least_measured));
  }
}

}  // namespace internal

namespace {

bool SameShares(const std::vector<JobShare>& a,
                const std::vector<JobShare>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].node != b[i].node || a[i].gpus != b[i].gpus) return false;
  }
  return true;
}

}  // namespace

bool SameDecisions(const Decisions& a, const Decisions& b) {
  if (a.placements.size() != b.placements.size() ||
      a.waits.size() != b.waits.size() ||
      a.dropped_claims.size() != b.dropped_claims.size()) {
    return false;
  }
  for (size_t i = 0; i < a.placements.size(); ++i) {
    const Placement& x = a.placements[i];
    const Placement& y = b.placements[i];
    if (x.job_id != y.job_id || !SameShares(x.shares, y.shares) ||
        x.power_limit_mw != y.power_limit_mw ||
        x.requested_limit_mw != y.requested_limit_mw ||
        x.min_power_mw != y.min_power_mw || x.gpu_model != y.gpu_model ||
        x.effective_class != y.effective_class || x.preempt != y.preempt) {
      return false;
    }
  }
  auto same_waits = [](const std::vector<Wait>& x, const std::vector<Wait>& y) {
    for (size_t i = 0; i < x.size(); ++i) {
      if (x[i].job_id != y[i].job_id || x[i].kind != y[i].kind ||
          x[i].reason != y[i].reason) {
        return false;
      }
    }
    return true;
  };
  return same_waits(a.waits, b.waits) &&
         same_waits(a.dropped_claims, b.dropped_claims);
}

KeptState::KeptState() : work_(std::make_unique<internal::KeptWork>()) {}
KeptState::~KeptState() = default;

void KeptState::NodeChanged(int node) { work_->MarkNode(node); }

void KeptState::RunningChanged(size_t index) {
  work_->dirty_running.push_back(index);
}

void KeptState::Invalidate() { work_->invalid = true; }

}  // namespace joule::scheduler
