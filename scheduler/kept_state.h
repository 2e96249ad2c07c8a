#pragma once

// The policy's working state kept between Schedule calls, for a caller
// that keeps one ClusterSnapshot and changes it in place (joule-sim).
//
// Schedule(snapshot, pending, config) builds its free-capacity index and
// the working copies of the running jobs from the snapshot on every call.
// Schedule(snapshot, pending, config, &kept) gives the same Decisions from
// the same inputs, but takes that state from `kept`, which it brings up to
// the snapshot from the changes marked since the previous call (domains
// are compared in full every call), and restores it before it returns.
// The policy stays a function of the snapshot: `kept` only saves the work
// of deriving the state again (tests/scheduler/kept_state_test.cc checks
// it against a fresh build over random changes).
//
// What the caller marks, between calls:
//   NodeChanged(n)     when anything of snapshot.nodes[n] changed;
//   RunningChanged(i)  when snapshot.running[i] is new or changed (its
//                      shares, class, priority, start, time limit or
//                      committed_mw), including an entry moved into i;
//                      entries past the end of a shorter running list
//                      need no mark;
//   Invalidate()       for anything else (models, domains added, a
//                      different snapshot object): the next call rebuilds.
// A change of a node's model, leaf or GPU count, of the domain tree or of
// the models, or of the settings below, is detected and rebuilds.
//
// Owns: a ClusterState and the running jobs' working copies. Not
// thread-safe: one caller, one call at a time.

#include <cstddef>
#include <memory>

#include "absl/types/span.h"
#include "scheduler/policy.h"
#include "scheduler/types.h"

namespace joule::scheduler {
namespace internal {
struct KeptWork;
}  // namespace internal

class KeptState {
 public:
  KeptState();
  ~KeptState();
  KeptState(const KeptState&) = delete;
  KeptState& operator=(const KeptState&) = delete;

  void NodeChanged(int node);
  void RunningChanged(size_t index);
  void Invalidate();

  // For policy.cc and tests.
  internal::KeptWork& work() { return *work_; }

 private:
  std::unique_ptr<internal::KeptWork> work_;
};

// As Schedule (policy.h), with the working state taken from and given
// back to `kept` (nullptr: as Schedule).
Decisions Schedule(const ClusterSnapshot& snapshot,
                   absl::Span<const PendingJob> pending,
                   const PolicyConfig& config, KeptState* kept);

// Whether every placement, wait and dropped claim of `a` equals `b`'s, in
// order (for callers that check a kept state against a fresh build).
bool SameDecisions(const Decisions& a, const Decisions& b);

}  // namespace joule::scheduler
