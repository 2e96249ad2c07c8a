#include "daemon/metrics_server.h"

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/proto_names.h"
#include "httplib.h"

namespace joule::daemon {
namespace {

double Watts(int64_t mw) { return static_cast<double>(mw) / 1000.0; }

std::string StateName(v1::JobState s) { return JobStateName(s); }

std::string ClassName(v1::ServiceClass c) { return ServiceClassName(c); }

// What a pending job waits for, from its reason: power, gpus, or other.
std::string PendingKind(const std::string& reason) {
  if (absl::StrContains(reason, " power ") ||
      absl::StrContains(reason, "cap")) {
    return "power";
  }
  if (absl::StrContains(reason, "GPU") || absl::StrContains(reason, "node")) {
    return "gpus";
  }
  return "other";
}

}  // namespace

void CollectClusterMetrics(ClusterManager* manager, metrics::Exposition* e) {
  const v1::GetPowerTreeResponse tree = manager->PowerTree();
  e->Family("joule_domain_cap_watts", "gauge", "Power cap of a domain.");
  e->Family("joule_domain_committed_watts", "gauge",
            "Power committed to running jobs and idle GPUs in a domain.");
  e->Family("joule_domain_measured_watts", "gauge",
            "Power measured (last reports) in a domain.");
  e->Family("joule_domain_headroom_watts", "gauge",
            "Cap minus the larger of committed and measured power.");
  for (const v1::PowerDomain& d : tree.domains()) {
    const metrics::Labels l = {{"domain", d.name()}, {"kind", d.kind()}};
    e->Sample("joule_domain_cap_watts", l, Watts(d.cap_mw()));
    e->Sample("joule_domain_committed_watts", l, Watts(d.committed_mw()));
    e->Sample("joule_domain_measured_watts", l, Watts(d.measured_mw()));
    e->Sample("joule_domain_headroom_watts", l, Watts(d.headroom_mw()));
  }

  e->Family("joule_node_up", "gauge", "1 while the node reports, else 0.");
  e->Family("joule_node_power_watts", "gauge",
            "Node power: base plus its GPUs' draw.");
  e->Family("joule_gpu_power_watts", "gauge", "GPU power draw.");
  e->Family("joule_gpu_power_limit_watts", "gauge", "GPU power limit.");
  e->Family("joule_gpu_utilization_ratio", "gauge", "GPU utilisation, 0..1.");
  e->Family("joule_gpu_temperature_celsius", "gauge", "GPU temperature.");
  e->Family("joule_gpu_energy_joules_total", "counter",
            "Energy the GPU drew since its counter started.");
  for (const v1::Node& n : manager->ListNodes()) {
    const metrics::Labels nl = {{"node", n.name()}, {"domain", n.domain()}};
    e->Sample("joule_node_up", nl, n.state() == v1::NODE_STATE_READY ? 1 : 0);
    e->Sample("joule_node_power_watts", nl, Watts(n.power_mw()));
    for (const v1::GpuStatus& g : n.gpus()) {
      const metrics::Labels gl = {{"node", n.name()},
                                  {"gpu", absl::StrCat(g.index())},
                                  {"model", g.model()}};
      e->Sample("joule_gpu_power_watts", gl, Watts(g.power_mw()));
      e->Sample("joule_gpu_power_limit_watts", gl, Watts(g.power_limit_mw()));
      e->Sample("joule_gpu_utilization_ratio", gl, g.utilization_pct() / 100.0);
      e->Sample("joule_gpu_temperature_celsius", gl, g.temperature_c());
      e->Sample("joule_gpu_energy_joules_total", gl, g.energy_mj() / 1000.0);
    }
  }

  std::map<std::pair<std::string, std::string>, int> by_state;
  std::map<std::string, int> pending;
  auto jobs = manager->ListJobs(v1::ListJobsRequest(), "");
  if (jobs.ok()) {
    for (const v1::Job& j : *jobs) {
      by_state[{StateName(j.state()), ClassName(j.spec().service_class())}]++;
      if (j.state() == v1::JOB_STATE_PENDING)
        pending[PendingKind(j.reason())]++;
    }
  }
  e->Family("joule_jobs", "gauge", "Jobs by state and class.");
  for (const auto& [k, n] : by_state) {
    e->Sample("joule_jobs", {{"state", k.first}, {"class", k.second}}, n);
  }
  e->Family("joule_pending_jobs", "gauge",
            "Pending jobs by what they wait for (power, gpus, other).");
  for (const char* kind : {"power", "gpus", "other"}) {
    e->Sample("joule_pending_jobs", {{"reason", kind}}, pending[kind]);
  }
}

TimedStore::TimedStore(storage::Store* base, metrics::Registry* registry)
    : ForwardingStore(base),
      synced_(registry->GetHistogram("joule_store_write_seconds",
                                     "Store write latency.",
                                     {{"sync", "true"}})),
      unsynced_(registry->GetHistogram("joule_store_write_seconds",
                                       "Store write latency.",
                                       {{"sync", "false"}})),
      failed_(registry->GetCounter("joule_store_write_failures_total",
                                   "Store writes that failed.", {})) {}

absl::Status TimedStore::Write(const storage::WriteBatch& batch,
                               const storage::WriteOptions& options) {
  const absl::Time start = absl::Now();
  absl::Status s = base()->Write(batch, options);
  (options.sync ? synced_ : unsynced_)
      ->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  if (!s.ok()) {
    failed_->Inc();
    log::Log(log::Level::kError, "storage-error",
             {{"sync", options.sync ? "true" : "false"},
              {"ops", absl::StrCat(batch.size())},
              {"msg", std::string(s.message())}});
  }
  return s;
}

}  // namespace joule::daemon
