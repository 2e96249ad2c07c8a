#include "daemon/cluster_manager.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/proto_time.h"
#include "common/status_macros.h"
#include "daemon/controller_util.h"
#include "joule/v1/records.pb.h"
#include "scheduler/measured_plus.h"
#include "scheduler/power_rules.h"
#include "scheduler/shared_rules.h"

// The controller's core: construction, loading from the store, persistence
// helpers, the measured/committed power sums, the policy snapshot and the
// loop thread. Agents: cluster_manager_agents.cc; attempts and liveness:
// cluster_manager_attempts.cc; the job API: cluster_manager_jobs.cc; admin
// API: cluster_manager_admin.cc; scheduling and power rounds:
// cluster_manager_loops.cc.

namespace joule::daemon {
namespace {

using scheduler::ServiceClass;

constexpr std::string_view kCountersKey = "counters";

}  // namespace

ClusterManager::ClusterManager(ClusterManagerOptions options)
    : options_(std::move(options)),
      domains_(&mu_, &options_.config),
      nodes_(&mu_, &options_.config),
      jobs_(&mu_, &options_.config),
      tenants_(&mu_, &options_.config),
      events_(&mu_, options_.store, options_.clock, [this](const v1::Event& e) {
        if (options_.on_event) options_.on_event(e.kind());
      }),
      claims_(&mu_) {}

ClusterManager::~ClusterManager() { Stop(); }

// ----------------------------------------------------------------- load ----

absl::Status ClusterManager::Load() {
  absl::MutexLock lock(&mu_);
  return LoadLocked();
}

absl::Status ClusterManager::LoadLocked() {
  storage::Store* store = options_.store;
  uint64_t next_job_seq = 1, next_event_seq = 1;
  ASSIGN_OR_RETURN(auto counters_raw, store->Get(storage::kMeta, kCountersKey));
  if (counters_raw.has_value()) {
    v1::records::Counters c;
    if (!c.ParseFromString(*counters_raw)) {
      return absl::DataLossError(absl::StrCat("cannot parse ",
                                              std::string(storage::kMeta),
                                              " record ", std::string(kCountersKey)));
    }
    next_job_seq = c.next_job_seq();
    next_event_seq = c.next_event_seq();
  }
  RETURN_IF_ERROR(domains_.Load(store));
  RETURN_IF_ERROR(tenants_.Load(store));
  RETURN_IF_ERROR(nodes_.Load(
      store, [&](const std::string& node) { return LeafFor(node); },
      options_.clock->Now()));
  for (auto& [name, n] : nodes_) {
    n.node.set_domain(domains_[n.leaf].name);
    domains_.AddNode(n.leaf, +1);
  }
  RETURN_IF_ERROR(jobs_.Load(
      store, next_job_seq,
      [&](const v1::Job& job, const v1::JobAttempt& a) {
        uint32_t gpus = 0;
        for (const auto& al : a.allocations()) gpus += al.gpu_indices_size();
        tenants_.AddLoadedAttempt(job.spec().tenant(), gpus,
                                  FromProtoTime(a.start_time()),
                                  FromProtoTime(a.end_time()));
      },
      [&](const v1::Job& job) {
        // An active job holds its GPUs again.
        for (const v1::Allocation& al : job.allocations()) {
          auto nit = nodes_.find(al.node());
          if (nit == nodes_.end()) continue;
          for (uint32_t g : al.gpu_indices()) {
            if (g < nit->second.gpus.size()) {
              nit->second.gpus[g].job_key = AttemptKey(job.id(), job.attempt());
              nit->second.gpus[g].commanded_mw = al.power_limit_mw();
            }
          }
        }
      }));
  tenants_.FinishLoad();
  RETURN_IF_ERROR(events_.Load(next_event_seq));
  RETURN_IF_ERROR(claims_.Load(store));
  RETURN_IF_ERROR(knees_.Load(store));
  for (auto& [name, n] : nodes_) UpdateNodeMeasuredLocked(n);
  NotifyLocked();
  return absl::OkStatus();
}

// --------------------------------------------------------- persistence ----

absl::Status ClusterManager::CommitLocked(const storage::WriteBatch& batch) {
  if (batch.empty()) return absl::OkStatus();
  return options_.store->Write(batch, storage::WriteOptions{.sync = true});
}

void ClusterManager::AddEventLocked(storage::WriteBatch* batch,
                                    std::string kind, std::string subject,
                                    std::string message) {
  const v1::Event e = events_.Add(batch, std::move(kind), std::move(subject),
                                  std::move(message));
  PutCountersLocked(batch);
  if (options_.on_event_recorded) {
    const JobRt* j = jobs_.Find(e.subject());
    options_.on_event_recorded(e, j != nullptr ? j->job.spec().tenant() : "");
  }
}

void ClusterManager::PutCountersLocked(storage::WriteBatch* batch) {
  v1::records::Counters c;
  c.set_next_job_seq(jobs_.next_seq());
  c.set_next_event_seq(events_.next_seq());
  batch->Put(storage::kMeta, kCountersKey, c.SerializeAsString());
}

void ClusterManager::CommitBilled(
    const std::vector<std::pair<v1::Job, v1::JobAttempt>>& billed) {
  if (options_.attempts == nullptr) return;
  for (const auto& [job, attempt] : billed) {
    options_.attempts->Committed(job, attempt);
  }
}

// --------------------------------------------------------- power model ----

void ClusterManager::UpdateNodeMeasuredLocked(NodeRt& n) {
  // The projection: each GPU's report capped at its commanded limit (a
  // stopping job's GPUs were set to their minimum: scheduler/shared_rules.h).
  int64_t total = n.node.base_power_mw();
  int64_t reported = n.node.base_power_mw();
  for (const Gpu& g : n.gpus) {
    total += scheduler::ProjectedGpuMw(g.status.power_mw(), g.commanded_mw);
    reported += g.status.power_mw();
  }
  const int64_t delta = total - n.measured_mw;
  n.measured_mw = total;
  domains_.AddMeasured(n.leaf, delta);
  domains_.AddReported(n.leaf, reported - n.reported_mw);
  n.reported_mw = reported;
}

std::vector<int64_t> ClusterManager::DomainCommittedLocked() const {
  std::vector<int64_t> committed(domains_.size(), 0);
  auto add = [&](int leaf, int64_t mw) {
    domains_.AddUp(leaf, mw, &committed);
  };
  // Every node draws its base power, and its free GPUs their idle power;
  // allocated GPUs count at their job's committed power.
  for (const auto& [name, n] : nodes_) {
    int64_t mw = n.node.base_power_mw();
    for (const Gpu& g : n.gpus) {
      if (g.job_key.empty()) mw += IdleMwLocked(g.info.model());
    }
    add(n.leaf, mw);
  }
  for (const std::string& id : jobs_.placed()) {
    const JobRt& j = jobs_.at(id);
    if (j.job.state() == v1::JOB_STATE_PENDING) continue;
    const int64_t per_gpu = JobCommittedPerGpuLocked(j);
    for (const v1::Allocation& al : j.job.allocations()) {
      auto it = nodes_.find(al.node());
      if (it == nodes_.end()) continue;
      add(it->second.leaf, per_gpu * al.gpu_indices_size());
    }
  }
  return committed;
}

std::vector<int64_t> ClusterManager::DomainIdleFloorLocked() const {
  std::vector<int64_t> floor(domains_.size(), 0);
  for (const auto& [name, n] : nodes_) {
    int64_t mw = n.node.base_power_mw();
    for (const Gpu& g : n.gpus) mw += IdleMwLocked(g.info.model());
    domains_.AddUp(n.leaf, mw, &floor);
  }
  return floor;
}

// ------------------------------------------------------------ snapshot ----

scheduler::ClusterSnapshot ClusterManager::SnapshotLocked() const {
  scheduler::ClusterSnapshot snap;
  const absl::Time now = options_.clock->Now();
  snap.now = now;
  snap.gpu_models = nodes_.GpuModels();
  // Free GPUs count at idle in committed power (DomainCommittedLocked), so
  // what a job adds where it lands is, per GPU, its limit minus idle. The
  // policy therefore works with limits as increments over idle; ScheduleOnce
  // adds idle back to what it decides.
  for (scheduler::GpuModelSpec& spec : snap.gpu_models) {
    spec = scheduler::OffsetByIdle(spec, IdleMwLocked(spec.name));
  }
  const std::vector<int64_t> committed = DomainCommittedLocked();
  snap.domains = domains_.Snapshot(committed, DomainIdleFloorLocked());
  absl::flat_hash_map<std::string, int> node_idx;
  for (const auto& [name, n] : nodes_) {
    node_idx[name] = static_cast<int>(snap.nodes.size());
    snap.nodes.push_back(nodes_.Snapshot(n));
  }
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, uint32_t>>
      contracted;
  if (options_.contracted_gpus) contracted = options_.contracted_gpus(now);
  tenants_.Snapshot(now, contracted, &snap.tenants, HeldGpusLocked());
  snap.claims = claims_.Snapshot(node_idx);
  for (const std::string& id : jobs_.placed()) {
    const JobRt& j = jobs_.at(id);
    const v1::Job& job = j.job;
    if (job.state() == v1::JOB_STATE_PENDING) continue;
    scheduler::RunningJob r;
    r.id = job.id();
    r.tenant = job.spec().tenant();
    r.cls = ToPolicyClass(job.effective_class());
    r.priority = job.spec().priority();
    const v1::JobAttempt* cur = job.attempts_size() > 0
                                    ? &job.attempts(job.attempts_size() - 1)
                                    : nullptr;
    r.start_time = cur != nullptr && IsSet(cur->start_time())
                       ? FromProtoTime(cur->start_time())
                       : now;
    r.max_runtime = TimeLimitLocked(job);
    uint32_t gpus = 0;
    for (const v1::Allocation& al : job.allocations()) {
      auto it = node_idx.find(al.node());
      if (it == node_idx.end()) continue;
      scheduler::JobShare share;
      share.node = it->second;
      share.gpus.assign(al.gpu_indices().begin(), al.gpu_indices().end());
      gpus += share.gpus.size();
      r.shares.push_back(std::move(share));
    }
    r.gpu_model = job.gpu_model();
    r.limit_mw = job.allocations_size() > 0
                     ? job.allocations(0).power_limit_mw()
                     : job.power_limit_mw();
    r.requested_mw = job.power_limit_mw();
    r.min_mw = job.min_power_limit_mw();
    r.committed_mw = JobCommittedPerGpuLocked(j) * gpus;
    r.measured_per_gpu_mw = j.measured_per_gpu_mw;
    r.idle_per_gpu_mw = IdleMwLocked(job.gpu_model());
    if (job.allocations_size() > 0) {
      auto nit = nodes_.find(job.allocations(0).node());
      if (nit != nodes_.end() && !nit->second.gpus.empty()) {
        r.stop_floor_per_gpu_mw =
            nit->second.gpus[0].info.min_power_limit_mw();
      }
    }
    r.limit_changed_at = j.limit_changed_at;
    // A job already being stopped is neither throttled nor preempted again.
    if (job.stopping_to() != v1::JOB_STATE_UNSPECIFIED) {
      r.min_mw = r.limit_mw;
      r.requested_mw = r.limit_mw;  // nor restored during its grace
      r.cls = ServiceClass::kReserved;
      r.measured_per_gpu_mw = 0;
    }
    snap.running.push_back(std::move(r));
  }
  return snap;
}

// ----------------------------------------------------------------- loop ----

void ClusterManager::Start() {
  threads_.emplace_back([this] { LoopThread(); });
}

void ClusterManager::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void ClusterManager::LoopThread() {
  absl::Time last_schedule = absl::InfinitePast();
  absl::Time last_power = absl::InfinitePast();
  absl::Time last_liveness = absl::InfinitePast();
  absl::Time last_knees = absl::InfinitePast();
  RoundPacer pacer;
  while (true) {
    bool schedule = false, power = false, appended_only = false;
    {
      // A dirty power state wakes the loop only once the last control
      // round is 100 ms old (see below); until then it waits for the rest.
      const absl::Duration since_power = options_.clock->Now() - last_power;
      const bool power_due = since_power >= absl::Milliseconds(100);
      absl::MutexLock lock(&mu_);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || wake_ || (power_due && power_dirty_);
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready),
                           power_due ? absl::Milliseconds(100)
                                     : absl::Milliseconds(100) - since_power);
      if (stopping_) return;
      schedule = wake_;
      appended_only = wake_ && !woken_other_;
      power = power_dirty_;
    }
    absl::Time now = options_.clock->Now();
    if (schedule || now - last_schedule > absl::Milliseconds(500)) {
      // Coalesce bursts (RoundPacer, daemon/round_gate.h). A wake other
      // than a submission during a long gap shortens it to the short one.
      bool waited_out = false;  // the long gap, with submissions only
      if (appended_only && now - last_schedule < pacer.Gap(true)) {
        absl::MutexLock lock(&mu_);
        auto other = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || woken_other_;
        };
        mu_.AwaitWithTimeout(absl::Condition(&other),
                             pacer.Gap(true) - (now - last_schedule));
        if (stopping_) return;
        waited_out = appended_only = !woken_other_;
        now = options_.clock->Now();
      }
      const absl::Duration gap = pacer.Gap(appended_only);
      if (!waited_out && now - last_schedule < gap) {
        absl::SleepFor(gap - (now - last_schedule));
        now = options_.clock->Now();
      }
      const absl::Time round_start = absl::Now();
      // Woken: a full round; periodic: only if something changed.
      bool changed = false;
      const bool ran = schedule ? (changed = ScheduleOnce(), true)
                                : ScheduleIfChanged(&changed);
      if (ran) {
        const absl::Duration took = absl::Now() - round_start;
        pacer.Ran(took, changed);
        if (options_.on_round) options_.on_round("schedule", took);
      }
      last_schedule = now;
    }
    // Power control on a report that shows a domain over cap, or every
    // 250 ms; at most every 100 ms, so that a domain that stays over cap
    // (nothing left to throttle) does not keep the lock busy.
    if ((power && now - last_power >= absl::Milliseconds(100)) ||
        now - last_power > absl::Milliseconds(250)) {
      const absl::Time power_start = absl::Now();
      ControlPowerOnce();
      if (options_.on_round) {
        options_.on_round("power", absl::Now() - power_start);
      }
      last_power = now;
    }
    if (now - last_liveness > absl::Milliseconds(250)) {
      CheckLiveness();
      last_liveness = now;
    }
    if (now - last_knees >= absl::Seconds(1)) {  // learned knees
      FlushKneesOnce();
      last_knees = now;
    }
  }
}
}  // namespace joule::daemon
