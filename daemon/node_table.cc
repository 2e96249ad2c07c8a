#include "daemon/node_table.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace joule::daemon {

absl::Status NodeTable::Load(
    storage::Store* store,
    const std::function<int(const std::string&)>& leaf_for, absl::Time now) {
  absl::Status parse_error;
  RETURN_IF_ERROR(store->Scan(storage::kNodes, "", [&](auto key, auto value) {
    NodeRt n;
    if (!n.node.ParseFromString(std::string(value))) {
      parse_error = absl::DataLossError(
          absl::StrCat("cannot parse ", std::string(storage::kNodes),
                       " record ", std::string(key)));
      return false;
    }
    for (const v1::GpuStatus& g : n.node.gpus()) {
      GpuRt gpu;
      gpu.info.set_index(g.index());
      gpu.info.set_uuid(g.uuid());
      gpu.info.set_model(g.model());
      gpu.info.set_memory_total_bytes(g.memory_total_bytes());
      gpu.info.set_min_power_limit_mw(g.min_power_limit_mw());
      gpu.info.set_max_power_limit_mw(g.max_power_limit_mw());
      gpu.info.set_default_power_limit_mw(g.power_limit_mw());
      gpu.status = g;
      gpu.status.set_power_mw(0);
      n.gpus.push_back(gpu);
    }
    n.leaf = leaf_for(n.node.name());
    if (n.leaf < 0) return true;  // no longer in the config: forgotten
    n.node.set_state(v1::NODE_STATE_UNREACHABLE);
    n.unreachable_since = now;
    nodes_[n.node.name()] = std::move(n);
    return true;
  }));
  return parse_error;
}

void NodeTable::Put(storage::WriteBatch* batch, const NodeRt& n) const {
  v1::Node stored;
  stored.set_name(n.node.name());
  stored.set_domain(n.node.domain());
  stored.set_address(n.node.address());
  stored.set_gpu_backend(n.node.gpu_backend());
  stored.set_drained(n.node.drained());
  stored.set_base_power_mw(n.node.base_power_mw());
  *stored.mutable_registered_time() = n.node.registered_time();
  for (const GpuRt& g : n.gpus) {
    v1::GpuStatus* s = stored.add_gpus();
    s->set_index(g.info.index());
    s->set_uuid(g.info.uuid());
    s->set_model(g.info.model());
    s->set_memory_total_bytes(g.info.memory_total_bytes());
    s->set_min_power_limit_mw(g.info.min_power_limit_mw());
    s->set_max_power_limit_mw(g.info.max_power_limit_mw());
    s->set_power_limit_mw(g.info.default_power_limit_mw());
  }
  batch->Put(storage::kNodes, n.node.name(), stored.SerializeAsString());
}

absl::Status NodeTable::AdmitNew(absl::Time now) {
  const config::SchedulerSettings& sc = config_->scheduler;
  if (nodes_.size() >= sc.max_nodes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("node_name: the cluster already has ", nodes_.size(),
                     " nodes (scheduler.max_nodes)"));
  }
  while (!recent_registrations_.empty() &&
         now - recent_registrations_.front() >= absl::Seconds(1)) {
    recent_registrations_.pop_front();
  }
  if (recent_registrations_.size() >= sc.max_registrations_per_second) {
    return absl::UnavailableError(
        absl::StrCat("register: more than ", sc.max_registrations_per_second,
                     " new nodes in the last second "
                     "(scheduler.max_registrations_per_second); retry later"));
  }
  recent_registrations_.push_back(now);
  return absl::OkStatus();
}

int64_t NodeTable::IdleMw(const std::string& model) const {
  if (const config::GpuModel* m = config_->FindGpuModel(model);
      m != nullptr && m->idle_mw > 0) {
    return m->idle_mw;
  }
  // Not configured: a tenth of the default limit, as idle GPUs draw.
  for (const auto& [name, n] : nodes_) {
    if (!n.gpus.empty() && n.gpus[0].info.model() == model) {
      return n.gpus[0].info.default_power_limit_mw() / 10;
    }
  }
  return 0;
}

std::vector<scheduler::GpuModelSpec> NodeTable::GpuModels() const {
  std::vector<scheduler::GpuModelSpec> out;
  for (const config::GpuModel& m : config_->gpu_models) {
    scheduler::GpuModelSpec spec{m.name, m.tdp_mw, m.min_limit_mw,
                                 m.max_limit_mw};
    // A range the config leaves out comes from the agents' reports.
    for (const auto& [name, n] : nodes_) {
      if (spec.min_limit_mw > 0 && spec.max_limit_mw > 0) break;
      if (n.gpus.empty() || n.gpus[0].info.model() != m.name) continue;
      if (spec.min_limit_mw == 0) {
        spec.min_limit_mw = n.gpus[0].info.min_power_limit_mw();
      }
      if (spec.max_limit_mw == 0) {
        spec.max_limit_mw = n.gpus[0].info.max_power_limit_mw();
      }
    }
    if (spec.min_limit_mw == 0) spec.min_limit_mw = m.tdp_mw;
    if (spec.max_limit_mw == 0) spec.max_limit_mw = m.tdp_mw;
    out.push_back(std::move(spec));
  }
  // Models the config does not list: as the agents report them (TDP = the
  // default power limit).
  for (const auto& [name, n] : nodes_) {
    if (n.gpus.empty()) continue;
    const v1::GpuInfo& g = n.gpus[0].info;
    const bool known = std::any_of(
        out.begin(), out.end(),
        [&](const scheduler::GpuModelSpec& s) { return s.name == g.model(); });
    if (!known) {
      out.push_back({g.model(), g.default_power_limit_mw(),
                     g.min_power_limit_mw(), g.max_power_limit_mw()});
    }
  }
  return out;
}

scheduler::NodeSnapshot NodeTable::Snapshot(const NodeRt& n) const {
  scheduler::NodeSnapshot ns;
  ns.name = n.node.name();
  ns.domain = n.leaf;
  ns.schedulable = n.ready && !n.node.drained();
  ns.gpu_model = n.gpus.empty() ? "" : n.gpus[0].info.model();
  ns.gpu_count = static_cast<uint32_t>(n.gpus.size());
  ns.free_gpus = 0;
  for (const GpuRt& g : n.gpus) {
    if (g.job_key.empty() && g.stale_key.empty() && g.status.healthy() &&
        g.info.index() < 64) {
      ns.free_gpus |= uint64_t{1} << g.info.index();
    }
    if (!g.status.healthy() && g.info.index() < 64) {
      ns.unhealthy_gpus |= uint64_t{1} << g.info.index();
    }
  }
  ns.measured_mw = n.measured_mw;
  return ns;
}

v1::Node NodeTable::View(
    const NodeRt& n, absl::Time now,
    const std::function<bool(const std::string&)>& visible) const {
  v1::Node out = n.node;
  out.set_state(n.ready ? v1::NODE_STATE_READY : v1::NODE_STATE_UNREACHABLE);
  out.clear_gpus();
  int64_t power = n.node.base_power_mw(), limit = 0;
  uint64_t energy = 0;
  absl::flat_hash_set<std::string> running;
  for (const GpuRt& g : n.gpus) {
    v1::GpuStatus s = g.status;
    s.set_index(g.info.index());
    s.set_uuid(g.info.uuid());
    s.set_model(g.info.model());
    if (s.memory_total_bytes() == 0) {
      s.set_memory_total_bytes(g.info.memory_total_bytes());
    }
    s.set_min_power_limit_mw(g.info.min_power_limit_mw());
    s.set_max_power_limit_mw(g.info.max_power_limit_mw());
    if (!g.job_key.empty()) {
      const std::string id = g.job_key.substr(0, g.job_key.rfind('/'));
      if (visible(id)) {
        s.set_job_id(id);
        running.insert(id);
      }
    }
    if (!n.ready) s.set_power_mw(0);
    power += s.power_mw();
    limit += s.power_limit_mw();
    energy += s.energy_mj();
    *out.add_gpus() = std::move(s);
  }
  out.set_power_mw(n.ready ? power : 0);
  out.set_power_limit_mw(limit);
  out.set_energy_mj(energy);
  for (const std::string& r : running) out.add_running_jobs(r);
  if (n.last_report != absl::InfinitePast()) {
    *out.mutable_last_report_time() = ToProtoTime(n.last_report);
    *out.mutable_report_age() = ToProtoDuration(now - n.last_report);
  }
  return out;
}

}  // namespace joule::daemon
