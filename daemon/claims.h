#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "joule/v1/records.pb.h"
#include "scheduler/types.h"
#include "storage/store.h"

namespace joule::daemon {

// Preemptions in progress: for each reserved job that preempted, its
// victims and exactly the GPUs promised to it (the rules are pure, in
// scheduler/claims.h; this is their persisted state).
//
// Owns: the claims (table kClaims, key = the claimant's job id).
// Invariants: at most one claim per job; a claim is written in the same
// WriteBatch as its victims' stop requests, and erased in the same batch as
// the claimant's placement, cancellation or the event that drops it; only a
// PENDING job has a claim (ScheduleOnce drops any other).
// Thread-safety: externally synchronized by the lock passed at construction
// (the ClusterManager's mu_).
class ClaimBook {
 public:
  explicit ClaimBook(absl::Mutex* mu) : mu_(mu) {}

  absl::Status Load(storage::Store* store) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const v1::records::Claim* Find(const std::string& job_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const std::map<std::string, v1::records::Claim>& all() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return claims_;
  }
  // Adds (or replaces) a claim, written to `batch`.
  void Put(const v1::records::Claim& claim, storage::WriteBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets the claim of `job_id` (if any), deleted in `batch`; true if
  // there was one.
  bool Erase(const std::string& job_id, storage::WriteBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The policy's view; `node_index` maps node names to snapshot indices (a
  // claim on a node not in it gets index -1, so the policy drops it).
  std::vector<scheduler::ClaimSnapshot> Snapshot(
      const absl::flat_hash_map<std::string, int>& node_index) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

 private:
  absl::Mutex* const mu_;
  std::map<std::string, v1::records::Claim> claims_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule::daemon
