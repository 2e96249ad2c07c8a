#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"
#include "agent/gpu_backend.h"
#include "agent/job_identity.h"
#include "agent/job_runner.h"
#include "common/clock.h"
#include "transport/channel.h"
#include "common/endpoints.h"
#include "grpcpp/grpcpp.h"
#include "joule/v1/joule.grpc.pb.h"

namespace joule::agent {

struct AgentOptions {
  // One jouled, or several ("a,b,c": the HA leader and its standbys).
  std::string server = "127.0.0.1:7070";
  // TLS and credentials: the node certificate (CN = node name) signed by
  // the cluster CA, the CA that verifies jouled, or --insecure with a
  // node-bound agent token. `server` above is copied into it.
  transport::ClientOptions transport;
  std::string node_name;
  std::string address = "127.0.0.1";  // where this node's jobs are reachable
  // The interval used when the daemon does not ask for one at registration.
  absl::Duration report_interval = absl::Seconds(1);
  // true: always use report_interval (the operator set it on this agent).
  bool report_interval_fixed = false;
  absl::Duration backoff_initial = absl::Milliseconds(100);
  absl::Duration backoff_max = absl::Seconds(5);
  std::string log_dir;
  size_t max_finished_kept = 1000;  // job endings re-sent after a reconnect
  // Job supervision and isolation (see docs/security-hardening.md).
  std::string state_dir;
  std::string supervisor_path;
  std::string cgroup_root;  // empty: no cgroups
  // Job cgroups and limits (agent/cgroup.h): v1 memory/cpu parents on a
  // hybrid host, what can be enforced, and per-GPU defaults for jobs that
  // ask for no limit (0 = none).
  std::vector<std::string> cgroup_v1_roots;
  bool can_limit_memory = false;
  bool can_limit_cpu = false;
  std::string isolation;  // CgroupSetup::Describe(), for job messages
  int64_t memory_per_gpu_bytes = 0;
  int64_t cpu_millis_per_gpu = 0;
  JobUserPolicy job_users;
};

// The node agent: registers with jouled, streams a report every interval,
// runs the jobs it is told to (through JobRunner), applies power limits
// (through the GpuBackend) and reports job endings. Reconnects with capped,
// jittered exponential backoff forever; never exits on a lost connection.
// Owns the JobRunner and the connection; the backend and clock are borrowed.
// Thread-safe: Run() on one thread, Shutdown() from any.
class Agent {
 public:
  Agent(AgentOptions options, GpuBackend* backend, const Clock* clock);
  ~Agent();

  // Connects and serves until Shutdown().
  void Run();
  void Shutdown();

  // Next backoff delay after `current` (exposed for tests): doubles, capped
  // at max, with ±20% jitter.
  static absl::Duration NextBackoff(absl::Duration current, absl::Duration max,
                                    absl::BitGenRef gen);

 private:
  using Stream = grpc::ClientReaderWriter<v1::AgentMessage, v1::DaemonMessage>;
  // One connection's lifetime; returns when it breaks or on shutdown.
  // `connected` is set once the daemon accepted the registration.
  void Session(bool* connected);
  void HandleCommand(const v1::DaemonMessage& msg);
  void StartJob(uint64_t command_id, const v1::StartJob& start);
  void OnJobExit(const JobExit& exit);
  // Writes to the current stream, if any. Returns false if not sent.
  bool Send(const v1::AgentMessage& msg);
  v1::NodeReport BuildReport();
  // The attempts running here, with their GPUs.
  std::vector<v1::RunningJob> RunningJobs();
  uint64_t EnergyOf(const std::vector<uint32_t>& gpus);

  const AgentOptions options_;
  GpuBackend* const backend_;
  const Clock* const clock_;
  // Which of --server's endpoints to connect to (the leader, docs/ha.md).
  EndpointFollower follower_;
  std::unique_ptr<JobRunner> runner_;

  absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<v1::JobUpdate> finished_ ABSL_GUARDED_BY(mu_);

  absl::Mutex write_mu_;
  Stream* stream_ ABSL_GUARDED_BY(write_mu_) = nullptr;
};

}  // namespace joule::agent
