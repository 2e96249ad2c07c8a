#pragma once

// Queueing delay that counts the jobs still waiting when a run ends, for
// joule-sim's report. The started-only delay (SimResult::queue_delay_*) is
// over the jobs that got GPUs; a policy that leaves more jobs waiting is
// not penalised for them there. Here a job that was submitted by the end of
// the run but never started counts as waiting from its submission to the
// end (a right-censored delay: a lower bound of its real one). Jobs dropped
// as infeasible and jobs submitted after the end are not counted. Pure;
// thread-safe.

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace joule::sim {

struct JobDelayInput {
  int64_t submit_ms = 0;
  int64_t first_start_ms = -1;  // -1: never started
  bool dropped = false;         // infeasible: can never run as specified
};

struct CensoredDelay {
  int64_t jobs = 0;      // counted: started, or submitted by the end
  int64_t censored = 0;  // of them never started (waiting at the end)
  double mean_s = 0;
  double p95_s = 0;  // nearest rank, as the started-only delay
};

// The p-th percentile (0 < p <= 100) of `v` by nearest rank: the value of
// rank ceil(p/100 × n), counted from 1; 0 for none. Reorders `v`.
double NearestRankPercentile(std::vector<int64_t>& v, double p);

// Over `jobs`, with the run ending at end_ms.
CensoredDelay CensoredQueueDelay(absl::Span<const JobDelayInput> jobs,
                                 int64_t end_ms);

}  // namespace joule::sim
