#pragma once

// Measured admission's per-job commitment: one rule for jouled
// (daemon/job_table.cc) and joule-sim (sim/simulator.cc). A job's recent
// per-GPU draw is kept in a MeasuredWindow; what it commits in its domains
// is a percentile of that window (MeasuredCommitRule). Pure; no clock, no
// I/O.
//
// Units: power is int64 mW, sample weights are ms.

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/types/span.h"

namespace joule::scheduler {

// How much recent draw a commitment is taken over.
struct MeasuredWindowOptions {
  // Samples older than this (by summed weight, newest first) are dropped;
  // the newest sample is always kept.
  int64_t window_ms = 60'000;
  // Until this much weight has been seen the job commits its limit.
  int64_t min_history_ms = 5'000;
  // The unit of the percentile count: a sample of weight w stands for
  // w / unit_ms reports (one agent report, 1 s by default). The daemon adds
  // one sample per report, of weight its report interval; joule-sim one per
  // tick, of weight the tick.
  int64_t unit_ms = 1'000;
};

// What a job commits from its window.
//   kPercentile: min(limit, p + p × margin_pct / 100), p the percentile-th
//     percentile (measured's rule: p95 + 10 %).
//   kFloorClamp: min(limit, clamp(floor, p_low, p_high)) with p_low the
//     percentile-th and p_high the high_percentile-th percentile, each with
//     the margin (measured-plus): the part of the draw the power loop can
//     throttle away (above the job's floor) is committed at the low
//     percentile, the part it cannot (below the floor) at the high one, so
//     noise above a low commitment can always be given back by throttling
//     instead of a preemption. A job whose floor is at or above p_high (a
//     reserved job, or one not throttleable) commits p_high; one whose
//     floor is at or below p_low commits p_low.
struct MeasuredCommitRule {
  enum Kind { kPercentile, kFloorClamp };
  Kind kind = kPercentile;
  uint32_t percentile = 95;
  uint32_t margin_pct = 10;
  uint32_t high_percentile = 95;  // kFloorClamp only
};

// measured's rule (p95 + 10 %); measured-plus's percentile rule (p50, no
// margin); and the floor clamp, clamp(floor, p50, p95).
MeasuredCommitRule MeasuredRule(uint32_t percentile = 95,
                                uint32_t margin_pct = 10);
MeasuredCommitRule MeasuredPlusRule();
MeasuredCommitRule FloorClampRule();
// measured-plus's default commitment in jouled (scheduler.plus_commit) and
// joule-sim (--plus-commit): p50 (MeasuredPlusRule). The floor clamp with a
// 0.6 on-demand floor is what saturated sites should set; it is not the
// default because it completed less work on a small, short run
// (docs/evaluation.md, "Recommended for saturated sites").
MeasuredCommitRule DefaultPlusCommit();

// The percentile-th percentile of weighted samples (mW, weight): with n =
// max(1, total weight / unit) reports sorted ascending, report number
// min(n, ceil(n × percentile / 100)), counted from 1. 0 for no samples.
int64_t WeightedPercentileMw(
    absl::Span<const std::pair<int64_t, int64_t>> samples, int64_t unit,
    uint32_t percentile);

// min(limit, clamp(floor, low, high)); high below low is taken as low.
int64_t FloorClampMw(int64_t low_mw, int64_t high_mw, int64_t floor_mw,
                     int64_t limit_mw);

// The recent per-GPU draw of one job attempt.
// Invariants: the total weight of the samples but the newest is below
// window_ms; weights are > 0. Thread-compatible (no internal locking).
class MeasuredWindow {
 public:
  // Appends a sample (weight <= 0 is ignored) and drops the oldest ones
  // beyond the window.
  void Add(int64_t per_gpu_mw, int64_t weight_ms,
           const MeasuredWindowOptions& options);
  void Clear();
  // Enough history for a measured commitment.
  bool Ready(const MeasuredWindowOptions& options) const;
  // The commitment per GPU: `limit_mw` until Ready, else the rule applied
  // (floor_mw is the job's lowest accepted limit; kPercentile ignores it).
  int64_t CommitPerGpuMw(const MeasuredCommitRule& rule,
                         const MeasuredWindowOptions& options, int64_t limit_mw,
                         int64_t floor_mw) const;

  absl::Span<const std::pair<int64_t, int64_t>> samples() const {
    return samples_;
  }
  int64_t total_ms() const { return total_ms_; }

 private:
  std::vector<std::pair<int64_t, int64_t>> samples_;  // oldest first
  int64_t total_ms_ = 0;
};

}  // namespace joule::scheduler
