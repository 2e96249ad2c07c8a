#include "agent/agent_metrics.h"

#include "absl/strings/str_cat.h"

namespace joule::agent {

void CollectAgentMetrics(GpuBackend* backend, const std::string& node,
                         const std::string& version, metrics::Exposition* e) {
  e->Family("joule_agent_build_info", "gauge",
            "joule-agent's version (value 1).");
  e->Sample("joule_agent_build_info", {{"version", version}}, 1);
  auto sample = backend->Sample();
  e->Family("joule_agent_backend_up", "gauge",
            "1 while the GPU backend answers, else 0.");
  e->Sample("joule_agent_backend_up",
            {{"node", node}, {"backend", backend->Name()}}, sample.ok());
  e->Family("joule_node_power_watts", "gauge",
            "Sum of this node's GPU draw (without base power).");
  e->Family("joule_gpu_power_watts", "gauge", "GPU power draw.");
  e->Family("joule_gpu_power_limit_watts", "gauge", "GPU power limit.");
  e->Family("joule_gpu_utilization_ratio", "gauge", "GPU utilisation, 0..1.");
  e->Family("joule_gpu_temperature_celsius", "gauge", "GPU temperature.");
  e->Family("joule_gpu_energy_joules_total", "counter",
            "Energy the GPU drew since its counter started.");
  e->Family("joule_gpu_healthy", "gauge", "1 while the GPU answers.");
  if (!sample.ok()) return;
  const std::vector<v1::GpuInfo> info = backend->Discover();
  int64_t total_mw = 0;
  for (const v1::GpuStatus& g : *sample) {
    std::string model = g.model();
    if (model.empty() && g.index() < info.size()) {
      model = info[g.index()].model();
    }
    const metrics::Labels l = {
        {"node", node}, {"gpu", absl::StrCat(g.index())}, {"model", model}};
    total_mw += g.power_mw();
    e->Sample("joule_gpu_power_watts", l, g.power_mw() / 1000.0);
    e->Sample("joule_gpu_power_limit_watts", l, g.power_limit_mw() / 1000.0);
    e->Sample("joule_gpu_utilization_ratio", l, g.utilization_pct() / 100.0);
    e->Sample("joule_gpu_temperature_celsius", l, g.temperature_c());
    e->Sample("joule_gpu_energy_joules_total", l, g.energy_mj() / 1000.0);
    e->Sample("joule_gpu_healthy", l, g.healthy() ? 1 : 0);
  }
  e->Sample("joule_node_power_watts", {{"node", node}}, total_mw / 1000.0);
}

}  // namespace joule::agent
