#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace joule::agent {

struct JobLaunch {
  std::string job_id;
  uint32_t attempt = 0;
  std::vector<std::string> command;
  std::vector<std::pair<std::string, std::string>> env;  // added to ours
  absl::Duration max_runtime = absl::ZeroDuration();     // 0 = none
};

struct JobExit {
  std::string job_id;
  uint32_t attempt = 0;
  int exit_code = 0;  // valid when signal == 0
  int signal = 0;
  bool max_runtime_exceeded = false;
  bool stop_requested = false;
  absl::Time start_time;
  absl::Time end_time;
};

struct RunningProcess {
  std::string job_id;
  uint32_t attempt = 0;
  pid_t pid = 0;
};

// Runs job commands as child processes, each in its own process group, with
// stdout/stderr appended to `<log_dir>/<job>.<attempt>.log`. Stops them with
// SIGTERM to the group and SIGKILL after a grace period; enforces max
// runtime. Owns the children: a reaper thread waits for them and calls
// `on_exit` (from that thread, without holding internal locks). Thread-safe.
class JobRunner {
 public:
  struct Options {
    std::string log_dir;
    const Clock* clock = nullptr;
    std::function<void(const JobExit&)> on_exit;
  };
  explicit JobRunner(Options options);
  ~JobRunner();  // kills what still runs and joins the threads

  // Starts the process; fails (with the OS's words) if it cannot be spawned.
  absl::Status Start(const JobLaunch& launch);
  // SIGTERM now, SIGKILL after `grace` if still alive. NOT_FOUND if the
  // attempt does not run here.
  absl::Status Stop(const std::string& job_id, uint32_t attempt,
                    absl::Duration grace);
  bool IsRunning(const std::string& job_id, uint32_t attempt) const;
  std::vector<RunningProcess> Running() const;
  std::string LogPath(const std::string& job_id, uint32_t attempt) const;
  // The last `max_bytes` of the attempt's log.
  absl::StatusOr<std::string> ReadLog(const std::string& job_id,
                                      uint32_t attempt, size_t max_bytes,
                                      bool* truncated) const;

 private:
  struct Proc {
    std::string job_id;
    uint32_t attempt = 0;
    pid_t pid = 0;
    absl::Time start;
    absl::Time deadline = absl::InfiniteFuture();  // max runtime
    absl::Time kill_at = absl::InfiniteFuture();   // SIGKILL after grace
    bool stop_requested = false;
    bool runtime_exceeded = false;
  };
  void ReapLoop();
  void TimerLoop();

  const Options options_;
  mutable absl::Mutex mu_;
  std::map<pid_t, Proc> procs_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reaper_;
  std::thread timer_;
};

}  // namespace joule::agent
