#include "daemon/power_history.h"

#include <algorithm>

namespace joule::daemon {

PowerHistory::PowerHistory(absl::Duration span, absl::Duration step)
    : step_(step),
      capacity_(std::max<int64_t>(1, span / std::max(step, absl::Seconds(1)))) {
}

bool PowerHistory::Add(absl::Time now, const v1::GetPowerTreeResponse& tree) {
  absl::MutexLock lock(&mu_);
  if (now - last_ < step_) return false;
  last_ = now;
  for (const v1::PowerDomain& d : tree.domains()) {
    Ring& r = rings_[d.name()];
    const Point p{now, d.cap_mw(), d.committed_mw(), d.measured_mw()};
    if (r.points.size() < capacity_) {
      r.points.push_back(p);
    } else {
      r.points[r.next] = p;
      r.next = (r.next + 1) % capacity_;
    }
  }
  return true;
}

std::vector<PowerHistory::Point> PowerHistory::Points(
    const std::string& domain) const {
  absl::MutexLock lock(&mu_);
  auto it = rings_.find(domain);
  if (it == rings_.end()) return {};
  const Ring& r = it->second;
  std::vector<Point> out;
  out.reserve(r.points.size());
  // Once full, the oldest point is at `next`.
  for (size_t i = 0; i < r.points.size(); ++i) {
    out.push_back(r.points[(r.next + i) % r.points.size()]);
  }
  return out;
}

std::vector<std::string> PowerHistory::Domains() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [name, r] : rings_) out.push_back(name);
  return out;
}

}  // namespace joule::daemon
