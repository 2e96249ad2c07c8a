#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "agent/gpu_backend.h"
#include "common/clock.h"

namespace joule::agent {

struct SimGpuOptions {
  uint32_t count = 8;
  std::string model = "H100";
  std::string node_name = "node";  // seeds the UUIDs
  int64_t tdp_mw = 700'000;        // full-load draw when not limited
  int64_t min_limit_mw = 200'000;
  int64_t max_limit_mw = 700'000;
  int64_t idle_mw = 70'000;
  uint64_t memory_bytes = 80ull << 30;
  double ambient_c = 30.0;
  double degrees_per_tdp = 50.0;  // at TDP: ambient + 50 °C
  absl::Duration thermal_time_constant = absl::Seconds(20);
};

// The power model of a simulated GPU, shared with joule-sim: a GPU driven at
// `load` (0..1) wants idle + load × (tdp − idle) and draws that, capped at
// its power limit. Pure.
int64_t SimGpuPowerMw(const SimGpuOptions& o, double load, int64_t limit_mw);

// Believable simulated GPUs: idle power without a job, power rising with the
// job's load up to the current power limit, an energy counter that is the
// exact integral of power over time (piecewise constant between changes;
// nanojoule remainder kept, so nothing is lost to rounding), temperature
// following power with a first-order lag. Owns the per-GPU state; thread-safe
// (mu_). Time comes from the injected clock.
class SimGpuBackend final : public GpuBackend {
 public:
  SimGpuBackend(const SimGpuOptions& options, const Clock* clock);

  std::string Name() const override { return "sim"; }
  std::vector<v1::GpuInfo> Discover() const override;
  absl::StatusOr<std::vector<v1::GpuStatus>> Sample() override;
  absl::StatusOr<int64_t> SetPowerLimit(uint32_t index,
                                        int64_t limit_mw) override;
  void SetLoad(uint32_t index, double load) override;

 private:
  struct Gpu {
    double load = 0;
    int64_t limit_mw = 0;
    uint64_t energy_mj = 0;
    uint64_t energy_rem_nj = 0;  // < 1e6
    double temperature_c = 0;
  };
  void AdvanceLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SimGpuOptions options_;
  const Clock* const clock_;
  mutable absl::Mutex mu_;
  std::vector<Gpu> gpus_ ABSL_GUARDED_BY(mu_);
  absl::Time last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace joule::agent
