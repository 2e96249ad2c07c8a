// ClusterManager: agent registration, streams and node reports.
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

absl::StatusOr<v1::RegisterResponse> ClusterManager::RegisterAgent(
    const v1::RegisterRequest& req) {
  RETURN_IF_ERROR(validation::Register(req));
  for (int i = 0; i < req.gpus_size(); ++i) {
    const v1::GpuInfo& g = req.gpus(i);
    if (g.index() != static_cast<uint32_t>(i)) {
      return absl::InvalidArgumentError(
          absl::StrCat("gpus[", i, "].index: is ", g.index(),
                       "; GPUs must be listed in ", "index order 0..N-1"));
    }
    if (g.model().empty() &&
        std::none_of(req.gpus().begin(), req.gpus().end(),
                     [](const v1::GpuInfo& o) { return !o.model().empty(); })) {
      // One GPU without a model (e.g. lost at discovery) takes its
      // neighbours'; a node where none has one is refused.
      return absl::InvalidArgumentError(
          absl::StrCat("gpus[", i, "].model: must not be empty"));
    }
    if (g.min_power_limit_mw() < 0 ||
        g.max_power_limit_mw() < g.min_power_limit_mw()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gpus[", i,
          "].max_power_limit_mw: must be >= min_power_limit_mw >= 0"));
    }
  }
  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  if (!nodes_.contains(req.node_name()) && LeafFor(req.node_name()) < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node_name: \"", req.node_name(),
        "\" is not a node of the cluster config, and the config sets no "
        "scheduler.default_domain for other nodes"));
  }
  if (!nodes_.contains(req.node_name())) {
    // New nodes are bounded in number and in rate.
    RETURN_IF_ERROR(nodes_.AdmitNew(now));
  }
  auto [it, inserted] = nodes_.try_emplace(req.node_name());
  NodeRt& n = it->second;
  const bool known = !inserted;
  if (inserted) {
    n.node.set_name(req.node_name());
    n.leaf = LeafFor(req.node_name());
    n.node.set_domain(domains_[n.leaf].name);
    const config::NodeSlot* slot = options_.config.FindNode(req.node_name());
    n.node.set_base_power_mw(
        slot != nullptr ? slot->base_power_mw
                        : options_.config.scheduler.default_base_power_mw);
    *n.node.mutable_registered_time() = ToProtoTime(now);
    domains_.AddNode(n.leaf, +1);
  }
  n.node.set_address(req.address());
  n.node.set_gpu_backend(req.gpu_backend());
  // Keep allocations of GPUs that still exist.
  std::vector<Gpu> gpus(req.gpus_size());
  std::string node_model;
  for (const v1::GpuInfo& g : req.gpus()) {
    if (node_model.empty()) node_model = g.model();
  }
  for (int i = 0; i < req.gpus_size(); ++i) {
    gpus[i].info = req.gpus(i);
    if (gpus[i].info.model().empty()) gpus[i].info.set_model(node_model);
    const config::GpuModel* m = GpuModelLocked(req.gpus(i).model());
    if (m != nullptr) {
      // The config may override the range the agent reports.
      if (m->min_limit_mw > 0)
        gpus[i].info.set_min_power_limit_mw(m->min_limit_mw);
      if (m->max_limit_mw > 0)
        gpus[i].info.set_max_power_limit_mw(m->max_limit_mw);
    }
    gpus[i].status.set_index(i);
    gpus[i].status.set_uuid(req.gpus(i).uuid());
    gpus[i].status.set_model(gpus[i].info.model());
    gpus[i].status.set_healthy(true);
    if (static_cast<size_t>(i) < n.gpus.size()) {
      gpus[i].job_key = n.gpus[i].job_key;
      gpus[i].commanded_mw = n.gpus[i].commanded_mw;
      gpus[i].status = n.gpus[i].status;
    }
  }
  n.gpus = std::move(gpus);
  n.session_id = absl::StrCat(req.node_name(), "-", absl::ToUnixNanos(now));
  // A new registration (with the node's own credentials: the adapter
  // checked them) replaces a live session; the old stream is closed at its
  // next message.
  const bool replaced = n.link != nullptr;
  n.link = nullptr;

  storage::WriteBatch batch;
  std::vector<std::pair<v1::Job, v1::JobAttempt>> billed;
  absl::flat_hash_set<std::string> still_running, exited;
  for (const v1::RunningJob& r : req.running_jobs()) {
    still_running.insert(AttemptKey(r.job_id(), r.attempt()));
    if (r.exited()) exited.insert(AttemptKey(r.job_id(), r.attempt()));
  }
  n.on_attach.clear();
  n.stale_stopped.clear();
  SettleLostJobsLocked(n, still_running,
                       absl::StrCat("lost: the agent on ", n.node.name(),
                                    " no longer runs it (agent restarted)"),
                       /*always_requeue=*/false, &batch, &billed, &exited);
  // Old attempts the agent still runs keep their GPUs from new ones until a
  // report shows them gone.
  for (const v1::RunningJob& r : req.running_jobs()) {
    const std::string key = AttemptKey(r.job_id(), r.attempt());
    if (r.exited() || !n.stale_stopped.contains(key)) continue;
    for (uint32_t g : r.gpu_indices()) {
      if (g < n.gpus.size()) n.gpus[g].stale_key = key;
    }
  }
  PutNodeLocked(&batch, n);
  AddEventLocked(&batch, "node", n.node.name(),
                 replaced ? "agent registered again, replacing its live "
                            "session (same node credentials)"
                 : known  ? "agent registered again"
                          : "node registered");
  RETURN_IF_ERROR(CommitLocked(batch));
  CommitBilled(billed);
  UpdateNodeMeasuredLocked(n);
  NotifyLocked();

  v1::RegisterResponse resp;
  resp.set_node_name(n.node.name());
  resp.set_known_node(known);
  *resp.mutable_report_interval() = ToProtoDuration(options_.report_interval);
  resp.set_session_id(n.session_id);
  return resp;
}

void ClusterManager::SettleLostJobsLocked(
    NodeRt& n, const absl::flat_hash_set<std::string>& still_running,
    const std::string& why, bool always_requeue, storage::WriteBatch* batch,
    std::vector<std::pair<v1::Job, v1::JobAttempt>>* billed,
    const absl::flat_hash_set<std::string>* exited) {
  const absl::Time now = options_.clock->Now();
  std::vector<std::string> lost;
  for (const std::string& id : jobs_.placed()) {
    const JobRt& j = jobs_.at(id);
    if (j.job.state() == v1::JOB_STATE_PENDING) continue;
    for (const v1::Allocation& al : j.job.allocations()) {
      if (al.node() == n.node.name() &&
          !still_running.contains(AttemptKey(id, j.job.attempt()))) {
        lost.push_back(id);
        break;
      }
    }
  }
  for (const std::string& id : lost) {
    JobRt& j = jobs_.at(id);
    const bool was_running = j.job.state() == v1::JOB_STATE_RUNNING;
    // Other ranks, if any, are stopped; the attempt ends now.
    for (const v1::Allocation& al : j.job.allocations()) {
      if (al.node() == n.node.name()) continue;
      auto it = nodes_.find(al.node());
      if (it == nodes_.end()) continue;
      SendLocked(it->second,
                 StopMessage(id, j.job.attempt(), "another rank was lost"));
      // That rank may still run: its GPUs stay taken until its node's
      // report shows it gone (as for any stale attempt), so no new attempt
      // is started on them meanwhile.
      it->second.HoldStopping(AttemptKey(id, j.job.attempt()), al);
    }
    v1::JobAttempt a =
        EndAttemptLocked(j, LostEndLocked(j, n, now), why, batch);
    if (IsSet(a.start_time()) && options_.attempts != nullptr) {
      billed->emplace_back(j.job, a);
    }
    const bool requeue = always_requeue || !was_running ||
                         j.job.stopping_to() == v1::JOB_STATE_PREEMPTED ||
                         options_.config.scheduler.lost_job_policy ==
                             config::LostJobPolicy::kRequeue;
    if (j.job.stopping_to() == v1::JOB_STATE_CANCELLED) {
      TransitionLocked(j, v1::JOB_STATE_CANCELLED, j.job.reason(), now);
    } else if (requeue) {
      TransitionLocked(j, v1::JOB_STATE_PENDING,
                       absl::StrCat(why, "; requeued"), now);
    } else {
      TransitionLocked(j, v1::JOB_STATE_FAILED, why, now);
    }
    PutJobLocked(batch, j.job);
    AddEventLocked(batch, "job", id, why);
  }
  // Attempts the agent runs that we do not consider running there: stop.
  for (const std::string& key : still_running) {
    if (exited != nullptr && exited->contains(key)) continue;  // no process
    const std::string id = key.substr(0, key.rfind('/'));
    auto it = jobs_.find(id);
    bool keep = false;
    if (it != jobs_.end() && IsActive(it->second.job.state()) &&
        AttemptKey(id, it->second.job.attempt()) == key) {
      for (const auto& al : it->second.job.allocations()) {
        if (al.node() == n.node.name()) keep = true;
      }
    }
    if (!keep) {
      // Registration comes before the agent's new stream: send on attach.
      n.on_attach.push_back(StopMessage(
          id, static_cast<uint32_t>(std::stoul(key.substr(key.rfind('/') + 1))),
          "not a current job of this node"));
      n.stale_stopped.insert(key);
    }
  }
}

absl::Status ClusterManager::AttachAgent(const v1::AgentHello& hello,
                                         AgentLink* link) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(hello.node_name());
  if (it == nodes_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "hello.node_name: \"", hello.node_name(), "\" has not registered"));
  }
  if (it->second.session_id != hello.session_id()) {
    return absl::FailedPreconditionError(
        "hello.session_id: not the session of the latest registration");
  }
  it->second.link = link;
  // Re-send limits we commanded (an agent that restarted forgot them).
  for (const Gpu& g : it->second.gpus) {
    if (g.commanded_mw > 0 &&
        g.commanded_mw != g.info.default_power_limit_mw()) {
      v1::DaemonMessage m;
      m.mutable_set_power_limit()->set_gpu_index(g.info.index());
      m.mutable_set_power_limit()->set_power_limit_mw(g.commanded_mw);
      m.mutable_set_power_limit()->set_reason("restore commanded limit");
      SendLocked(it->second, m);
    }
  }
  for (v1::DaemonMessage& m : it->second.on_attach) {
    SendLocked(it->second, std::move(m));
  }
  it->second.on_attach.clear();
  return absl::OkStatus();
}

bool ClusterManager::IsCurrentLink(const std::string& node,
                                   const AgentLink* link) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node);
  return it != nodes_.end() && it->second.link == link;
}

void ClusterManager::DetachAgent(const std::string& node, AgentLink* link) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node);
  if (it != nodes_.end() && it->second.link == link) it->second.link = nullptr;
}

void ClusterManager::SendLocked(NodeRt& n, v1::DaemonMessage msg) {
  if (n.link == nullptr) return;
  msg.set_command_id(next_command_id_++);
  n.link->Send(msg);
}

absl::Status ClusterManager::HandleReport(const std::string& node,
                                          const v1::NodeReport& r) {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("report.node_name: \"", node, "\" has not registered"));
  }
  NodeRt& n = it->second;
  if (!r.node_name().empty() && r.node_name() != node) {
    return absl::InvalidArgumentError(
        absl::StrCat("report.node_name: \"", r.node_name(),
                     "\" is not this stream's node \"", node, "\""));
  }
  for (int i = 0; i < r.gpus_size(); ++i) {
    if (r.gpus(i).index() >= n.gpus.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("report.gpus[", i, "].index: GPU ", r.gpus(i).index(),
                       " was never registered by node ", node,
                       " (it registered ", n.gpus.size(), " GPUs)"));
    }
  }
  // Values against physics and what the node registered. A report outside
  // the bounds is dropped whole (it moves no sum) with one event per kind
  // of refusal; the stream stays up, the next good report counts again.
  absl::Status bounds =
      r.jobs_size() > static_cast<int>(validation::kMaxRunningJobs)
          ? absl::InvalidArgumentError("report.jobs: at most 4096 entries")
          : absl::OkStatus();
  for (int i = 0; i < r.gpus_size() && bounds.ok(); ++i) {
    bounds = validation::GpuReport(absl::StrCat("report.gpus[", i, "]"),
                                   r.gpus(i), n.gpus[r.gpus(i).index()].info);
  }
  if (!bounds.ok()) {
    const std::string why(bounds.message());
    if (n.last_refusal != why) {
      n.last_refusal = why;
      storage::WriteBatch batch;
      AddEventLocked(
          &batch, "telemetry", node,
          absl::StrCat("report from node ", node, " refused: ", why));
      WriteEventsLocked(batch);
    }
    return absl::OkStatus();
  }
  n.last_refusal.clear();
  const absl::Time now = options_.clock->Now();
  for (Gpu& gpu : n.gpus) gpu.stale_key.clear();  // rebuilt from this report
  for (const v1::GpuStatus& g : r.gpus()) {
    Gpu& gpu = n.gpus[g.index()];
    const bool was_healthy = gpu.status.healthy();
    if (g.energy_mj() < gpu.status.energy_mj()) {
      // A counter reset (driver reload, agent restart): an event, never a
      // negative energy; counting starts again from the new value.
      storage::WriteBatch batch;
      AddEventLocked(
          &batch, "gpu", absl::StrCat(node, "/", g.index()),
          absl::StrCat("energy counter reset: ", gpu.status.energy_mj(),
                       " mJ -> ", g.energy_mj(), " mJ"));
      WriteEventsLocked(batch);
    }
    gpu.status = g;
    if (was_healthy && !g.healthy()) {
      storage::WriteBatch batch;
      AddEventLocked(&batch, "gpu", absl::StrCat(node, "/", g.index()),
                     absl::StrCat("unhealthy: ", g.health_detail()));
      WriteEventsLocked(batch);
    }
  }
  n.last_report = now;
  if (!n.ready) {
    n.ready = true;
    n.unreachable_since = absl::InfinitePast();
    storage::WriteBatch batch;
    AddEventLocked(&batch, "node", node, "ready: reports resumed");
    WriteEventsLocked(batch);
    NotifyLocked();
  }
  absl::flat_hash_set<std::string> stale;
  for (const v1::RunningJob& rj : r.jobs()) {
    JobRt* j = FindJobLocked(rj.job_id());
    bool current = j != nullptr && IsActive(j->job.state()) &&
                   j->job.state() != v1::JOB_STATE_PENDING &&
                   j->job.attempt() == rj.attempt();
    if (current) {
      current = false;
      for (const v1::Allocation& al : j->job.allocations()) {
        current = current || al.node() == node;
      }
    }
    if (!current) {
      // An attempt that ended here (e.g. requeued while the node was
      // unreachable) still runs on GPUs we consider free: stop it, once.
      const std::string key = AttemptKey(rj.job_id(), rj.attempt());
      stale.insert(key);
      if (!n.stale_stopped.contains(key)) {
        SendLocked(n, StopMessage(rj.job_id(), rj.attempt(),
                                  "not a current job of this node"));
      }
      // Its GPUs stay taken until its processes are confirmed gone.
      for (uint32_t g : rj.gpu_indices()) {
        if (g < n.gpus.size()) n.gpus[g].stale_key = key;
      }
      continue;
    }
    j->last_seen = now;
    // Measured draw per GPU of this job on this node.
    int64_t sum = 0;
    int count = 0;
    const std::string knee_key = KneeBook::Key(
        j->job.spec().tenant(), j->job.spec().name(), j->job.gpu_model());
    for (uint32_t g : rj.gpu_indices()) {
      if (g < n.gpus.size()) {
        const v1::GpuStatus& st = n.gpus[g].status;
        sum += st.power_mw();
        ++count;
        knees_.Add(knee_key, st.power_limit_mw(),
                   IdleMwLocked(j->job.gpu_model()), st.max_power_limit_mw(),
                   st.power_mw(), st.utilization_pct());
      }
    }
    if (count > 0) {
      // One report stands for one report interval (1 s when unset).
      const int64_t w =
          options_.report_interval > absl::ZeroDuration()
              ? absl::ToInt64Milliseconds(options_.report_interval)
              : 1000;
      jobs_.AddSample(*j, sum / count, w);
    }
  }
  n.stale_stopped = std::move(stale);
  UpdateNodeMeasuredLocked(n);
  if (domains_.OverCapOnPath(n.leaf)) power_dirty_ = true;
  return absl::OkStatus();
}

absl::Time ClusterManager::LostEndLocked(const JobRt& j, const NodeRt& n,
                                         absl::Time now) const {
  absl::Time end = j.last_seen != absl::InfinitePast()     ? j.last_seen
                   : n.last_report != absl::InfinitePast() ? n.last_report
                                                           : now;
  return std::min(end, now);
}

}  // namespace joule::daemon
