#pragma once

// Test helper: builds ClusterSnapshots the way the state manager would
// (committed = base power of every node below + each running job's GPUs ×
// limit; measured = node base + GPUs × measured draw).

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "scheduler/types.h"

namespace joule::scheduler::testing {

inline constexpr int64_t kW = 1000;                        // mW per W
inline constexpr int64_t kKw = 1000 * 1000;                // mW per kW
inline constexpr int64_t kNoCap = int64_t{1000000} * kKw;  // 1 GW

inline absl::Time TestNow() { return absl::FromUnixSeconds(1767225600); }

class ClusterBuilder {
 public:
  // Models: H100 (TDP 700 W, limits 200..700 W), A100 (400 W, 100..400 W).
  ClusterBuilder() {
    snap_.now = TestNow();
    snap_.gpu_models.push_back({"H100", 700 * kW, 200 * kW, 700 * kW});
    snap_.gpu_models.push_back({"A100", 400 * kW, 100 * kW, 400 * kW});
  }

  int Domain(std::string name, std::string level, int parent,
             int64_t cap_mw = kNoCap) {
    DomainSnapshot d;
    d.name = std::move(name);
    d.level = std::move(level);
    d.parent = parent;
    d.cap_mw = cap_mw;
    snap_.domains.push_back(std::move(d));
    return static_cast<int>(snap_.domains.size()) - 1;
  }
  void SetCap(int domain, int64_t cap_mw) {
    snap_.domains[domain].cap_mw = cap_mw;
  }

  // All GPUs start free; base power counts as committed and measured.
  int Node(std::string name, int domain, std::string model = "H100",
           uint32_t gpus = 8, int64_t base_mw = 1 * kKw,
           bool schedulable = true) {
    NodeSnapshot n;
    n.name = std::move(name);
    n.domain = domain;
    n.schedulable = schedulable;
    n.gpu_model = std::move(model);
    n.gpu_count = gpus;
    n.free_gpus = gpus >= 64 ? ~uint64_t{0} : (uint64_t{1} << gpus) - 1;
    snap_.nodes.push_back(std::move(n));
    base_.push_back(base_mw);
    return static_cast<int>(snap_.nodes.size()) - 1;
  }

  // A running job holding `gpus` GPUs (lowest free) on each of `nodes`, at
  // `limit_mw` per GPU (also its requested limit unless set later).
  RunningJob& Run(std::string id, std::vector<int> nodes, uint32_t gpus,
                  ServiceClass cls = ServiceClass::kOnDemand,
                  int64_t limit_mw = 700 * kW) {
    RunningJob j;
    j.id = std::move(id);
    j.tenant = "t";
    j.cls = cls;
    j.start_time = TestNow() - absl::Hours(1);
    j.gpu_model = snap_.nodes[nodes[0]].gpu_model;
    j.limit_mw = limit_mw;
    j.requested_mw = limit_mw;
    j.min_mw = 200 * kW;
    j.measured_per_gpu_mw = limit_mw;
    for (int n : nodes) {
      JobShare share;
      share.node = n;
      uint64_t& free = snap_.nodes[n].free_gpus;
      for (uint32_t i = 0; i < gpus && free != 0; ++i) {
        const int bit = __builtin_ctzll(free);
        free &= free - 1;
        share.gpus.push_back(bit);
      }
      j.shares.push_back(std::move(share));
    }
    snap_.running.push_back(std::move(j));
    return snap_.running.back();
  }

  TenantInfo& Tenant(const std::string& name) { return snap_.tenants[name]; }

  // Fills committed and measured; committed_mw of each job = GPUs × limit
  // unless already set.
  ClusterSnapshot Build() const {
    ClusterSnapshot s = snap_;
    auto add = [&s](int node, int64_t committed, int64_t measured) {
      s.nodes[node].measured_mw += measured;
      for (int d = s.nodes[node].domain; d >= 0; d = s.domains[d].parent) {
        s.domains[d].committed_mw += committed;
        s.domains[d].measured_mw += measured;
      }
    };
    for (size_t n = 0; n < s.nodes.size(); ++n) {
      add(static_cast<int>(n), base_[n], base_[n]);
    }
    for (RunningJob& j : s.running) {
      int64_t gpus = 0;
      for (const JobShare& sh : j.shares) gpus += sh.gpus.size();
      if (j.committed_mw == 0) j.committed_mw = gpus * j.limit_mw;
      for (const JobShare& sh : j.shares) {
        const int64_t g = sh.gpus.size();
        add(sh.node, g * j.limit_mw, g * j.measured_per_gpu_mw);
      }
    }
    return s;
  }

 private:
  ClusterSnapshot snap_;
  std::vector<int64_t> base_;
};

inline PendingJob Pending(std::string id, uint32_t gpus, uint32_t nodes = 1,
                          ServiceClass cls = ServiceClass::kOnDemand,
                          int32_t priority = 0, uint64_t seq = 0) {
  PendingJob p;
  p.id = std::move(id);
  p.tenant = "t";
  p.cls = cls;
  p.priority = priority;
  p.seq = seq;
  p.gpus_per_node = gpus;
  p.nodes = nodes;
  p.gpu_model = "H100";
  return p;
}

}  // namespace joule::scheduler::testing
