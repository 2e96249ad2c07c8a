#pragma once

// The efficiency limit learned from telemetry: a bounded estimator of the
// energy-optimal per-GPU limit of one workload, from what its GPUs report
// (power limit, draw and utilisation). Pure: no clock, no I/O.
//
// Model. Utilisation stands for throughput, so the energy per unit of work
// at a limit is draw / utilisation. Samples are binned by the limit's share
// of the GPU's range over idle, (limit − idle) / (max − idle), in permille,
// into kBuckets equal buckets. The knee is the bucket with the least
// mean draw / mean utilisation among those with at least
// min_samples_per_bucket samples (ties: the higher share, i.e. the faster
// one), reported as the mean share of its samples; it is known once at
// least min_buckets buckets have enough samples, and until then the caller
// falls back to the configured knee (LearnedKneePermille).
//
// Bounds: memory is kBuckets sums whatever the number of samples; a bucket
// that reaches max_samples_per_bucket halves its sums, so old telemetry
// fades (the newest half-window weighs as much as everything before it).

#include <array>
#include <cstdint>
#include <optional>

namespace joule::scheduler {

struct KneeEstimatorConfig {
  int64_t min_samples_per_bucket = 10;
  int32_t min_buckets = 2;
  int64_t max_samples_per_bucket = 1000;
};

// Thread-compatible value type (no internal locking).
class KneeEstimator {
 public:
  static constexpr int kBuckets = 10;

  // One report of one GPU: its limit's share of the range over idle
  // (clamped into [0, 1000]), its draw and utilisation. Samples with no
  // utilisation (an idle or stalled GPU tells nothing about throughput) or
  // a non-positive draw are ignored.
  void Add(int64_t share_permille, int64_t draw_mw, uint32_t util_pct,
           const KneeEstimatorConfig& config);

  // The learned knee as a share of the range over idle, in permille, or
  // nullopt while fewer than min_buckets buckets have enough samples.
  std::optional<int64_t> KneePermille(const KneeEstimatorConfig& config) const;

  // Samples currently counted in bucket b (for tests and `job show`).
  int64_t count(int b) const { return buckets_[b].count; }
  // Samples counted in all buckets.
  int64_t total_count() const;

  // One bucket's sums, for persisting an estimator (daemon/knee_book.h):
  // an estimator restored from another's sums answers as that one.
  struct Sums {
    int64_t count = 0;
    int64_t share_sum = 0;  // permille
    int64_t draw_sum = 0;   // mW
    int64_t util_sum = 0;   // percent
  };
  Sums sums(int b) const { return buckets_[b]; }
  // Sets bucket b's sums; false (nothing changed) when b is not a bucket
  // or the sums are not ones Add can make: negative, or shares above 1000
  // or utilisation above 100 % on average.
  bool Restore(int b, const Sums& sums);

  // The share (permille) of the limit `limit_mw` on a GPU with idle
  // `idle_mw` and highest limit `max_mw`: (limit − idle) × 1000 / (max −
  // idle), clamped into [0, 1000]; 1000 when max <= idle.
  static int64_t SharePermille(int64_t limit_mw, int64_t idle_mw,
                               int64_t max_mw);

 private:
  using Bucket = Sums;
  std::array<Bucket, kBuckets> buckets_{};
};

// The knee an efficiency job runs at: the estimator's when it has one (and
// `estimator` is not null), else `fallback_permille` (the config's knee).
int64_t LearnedKneePermille(const KneeEstimator* estimator,
                            const KneeEstimatorConfig& config,
                            int64_t fallback_permille);

}  // namespace joule::scheduler
