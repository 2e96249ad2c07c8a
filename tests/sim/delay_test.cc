// The queueing delay that counts jobs still waiting at the end
// (sim/delay.h).

#include "sim/delay.h"

#include <vector>

#include "gtest/gtest.h"

namespace joule::sim {
namespace {

constexpr int64_t kS = 1000;  // ms per s

struct Case {
  const char* name;
  std::vector<JobDelayInput> jobs;
  int64_t end_ms;
  int64_t want_jobs, want_censored;
  double want_mean_s, want_p95_s;
};

TEST(CensoredQueueDelayTest, CountsNeverStartedJobsToTheEnd) {
  const Case cases[] = {
      {"none", {}, 100 * kS, 0, 0, 0, 0},
      // Started only: delays 10 and 30 s; mean 20; p95 is report
      // ceil(2 × 0.95) = 2 of 2 sorted, 30.
      {"started only",
       {{0, 10 * kS, false}, {0, 30 * kS, false}},
       100 * kS,
       2,
       0,
       20,
       30},
      // One started after 10 s, one submitted at 40 s never started: it
      // counts 100 − 40 = 60 s; mean (10 + 60) / 2 = 35; p95 report 2: 60.
      {"one waiting at the end",
       {{0, 10 * kS, false}, {40 * kS, -1, false}},
       100 * kS,
       2,
       1,
       35,
       60},
      // Dropped as infeasible and submitted after the end: not counted.
      {"dropped and future not counted",
       {{0, 10 * kS, false}, {5 * kS, -1, true}, {150 * kS, -1, false}},
       100 * kS,
       1,
       0,
       10,
       10},
      // Twenty jobs: 19 started after 1 s, one waiting from 0 to 100 s.
      // Mean (19 × 1 + 100) / 20 = 5.95; p95 is report ceil(20 × 95 / 100)
      // = 19 of 20 sorted (1 s), the waiting one is report 20.
      {"p95 is nearest rank",
       [] {
         std::vector<JobDelayInput> v(19, {0, 1 * kS, false});
         v.push_back({0, -1, false});
         return v;
       }(),
       100 * kS, 20, 1, 5.95, 1},
      // Submitted exactly at the end and not started: 0 s, counted.
      {"submitted at the end",
       {{100 * kS, -1, false}, {0, 20 * kS, false}},
       100 * kS,
       2,
       1,
       10,
       20},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const CensoredDelay d = CensoredQueueDelay(c.jobs, c.end_ms);
    EXPECT_EQ(d.jobs, c.want_jobs);
    EXPECT_EQ(d.censored, c.want_censored);
    EXPECT_DOUBLE_EQ(d.mean_s, c.want_mean_s);
    EXPECT_DOUBLE_EQ(d.p95_s, c.want_p95_s);
  }
}

}  // namespace
}  // namespace joule::sim
