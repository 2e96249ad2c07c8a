#include "scheduler/power_fit.h"

#include <algorithm>
#include <limits>

namespace joule::scheduler {
namespace {

// a × 1e6 / b without overflow for |a| up to ~9 × 10^12 mW (9 GW).
int64_t Ppm(int64_t a, int64_t b) {
  if (b <= 0) return 0;
  return static_cast<int64_t>(static_cast<__int128>(a) * 1'000'000 / b);
}

}  // namespace

std::optional<PowerFit> ParsePowerFit(std::string_view name) {
  if (name == "leaf") return PowerFit::kLeaf;
  if (name == "every-level") return PowerFit::kEveryLevel;
  if (name == "balanced") return PowerFit::kBalanced;
  return std::nullopt;
}

const char* PowerFitName(PowerFit fit) {
  switch (fit) {
    case PowerFit::kLeaf:
      return "leaf";
    case PowerFit::kEveryLevel:
      return "every-level";
    case PowerFit::kBalanced:
      return "balanced";
  }
  return "leaf";
}

int64_t PowerFitScore(PowerFit fit, absl::Span<const DomainFill> path,
                      int64_t need_mw, int64_t gpus) {
  if (path.empty()) return 0;
  switch (fit) {
    case PowerFit::kLeaf:
      return path.front().headroom_mw - need_mw;
    case PowerFit::kEveryLevel: {
      int64_t sum = 0;
      for (const DomainFill& d : path) {
        if (d.cap_mw <= 0) continue;
        sum += Ppm(d.headroom_mw - need_mw, d.cap_mw);
      }
      return sum;
    }
    case PowerFit::kBalanced: {
      int64_t worst = std::numeric_limits<int64_t>::min();
      for (const DomainFill& d : path) {
        if (d.cap_mw <= 0) continue;
        const int64_t gpu_share = Ppm(d.free_gpus - gpus, d.gpus);
        const int64_t power_share = Ppm(d.headroom_mw - need_mw, d.cap_mw);
        worst = std::max(worst, gpu_share - power_share);
      }
      return worst == std::numeric_limits<int64_t>::min() ? 0 : worst;
    }
  }
  return 0;
}

}  // namespace joule::scheduler
