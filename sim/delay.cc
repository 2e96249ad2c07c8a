#include "sim/delay.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace joule::sim {

double NearestRankPercentile(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  const size_t idx = std::min(
      v.size() - 1, static_cast<size_t>(std::ceil(p / 100.0 * v.size())) - 1);
  std::nth_element(v.begin(), v.begin() + idx, v.end());
  return static_cast<double>(v[idx]);
}

CensoredDelay CensoredQueueDelay(absl::Span<const JobDelayInput> jobs,
                                 int64_t end_ms) {
  CensoredDelay out;
  std::vector<int64_t> delays;
  delays.reserve(jobs.size());
  for (const JobDelayInput& j : jobs) {
    if (j.dropped) continue;
    if (j.first_start_ms >= 0) {
      delays.push_back(j.first_start_ms - j.submit_ms);
    } else if (j.submit_ms <= end_ms) {
      delays.push_back(end_ms - j.submit_ms);
      ++out.censored;
    }
  }
  out.jobs = static_cast<int64_t>(delays.size());
  if (delays.empty()) return out;
  double sum = 0;
  for (int64_t d : delays) sum += static_cast<double>(d);
  out.mean_s = sum / static_cast<double>(delays.size()) / 1000.0;
  out.p95_s = NearestRankPercentile(delays, 95) / 1000.0;
  return out;
}

}  // namespace joule::sim
