#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "config/cluster_config.h"
#include "daemon/job_arrays.h"
#include "daemon/claims.h"
#include "daemon/domain_tree.h"
#include "daemon/event_log.h"
#include "daemon/job_table.h"
#include "daemon/knee_book.h"
#include "daemon/node_table.h"
#include "daemon/round_gate.h"
#include "daemon/tenant_table.h"
#include "joule/v1/joule.pb.h"
#include "scheduler/policy.h"
#include "scheduler/power_control.h"
#include "scheduler/power_rules.h"
#include "storage/store.h"

namespace joule::daemon {

// The daemon's side of one agent's stream: queues a command for the agent.
// Implementations are thread-safe and never block on the network.
class AgentLink {
 public:
  virtual ~AgentLink() = default;
  virtual void Send(const v1::DaemonMessage& msg) = 0;
};

// What the cluster manager tells billing when a job attempt ends. The records
// go into the same WriteBatch as the job's state change (so a crash keeps
// both or neither); Committed() runs after the batch is durable.
class AttemptSink {
 public:
  virtual ~AttemptSink() = default;
  virtual void AddAttempt(const v1::Job& job, const v1::JobAttempt& attempt,
                          storage::WriteBatch* batch) = 0;
  virtual void Committed(const v1::Job& job, const v1::JobAttempt& attempt) = 0;
};

// Contracted reserved GPUs per tenant and model at a time (from billing).
using ContractedGpusFn = std::function<absl::flat_hash_map<
    std::string, absl::flat_hash_map<std::string, uint32_t>>(absl::Time)>;

struct ClusterManagerOptions {
  config::ClusterConfig config;
  storage::Store* store = nullptr;
  const Clock* clock = nullptr;
  absl::Duration heartbeat_timeout = absl::Seconds(5);
  absl::Duration report_interval = absl::Seconds(1);
  AttemptSink* attempts = nullptr;   // optional
  ContractedGpusFn contracted_gpus;  // optional
  // Optional: refuses a job spec whose (GPU model, class) has no price in
  // effect (billing; unset when the config allows unpriced use).
  std::function<absl::Status(const v1::JobSpec&, absl::Time)> check_priced;
  scheduler::PolicyConfig policy;
  scheduler::PowerControlConfig power;
  // Optional observers (metrics): an event of `kind` was recorded; a loop
  // round ("schedule" or "power") took `took`. Called with mu_ held or from
  // the loop thread; they must not block or call back.
  std::function<void(const std::string& kind)> on_event;
  std::function<void(const char* round, absl::Duration took)> on_round;
  // Optional observers (the operator log, daemon/ops_events.h, and
  // WatchEvents, daemon/event_feed.h), same rules: every event as recorded,
  // with the tenant of the job it is about ("" when its subject is not a
  // job); every job state transition, the job moved to `state` (placement:
  // STARTING). With mu_ held, before the batch is committed.
  std::function<void(const v1::Event& e, const std::string& job_tenant)>
      on_event_recorded;
  std::function<void(const v1::Job& job, v1::JobState state)> on_transition;
};

// The controller of the cluster's in-memory state (layer 2 of the scheduler
// module), and the facade the services use. The state lives in its owners:
//   NodeTable   (node_table.h)   nodes, GPUs, agent sessions, telemetry;
//   DomainTree  (domain_tree.h)  power domains, caps, measured power, margins;
//   JobTable    (job_table.h)    jobs, attempts, their persisted lifecycle;
//   TenantTable (tenant_table.h) tenants and fair-share usage;
//   EventLog    (event_log.h)    the event log.
// The controller handles agent messages and API calls that span those
// owners, builds snapshots for the pure policies (scheduler::Schedule,
// scheduler::ControlPower) and applies their decisions by sending commands
// over AgentLinks. Every change that is acknowledged to a caller is written
// to the Store (sync) before the call returns. Its methods are spread over
// cluster_manager*.cc by concern (agents, attempts, jobs, admin, loops).
//
// Invariants: a GPU is allocated to at most one job attempt; a job in
// STARTING or RUNNING holds exactly its allocations; domain committed and
// measured power are the sums over the nodes below.
// Thread-safety: one lock, mu_, guards all the owners (they are externally
// synchronized and given &mu_; a change that spans them is one critical
// section); AgentLink::Send is called with mu_ held (it only queues).
struct ReloadPlan;

class ClusterManager {
 public:
  explicit ClusterManager(ClusterManagerOptions options);
  ~ClusterManager();

  // Rebuilds state from the store (nodes, jobs, caps, tenants, counters).
  absl::Status Load();
  // Starts / stops the loop thread (scheduling, power control, liveness).
  void Start();
  void Stop();

  // ---- agents
  absl::StatusOr<v1::RegisterResponse> RegisterAgent(
      const v1::RegisterRequest& req);
  absl::Status AttachAgent(const v1::AgentHello& hello, AgentLink* link);
  void DetachAgent(const std::string& node, AgentLink* link);
  // True while `link` is the node's current session (a newer registration
  // replaces it).
  bool IsCurrentLink(const std::string& node, const AgentLink* link);
  absl::Status HandleReport(const std::string& node, const v1::NodeReport& r);
  absl::Status HandleJobUpdate(const std::string& node, const v1::JobUpdate& u);
  void HandleCommandResult(const std::string& node, const v1::CommandResult& r);
  void HandleLogChunk(const std::string& node, const v1::LogChunk& c);

  // ---- jobs (caller_tenant empty = operator)
  absl::StatusOr<v1::Job> SubmitJob(const v1::SubmitJobRequest& req,
                                    const std::string& caller_tenant);
  absl::StatusOr<v1::Job> GetJob(const std::string& id,
                                 const std::string& caller_tenant);
  absl::StatusOr<std::vector<v1::Job>> ListJobs(
      const v1::ListJobsRequest& req, const std::string& caller_tenant);
  // The same jobs, but only as many as one reply page can hold (see
  // daemon/paging.h): from the first after req.page_token, at most one past
  // the page (so Paginate finds the same page and next token); the states
  // pending/starting/running from the active set instead of every job.
  // With req.limit() (the newest N) it is ListJobs.
  absl::StatusOr<std::vector<v1::Job>> ListJobsPage(
      const v1::ListJobsRequest& req, const std::string& caller_tenant);
  absl::StatusOr<v1::Job> CancelJob(const v1::CancelJobRequest& req,
                                    const std::string& caller_tenant);
  absl::StatusOr<v1::GetJobLogsResponse> GetJobLogs(
      const v1::GetJobLogsRequest& req, const std::string& caller_tenant);
  // `job hold` (hold = true) / `job release`: FAILED_PRECONDITION unless
  // the job is pending (hold) or held (release).
  absl::StatusOr<v1::Job> HoldJob(const std::string& id, bool hold,
                                  const std::string& caller_tenant);
  // Job arrays (defined in daemon/job_arrays.cc): req.array is set.
  absl::StatusOr<v1::SubmitJobResponse> SubmitArray(
      const v1::SubmitJobRequest& req, const std::string& caller_tenant);
  bool IsArray(const std::string& id);  // an array's id (not a task's)
  absl::StatusOr<v1::Job> CancelArray(const v1::CancelJobRequest& req,
                                      const std::string& caller_tenant);

  // ---- admin (viewer_tenant non-empty: a tenant's view, which shows no
  // other tenant's job ids)
  std::vector<v1::Node> ListNodes(const std::string& viewer_tenant = "");
  absl::StatusOr<v1::Node> GetNode(const std::string& name,
                                   const std::string& viewer_tenant = "");
  // The node's power domain ("" for no such node), without building its
  // view (for the ops log's lines).
  std::string NodeDomain(const std::string& name);
  absl::StatusOr<v1::Node> DrainNode(const std::string& name, bool drain);
  // Forgets a node (operator). FAILED_PRECONDITION while a job is placed on
  // it or its agent is connected and reporting.
  absl::Status RemoveNode(const std::string& name);
  v1::GetPowerTreeResponse PowerTree();
  absl::StatusOr<v1::PowerDomain> SetPowerCap(const v1::SetPowerCapRequest& r);
  // What SetPowerCap(r) would throttle and preempt at once, decided by the
  // power loop's own policy (scheduler::ControlPower) over a snapshot with
  // the proposed cap; changes nothing (daemon/cap_preview.cc).
  absl::StatusOr<v1::PowerCapPreview> PreviewPowerCap(
      const v1::SetPowerCapRequest& r);
  // Applies a config reload's plan (daemon/config_reload.h) in one write:
  // its caps (as SetPowerCap, with `reason`) and settings (a `config` event
  // each), then the config in force. All or nothing. Returns the warnings
  // (caps below the idle draw).
  absl::StatusOr<std::vector<std::string>> ApplyConfigReload(
      const ReloadPlan& plan, const std::string& reason);
  // A tenant (viewer_tenant non-empty) sees only the events of its jobs.
  absl::StatusOr<std::vector<v1::Event>> ListEvents(
      const v1::ListEventsRequest& r, const std::string& viewer_tenant = "");
  // Records an event of the daemon itself (e.g. "config", a reload), synced.
  absl::Status RecordEvent(std::string kind, std::string subject,
                           std::string message);
  absl::StatusOr<v1::Tenant> CreateTenant(const v1::Tenant& t);
  std::vector<v1::Tenant> ListTenants();
  // Replaces a tenant's quota (operator).
  absl::StatusOr<v1::Tenant> SetTenantQuota(const v1::SetTenantQuotaRequest& r);
  bool TenantExists(absl::string_view name);

  // ---- control loops (also driven directly by tests)
  // One scheduling round: place pending jobs, issue starts/preemptions.
  // True if it changed anything: placed, claimed, dropped a claim, or its
  // commit failed (the loop's pacing, RoundPacer in daemon/round_gate.h).
  bool ScheduleOnce();
  // The loop's periodic round: ScheduleOnce() unless nothing a decision
  // depends on changed since the last full round (daemon/round_gate.h);
  // true if it ran, and then `*changed` (if given) is ScheduleOnce()'s.
  bool ScheduleIfChanged(bool* changed = nullptr);
  // Keeps caps: throttles, preempts, restores.
  void ControlPowerOnce();
  // The power loop's config: measured-plus makes partial raises, at most
  // one change per job per three report intervals (cap_preview.cc uses it
  // too).
  scheduler::PowerControlConfig PowerLoopConfig() const;
  // Marks silent nodes unreachable; requeues jobs of long-unreachable nodes
  // and jobs STARTING past scheduler.starting_timeout.
  void CheckLiveness();
  // Writes the learned knees that changed (KneeBook::Flush: at most once a
  // minute per workload, a bounded batch per call); returns how many.
  size_t FlushKneesOnce();

  // ---- retention (cluster_manager_retention.cc, docs/ha.md#sizing)
  // Deletes the records of finished jobs that ExpiredJobGroups allows at
  // `cutoff` (with `attempt_settled(job, attempt)` for every attempt that
  // ran), and their submission idempotency records, from the store (writes
  // of at most the store's max_batch_ops ops, 1,000 if unlimited) and then
  // from memory. Returns how many jobs went. Bounded: it looks at up to
  // kRetentionPassJobs jobs in id order from where the previous pass
  // stopped (to the end of the table, then the next pass starts over),
  // kRetentionChunk per hold of the lock.
  absl::StatusOr<int64_t> CompactFinishedJobs(
      absl::Time cutoff,
      const std::function<bool(const std::string&, uint32_t)>& attempt_settled);
  // Jobs CompactFinishedJobs looks at per hold of the lock, and per pass
  // (a pass continues from where the previous one stopped).
  static constexpr size_t kRetentionChunk = 1000;
  static constexpr size_t kRetentionPassJobs = 100'000;
  // EventLog::Compact: deletes the events older than `cutoff`.
  absl::StatusOr<int64_t> CompactEvents(absl::Time cutoff);

 private:
  using Gpu = GpuRt;
  struct PendingLog {
    std::string node;  // the node asked; a reply from another is ignored
    absl::Notification done;
    v1::LogChunk chunk;
  };

  // Helpers; *Locked need mu_.
  absl::Status LoadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int LeafFor(const std::string& node) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return domains_.LeafFor(node);
  }
  // Committed power per domain (index as domains_): every node's base
  // power, its free GPUs at idle, allocated GPUs at their job's committed
  // power.
  std::vector<int64_t> DomainCommittedLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t JobCommittedPerGpuLocked(const JobRt& j) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return jobs_.CommittedPerGpu(j);
  }
  scheduler::ClusterSnapshot SnapshotLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An event (and the counters) into `batch`.
  void AddEventLocked(storage::WriteBatch* batch, std::string kind,
                      std::string subject, std::string message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutJobLocked(storage::WriteBatch* batch, const v1::Job& job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    jobs_.Put(batch, job);
  }
  void PutNodeLocked(storage::WriteBatch* batch, const NodeRt& n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    nodes_.Put(batch, n);
  }
  // The job and event sequence counters (one record, kMeta "counters").
  void PutCountersLocked(storage::WriteBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CommitLocked(const storage::WriteBatch& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteEventsLocked(const storage::WriteBatch& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    events_.WriteUnsynced(batch);
  }
  void TransitionLocked(JobRt& j, v1::JobState state, std::string reason,
                        absl::Time when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    jobs_.Transition(j, state, std::move(reason), when);
    if (options_.on_transition) options_.on_transition(j.job, state);
  }
  // Ends the current attempt: frees GPUs, records the attempt (and billing
  // records into `batch`). Returns the closed attempt.
  v1::JobAttempt EndAttemptLocked(JobRt& j, absl::Time end, std::string outcome,
                                  storage::WriteBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Asks the agents to stop the attempt (within the stop grace) and sets its
  // GPUs to their minimum power limit at once, so that the cap holds during
  // the grace.
  void RequestStopLocked(JobRt& j, v1::JobState target, std::string reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets the claim of `job_id` (if any) with a "claim" event.
  void DropClaimLocked(const std::string& job_id, const std::string& why,
                       storage::WriteBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Idle floor per domain (index as domains_): base + every GPU at idle.
  std::vector<int64_t> DomainIdleFloorLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Finishes a job whose every rank has ended (or that was lost).
  void FinishAttemptLocked(
      JobRt& j, absl::Time end, storage::WriteBatch* batch,
      std::vector<std::pair<v1::Job, v1::JobAttempt>>* billed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the attempts of jobs on `n` that it does not run (any more):
  // `why` says what happened; `always_requeue` requeues them whatever the
  // lost-job policy (used for unreachable nodes). `exited`: attempts the
  // agent says ended while it was away (their EXITED updates follow).
  void SettleLostJobsLocked(
      NodeRt& n, const absl::flat_hash_set<std::string>& still_running,
      const std::string& why, bool always_requeue, storage::WriteBatch* batch,
      std::vector<std::pair<v1::Job, v1::JobAttempt>>* billed,
      const absl::flat_hash_set<std::string>* exited = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendLocked(NodeRt& n, v1::DaemonMessage msg)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetJobLimitLocked(JobRt& j, int64_t limit_mw, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddTenantUsageLocked(const std::string& tenant, int64_t gpus,
                            absl::Time start, absl::Time end,
                            storage::WriteBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    tenants_.AddEnded(tenant, gpus, start, end, batch);
  }
  // SubmitJob's and SubmitArray's idempotency check (cluster_manager_jobs.cc)
  // for `idem_key` (SubmitIdemKey, not empty): waits while a submission with
  // that key is in flight, then reads its record. ALREADY_EXISTS when the
  // record's fingerprint is not `fingerprint`; the recorded job (or array)
  // id; nullopt without a record.
  absl::StatusOr<std::optional<std::string>> PriorSubmitLocked(
      const std::string& idem_key, const std::string& fingerprint,
      const std::string& request_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ---- scheduling limits (cluster_manager_sched.cc, issue 11)
  // GPUs held by running attempts per tenant (fair share).
  HeldGpus HeldGpusLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // At submit: the time limit (`*time_limit`), the dependencies and the
  // tenant's pending-jobs quota.
  absl::Status CheckSubmitLimitsLocked(const v1::JobSpec& spec,
                                       absl::Duration* time_limit) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Before a round: pending jobs that are held or wait on a dependency get
  // their reason and are returned (not offered to the policy); those whose
  // dependency failed are failed (committed here).
  absl::flat_hash_set<std::string> SettleBlockedLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration TimeLimitLocked(const v1::Job& job) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Node NodeViewLocked(const NodeRt& n, absl::Time now,
                          const std::string& viewer_tenant = "") const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ValidateSpecLocked(const v1::JobSpec& spec) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const config::GpuModel* GpuModelLocked(const std::string& model) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return options_.config.FindGpuModel(model);
  }
  // Idle draw of one GPU of `model` (NodeTable::IdleMw).
  int64_t IdleMwLocked(const std::string& model) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return nodes_.IdleMw(model);
  }
  // Wakes the loop for a round (paced by RoundPacer).
  void NotifyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    wake_ = true;
    woken_other_ = true;
  }
  // As NotifyLocked, for jobs just appended to the queue (a submission):
  // the loop may coalesce a burst of these longer (RoundPacer).
  void NotifyAppendedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    wake_ = true;
  }
  // Recomputes the node's measured power (a stopping job's GPUs count at
  // idle) and moves its domains' sums by the change.
  void UpdateNodeMeasuredLocked(NodeRt& n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  JobRt* FindJobLocked(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return jobs_.Find(id);
  }
  // When the current attempt's StartJob was sent (its STARTING transition).
  absl::Time StartSentLocked(const JobRt& j) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return jobs_.StartSent(j);
  }
  // Where a lost attempt ends: its last sighting, else the node's last
  // report, never after `now` nor before the attempt's start.
  absl::Time LostEndLocked(const JobRt& j, const NodeRt& n,
                           absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LoopThread();
  void CommitBilled(const std::vector<std::pair<v1::Job, v1::JobAttempt>>& b);

  ClusterManagerOptions options_;  // config: mu_ (ApplyConfigReload)
  mutable absl::Mutex mu_;

  // The owners (all guarded by mu_; see the class comment).
  DomainTree domains_;
  NodeTable nodes_;
  JobTable jobs_;
  // Where the next retention pass starts (job id; empty: the first).
  std::string retention_cursor_ ABSL_GUARDED_BY(mu_);
  TenantTable tenants_;
  EventLog events_;
  ClaimBook claims_;
  KneeBook knees_;  // learned efficiency knees (daemon/knee_book.h)
  // What `job show` says of an efficiency job's knee
  // (cluster_manager_knees.cc).
  v1::EfficiencyKnee EfficiencyKneeLocked(const v1::Job& job) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::atomic<uint64_t> next_command_id_{1};
  absl::flat_hash_map<uint64_t, std::shared_ptr<PendingLog>> pending_logs_
      ABSL_GUARDED_BY(mu_);

  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  // Since the last round started: a wake other than a submission.
  bool woken_other_ ABSL_GUARDED_BY(mu_) = false;
  ArrayGate array_gate_ ABSL_GUARDED_BY(mu_);  // arrays' max_running
  RoundGate round_gate_ ABSL_GUARDED_BY(mu_);  // skips unchanged rounds
  bool power_dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace joule::daemon
