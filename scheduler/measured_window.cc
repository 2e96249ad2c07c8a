#include "scheduler/measured_window.h"

#include <algorithm>

#include "absl/container/inlined_vector.h"

namespace joule::scheduler {

MeasuredCommitRule MeasuredRule(uint32_t percentile, uint32_t margin_pct) {
  MeasuredCommitRule r;
  r.kind = MeasuredCommitRule::kPercentile;
  r.percentile = percentile;
  r.margin_pct = margin_pct;
  return r;
}

MeasuredCommitRule MeasuredPlusRule() { return MeasuredRule(50, 0); }

MeasuredCommitRule DefaultPlusCommit() { return MeasuredPlusRule(); }

MeasuredCommitRule FloorClampRule() {
  MeasuredCommitRule r;
  r.kind = MeasuredCommitRule::kFloorClamp;
  r.percentile = 50;
  r.margin_pct = 0;
  r.high_percentile = 95;
  return r;
}

int64_t WeightedPercentileMw(
    absl::Span<const std::pair<int64_t, int64_t>> samples, int64_t unit,
    uint32_t percentile) {
  if (samples.empty()) return 0;
  unit = std::max<int64_t>(1, unit);
  absl::InlinedVector<std::pair<int64_t, int64_t>, 64> buf(samples.begin(),
                                                           samples.end());
  std::sort(buf.begin(), buf.end());
  int64_t total = 0;
  for (const auto& s : buf) total += s.second;
  const int64_t count = std::max<int64_t>(1, total / unit);
  const int64_t idx = std::min<int64_t>(
      count - 1, (count * static_cast<int64_t>(percentile) + 99) / 100 - 1);
  int64_t cum = 0;
  for (const auto& s : buf) {
    cum += s.second;
    if (cum > idx * unit) return s.first;
  }
  return buf.back().first;
}

int64_t FloorClampMw(int64_t low_mw, int64_t high_mw, int64_t floor_mw,
                     int64_t limit_mw) {
  high_mw = std::max(high_mw, low_mw);
  return std::min(limit_mw, std::clamp(floor_mw, low_mw, high_mw));
}

void MeasuredWindow::Add(int64_t per_gpu_mw, int64_t weight_ms,
                         const MeasuredWindowOptions& options) {
  if (weight_ms <= 0) return;
  samples_.emplace_back(per_gpu_mw, weight_ms);
  total_ms_ += weight_ms;
  size_t drop = 0;
  while (samples_.size() - drop > 1 &&
         total_ms_ - samples_[drop].second >= options.window_ms) {
    total_ms_ -= samples_[drop].second;
    ++drop;
  }
  if (drop > 0) samples_.erase(samples_.begin(), samples_.begin() + drop);
}

void MeasuredWindow::Clear() {
  samples_.clear();
  total_ms_ = 0;
}

bool MeasuredWindow::Ready(const MeasuredWindowOptions& options) const {
  return !samples_.empty() && total_ms_ >= options.min_history_ms;
}

int64_t MeasuredWindow::CommitPerGpuMw(const MeasuredCommitRule& rule,
                                       const MeasuredWindowOptions& options,
                                       int64_t limit_mw,
                                       int64_t floor_mw) const {
  if (!Ready(options)) return limit_mw;
  auto with_margin = [&](int64_t p) {
    return p + p * static_cast<int64_t>(rule.margin_pct) / 100;
  };
  const int64_t low = with_margin(
      WeightedPercentileMw(samples_, options.unit_ms, rule.percentile));
  if (rule.kind == MeasuredCommitRule::kPercentile) {
    return std::min(limit_mw, low);
  }
  const int64_t high = with_margin(
      WeightedPercentileMw(samples_, options.unit_ms, rule.high_percentile));
  return FloorClampMw(low, high, floor_mw, limit_mw);
}

}  // namespace joule::scheduler
