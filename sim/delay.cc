#include "sim/delay.h"

#include <algorithm>
#include <vector>

namespace joule::sim {

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
  // Nearest rank: report number ceil(n × 0.95), counted from 1.
  const size_t n = delays.size();
  const size_t idx = (n * 95 + 99) / 100 - 1;
  std::nth_element(delays.begin(), delays.begin() + idx, delays.end());
  out.p95_s = static_cast<double>(delays[idx]) / 1000.0;
  return out;
}

}  // namespace joule::sim
