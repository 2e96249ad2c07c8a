#pragma once

// Where the watts go: splits a power domain's unused cap (cap − measured)
// into causes, for joule-sim's stranded-power report. Pure; thread-safe.
//
// With U = max(0, cap − measured):
//   margin           = clamp(committed + reserve − measured, 0, U): power
//                      admission counts as taken (commitments above the
//                      actual draw, the adaptive reserve) but nobody draws;
//   H = U − margin   the admission headroom, all of it in one cause:
//     no_demand        nothing is pending;
//     gpus_full        no node below has the GPUs of any pending job;
//     usable           a pending job that has the GPUs fits at its limit
//                      (it is taken at a next round, or held back by a
//                      reservation or by a domain higher up);
//     not_throttleable one fits only below its limit, at its class-default
//                      floor (throttle-to-fit would start it);
//     fragmentation    none fits even at its floor: headroom too small.
// The idle draw of free GPUs is reported beside these (it is measured).

#include <cstdint>

namespace joule::sim {

struct DomainPowerSample {
  int64_t cap_mw = 0;
  int64_t reserve_mw = 0;
  int64_t committed_mw = 0;
  int64_t measured_mw = 0;
  bool pending = false;  // any job pending
  // Smallest per-node power need among the pending jobs whose GPUs per node
  // fit on some node below (at the job's limit, and at its floor); -1: none.
  int64_t need_at_limit_mw = -1;
  int64_t need_at_floor_mw = -1;
};

struct StrandedSplit {
  int64_t margin_mw = 0;
  int64_t fragmentation_mw = 0;
  int64_t not_throttleable_mw = 0;
  int64_t gpus_full_mw = 0;
  int64_t no_demand_mw = 0;
  int64_t usable_mw = 0;
};

StrandedSplit SplitStranded(const DomainPowerSample& s);

}  // namespace joule::sim
