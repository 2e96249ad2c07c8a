#pragma once

#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/job_identity.h"
#include "common/clock.h"

namespace joule::agent {

struct JobLaunch {
  std::string job_id;  // must pass ValidJobId
  uint32_t attempt = 0;
  std::vector<std::string> command;
  std::vector<std::string> env;  // the whole environment, "K=V"
  JobIdentity identity;          // who it runs as
  absl::Duration max_runtime = absl::ZeroDuration();  // 0 = none
  // Written into the job's cgroups (agent/cgroup.h); 0 = none. A limit
  // that no cgroup of this runner can hold fails Start.
  int64_t memory_bytes = 0;
  int64_t cpu_millis = 0;
  // Agent facts kept with the attempt (they survive an agent restart).
  std::vector<uint32_t> gpus;
  uint64_t energy_at_start_mj = 0;
};

struct JobExit {
  std::string job_id;
  uint32_t attempt = 0;
  int exit_code = 0;  // 128 + signal when killed
  int signal = 0;
  bool max_runtime_exceeded = false;
  bool stop_requested = false;
  bool supervisor_lost = false;  // no record: the group was killed blind
  bool while_away = false;       // ended while no agent watched (at startup)
  absl::Time start_time;
  absl::Time end_time;
  std::vector<uint32_t> gpus;
  uint64_t energy_at_start_mj = 0;
};

struct RunningProcess {
  std::string job_id;
  uint32_t attempt = 0;
  pid_t pid = 0;         // the supervisor's
  bool adopted = false;  // started by an earlier agent process
  std::vector<uint32_t> gpus;
};

// Runs each job attempt under its own joule-job-supervisor process, which
// owns the job's process group (and cgroup), drops to the job's user,
// survives the agent and writes the job's end into `state_dir`. Stdout and
// stderr go to `<log_dir>/<job>.<attempt>.log` (0640, O_NOFOLLOW).
//
// On construction it re-adopts the attempts an earlier agent process left
// running and collects those that ended meanwhile (TakeEndedAtStartup). A
// monitor thread notices ends at once (pidfds) and calls `on_exit` (without
// internal locks held). Destruction stops every attempt (SIGTERM, then SIGKILL)
// and waits for their supervisors; an agent killed outright leaves them
// running. Paths are only built from ids that pass ValidJobId. Thread-safe.
class JobRunner {
 public:
  struct Options {
    std::string log_dir;
    std::string state_dir;
    std::string supervisor_path;  // the joule-job-supervisor binary
    std::string cgroup_root;      // empty: no cgroups
    // Hybrid hierarchies: the agent's v1 memory / cpu parents; a job gets a
    // dir in one only when it has a limit that that controller holds.
    std::vector<std::string> cgroup_v1_roots;
    const Clock* clock = nullptr;
    std::function<void(const JobExit&)> on_exit;
    size_t ended_records_kept = 100;
    // true: destruction leaves the attempts to their supervisors, as an
    // agent killed outright does (tests use it to stand for a crash).
    bool leave_running_on_destroy = false;
    // The monitor wakes the moment a supervisor exits (a pidfd per
    // supervisor, poll(2)) or an attempt starts, so an end is reported at
    // once; it looks this often where it has no pidfd for a supervisor (a
    // kernel without pidfd_open), else at least a second apart.
    absl::Duration monitor_interval = absl::Milliseconds(20);
  };
  explicit JobRunner(Options options);
  ~JobRunner();

  // Starts the attempt; returns once the job runs, or fails with the reason
  // (bad id, no such program, job user refused, ...).
  absl::Status Start(const JobLaunch& launch);
  // `signo` (SIGTERM unless a preemption notice names another) to the
  // job's processes now, SIGKILL after `grace` (the supervisor keeps the
  // timer). NOT_FOUND if the attempt does not run here.
  absl::Status Stop(const std::string& job_id, uint32_t attempt,
                    absl::Duration grace, int signo = SIGTERM);
  bool IsRunning(const std::string& job_id, uint32_t attempt) const;
  std::vector<RunningProcess> Running() const;
  // Attempts that ended while no agent watched them, once.
  std::vector<JobExit> TakeEndedAtStartup();
  // INVALID_ARGUMENT for an id that is not a job id.
  absl::StatusOr<std::string> LogPath(const std::string& job_id,
                                      uint32_t attempt) const;
  // The last `max_bytes` of the attempt's log (a regular file in log_dir).
  absl::StatusOr<std::string> ReadLog(const std::string& job_id,
                                      uint32_t attempt, size_t max_bytes,
                                      bool* truncated) const;

 private:
  struct Proc {
    std::string job_id;
    uint32_t attempt = 0;
    pid_t pid = 0;  // supervisor
    pid_t pgid = 0;
    std::string cgroup;
    std::vector<std::string> cgroup_v1;
    bool adopted = false;
    absl::Time start;
    std::vector<uint32_t> gpus;
    uint64_t energy_at_start_mj = 0;
  };
  std::string Prefix(const std::string& job_id, uint32_t attempt) const;
  void Adopt();
  // The attempt's end from its .exit record, or a blind kill if its
  // supervisor is gone without one. Removes the attempt's records.
  JobExit Collect(const Proc& p, bool supervisor_gone);
  // The .exit records kept: listed once at start, then added to as
  // attempts end; PruneEnded removes the oldest beyond ended_records_kept.
  void ListEnded();
  void PruneEnded();
  void MonitorLoop();
  void WaitForAnExit();  // a supervisor exited, Wake(), or the timeout
  void Wake();           // wakes WaitForAnExit

  const Options options_;
  mutable absl::Mutex mu_;
  std::map<std::string, Proc> procs_ ABSL_GUARDED_BY(mu_);  // "job.attempt"
  std::vector<JobExit> ended_at_startup_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // (end_ns, path) of the kept .exit records, oldest first; the
  // constructor, then the monitor thread only.
  std::deque<std::pair<int64_t, std::string>> ended_;
  // The monitor thread's own (no lock): one pidfd per watched supervisor
  // ("job.attempt" -> fd), opened once and closed when its attempt ends;
  // the attempts whose pidfd fired in the last wait; and whether the next
  // look checks every attempt (at start, after the wait's timeout, a
  // second after the last such look, while stopping) instead of only those
  // and the ones without a pidfd.
  std::map<std::string, int> pidfds_;
  std::set<std::string> fired_;
  bool look_at_all_ = true;
  absl::Time last_full_look_ = absl::InfinitePast();
  const int wake_fd_;  // eventfd, or -1
  std::thread monitor_;
};

}  // namespace joule::agent
