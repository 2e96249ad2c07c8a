#include "daemon/round_gate.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "absl/hash/hash.h"

namespace joule::daemon {
namespace {

// Order-sensitive mixing of the discrete fields.
void Mix(uint64_t* h, uint64_t v) { *h = absl::HashOf(*h, v); }
void Mix(uint64_t* h, const std::string& s) { *h = absl::HashOf(*h, s); }

void MixShares(uint64_t* h, const std::vector<scheduler::JobShare>& shares) {
  for (const scheduler::JobShare& s : shares) {
    Mix(h, static_cast<uint64_t>(s.node));
    for (uint32_t g : s.gpus) Mix(h, g);
  }
}

// Within 1 % of `b`, and at least 1 W: 700 W vs 706 W is close, vs 708 W
// is not; 0 vs 900 mW is close.
bool Close(int64_t a, int64_t b) {
  const int64_t tol = std::max<int64_t>(1000, std::abs(b) / 100);
  return std::abs(a - b) <= tol;
}

// Fair-share usage moves by at least 1 % or this many GPU-hours before a
// round is due for it (8 GPUs for 45 s).
constexpr double kUsageStep = 0.1;

}  // namespace

RoundGate::Digest RoundGate::Make(const scheduler::ClusterSnapshot& snap) {
  Digest d;
  uint64_t h = 0;
  for (const scheduler::GpuModelSpec& m : snap.gpu_models) {
    Mix(&h, m.name);
    Mix(&h, m.tdp_mw);
    Mix(&h, m.min_limit_mw);
    Mix(&h, m.max_limit_mw);
  }
  for (const scheduler::DomainSnapshot& dom : snap.domains) {
    Mix(&h, dom.name);
    Mix(&h, static_cast<uint64_t>(dom.parent));
    Mix(&h, dom.cap_mw);
    Mix(&h, dom.admission_reserve_mw);
    Mix(&h, dom.idle_floor_mw);
    d.powers.push_back(dom.committed_mw);
    d.powers.push_back(dom.measured_mw);
  }
  for (const scheduler::NodeSnapshot& n : snap.nodes) {
    Mix(&h, n.name);
    Mix(&h, static_cast<uint64_t>(n.domain));
    Mix(&h, n.schedulable);
    Mix(&h, n.gpu_model);
    Mix(&h, n.gpu_count);
    Mix(&h, n.free_gpus);
    Mix(&h, n.unhealthy_gpus);
    d.powers.push_back(n.measured_mw);
  }
  for (const scheduler::RunningJob& r : snap.running) {
    Mix(&h, r.id);
    Mix(&h, r.tenant);
    Mix(&h, static_cast<uint64_t>(r.cls));
    Mix(&h, static_cast<uint64_t>(r.priority));
    Mix(&h, static_cast<uint64_t>(absl::ToUnixMicros(r.start_time)));
    Mix(&h, static_cast<uint64_t>(absl::ToInt64Microseconds(r.max_runtime)));
    MixShares(&h, r.shares);
    Mix(&h, r.gpu_model);
    Mix(&h, r.limit_mw);
    Mix(&h, r.requested_mw);
    Mix(&h, r.min_mw);
    Mix(&h, r.stop_floor_per_gpu_mw);
    Mix(&h, r.idle_per_gpu_mw);
    d.powers.push_back(r.committed_mw);
    d.powers.push_back(r.measured_per_gpu_mw);
    if (r.max_runtime > absl::ZeroDuration()) {
      const absl::Time end = r.start_time + r.max_runtime;
      if (end > snap.now) d.next_deadline = std::min(d.next_deadline, end);
    }
  }
  std::vector<std::string> names;
  for (const auto& [name, t] : snap.tenants) names.push_back(name);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const scheduler::TenantInfo& t = snap.tenants.at(name);
    Mix(&h, name);
    Mix(&h, t.weight);
    std::vector<std::pair<std::string, uint32_t>> contracted(
        t.contracted_gpus.begin(), t.contracted_gpus.end());
    std::sort(contracted.begin(), contracted.end());
    for (const auto& [model, gpus] : contracted) {
      Mix(&h, model);
      Mix(&h, gpus);
    }
    for (int64_t q : t.quota.max_running_gpus) Mix(&h, q);
    Mix(&h, t.quota.max_pending_jobs);
    d.usage.push_back(t.recent_gpu_hours);
  }
  for (const scheduler::ClaimSnapshot& c : snap.claims) {
    Mix(&h, c.job_id);
    for (const std::string& v : c.victims) Mix(&h, v);
    MixShares(&h, c.shares);
    Mix(&h, c.power_per_gpu_mw);
  }
  d.discrete = h;
  return d;
}

void RoundGate::Record(const scheduler::ClusterSnapshot& snap, bool changed) {
  last_ = Make(snap);
  last_round_ = snap.now;
  changed_ = changed;
  valid_ = true;
}

bool RoundGate::Due(const scheduler::ClusterSnapshot& snap) const {
  if (!valid_ || changed_) return true;
  if (snap.now - last_round_ >= max_skip_) return true;
  if (snap.now >= last_.next_deadline) return true;
  const Digest d = Make(snap);
  if (d.discrete != last_.discrete || d.powers.size() != last_.powers.size() ||
      d.usage.size() != last_.usage.size()) {
    return true;
  }
  for (size_t i = 0; i < d.powers.size(); ++i) {
    if (!Close(d.powers[i], last_.powers[i])) return true;
  }
  for (size_t i = 0; i < d.usage.size(); ++i) {
    const double a = d.usage[i], b = last_.usage[i];
    if (std::abs(a - b) > std::max(0.01 * std::abs(b), kUsageStep)) {
      return true;
    }
  }
  return false;
}

}  // namespace joule::daemon
