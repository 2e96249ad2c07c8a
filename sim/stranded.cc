#include "sim/stranded.h"

#include <algorithm>

namespace joule::sim {

StrandedSplit SplitStranded(const DomainPowerSample& s) {
  StrandedSplit out;
  const int64_t unused = std::max<int64_t>(0, s.cap_mw - s.measured_mw);
  out.margin_mw = std::clamp<int64_t>(
      s.committed_mw + s.reserve_mw - s.measured_mw, 0, unused);
  const int64_t headroom = unused - out.margin_mw;
  if (!s.pending) {
    out.no_demand_mw = headroom;
  } else if (s.need_at_limit_mw < 0) {
    out.gpus_full_mw = headroom;
  } else if (headroom >= s.need_at_limit_mw) {
    out.usable_mw = headroom;
  } else if (s.need_at_floor_mw >= 0 && headroom >= s.need_at_floor_mw) {
    out.not_throttleable_mw = headroom;
  } else {
    out.fragmentation_mw = headroom;
  }
  return out;
}

}  // namespace joule::sim
