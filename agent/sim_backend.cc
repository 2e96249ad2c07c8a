#include "agent/sim_backend.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace joule::agent {

int64_t SimGpuPowerMw(const SimGpuOptions& o, double load, int64_t limit_mw) {
  load = std::clamp(load, 0.0, 1.0);
  const int64_t want =
      o.idle_mw + static_cast<int64_t>(std::llround(
                      load * static_cast<double>(o.tdp_mw - o.idle_mw)));
  return std::min(want, limit_mw);
}

SimGpuBackend::SimGpuBackend(const SimGpuOptions& options, const Clock* clock)
    : options_(options), clock_(clock) {
  gpus_.resize(options.count);
  for (Gpu& g : gpus_) {
    g.limit_mw = options.tdp_mw;
    g.temperature_c = options.ambient_c;
  }
  last_ = clock_->Now();
}

std::vector<v1::GpuInfo> SimGpuBackend::Discover() const {
  std::vector<v1::GpuInfo> out;
  for (uint32_t i = 0; i < options_.count; ++i) {
    v1::GpuInfo info;
    info.set_index(i);
    // Stable per (node, index), formatted like a real GPU UUID.
    const uint64_t h = std::hash<std::string>()(options_.node_name);
    info.set_uuid(absl::StrFormat("GPU-%08x-%04x-%04x-%04x-%012x",
                                  static_cast<uint32_t>(h), i & 0xffff,
                                  static_cast<uint32_t>(h >> 32) & 0xffff,
                                  0x5157, static_cast<uint64_t>(i) + 1));
    info.set_model(options_.model);
    info.set_memory_total_bytes(options_.memory_bytes);
    info.set_min_power_limit_mw(options_.min_limit_mw);
    info.set_max_power_limit_mw(options_.max_limit_mw);
    info.set_default_power_limit_mw(options_.tdp_mw);
    out.push_back(info);
  }
  return out;
}

void SimGpuBackend::AdvanceLocked(absl::Time now) {
  if (now <= last_) return;
  const int64_t dt_us = absl::ToInt64Microseconds(now - last_);
  const double dt_s = absl::ToDoubleSeconds(now - last_);
  const double tau = absl::ToDoubleSeconds(options_.thermal_time_constant);
  for (Gpu& g : gpus_) {
    const int64_t p = SimGpuPowerMw(options_, g.load, g.limit_mw);
    // mW × µs = nJ. Carry the remainder so the counter is exact.
    const uint64_t nj =
        static_cast<uint64_t>(p) * static_cast<uint64_t>(dt_us) +
        g.energy_rem_nj;
    g.energy_mj += nj / 1'000'000;
    g.energy_rem_nj = nj % 1'000'000;
    const double target =
        options_.ambient_c +
        options_.degrees_per_tdp * static_cast<double>(p) /
            static_cast<double>(std::max<int64_t>(options_.tdp_mw, 1));
    g.temperature_c +=
        (target - g.temperature_c) * (1.0 - std::exp(-dt_s / tau));
  }
  last_ = now;
}

absl::StatusOr<std::vector<v1::GpuStatus>> SimGpuBackend::Sample() {
  absl::MutexLock lock(&mu_);
  AdvanceLocked(clock_->Now());
  std::vector<v1::GpuInfo> infos = Discover();
  std::vector<v1::GpuStatus> out;
  out.reserve(gpus_.size());
  for (uint32_t i = 0; i < gpus_.size(); ++i) {
    const Gpu& g = gpus_[i];
    v1::GpuStatus s;
    s.set_index(i);
    s.set_uuid(infos[i].uuid());
    s.set_model(options_.model);
    s.set_utilization_pct(static_cast<uint32_t>(std::lround(g.load * 100)));
    s.set_memory_total_bytes(options_.memory_bytes);
    s.set_memory_used_bytes(g.load > 0 ? options_.memory_bytes * 3 / 4
                                       : options_.memory_bytes / 200);
    s.set_temperature_c(static_cast<int32_t>(std::lround(g.temperature_c)));
    s.set_power_mw(SimGpuPowerMw(options_, g.load, g.limit_mw));
    s.set_energy_mj(g.energy_mj);
    s.set_power_limit_mw(g.limit_mw);
    s.set_min_power_limit_mw(options_.min_limit_mw);
    s.set_max_power_limit_mw(options_.max_limit_mw);
    s.set_healthy(true);
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<int64_t> SimGpuBackend::SetPowerLimit(uint32_t index,
                                                     int64_t limit_mw) {
  absl::MutexLock lock(&mu_);
  if (index >= gpus_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("gpu_index: ", index,
                     " is not a GPU of this node (it has ", gpus_.size(), ")"));
  }
  AdvanceLocked(clock_->Now());
  gpus_[index].limit_mw =
      std::clamp(limit_mw, options_.min_limit_mw, options_.max_limit_mw);
  return gpus_[index].limit_mw;
}

void SimGpuBackend::SetLoad(uint32_t index, double load) {
  absl::MutexLock lock(&mu_);
  if (index >= gpus_.size()) return;
  AdvanceLocked(clock_->Now());
  gpus_[index].load = std::clamp(load, 0.0, 1.0);
}

}  // namespace joule::agent
