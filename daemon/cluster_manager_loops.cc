// ClusterManager: the scheduling and power-control rounds: snapshot, pure
// policy, apply.
#include <algorithm>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "billing/ledger.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "daemon/cluster_manager.h"
#include "daemon/controller_util.h"
#include "daemon/power_policy.h"
#include "daemon/validation.h"
#include "scheduler/measured_plus.h"
#include "scheduler/power_rules.h"
#include "scheduler/shared_rules.h"
#include "joule/v1/records.pb.h"

namespace joule::daemon {
namespace {

using scheduler::ServiceClass;

}  // namespace

bool ClusterManager::ScheduleOnce() {
  // Snapshot under the lock, decide without it (the policy is pure and may
  // take a while on a big queue), apply under the lock after checking that
  // what the decision relied on still holds.
  std::vector<scheduler::PendingJob> pending;
  scheduler::ClusterSnapshot snap;
  // Per job given an explicit power: the idle taken off it for the policy.
  absl::flat_hash_map<std::string, int64_t> idle_offsets;
  scheduler::PolicyConfig policy;
  {
    absl::MutexLock lock(&mu_);
    wake_ = false;
    woken_other_ = false;
    round_gate_.Invalidate();  // recorded again once the round is applied
    const absl::flat_hash_set<std::string> blocked = SettleBlockedLocked();
    array_gate_.BeginRound(jobs_.active(),
                           [&](const std::string& id) -> const v1::Job& {
                             return jobs_.at(id).job;
                           });
    std::vector<int64_t> listed;  // idle per listed model, once per round
    for (const config::GpuModel& m : options_.config.gpu_models) {
      listed.push_back(IdleMwLocked(m.name));
    }
    // The queue in seq order, each job's offer copied from its entry
    // (daemon/job_table.h); only the jobs with round fields read the record.
    pending.reserve(jobs_.queue().size());
    for (const auto& [key, q] : jobs_.queue()) {
      // Held or waiting on a dependency; an array's max_running.
      if (!blocked.empty() && blocked.contains(key.second)) continue;
      if (q.array_limited && !array_gate_.Admits(q.rt->job)) continue;
      scheduler::PendingJob& p = pending.emplace_back(q.offer);
      if (!q.round_fields) continue;
      const v1::JobSpec& s = q.rt->job.spec();
      // Limits as increments over idle (see SnapshotLocked); a job of any
      // model is offset by the smallest idle among the models.
      const int64_t offset = scheduler::PendingIdleOffsetMw(
          !s.gpu_model().empty(),
          s.gpu_model().empty() ? 0 : IdleMwLocked(s.gpu_model()), listed);
      p.power_mw = scheduler::OffsetPower(s.power_limit_mw(), offset);
      p.min_power_mw = scheduler::OffsetPower(s.min_power_limit_mw(), offset);
      if (s.power_limit_mw() > 0 || s.min_power_limit_mw() > 0) {
        idle_offsets[p.id] = offset;
      }
      p.max_runtime = TimeLimitLocked(q.rt->job);
      p.efficiency = s.power_mode() == v1::POWER_MODE_EFFICIENCY;
      if (p.efficiency) {  // learned from telemetry, else the config's knee
        p.efficiency_knee_permille = knees_.KneePermille(
            KneeBook::Key(s.tenant(), s.name(), s.gpu_model()));
      }
    }
    if (pending.empty() && claims_.all().empty()) return false;
    snap = SnapshotLocked();
    // Under mu_: a config reload may change the settings.
    policy = DaemonPolicy(options_.policy,
                          options_.config.scheduler.admission ==
                              config::AdmissionMode::kMeasuredPlus,
                          options_.config.scheduler);
  }
  const scheduler::Decisions d = scheduler::Schedule(snap, pending, policy);

  absl::MutexLock lock(&mu_);
  const absl::Time now = options_.clock->Now();
  storage::WriteBatch batch;
  std::vector<std::string> started;
  for (const scheduler::Wait& w : d.dropped_claims) {
    DropClaimLocked(w.job_id, w.reason, &batch);
  }
  for (const scheduler::Wait& w : d.waits) {
    auto it = jobs_.pending().find(w.job_id);  // still pending, else moot
    // Most reasons are the last round's (a job keeps its queue position
    // while new ones join behind it): only a change is written.
    if (it != jobs_.pending().end() && it->second->job.reason() != w.reason) {
      it->second->job.set_reason(w.reason);
    }
  }
  for (const scheduler::Placement& p : d.placements) {
    JobRt* j = FindJobLocked(p.job_id);
    if (j == nullptr || j->job.state() != v1::JOB_STATE_PENDING) continue;
    // The GPUs must still be free on ready nodes (a report, an exit or a
    // drain may have come in meanwhile); if not, the next round retries.
    bool still_free = true;
    for (const scheduler::JobShare& share : p.shares) {
      auto nit = nodes_.find(snap.nodes[share.node].name);
      if (nit == nodes_.end() || !nit->second.ready ||
          nit->second.node.drained()) {
        still_free = false;
        break;
      }
      for (uint32_t g : share.gpus) {
        if (p.preempt.empty() && (g >= nit->second.gpus.size() ||
                                  !nit->second.gpus[g].job_key.empty() ||
                                  !nit->second.gpus[g].stale_key.empty())) {
          still_free = false;
        }
      }
    }
    if (!still_free) {
      NotifyLocked();
      continue;
    }
    if (!p.preempt.empty()) {
      // A claim: the victims' stops and the GPUs promised to the job, in
      // one batch (claims.h).
      v1::records::Claim claim;
      claim.set_job_id(p.job_id);
      claim.set_gpu_model(p.gpu_model);
      claim.set_power_per_gpu_mw(p.power_limit_mw);
      *claim.mutable_created_time() = ToProtoTime(now);
      std::vector<std::string> where;
      for (const scheduler::JobShare& share : p.shares) {
        auto* s = claim.add_shares();
        s->set_node(snap.nodes[share.node].name);
        s->mutable_gpu_indices()->Assign(share.gpus.begin(), share.gpus.end());
        where.push_back(absl::StrCat(s->node(), " GPUs ",
                                     absl::StrJoin(share.gpus, ",")));
      }
      for (const std::string& victim_id : p.preempt) {
        JobRt* v = FindJobLocked(victim_id);
        if (v == nullptr || v->job.state() == v1::JOB_STATE_PENDING) continue;
        const std::string why =
            absl::StrCat("preempted by reserved job ", p.job_id, " of tenant ",
                         j->job.spec().tenant(), " (contracted capacity)");
        RequestStopLocked(*v, v1::JOB_STATE_PREEMPTED, why);
        PutJobLocked(&batch, v->job);
        AddEventLocked(&batch, "preempt", victim_id, why);
        claim.add_victims(victim_id);
      }
      claims_.Put(claim, &batch);
      AddEventLocked(&batch, "claim", p.job_id,
                     absl::StrCat("claims ", absl::StrJoin(where, "; "),
                                  " once its ", claim.victims_size(),
                                  " victim(s) are gone: ",
                                  absl::StrJoin(claim.victims(), ", ")));
      j->job.set_reason(absl::StrCat("waiting: preempting ", p.preempt.size(),
                                     " job(s) to make room on ",
                                     absl::StrJoin(where, "; ")));
      continue;
    }
    if (claims_.Erase(p.job_id, &batch)) {
      AddEventLocked(&batch, "claim", p.job_id,
                     "claim fulfilled: placed on its claimed GPUs");
    }
    v1::Job& job = j->job;
    // Back from increments over idle to real per-GPU limits. A job that
    // asked for a power gets exactly that, clamped into the placed model's
    // range (its model may not be the one whose idle offset it got).
    const int64_t idle_here = IdleMwLocked(p.gpu_model);
    int64_t limit_mw = p.requested_limit_mw + idle_here;
    int64_t min_mw = p.min_power_mw + idle_here;
    if (idle_offsets.contains(p.job_id)) {
      int64_t lo = 0, hi = std::numeric_limits<int64_t>::max();
      for (const scheduler::GpuModelSpec& m : snap.gpu_models) {
        if (m.name == p.gpu_model) {
          lo = m.min_limit_mw + idle_here;
          hi = m.max_limit_mw + idle_here;
        }
      }
      const v1::JobSpec& spec = job.spec();
      if (spec.power_limit_mw() > 0) {
        limit_mw = std::clamp(spec.power_limit_mw(), lo, hi);
      }
      // Lowered by the policy (efficiency mode): its limit, not the spec's.
      const int64_t offset = idle_offsets[p.job_id];
      if (spec.power_mode() == v1::POWER_MODE_EFFICIENCY) {
        limit_mw = std::clamp(p.requested_limit_mw + offset, lo, limit_mw);
      }
      // No min power: the policy's (a class floor under measured-plus).
      min_mw = spec.min_power_limit_mw() > 0
                   ? std::clamp(spec.min_power_limit_mw(), lo, limit_mw)
                   : std::clamp(p.min_power_mw + offset, lo, limit_mw);
    }
    min_mw = std::min(min_mw, limit_mw);
    // Throttled to fit: starts below its limit, never below its min; the
    // power loop raises it back (ControlPowerOnce).
    int64_t start_mw = limit_mw;
    if (p.power_limit_mw < p.requested_limit_mw) {
      auto off = idle_offsets.find(p.job_id);
      start_mw =
          std::clamp(p.power_limit_mw +
                         (off != idle_offsets.end() ? off->second : idle_here),
                     min_mw, limit_mw);
    }
    j->limit_changed_at = now;
    job.set_attempt(job.attempt() + 1);
    job.set_effective_class(FromPolicyClass(p.effective_class));
    job.set_gpu_model(p.gpu_model);
    job.set_power_limit_mw(limit_mw);
    job.set_min_power_limit_mw(min_mw);
    if (job.spec().power_mode() == v1::POWER_MODE_EFFICIENCY) {
      *job.mutable_efficiency_knee() = EfficiencyKneeLocked(job);
    }
    job.clear_allocations();
    const std::string key = AttemptKey(job.id(), job.attempt());
    for (const scheduler::JobShare& share : p.shares) {
      const std::string& node_name = snap.nodes[share.node].name;
      v1::Allocation* al = job.add_allocations();
      al->set_node(node_name);
      al->set_power_limit_mw(start_mw);
      NodeRt& n = nodes_.at(node_name);
      for (uint32_t g : share.gpus) {
        al->add_gpu_indices(g);
        n.gpus[g].job_key = key;
        n.gpus[g].commanded_mw = start_mw;
      }
      UpdateNodeMeasuredLocked(n);
    }
    v1::JobAttempt* a = job.add_attempts();
    a->set_attempt(job.attempt());
    *a->mutable_allocations() = job.allocations();
    // Reserved beyond the contract stays reserved (billed as overage).
    a->set_billed_class(billing::BilledClass(job.spec().service_class(),
                                             job.effective_class()));
    a->set_gpu_model(p.gpu_model);
    const size_t ranks = job.allocations_size();
    j->started.assign(ranks, false);
    j->ended.assign(ranks, false);
    j->first_failure_code = 0;
    j->energy_mj = 0;
    std::string where;
    for (const auto& al : job.allocations()) {
      absl::StrAppend(&where, where.empty() ? "" : ", ", al.node(), " GPUs ",
                      absl::StrJoin(al.gpu_indices(), ","));
    }
    std::string reason = absl::StrCat("placed on ", where);
    if (p.effective_class != ToPolicyClass(job.spec().service_class())) {
      absl::StrAppend(&reason,
                      " (runs as on-demand: beyond the tenant's "
                      "contracted reserved GPUs; billed as reserved overage)");
    }
    TransitionLocked(*j, v1::JOB_STATE_STARTING, reason, now);
    PutJobLocked(&batch, job);
    started.push_back(job.id());
  }
  if (!CommitLocked(batch).ok()) {
    // Nothing was acknowledged; the next round retries from the store's view.
    return true;
  }
  const bool changed = !d.placements.empty() || !d.dropped_claims.empty();
  round_gate_.Record(snap, changed);
  for (const std::string& id : started) {
    const v1::Job& job = jobs_.at(id).job;
    const std::string master =
        nodes_.at(job.allocations(0).node()).node.address();
    for (int rank = 0; rank < job.allocations_size(); ++rank) {
      const v1::Allocation& al = job.allocations(rank);
      v1::DaemonMessage m;
      v1::StartJob* s = m.mutable_start_job();
      s->set_job_id(id);
      s->set_attempt(job.attempt());
      *s->mutable_command() = job.spec().command();
      *s->mutable_env() = job.spec().env();
      *s->mutable_gpu_indices() = al.gpu_indices();
      s->set_node_rank(rank);
      s->set_num_nodes(job.allocations_size());
      s->set_master_addr(master.empty() ? "127.0.0.1" : master);
      *s->mutable_max_runtime() = ToProtoDuration(TimeLimitLocked(job));
      s->set_power_limit_mw(al.power_limit_mw());
      s->set_sim_load(job.spec().sim_load() > 0 ? job.spec().sim_load() : 1.0);
      s->set_tenant(job.spec().tenant());
      s->set_memory_bytes(job.spec().memory_bytes());
      s->set_cpu_millis(job.spec().cpu_millis());
      SendLocked(nodes_.at(al.node()), m);
    }
  }
  return changed;
}

bool ClusterManager::ScheduleIfChanged(bool* changed) {
  {
    absl::MutexLock lock(&mu_);
    if (!wake_) {
      if (jobs_.pending().empty() && claims_.all().empty()) return false;
      if (!round_gate_.Due(SnapshotLocked())) return false;
    }
  }
  const bool c = ScheduleOnce();
  if (changed != nullptr) *changed = c;
  return true;
}

void ClusterManager::SetJobLimitLocked(JobRt& j, int64_t limit_mw,
                                       const std::string& reason) {
  j.limit_changed_at = options_.clock->Now();
  for (v1::Allocation& al : *j.job.mutable_allocations()) {
    al.set_power_limit_mw(limit_mw);
    auto it = nodes_.find(al.node());
    if (it == nodes_.end()) continue;
    for (uint32_t g : al.gpu_indices()) {
      if (g >= it->second.gpus.size()) continue;
      it->second.gpus[g].commanded_mw = limit_mw;
      v1::DaemonMessage m;
      m.mutable_set_power_limit()->set_gpu_index(g);
      m.mutable_set_power_limit()->set_power_limit_mw(limit_mw);
      m.mutable_set_power_limit()->set_reason(reason);
      SendLocked(it->second, m);
    }
    UpdateNodeMeasuredLocked(it->second);
  }
}

void ClusterManager::ControlPowerOnce() {
  // As ScheduleOnce: snapshot under the lock, decide without it.
  scheduler::ClusterSnapshot snap;
  scheduler::PowerControlConfig power;
  {
    absl::MutexLock lock(&mu_);
    power_dirty_ = false;
    power = PowerLoopConfig();  // under mu_: a reload may change the config
    const absl::Time now = options_.clock->Now();
    if (options_.config.scheduler.admission ==
        config::AdmissionMode::kMeasuredPlus) {
      domains_.AdaptMargins(now, options_.report_interval,
                            DomainCommittedLocked());
    }
    snap = SnapshotLocked();
  }
  // measured-plus: partial raises, at most one change per job per three
  // report intervals.
  const std::vector<scheduler::PowerAction> actions =
      scheduler::ControlPower(snap, power);
  if (actions.empty()) return;
  absl::MutexLock lock(&mu_);
  storage::WriteBatch batch;
  for (const scheduler::PowerAction& a : actions) {
    JobRt* j = FindJobLocked(a.job_id);
    if (j == nullptr || !IsActive(j->job.state()) ||
        j->job.state() == v1::JOB_STATE_PENDING) {
      continue;
    }
    // A job being stopped keeps its GPUs at the stop floor for its whole
    // grace (a long preemption notice included): never raised again.
    if (j->job.stopping_to() != v1::JOB_STATE_UNSPECIFIED) continue;
    switch (a.kind) {
      case scheduler::PowerAction::kThrottle:
        SetJobLimitLocked(*j, a.new_limit_mw, a.reason);
        AddEventLocked(
            &batch, "throttle", a.job_id,
            absl::StrCat("per-GPU limit -> ", FormatPower(a.new_limit_mw), ": ",
                         a.reason));
        break;
      case scheduler::PowerAction::kRestore:
        SetJobLimitLocked(*j, a.new_limit_mw, a.reason);
        AddEventLocked(
            &batch, "restore", a.job_id,
            absl::StrCat("per-GPU limit -> ", FormatPower(a.new_limit_mw), ": ",
                         a.reason));
        break;
      case scheduler::PowerAction::kPreempt:
        RequestStopLocked(
            *j, v1::JOB_STATE_PREEMPTED,
            absl::StrCat("preempted to keep power cap: ", a.reason));
        AddEventLocked(&batch, "preempt", a.job_id, a.reason);
        break;
    }
    PutJobLocked(&batch, j->job);
  }
  CommitLocked(batch).IgnoreError();
  NotifyLocked();
}

}  // namespace joule::daemon
