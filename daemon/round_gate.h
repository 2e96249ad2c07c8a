#pragma once

// RoundGate: whether the scheduler's periodic round (the one no event woke)
// can be skipped because nothing a decision depends on changed since the
// last full round.
//
// Events that change a decision (a submit, an exit, a cancel, a node that
// joins or is drained, a config reload...) wake the loop, which then runs a
// full round as before; the gate only decides about the rounds the loop
// runs every 500 ms on its own. Those exist for what changes without an
// event: measured power (the measured admission modes), fair-share usage,
// learned knees, time passing a running job's time limit (a backfill
// shadow time). A periodic round is due when
//   * there was no full round yet, or the last one changed something (it
//     placed, claimed or dropped a claim; what it placed changes the next
//     round's inputs), or it failed;
//   * anything discrete in the snapshot differs: nodes (schedulable, free
//     and unhealthy GPUs), domains (caps, reserves), running jobs (ids,
//     limits, shares, start, time limit), tenants (weights, contracts,
//     quotas), claims, GPU models;
//   * a measured or committed power moved by more than 1 % (at least 1 W)
//     from the last round's, or a tenant's recent usage by more than 1 % and
//     0.1 GPU-hours;
//   * the clock reached the earliest end by time limit of a running job
//     after the last round (a backfill shadow time), or
//   * `max_skip` (5 s) passed since the last full round: whatever is not
//     in the snapshot (knees, fair-share order, wait texts) is at most this
//     stale.
// Owns: the digest of the last full round's snapshot. Thread-safety: none;
// the ClusterManager keeps it under its mu_.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "scheduler/types.h"

namespace joule::daemon {

class RoundGate {
 public:
  explicit RoundGate(absl::Duration max_skip = absl::Seconds(5))
      : max_skip_(max_skip) {}

  // A full round starts: until Record(), every check is due (a round that
  // fails or returns early leaves the gate open).
  void Invalidate() { valid_ = false; }
  // A full round decided on `snap`; `changed` if it placed, claimed or
  // dropped anything.
  void Record(const scheduler::ClusterSnapshot& snap, bool changed);
  // Whether a periodic round on `snap` could decide differently from the
  // last full round (see above).
  bool Due(const scheduler::ClusterSnapshot& snap) const;

 private:
  struct Digest {
    uint64_t discrete = 0;
    std::vector<int64_t> powers;  // mW, compared within 1 % (>= 1 W)
    std::vector<double> usage;    // tenants' recent GPU-hours, within 1 %
    absl::Time next_deadline = absl::InfiniteFuture();
  };
  static Digest Make(const scheduler::ClusterSnapshot& snap);

  const absl::Duration max_skip_;
  bool valid_ = false;
  bool changed_ = false;
  absl::Time last_round_ = absl::InfinitePast();
  Digest last_;
};

// RoundPacer: how long after a round the loop starts the next woken one,
// so that a burst of events is decided in one round instead of many, and
// a long queue cannot keep the lock busy. The next woken round starts at
// least Gap() after the last one started:
//   * 5 ms, and
//   * 2 x the last round's duration, or 8 x when the last round changed
//     nothing (placed, claimed or dropped no claim; a failed commit counts
//     as a change) and every wake since was a submission (`appended_only`):
//     a burst of jobs appended to a queue that did not move, where only the
//     new jobs can change the next round's decisions and every round costs
//     O(queue) (scheduler/policy.h). The longer gap stops at 500 ms (or at
//     2 x, if that is more), so a job that could be placed waits at most
//     that long behind a burst.
// The periodic round (500 ms, RoundGate) is not paced. On a short queue
// the rounds take microseconds and the gap stays 5 ms either way.
// Owns: the last round's duration and whether it changed anything.
// Thread-safety: none; the ClusterManager's loop thread keeps it.
class RoundPacer {
 public:
  static constexpr absl::Duration kMinGap = absl::Milliseconds(5);
  static constexpr int kMovedFactor = 2;
  static constexpr int kAppendedFactor = 8;
  static constexpr absl::Duration kMaxAppendedGap = absl::Milliseconds(500);

  // A round took `took`; `changed` if it placed, claimed, dropped a claim
  // or failed to commit.
  void Ran(absl::Duration took, bool changed) {
    last_ = took;
    changed_ = changed;
  }
  // The gap after the last round's start before the next woken round.
  absl::Duration Gap(bool appended_only) const {
    const absl::Duration moved = std::max(kMinGap, kMovedFactor * last_);
    if (!appended_only || changed_) return moved;
    return std::max(moved, std::min(kAppendedFactor * last_, kMaxAppendedGap));
  }

 private:
  absl::Duration last_ = absl::ZeroDuration();
  bool changed_ = false;
};

}  // namespace joule::daemon
