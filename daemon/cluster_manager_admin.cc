// ClusterManager: the operator API: nodes, the power tree and caps, events,
// tenants.
#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "daemon/cluster_manager.h"
#include "daemon/controller_util.h"
#include "daemon/validation.h"

namespace joule::daemon {

v1::Node ClusterManager::NodeViewLocked(
    const NodeRt& n, absl::Time now, const std::string& viewer_tenant) const {
  return nodes_.View(n, now, [&](const std::string& id) {
    auto j = jobs_.find(id);
    return viewer_tenant.empty() ||
           (j != jobs_.end() && j->second.job.spec().tenant() == viewer_tenant);
  });
}

std::vector<v1::Node> ClusterManager::ListNodes(
    const std::string& viewer_tenant) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  std::vector<v1::Node> out;
  for (const auto& [name, n] : nodes_) {
    out.push_back(NodeViewLocked(n, now, viewer_tenant));
  }
  return out;
}

absl::StatusOr<v1::Node> ClusterManager::GetNode(
    const std::string& name, const std::string& viewer_tenant) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("name: no node \"", name, "\""));
  }
  return NodeViewLocked(it->second, options_.clock->Now(), viewer_tenant);
}

std::string ClusterManager::NodeDomain(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(name);
  return it == nodes_.end() ? "" : it->second.node.domain();
}

absl::StatusOr<v1::Node> ClusterManager::DrainNode(const std::string& name,
                                                   bool drain) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("name: no node \"", name, "\""));
  }
  NodeRt& n = it->second;
  if (n.node.drained() != drain) {
    n.node.set_drained(drain);
    storage::WriteBatch batch;
    PutNodeLocked(&batch, n);
    AddEventLocked(&batch, "node", name,
                   drain ? "drained: no new jobs; running jobs finish"
                         : "undrained: accepts jobs again");
    RETURN_IF_ERROR(CommitLocked(batch));
    NotifyLocked();
  }
  return NodeViewLocked(n, options_.clock->Now());
}

absl::Status ClusterManager::RemoveNode(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    return absl::NotFoundError(absl::StrCat("name: no node \"", name, "\""));
  }
  NodeRt& n = it->second;
  std::vector<std::string> placed;
  for (const std::string& id : jobs_.placed()) {
    const JobRt& j = jobs_.at(id);
    for (const v1::Allocation& al : j.job.allocations()) {
      if (al.node() == name) placed.push_back(id);
    }
  }
  bool stale = false;
  for (const Gpu& g : n.gpus) stale = stale || !g.stale_key.empty();
  if (!placed.empty() || stale) {
    std::sort(placed.begin(), placed.end());
    return absl::FailedPreconditionError(
        absl::StrCat("name: node ", name, " still has jobs placed on it (",
                     placed.empty() ? "old attempts still running"
                                    : absl::StrJoin(placed, ", "),
                     "); drain it and wait, or cancel them"));
  }
  if (n.link != nullptr && n.ready) {
    return absl::FailedPreconditionError(absl::StrCat(
        "name: the agent of ", name,
        " is connected and reporting; stop it first (it would register "
        "again)"));
  }
  storage::WriteBatch batch;
  batch.Delete(storage::kNodes, name);
  AddEventLocked(&batch, "node", name, "removed by the operator");
  RETURN_IF_ERROR(CommitLocked(batch));
  domains_.AddNode(n.leaf, -1);
  domains_.AddMeasured(n.leaf, -n.measured_mw);
  nodes_.erase(it);
  NotifyLocked();
  return absl::OkStatus();
}

v1::GetPowerTreeResponse ClusterManager::PowerTree() {
  absl::MutexLock lock(&mu_);
  return domains_.Tree(DomainCommittedLocked(), DomainIdleFloorLocked());
}

absl::StatusOr<v1::PowerDomain> ClusterManager::SetPowerCap(
    const v1::SetPowerCapRequest& r) {
  RETURN_IF_ERROR(ValidateSetPowerCap(r));
  absl::MutexLock lock(&mu_);
  const int i = domains_.Find(r.domain());
  if (i < 0) {
    return absl::NotFoundError(
        absl::StrCat("domain: \"", r.domain(), "\" is not a power domain"));
  }
  const int64_t old = domains_[i].cap_mw;
  const std::vector<int64_t> floor = DomainIdleFloorLocked();
  storage::WriteBatch batch;
  domains_.PutCap(i, r.cap_mw(), options_.clock->Now(), r.reason(), &batch);
  AddEventLocked(
      &batch, "cap", domains_[i].name,
      absl::StrCat("cap ", FormatPower(old), " -> ", FormatPower(r.cap_mw()),
                   r.reason().empty() ? "" : ": ", r.reason()));
  // Accepted, but no job can run under it: said in the reply and an event.
  std::string warning;
  if (r.cap_mw() < floor[i]) {
    warning = absl::StrCat("cap ", FormatPower(r.cap_mw()),
                           " is below the idle draw ", FormatPower(floor[i]),
                           " of ", domains_[i].name,
                           ": no job can start there, and running jobs are "
                           "throttled and preempted");
    AddEventLocked(&batch, "power", domains_[i].name, warning);
  }
  RETURN_IF_ERROR(CommitLocked(batch));
  domains_.SetCap(i, r.cap_mw());
  power_dirty_ = true;
  NotifyLocked();
  v1::PowerDomain out =
      domains_.View(i, DomainCommittedLocked()[i], floor[i]);
  out.set_warning(warning);
  return out;
}

absl::StatusOr<std::vector<v1::Event>> ClusterManager::ListEvents(
    const v1::ListEventsRequest& r, const std::string& viewer_tenant) {
  absl::flat_hash_set<std::string> own_jobs;
  if (!viewer_tenant.empty()) {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, j] : jobs_) {
      if (j.job.spec().tenant() == viewer_tenant) own_jobs.insert(id);
    }
  }
  return events_.List(r, viewer_tenant.empty() ? nullptr : &own_jobs);
}

absl::Status ClusterManager::RecordEvent(std::string kind, std::string subject,
                                         std::string message) {
  absl::MutexLock lock(&mu_);
  storage::WriteBatch batch;
  AddEventLocked(&batch, std::move(kind), std::move(subject),
                 std::move(message));
  return CommitLocked(batch);
}

absl::StatusOr<v1::Tenant> ClusterManager::CreateTenant(const v1::Tenant& t) {
  RETURN_IF_ERROR(ValidName("tenant.name", t.name()));
  if (t.fair_share_weight() > 1000) {
    return absl::InvalidArgumentError(
        "tenant.fair_share_weight: must be within 1..1000");
  }
  absl::MutexLock lock(&mu_);
  return tenants_.Create(t, options_.clock->Now(), options_.store);
}

std::vector<v1::Tenant> ClusterManager::ListTenants() {
  absl::MutexLock lock(&mu_);
  return tenants_.ListWithUsage(options_.clock->Now(), HeldGpusLocked());
}

bool ClusterManager::TenantExists(absl::string_view name) {
  return tenants_.Exists(name);
}

}  // namespace joule::daemon
