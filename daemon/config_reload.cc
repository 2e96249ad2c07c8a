#include "daemon/config_reload.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "daemon/cluster_manager.h"
#include "daemon/gate.h"
#include "daemon/services.h"
#include "daemon/validation.h"
#include "scheduler/power_fit.h"
#include "scheduler/power_options.h"
#include "scheduler/time_limits.h"

namespace joule::daemon {
namespace {

absl::Status Restart(const std::string& what) {
  return absl::FailedPreconditionError(absl::StrCat(
      what,
      " changed: that needs a restart of jouled (a reload applies caps, "
      "tenant weights and quotas, the scheduler settings but admission, "
      "default_node_model and default_domain, and log.level); nothing "
      "changed"));
}

std::string Permille(int64_t p) { return absl::StrFormat("%g", p / 1000.0); }

std::string FloorsText(const scheduler::ClassFloors& f) {
  if (!f.enabled) return "off";
  struct Class {
    const char* name;
    int64_t floor_permille;
    int64_t start_permille;
  };
  const Class classes[] = {
      {"reserved", f.reserved_permille, f.reserved_start_permille},
      {"on-demand", f.on_demand_permille, f.on_demand_start_permille},
      {"spot", f.spot_permille, f.spot_start_permille},
  };
  // The three floors, then the start floors only where they are below the
  // floor (else they do nothing).
  std::string floors, starts;
  for (const Class& c : classes) {
    absl::StrAppend(&floors, floors.empty() ? "" : ",", c.name, "=",
                    Permille(c.floor_permille));
    if (c.start_permille < c.floor_permille) {
      absl::StrAppend(&starts, ",", c.name,
                      "-start=", Permille(c.start_permille));
    }
  }
  return floors + starts;
}

std::string LimitText(int64_t v) {
  return v == scheduler::kNoLimit ? "none" : absl::StrCat(v);
}

const char* PolicyText(config::LostJobPolicy p) {
  return p == config::LostJobPolicy::kFail ? "fail" : "requeue";
}

// Appends a change when the two texts differ.
void Diff(std::vector<SettingChange>* out, std::string field, std::string was,
          std::string now) {
  if (was != now) {
    out->push_back({std::move(field), std::move(was), std::move(now)});
  }
}

void DiffScheduler(const config::SchedulerSettings& a,
                   const config::SchedulerSettings& b,
                   std::vector<SettingChange>* out) {
  const auto d = [](absl::Duration x) { return absl::FormatDuration(x); };
  const std::string s = "scheduler.";
  Diff(out, s + "measured_percentile", absl::StrCat(a.measured_percentile),
       absl::StrCat(b.measured_percentile));
  Diff(out, s + "measured_margin_pct", absl::StrCat(a.measured_margin_pct),
       absl::StrCat(b.measured_margin_pct));
  Diff(out, s + "lost_job_policy", PolicyText(a.lost_job_policy),
       PolicyText(b.lost_job_policy));
  Diff(out, s + "unreachable_requeue_after", d(a.unreachable_requeue_after),
       d(b.unreachable_requeue_after));
  Diff(out, s + "stop_grace", d(a.stop_grace), d(b.stop_grace));
  Diff(out, s + "max_preempt_grace", d(a.max_preempt_grace),
       d(b.max_preempt_grace));
  Diff(out, s + "fair_share_half_life", d(a.fair_share_half_life),
       d(b.fair_share_half_life));
  Diff(out, s + "max_nodes", absl::StrCat(a.max_nodes),
       absl::StrCat(b.max_nodes));
  Diff(out, s + "max_registrations_per_second",
       absl::StrCat(a.max_registrations_per_second),
       absl::StrCat(b.max_registrations_per_second));
  Diff(out, s + "starting_timeout", d(a.starting_timeout),
       d(b.starting_timeout));
  for (const scheduler::ServiceClass cls :
       {scheduler::ServiceClass::kReserved, scheduler::ServiceClass::kOnDemand,
        scheduler::ServiceClass::kSpot}) {
    const std::string at =
        absl::StrCat(s, "time_limit[", scheduler::ServiceClassName(cls), "].");
    const scheduler::ClassTimeLimit& x = a.time_limits.For(cls);
    const scheduler::ClassTimeLimit& y = b.time_limits.For(cls);
    Diff(out, at + "default_max_runtime",
         scheduler::FormatLimit(x.default_max_runtime),
         scheduler::FormatLimit(y.default_max_runtime));
    Diff(out, at + "max_runtime_limit",
         scheduler::FormatLimit(x.max_runtime_limit),
         scheduler::FormatLimit(y.max_runtime_limit));
  }
  Diff(out, s + "class_floors", FloorsText(a.class_floors),
       FloorsText(b.class_floors));
  Diff(out, s + "power_fit", scheduler::PowerFitName(a.power_fit),
       scheduler::PowerFitName(b.power_fit));
  Diff(out, s + "efficiency_knee", Permille(a.efficiency_knee_permille),
       Permille(b.efficiency_knee_permille));
  Diff(out, s + "plus_commit",
       std::string(scheduler::PlusCommitName(a.plus_commit.kind)),
       std::string(scheduler::PlusCommitName(b.plus_commit.kind)));
}

void DiffTenants(const config::ClusterConfig& a, const config::ClusterConfig& b,
                 std::vector<SettingChange>* out) {
  // Sorted, so that the changes come in the same order on every reload.
  std::set<std::string> names;
  for (const auto& [name, w] : b.tenant_weights) names.insert(name);
  const scheduler::TenantQuota none;
  for (const std::string& name : names) {
    const std::string at = absl::StrCat("tenant[", name, "].");
    auto wa = a.tenant_weights.find(name);
    Diff(out, at + "fair_share_weight",
         wa == a.tenant_weights.end() ? "none" : absl::StrCat(wa->second),
         absl::StrCat(b.tenant_weights.at(name)));
    auto qa = a.tenant_quotas.find(name);
    auto qb = b.tenant_quotas.find(name);
    const scheduler::TenantQuota& x =
        qa == a.tenant_quotas.end() ? none : qa->second;
    const scheduler::TenantQuota& y =
        qb == b.tenant_quotas.end() ? none : qb->second;
    for (int c = 0; c < 3; ++c) {
      Diff(out,
           absl::StrCat(at, "quota.max_running_gpus[",
                        scheduler::ServiceClassName(
                            static_cast<scheduler::ServiceClass>(c)),
                        "]"),
           LimitText(x.max_running_gpus[c]), LimitText(y.max_running_gpus[c]));
    }
    Diff(out, at + "quota.max_pending_jobs", LimitText(x.max_pending_jobs),
         LimitText(y.max_pending_jobs));
  }
}

}  // namespace

std::string SettingChange::Text() const {
  return absl::StrCat(field, " ", old_value, " -> ", new_value);
}

absl::StatusOr<ReloadPlan> DiffConfig(const config::ClusterConfig& current,
                                      const config::ClusterConfig& next) {
  ReloadPlan plan;
  if (current.domains.size() != next.domains.size()) {
    return Restart("the set of domains");
  }
  for (const config::Domain& d : next.domains) {
    const config::Domain* was = current.FindDomain(d.name);
    if (was == nullptr) {
      return Restart(absl::StrCat("domain ", d.name, " (new)"));
    }
    if (was->parent != d.parent || was->kind != d.kind) {
      return Restart(absl::StrCat("domain ", d.name, "'s parent or kind"));
    }
    if (was->cap_mw != d.cap_mw) {
      plan.caps.push_back({d.name, was->cap_mw, d.cap_mw});
    }
  }
  if (current.nodes.size() != next.nodes.size()) {
    return Restart("the set of nodes");
  }
  for (const config::NodeSlot& n : next.nodes) {
    const config::NodeSlot* was = current.FindNode(n.name);
    if (was == nullptr || was->domain != n.domain ||
        was->base_power_mw != n.base_power_mw) {
      return Restart(absl::StrCat("node ", n.name));
    }
  }
  if (current.gpu_models.size() != next.gpu_models.size()) {
    return Restart("the GPU models");
  }
  for (const config::GpuModel& m : next.gpu_models) {
    const config::GpuModel* was = current.FindGpuModel(m.name);
    if (was == nullptr || was->tdp_mw != m.tdp_mw ||
        was->min_limit_mw != m.min_limit_mw ||
        was->max_limit_mw != m.max_limit_mw || was->idle_mw != m.idle_mw) {
      return Restart(absl::StrCat("GPU model ", m.name));
    }
  }
  if (current.node_models != next.node_models) {
    return Restart("the node models");
  }
  const config::SchedulerSettings& a = current.scheduler;
  const config::SchedulerSettings& b = next.scheduler;
  if (a.admission != b.admission) return Restart("scheduler.admission");
  if (a.default_base_power_mw != b.default_base_power_mw) {
    return Restart("scheduler.default_node_model");
  }
  if (a.default_domain != b.default_domain) {
    return Restart("scheduler.default_domain");
  }
  for (const auto& [name, w] : current.tenant_weights) {
    if (!next.tenant_weights.contains(name)) {
      return Restart(absl::StrCat("tenant ", name, " (removed)"));
    }
  }
  if (current.allow_unpriced != next.allow_unpriced) {
    return Restart("billing.allow_unpriced");
  }
  if (current.finished_job_retention != next.finished_job_retention ||
      current.event_retention != next.event_retention) {
    return Restart("retention");
  }
  DiffScheduler(a, b, &plan.settings);
  DiffTenants(current, next, &plan.settings);
  Diff(&plan.settings, "log.level",
       current.log_level.empty() ? "(--log-level)" : current.log_level,
       next.log_level.empty() ? "(--log-level)" : next.log_level);
  plan.scheduler = b;
  plan.tenant_quotas = next.tenant_quotas;
  plan.tenant_weights = next.tenant_weights;
  plan.log_level = next.log_level;
  return plan;
}

namespace {

// jouled's --log-level: the level in force when the first reloader of the
// process is made, before any config's log.level (an HA standby makes a
// new Daemon, and reloader, each time it leads).
log::Level FlagLevel() {
  static const log::Level flag = log::CurrentLevel();
  return flag;
}

log::Level LevelOr(const std::string& name, log::Level fallback) {
  log::Level l = fallback;
  if (!name.empty()) log::ParseLevel(name, &l).IgnoreError();
  return l;
}

}  // namespace

ConfigReloader::ConfigReloader(std::string path, config::ClusterConfig current,
                               ClusterManager* manager)
    : path_(std::move(path)),
      manager_(manager),
      flag_level_(FlagLevel()),
      current_(std::move(current)) {
  if (!current_.log_level.empty()) {
    log::SetLevel(LevelOr(current_.log_level, flag_level_));
  }
}

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
  auto plan = DiffConfig(current_, *next);
  if (!plan.ok()) return refuse(plan.status());
  v1::ReloadConfigResponse resp;
  resp.set_path(path_);
  // The level first, so that what the new settings cause is logged at it;
  // put back if the rest fails.
  const log::Level level_before = log::CurrentLevel();
  log::SetLevel(LevelOr(plan->log_level, flag_level_));
  absl::StatusOr<std::vector<std::string>> applied = std::vector<std::string>();
  if (!plan->empty()) {
    applied = manager_->ApplyConfigReload(
        *plan, absl::StrCat("config reload (", path_, ")"));
    if (!applied.ok()) {
      log::SetLevel(level_before);
      return refuse(absl::Status(
          applied.status().code(),
          absl::StrCat(applied.status().message(), "; nothing changed")));
    }
  }
  for (const CapChange& c : plan->caps) {
    resp.add_changes(absl::StrCat(c.domain, " cap ", FormatPower(c.old_mw),
                                  " -> ", FormatPower(c.new_mw)));
  }
  for (const SettingChange& s : plan->settings) resp.add_changes(s.Text());
  for (const std::string& w : *applied) {
    resp.add_changes(absl::StrCat("warning: ", w));
  }
  // The config in force is now the new file (what differs was applied).
  current_ = std::move(*next);
  const std::string summary = resp.changes().empty()
                                  ? std::string("no change")
                                  : absl::StrJoin(resp.changes(), ", ");
  log::Log(log::Level::kInfo, "config-reload",
           {{"path", path_}, {"result", "applied"}, {"msg", summary}});
  manager_->RecordEvent("config", path_, absl::StrCat("reloaded: ", summary))
      .IgnoreError();
  return resp;
}

absl::StatusOr<std::vector<std::string>> ClusterManager::ApplyConfigReload(
    const ReloadPlan& plan, const std::string& reason) {
  RETURN_IF_ERROR(validation::Text("reason", reason));
  absl::MutexLock lock(&mu_);
  std::vector<int> index;
  for (const CapChange& c : plan.caps) {
    const int i = domains_.Find(c.domain);
    if (i < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("domain: \"", c.domain, "\" is not a power domain"));
    }
    index.push_back(i);
  }
  const std::vector<int64_t> floor = DomainIdleFloorLocked();
  const absl::Time now = options_.clock->Now();
  storage::WriteBatch batch;
  std::vector<std::string> warnings;
  for (size_t k = 0; k < plan.caps.size(); ++k) {
    const CapChange& c = plan.caps[k];
    const int i = index[k];
    domains_.PutCap(i, c.new_mw, now, reason, &batch);
    AddEventLocked(&batch, "cap", c.domain,
                   absl::StrCat("cap ", FormatPower(domains_[i].cap_mw), " -> ",
                                FormatPower(c.new_mw), ": ", reason));
    if (c.new_mw < floor[i]) {
      warnings.push_back(absl::StrCat(
          "cap ", FormatPower(c.new_mw), " is below the idle draw ",
          FormatPower(floor[i]), " of ", c.domain,
          ": no job can start there, and running jobs are throttled and "
          "preempted"));
      AddEventLocked(&batch, "power", c.domain, warnings.back());
    }
  }
  for (const SettingChange& s : plan.settings) {
    AddEventLocked(&batch, "config", s.field,
                   absl::StrCat(s.Text(), ": ", reason));
  }
  RETURN_IF_ERROR(CommitLocked(batch));
  // Durable: now the memory (nothing below fails).
  for (size_t k = 0; k < plan.caps.size(); ++k) {
    domains_.SetCap(index[k], plan.caps[k].new_mw);
  }
  for (config::Domain& d : options_.config.domains) {
    for (const CapChange& c : plan.caps) {
      if (c.domain == d.name) d.cap_mw = c.new_mw;
    }
  }
  options_.config.scheduler = plan.scheduler;
  options_.config.tenant_quotas = plan.tenant_quotas;
  options_.config.tenant_weights = plan.tenant_weights;
  options_.config.log_level = plan.log_level;
  tenants_.SetConfigWeights(plan.tenant_weights);
  power_dirty_ = true;
  NotifyLocked();
  return warnings;
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
