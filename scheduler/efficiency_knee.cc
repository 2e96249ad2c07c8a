#include "scheduler/efficiency_knee.h"

#include <algorithm>

namespace joule::scheduler {

int64_t KneeEstimator::SharePermille(int64_t limit_mw, int64_t idle_mw,
                                     int64_t max_mw) {
  if (max_mw <= idle_mw) return 1000;
  return std::clamp<int64_t>((limit_mw - idle_mw) * 1000 / (max_mw - idle_mw),
                             0, 1000);
}

void KneeEstimator::Add(int64_t share_permille, int64_t draw_mw,
                        uint32_t util_pct, const KneeEstimatorConfig& config) {
  if (util_pct == 0 || draw_mw <= 0) return;
  share_permille = std::clamp<int64_t>(share_permille, 0, 1000);
  // Bucket b holds shares in [b × 100, (b + 1) × 100); 1000 goes to the top.
  const int b = std::min<int>(
      kBuckets - 1, static_cast<int>(share_permille * kBuckets / 1000));
  Bucket& k = buckets_[b];
  if (k.count >= std::max<int64_t>(2, config.max_samples_per_bucket)) {
    k.count /= 2;
    k.share_sum /= 2;
    k.draw_sum /= 2;
    k.util_sum /= 2;
  }
  ++k.count;
  k.share_sum += share_permille;
  k.draw_sum += draw_mw;
  k.util_sum += std::min<uint32_t>(util_pct, 100);
}

std::optional<int64_t> KneeEstimator::KneePermille(
    const KneeEstimatorConfig& config) const {
  int known = 0;
  int best = -1;
  for (int b = 0; b < kBuckets; ++b) {
    const Bucket& k = buckets_[b];
    if (k.count < std::max<int64_t>(1, config.min_samples_per_bucket) ||
        k.util_sum <= 0) {
      continue;
    }
    ++known;
    if (best < 0) {
      best = b;
      continue;
    }
    // Energy per work = draw / util; compare draw_b / util_b <= draw_best /
    // util_best as cross products (the counts cancel: both are means). Sums
    // stay below 2^63 for max_samples_per_bucket up to ~10^6 at 10 kW.
    const Bucket& o = buckets_[best];
    const __int128 lhs = static_cast<__int128>(k.draw_sum) * o.util_sum;
    const __int128 rhs = static_cast<__int128>(o.draw_sum) * k.util_sum;
    if (lhs <= rhs) best = b;  // ties: the higher share
  }
  if (known < std::max<int32_t>(1, config.min_buckets) || best < 0) {
    return std::nullopt;
  }
  const Bucket& k = buckets_[best];
  return k.share_sum / k.count;
}

int64_t KneeEstimator::total_count() const {
  int64_t n = 0;
  for (const Bucket& k : buckets_) n += k.count;
  return n;
}

bool KneeEstimator::Restore(int b, const Sums& sums) {
  if (b < 0 || b >= kBuckets) return false;
  if (sums.count < 0 || sums.share_sum < 0 || sums.draw_sum < 0 ||
      sums.util_sum < 0 || sums.share_sum / 1000 > sums.count ||
      sums.util_sum / 100 > sums.count) {
    return false;
  }
  buckets_[b] = sums;
  return true;
}

int64_t LearnedKneePermille(const KneeEstimator* estimator,
                            const KneeEstimatorConfig& config,
                            int64_t fallback_permille) {
  if (estimator == nullptr) return fallback_permille;
  return estimator->KneePermille(config).value_or(fallback_permille);
}

}  // namespace joule::scheduler
