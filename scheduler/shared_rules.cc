#include "scheduler/shared_rules.h"

#include <algorithm>
#include <limits>

namespace joule::scheduler {

GpuModelSpec OffsetByIdle(const GpuModelSpec& spec, int64_t idle_mw) {
  GpuModelSpec out = spec;
  out.tdp_mw = std::max<int64_t>(0, spec.tdp_mw - idle_mw);
  out.min_limit_mw = std::max<int64_t>(0, spec.min_limit_mw - idle_mw);
  out.max_limit_mw = std::max<int64_t>(0, spec.max_limit_mw - idle_mw);
  return out;
}

int64_t PendingIdleOffsetMw(bool names_model, int64_t model_idle_mw,
                            absl::Span<const int64_t> listed_idle_mw) {
  if (names_model) return model_idle_mw;
  int64_t offset = std::numeric_limits<int64_t>::max();
  for (int64_t idle : listed_idle_mw) offset = std::min(offset, idle);
  return offset == std::numeric_limits<int64_t>::max() ? 0 : offset;
}

int64_t OffsetPower(int64_t power_mw, int64_t offset_mw) {
  if (power_mw <= 0) return 0;
  return std::max<int64_t>(1, power_mw - offset_mw);
}

int64_t ProjectedGpuMw(int64_t reported_mw, int64_t commanded_mw) {
  return commanded_mw > 0 ? std::min(reported_mw, commanded_mw) : reported_mw;
}

int64_t StopFloorMw(int64_t gpu_min_limit_mw, int64_t current_limit_mw) {
  if (gpu_min_limit_mw <= 0) return current_limit_mw;
  if (current_limit_mw <= 0) return gpu_min_limit_mw;
  return std::min(gpu_min_limit_mw, current_limit_mw);
}

}  // namespace joule::scheduler
