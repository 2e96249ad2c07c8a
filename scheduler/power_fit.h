#pragma once

// Power-aware placement: which of the nodes that can take a job it should
// go to, scored on the power domains above each candidate. A pure rule,
// shared by the daemon and joule-sim through the policy
// (PolicyConfig::power_fit); no clock, no I/O, thread-safe.
//
// Units: int64 milliwatts; ppm = millionths.

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/types/span.h"

namespace joule::scheduler {

// How a single-node job picks among the nodes with the fewest free GPUs
// that fit it (GPU best fit always comes first, so whole nodes stay whole
// for gangs and 8-GPU jobs):
//   kLeaf: least power headroom left on the leaf (rack) domain, then the
//     lowest index (what the policy always did).
//   kEveryLevel: watt best fit at every level: least headroom left, as a
//     share of each domain's admission cap, summed over every domain on the
//     path (rack, row, ..., site), so the job fills the tightest path and
//     the headroom of the others stays together.
//   kBalanced: keeps each domain's share of free power in step with its
//     share of free GPUs: the candidate whose worst domain (the one with the
//     least free power per free GPU after the job) is best, so no domain
//     ends with all GPUs busy and power left over, nor the reverse.
enum class PowerFit { kLeaf, kEveryLevel, kBalanced };

// "leaf", "every-level", "balanced"; nullopt otherwise.
std::optional<PowerFit> ParsePowerFit(std::string_view name);
const char* PowerFitName(PowerFit fit);

// One domain on a candidate's path, before the job is placed.
struct DomainFill {
  int64_t cap_mw = 0;       // admission cap (cap - reserve)
  int64_t headroom_mw = 0;  // cap - committed
  int64_t free_gpus = 0;    // free GPUs of schedulable nodes below
  int64_t gpus = 0;         // GPUs of schedulable nodes below
};

// The score of placing a job that needs `need_mw` and `gpus` GPUs on a node
// whose path (leaf first) is `path`; lower is better. kLeaf: the leaf's
// headroom left in mW. kEveryLevel: sum over the path of (headroom - need)
// / cap in ppm. kBalanced: max over the path of (free - gpus) / all GPUs -
// (headroom - need) / cap, in ppm (a domain with no GPUs or no cap counts
// 0). Domains with cap <= 0 are skipped.
int64_t PowerFitScore(PowerFit fit, absl::Span<const DomainFill> path,
                      int64_t need_mw, int64_t gpus);

}  // namespace joule::scheduler
