#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "config/cluster_config.h"
#include "joule/v1/joule.pb.h"
#include "scheduler/power_rules.h"
#include "scheduler/types.h"
#include "storage/store.h"

namespace joule::daemon {

// One power domain at run time.
struct DomainRt {
  std::string name;
  std::string kind;
  int parent = -1;
  uint32_t depth = 0;
  int64_t config_cap_mw = 0;
  int64_t cap_mw = 0;       // config cap, or the operator's override
  int64_t measured_mw = 0;  // sum of the measured power of the nodes below
  int64_t reported_mw = 0;  // sum of the nodes' last reported draw
  uint32_t nodes = 0;       // nodes below
};

// The power-domain tree (site > ... > rack) from the config, with each
// domain's cap, measured power and node count, and the measured-plus
// admission margins.
//
// Owns: the domains (in config order: parents before children), the name
// index, cap overrides (persisted in kDomains) and the adaptive margins.
// Invariants: a domain's measured_mw and nodes are the sums over the nodes
// below it: callers change them only through AddNode / AddMeasured, which
// walk the path to the root. Committed power is not stored: the controller
// computes it from nodes and jobs (ClusterManager::DomainCommittedLocked)
// and passes it in.
// Thread-safety: externally synchronized by the lock passed at construction
// (the ClusterManager's mu_).
class DomainTree {
 public:
  DomainTree(absl::Mutex* mu, const config::ClusterConfig* config);

  // Applies the cap overrides stored in kDomains.
  absl::Status Load(storage::Store* store) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  size_t size() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return domains_.size();
  }
  const DomainRt& operator[](size_t i) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return domains_[i];
  }
  // Index of the domain named `name`, -1 if none.
  int Find(const std::string& name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The leaf domain of `node` (its config slot, else the default domain);
  // -1 when it has none.
  int LeafFor(const std::string& node) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // A node joins (+1) or leaves (-1) below `leaf`.
  void AddNode(int leaf, int delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A node below `leaf` now measures `delta_mw` more.
  void AddMeasured(int leaf, int64_t delta_mw)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A node below `leaf` now reports `delta_mw` more.
  void AddReported(int leaf, int64_t delta_mw)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds `mw` to `committed` (index as the domains) on the path of `leaf`.
  void AddUp(int leaf, int64_t mw, std::vector<int64_t>* committed) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True if a domain on the path of `leaf` measures more than its cap.
  bool OverCapOnPath(int leaf) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Writes a cap override to `batch`; SetCap applies it once committed.
  void PutCap(int i, int64_t cap_mw, absl::Time now, const std::string& reason,
              storage::WriteBatch* batch) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetCap(int i, int64_t cap_mw) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    domains_[i].cap_mw = cap_mw;
  }

  // measured-plus: one step of the adaptive reserve per `interval`, with
  // the committed power per domain (as Snapshot; scheduler::AdaptMargin).
  void AdaptMargins(absl::Time now, absl::Duration interval,
                    const std::vector<int64_t>& committed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The policy's view, with the given committed power per domain.
  std::vector<scheduler::DomainSnapshot> Snapshot(
      const std::vector<int64_t>& committed,
      const std::vector<int64_t>& idle_floor) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One domain as the API shows it.
  v1::PowerDomain View(int i, int64_t committed_mw, int64_t idle_floor_mw) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The whole tree, depth first from the root.
  v1::GetPowerTreeResponse Tree(const std::vector<int64_t>& committed,
                                const std::vector<int64_t>& idle_floor) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

 private:
  absl::Mutex* const mu_;
  const config::ClusterConfig* const config_;
  std::vector<DomainRt> domains_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> index_ ABSL_GUARDED_BY(mu_);
  // measured-plus: the adaptive admission reserve per domain (index as
  // domains_), adapted once per report interval.
  std::vector<scheduler::MarginState> margins_ ABSL_GUARDED_BY(mu_);
  absl::Time margins_updated_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace joule::daemon
