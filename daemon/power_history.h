#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "joule/v1/joule.pb.h"

namespace joule::daemon {

// The last `span` of each power domain's cap, committed and measured power,
// one point per `step` (an hour at 5 s: 720 points a domain), for the
// dashboard's line chart. A ring buffer per domain: the oldest point goes
// when a new one would exceed span / step. Domains that leave the tree keep
// their points until they age out. Time is given by the caller (no clock).
// Thread-safe (mu_).
class PowerHistory {
 public:
  struct Point {
    absl::Time time;
    int64_t cap_mw = 0, committed_mw = 0, measured_mw = 0;
  };
  PowerHistory(absl::Duration span, absl::Duration step);

  // Records `tree` at `now` unless the last point is less than `step` old.
  // Returns whether it recorded.
  bool Add(absl::Time now, const v1::GetPowerTreeResponse& tree);
  // Oldest first.
  std::vector<Point> Points(const std::string& domain) const;
  std::vector<std::string> Domains() const;
  size_t capacity() const { return capacity_; }
  absl::Duration step() const { return step_; }

 private:
  struct Ring {
    std::vector<Point> points;  // capacity_ slots once full
    size_t next = 0;            // where the next point goes once full
  };
  const absl::Duration step_;
  const size_t capacity_;
  mutable absl::Mutex mu_;
  absl::Time last_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::map<std::string, Ring> rings_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule::daemon
