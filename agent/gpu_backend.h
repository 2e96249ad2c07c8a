#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "joule/v1/joule.pb.h"

namespace joule::agent {

// The agent's view of the GPUs of its node. Implementations: SimGpuBackend
// (believable simulated GPUs) and NvmlBackend (the driver, via dlopen).
// Implementations are thread-safe: the report loop samples while the command
// loop sets limits.
class GpuBackend {
 public:
  virtual ~GpuBackend() = default;

  // "sim" or "nvml".
  virtual std::string Name() const = 0;

  // Static facts, one per GPU, index order. Valid after creation.
  virtual std::vector<v1::GpuInfo> Discover() const = 0;

  // Live state of every GPU. A GPU that stopped answering comes back with
  // healthy=false and health_detail saying why; the call itself fails only if
  // the backend as a whole is unusable.
  virtual absl::StatusOr<std::vector<v1::GpuStatus>> Sample() = 0;

  // Sets the power limit of GPU `index`, clamped to its [min, max]. Returns
  // the limit now enforced. Refusals (permissions, unsupported) come back as
  // errors whose message carries the driver's words.
  virtual absl::StatusOr<int64_t> SetPowerLimit(uint32_t index,
                                                int64_t limit_mw) = 0;

  // Tells the backend how hard the job on GPU `index` drives it (0 = idle,
  // 1 = flat out). Only the simulated backend models this; real GPUs ignore
  // it because the job itself drives them.
  virtual void SetLoad(uint32_t index, double load) {}
};

}  // namespace joule::agent
