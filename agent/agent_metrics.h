#pragma once

#include <string>

#include "agent/gpu_backend.h"
#include "metrics/registry.h"

namespace joule::agent {

// This node's GPUs as Prometheus gauges, sampled from `backend` at scrape
// time (the same families and labels as jouled's: joule_gpu_power_watts,
// joule_gpu_power_limit_watts, joule_gpu_utilization_ratio,
// joule_gpu_temperature_celsius, joule_gpu_energy_joules_total,
// joule_gpu_healthy), plus joule_node_power_watts{node} and
// joule_agent_build_info{version}. A failed sample leaves the GPU families
// empty and sets joule_agent_backend_up to 0.
void CollectAgentMetrics(GpuBackend* backend, const std::string& node,
                         const std::string& version, metrics::Exposition* e);

}  // namespace joule::agent
