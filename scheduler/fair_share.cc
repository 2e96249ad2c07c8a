#include "scheduler/fair_share.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace joule::scheduler {
namespace {

double HalfLifeSeconds(absl::Duration h) {
  const double s = absl::ToDoubleSeconds(h);
  return s > 0 ? s : 1.0;
}

// 2^-(d/h), d in seconds >= 0.
double Decay(double d, double h) { return std::exp2(-d / h); }

}  // namespace

DecayedUsage AdvanceUsage(const DecayedUsage& u, absl::Time to, int64_t gpus,
                          absl::Duration half_life) {
  if (u.at == absl::InfinitePast()) return DecayedUsage{0, to};
  if (to <= u.at) return u;
  const double h = HalfLifeSeconds(half_life);
  const double f = Decay(absl::ToDoubleSeconds(to - u.at), h);
  DecayedUsage out;
  out.at = to;
  out.gpu_seconds = u.gpu_seconds * f +
                    static_cast<double>(gpus) * h / std::numbers::ln2 * (1 - f);
  out.gpu_seconds = std::max(0.0, out.gpu_seconds);
  return out;
}

double UsageAt(const DecayedUsage& u, absl::Time now, int64_t gpus,
               absl::Duration half_life) {
  return AdvanceUsage(u, now, gpus, half_life).gpu_seconds;
}

DecayedUsage AddSpan(const DecayedUsage& u, int64_t gpus, absl::Time from,
                     absl::Time to, absl::Duration half_life) {
  if (u.at == absl::InfinitePast()) return u;
  to = std::min(to, u.at);
  if (from >= to || gpus == 0) return u;
  const double h = HalfLifeSeconds(half_life);
  // g · ∫_from^to 2^-((at - s)/h) ds = g · h/ln 2 · (2^-((at-to)/h) −
  // 2^-((at-from)/h)).
  const double span = h / std::numbers::ln2 *
                      (Decay(absl::ToDoubleSeconds(u.at - to), h) -
                       Decay(absl::ToDoubleSeconds(u.at - from), h));
  DecayedUsage out = u;
  out.gpu_seconds =
      std::max(0.0, u.gpu_seconds + static_cast<double>(gpus) * span);
  return out;
}

double FairShareKey(double gpu_seconds, uint32_t weight) {
  return gpu_seconds / 3600.0 / std::max<uint32_t>(weight, 1);
}

}  // namespace joule::scheduler
