#include "daemon/config_reload.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/units.h"
#include "daemon/cluster_manager.h"
#include "daemon/gate.h"
#include "daemon/services.h"

namespace joule::daemon {
namespace {

std::string Restart(const std::string& what) {
  return absl::StrCat(what,
                      " changed: only domain caps reload without a restart "
                      "(restart jouled to apply it); nothing changed");
}

bool SameScheduler(const config::SchedulerSettings& a,
                   const config::SchedulerSettings& b) {
  return a.admission == b.admission &&
         a.measured_percentile == b.measured_percentile &&
         a.measured_margin_pct == b.measured_margin_pct &&
         a.default_base_power_mw == b.default_base_power_mw &&
         a.default_domain == b.default_domain &&
         a.lost_job_policy == b.lost_job_policy &&
         a.unreachable_requeue_after == b.unreachable_requeue_after &&
         a.stop_grace == b.stop_grace &&
         a.fair_share_half_life == b.fair_share_half_life &&
         a.max_nodes == b.max_nodes &&
         a.max_registrations_per_second == b.max_registrations_per_second &&
         a.starting_timeout == b.starting_timeout;
}

}  // namespace

absl::StatusOr<std::vector<CapChange>> DiffConfig(
    const config::ClusterConfig& current, const config::ClusterConfig& next) {
  if (current.domains.size() != next.domains.size()) {
    return absl::FailedPreconditionError(Restart("the set of domains"));
  }
  std::vector<CapChange> caps;
  for (const config::Domain& d : next.domains) {
    const config::Domain* was = current.FindDomain(d.name);
    if (was == nullptr) {
      return absl::FailedPreconditionError(
          Restart(absl::StrCat("domain ", d.name, " (new)")));
    }
    if (was->parent != d.parent || was->kind != d.kind) {
      return absl::FailedPreconditionError(
          Restart(absl::StrCat("domain ", d.name, "'s parent or kind")));
    }
    if (was->cap_mw != d.cap_mw)
      caps.push_back({d.name, was->cap_mw, d.cap_mw});
  }
  if (current.nodes.size() != next.nodes.size()) {
    return absl::FailedPreconditionError(Restart("the set of nodes"));
  }
  for (const config::NodeSlot& n : next.nodes) {
    const config::NodeSlot* was = current.FindNode(n.name);
    if (was == nullptr || was->domain != n.domain ||
        was->base_power_mw != n.base_power_mw) {
      return absl::FailedPreconditionError(
          Restart(absl::StrCat("node ", n.name)));
    }
  }
  if (current.gpu_models.size() != next.gpu_models.size()) {
    return absl::FailedPreconditionError(Restart("the GPU models"));
  }
  for (const config::GpuModel& m : next.gpu_models) {
    const config::GpuModel* was = current.FindGpuModel(m.name);
    if (was == nullptr || was->tdp_mw != m.tdp_mw ||
        was->min_limit_mw != m.min_limit_mw ||
        was->max_limit_mw != m.max_limit_mw || was->idle_mw != m.idle_mw) {
      return absl::FailedPreconditionError(
          Restart(absl::StrCat("GPU model ", m.name)));
    }
  }
  if (current.node_models != next.node_models) {
    return absl::FailedPreconditionError(Restart("the node models"));
  }
  if (!SameScheduler(current.scheduler, next.scheduler)) {
    return absl::FailedPreconditionError(Restart("scheduler { ... }"));
  }
  if (current.tenant_weights != next.tenant_weights) {
    return absl::FailedPreconditionError(Restart("the tenant weights"));
  }
  if (current.allow_unpriced != next.allow_unpriced) {
    return absl::FailedPreconditionError(Restart("billing { allow_unpriced }"));
  }
  if (current.finished_job_retention != next.finished_job_retention ||
      current.event_retention != next.event_retention) {
    return absl::FailedPreconditionError(Restart("retention"));
  }
  return caps;
}

ConfigReloader::ConfigReloader(std::string path, config::ClusterConfig current,
                               ClusterManager* manager)
    : path_(std::move(path)), manager_(manager), current_(std::move(current)) {}

absl::StatusOr<v1::ReloadConfigResponse> ConfigReloader::Reload() {
  absl::MutexLock lock(&mu_);
  auto refuse = [&](const absl::Status& s) {
    log::Log(log::Level::kWarn, "config-reload",
             {{"path", path_},
              {"result", "refused"},
              {"msg", std::string(s.message())}});
    manager_
        ->RecordEvent("config", path_,
                      absl::StrCat("reload refused: ", s.message()))
        .IgnoreError();
    return s;
  };
  if (path_.empty()) {
    return absl::FailedPreconditionError(
        "jouled runs with its built-in config (no --config): nothing to "
        "reload");
  }
  auto next = config::LoadClusterConfig(path_);
  if (!next.ok())
    return refuse(absl::InvalidArgumentError(next.status().message()));
  auto caps = DiffConfig(current_, *next);
  if (!caps.ok()) return refuse(caps.status());
  v1::ReloadConfigResponse resp;
  resp.set_path(path_);
  for (const CapChange& c : *caps) {
    v1::SetPowerCapRequest r;
    r.set_domain(c.domain);
    r.set_cap_mw(c.new_mw);
    r.set_reason(absl::StrCat("config reload (", path_, ")"));
    auto d = manager_->SetPowerCap(r);
    if (!d.ok()) {
      // Earlier caps of this reload stay applied (each is its own change);
      // the config in force keeps the old value of this one and later ones.
      return refuse(absl::Status(
          d.status().code(),
          absl::StrCat("domain ", c.domain, ": ", d.status().message(),
                       resp.changes_size() > 0
                           ? absl::StrCat("; applied before it: ",
                                          absl::StrJoin(resp.changes(), ", "))
                           : "")));
    }
    for (config::Domain& cur : current_.domains) {
      if (cur.name == c.domain) cur.cap_mw = c.new_mw;
    }
    resp.add_changes(absl::StrCat(c.domain, " cap ", FormatPower(c.old_mw),
                                  " -> ", FormatPower(c.new_mw)));
  }
  const std::string summary = resp.changes().empty()
                                  ? std::string("no change")
                                  : absl::StrJoin(resp.changes(), ", ");
  log::Log(log::Level::kInfo, "config-reload",
           {{"path", path_}, {"result", "applied"}, {"msg", summary}});
  manager_->RecordEvent("config", path_, absl::StrCat("reloaded: ", summary))
      .IgnoreError();
  return resp;
}

grpc::ServerUnaryReactor* AdminServiceImpl::ReloadConfig(
    grpc::CallbackServerContext* ctx, const v1::ReloadConfigRequest* req,
    v1::ReloadConfigResponse* resp) {
  return gate_->Later(ctx, "/joule.v1.AdminService/ReloadConfig", "",
                      [this, resp](const Caller&) -> absl::Status {
                        if (!reload_) {
                          return absl::FailedPreconditionError(
                              "this jouled cannot reload its config");
                        }
                        auto r = reload_();
                        if (!r.ok()) return r.status();
                        *resp = std::move(*r);
                        return absl::OkStatus();
                      });
}

}  // namespace joule::daemon
