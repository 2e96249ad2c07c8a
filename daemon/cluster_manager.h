#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
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
};

// The in-memory state of the cluster (layer 2 of the scheduler module):
// power domains, nodes and their last telemetry, jobs, tenants, events. Every
// change that is acknowledged to a caller is written to the Store (sync)
// before the call returns. Builds snapshots for the pure policies
// (scheduler::Schedule, scheduler::ControlPower) and applies their decisions
// by sending commands over AgentLinks.
//
// Invariants: a GPU is allocated to at most one job attempt; a job in
// STARTING or RUNNING holds exactly its allocations; domain committed and
// measured power are the sums over the nodes below.
// Thread-safety: all state is guarded by mu_; AgentLink::Send is called with
// mu_ held (it only queues).
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
  absl::StatusOr<v1::Job> CancelJob(const v1::CancelJobRequest& req,
                                    const std::string& caller_tenant);
  absl::StatusOr<v1::GetJobLogsResponse> GetJobLogs(
      const v1::GetJobLogsRequest& req, const std::string& caller_tenant);
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
  absl::StatusOr<v1::Node> DrainNode(const std::string& name, bool drain);
  // Forgets a node (operator). FAILED_PRECONDITION while a job is placed on
  // it or its agent is connected and reporting.
  absl::Status RemoveNode(const std::string& name);
  v1::GetPowerTreeResponse PowerTree();
  absl::StatusOr<v1::PowerDomain> SetPowerCap(const v1::SetPowerCapRequest& r);
  // A tenant (viewer_tenant non-empty) sees only the events of its jobs.
  absl::StatusOr<std::vector<v1::Event>> ListEvents(
      const v1::ListEventsRequest& r, const std::string& viewer_tenant = "");
  absl::StatusOr<v1::Tenant> CreateTenant(const v1::Tenant& t);
  std::vector<v1::Tenant> ListTenants();
  bool TenantExists(absl::string_view name);

  // ---- control loops (also driven directly by tests)
  // One scheduling round: place pending jobs, issue starts/preemptions.
  void ScheduleOnce();
  // Keeps caps: throttles, preempts, restores.
  void ControlPowerOnce();
  // Marks silent nodes unreachable; requeues jobs of long-unreachable nodes
  // and jobs STARTING past scheduler.starting_timeout.
  void CheckLiveness();

 private:
  struct Gpu {
    v1::GpuInfo info;
    v1::GpuStatus status;      // last report
    std::string job_key;       // "job/attempt" allocated to, empty if free
    int64_t commanded_mw = 0;  // limit we asked for (0 = not yet)
    // "job/attempt" of an old attempt the agent still runs here: the GPU is
    // not free until a report no longer shows it (its process is gone).
    std::string stale_key;
  };
  struct NodeRt {
    v1::Node node;  // persisted fields: name, domain, address, gpu_backend,
                    // registered_time, drained, base_power_mw
    std::vector<Gpu> gpus;
    int leaf = 0;
    absl::Time last_report = absl::InfinitePast();
    absl::Time unreachable_since = absl::InfinitePast();
    bool ready = false;
    int64_t measured_mw = 0;  // base + sum of expected GPU draw
    AgentLink* link = nullptr;
    std::string session_id;
    // Commands decided at registration, sent once the agent attaches its new
    // stream (at registration the old stream, if any, is gone).
    std::vector<v1::DaemonMessage> on_attach;
    // "job/attempt" keys the agent runs but should not, already told to stop.
    absl::flat_hash_set<std::string> stale_stopped;
    // The last telemetry refusal's text, so that a bad report repeated
    // every interval gives one event, not one a second.
    std::string last_refusal;
  };
  struct DomainRt {
    std::string name;
    std::string kind;
    int parent = -1;
    uint32_t depth = 0;
    int64_t config_cap_mw = 0;
    int64_t cap_mw = 0;
    int64_t measured_mw = 0;
    uint32_t nodes = 0;
  };
  struct JobRt {
    v1::Job job;
    // Per allocation index: started / ended as reported by the agents.
    std::vector<bool> started;
    std::vector<bool> ended;
    int32_t first_failure_code = 0;  // exit code of the first rank to fail
    uint64_t energy_mj = 0;
    std::deque<int64_t> recent_per_gpu_mw;  // measured mode samples
    int64_t measured_per_gpu_mw = 0;
    // The last report that showed this attempt running (any rank): a lost
    // attempt ends there, not when the loss is noticed.
    absl::Time last_seen = absl::InfinitePast();
    // Last start or limit change (the power loop's raise hysteresis).
    absl::Time limit_changed_at = absl::InfinitePast();
  };
  struct TenantRt {
    v1::Tenant tenant;
    double decayed_gpu_seconds = 0;  // fair share only, never billed
    absl::Time decay_time = absl::InfinitePast();
  };
  struct PendingLog {
    std::string node;  // the node asked; a reply from another is ignored
    absl::Notification done;
    v1::LogChunk chunk;
  };

  // Helpers; *Locked need mu_.
  absl::Status LoadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int LeafFor(const std::string& node) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t NodeCommittedJobsLocked(const NodeRt& n) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<int64_t> DomainCommittedLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t JobCommittedPerGpuLocked(const JobRt& j) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  scheduler::ClusterSnapshot SnapshotLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddEventLocked(storage::WriteBatch* batch, std::string kind,
                      std::string subject, std::string message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutJobLocked(storage::WriteBatch* batch, const v1::Job& job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutNodeLocked(storage::WriteBatch* batch, const NodeRt& n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PutCountersLocked(storage::WriteBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CommitLocked(const storage::WriteBatch& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteEventsLocked(const storage::WriteBatch& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TransitionLocked(JobRt& j, v1::JobState state, std::string reason,
                        absl::Time when) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the current attempt: frees GPUs, records the attempt (and billing
  // records into `batch`). Returns the closed attempt.
  v1::JobAttempt EndAttemptLocked(JobRt& j, absl::Time end, std::string outcome,
                                  storage::WriteBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RequestStopLocked(JobRt& j, v1::JobState target, std::string reason)
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
  void AddTenantUsageLocked(const std::string& tenant, double gpu_seconds,
                            absl::Time at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  double TenantUsageLocked(const std::string& tenant, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Node NodeViewLocked(const NodeRt& n, absl::Time now,
                          const std::string& viewer_tenant = "") const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ValidateSpecLocked(const v1::JobSpec& spec) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const config::GpuModel* GpuModelLocked(const std::string& model) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Idle draw of one GPU of `model`: the config's idle_power, else a tenth
  // of the default limit the agents report.
  int64_t IdleMwLocked(const std::string& model) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { wake_ = true; }
  void UpdateNodeMeasuredLocked(NodeRt& n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  JobRt* FindJobLocked(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When the current attempt's StartJob was sent (its STARTING transition).
  absl::Time StartSentLocked(const JobRt& j) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Where a lost attempt ends: its last sighting, else the node's last
  // report, never after `now` nor before the attempt's start.
  absl::Time LostEndLocked(const JobRt& j, const NodeRt& n,
                           absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LoopThread();
  void CommitBilled(const std::vector<std::pair<v1::Job, v1::JobAttempt>>& b);

  const ClusterManagerOptions options_;
  mutable absl::Mutex mu_;

  std::vector<DomainRt> domains_ ABSL_GUARDED_BY(mu_);
  // measured-plus: the adaptive admission reserve per domain (index as
  // domains_), adapted once per report interval in ControlPowerOnce.
  std::vector<scheduler::MarginState> margins_ ABSL_GUARDED_BY(mu_);
  absl::Time margins_updated_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::flat_hash_map<std::string, int> domain_index_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, NodeRt> nodes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, JobRt> jobs_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> active_
      ABSL_GUARDED_BY(mu_);  // pending,
                             // starting, running job ids
  std::map<std::string, TenantRt> tenants_ ABSL_GUARDED_BY(mu_);
  // Names of created tenants, under their own lock so that billing can ask
  // TenantExists() while holding its lock (the manager calls billing with
  // mu_ held; one lock order: mu_ -> ledger -> tenant_names_mu_).
  mutable absl::Mutex tenant_names_mu_;
  absl::flat_hash_set<std::string> tenant_names_
      ABSL_GUARDED_BY(tenant_names_mu_);
  uint64_t next_job_seq_ ABSL_GUARDED_BY(mu_) = 1;
  // "tenant/request_id" of submissions being written right now.
  absl::flat_hash_set<std::string> submitting_ ABSL_GUARDED_BY(mu_);
  uint64_t next_event_seq_ ABSL_GUARDED_BY(mu_) = 1;
  std::atomic<uint64_t> next_command_id_{1};
  absl::flat_hash_map<uint64_t, std::shared_ptr<PendingLog>> pending_logs_
      ABSL_GUARDED_BY(mu_);

  // When recent registrations were accepted (rate limit).
  std::deque<absl::Time> recent_registrations_ ABSL_GUARDED_BY(mu_);

  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  ArrayGate array_gate_ ABSL_GUARDED_BY(mu_);  // arrays' max_running
  bool power_dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace joule::daemon
