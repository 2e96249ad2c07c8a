#include "agent/job_runner.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

extern char** environ;

namespace joule::agent {

JobRunner::JobRunner(Options options) : options_(std::move(options)) {
  ::mkdir(options_.log_dir.c_str(), 0755);
  reaper_ = std::thread([this] { ReapLoop(); });
  timer_ = std::thread([this] { TimerLoop(); });
}

JobRunner::~JobRunner() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [pid, p] : procs_) ::kill(-pid, SIGKILL);
  }
  timer_.join();
  reaper_.join();
}

std::string JobRunner::LogPath(const std::string& job_id,
                               uint32_t attempt) const {
  return absl::StrCat(options_.log_dir, "/", job_id, ".", attempt, ".log");
}

absl::Status JobRunner::Start(const JobLaunch& launch) {
  if (launch.command.empty()) {
    return absl::InvalidArgumentError("command: must not be empty");
  }
  const std::string log = LogPath(launch.job_id, launch.attempt);
  // Everything the child needs is prepared before the spawn.
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    bool overridden = false;
    for (const auto& [k, v] : launch.env) {
      if (kv.size() > k.size() && kv.substr(0, k.size()) == k &&
          kv[k.size()] == '=') {
        overridden = true;
        break;
      }
    }
    if (!overridden) env_storage.emplace_back(kv);
  }
  for (const auto& [k, v] : launch.env)
    env_storage.push_back(absl::StrCat(k, "=", v));
  std::vector<char*> envp;
  for (auto& s : env_storage) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_storage = launch.command;
  std::vector<char*> argv;
  for (auto& s : argv_storage) argv.push_back(s.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
                                      POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);

  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("agent is shutting down");
  pid_t pid = 0;
  const int rc =
      posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot start ", launch.command[0], ": ", std::strerror(rc)));
  }
  Proc p;
  p.job_id = launch.job_id;
  p.attempt = launch.attempt;
  p.pid = pid;
  p.start = options_.clock->Now();
  if (launch.max_runtime > absl::ZeroDuration()) {
    p.deadline = p.start + launch.max_runtime;
  }
  procs_[pid] = p;
  return absl::OkStatus();
}

absl::Status JobRunner::Stop(const std::string& job_id, uint32_t attempt,
                             absl::Duration grace) {
  absl::MutexLock lock(&mu_);
  for (auto& [pid, p] : procs_) {
    if (p.job_id == job_id && p.attempt == attempt) {
      p.stop_requested = true;
      ::kill(-pid, SIGTERM);
      p.kill_at = std::min(p.kill_at, options_.clock->Now() + grace);
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(absl::StrCat("job ", job_id, " attempt ", attempt,
                                          " is not running here"));
}

bool JobRunner::IsRunning(const std::string& job_id, uint32_t attempt) const {
  absl::MutexLock lock(&mu_);
  for (const auto& [pid, p] : procs_) {
    if (p.job_id == job_id && p.attempt == attempt) return true;
  }
  return false;
}

std::vector<RunningProcess> JobRunner::Running() const {
  absl::MutexLock lock(&mu_);
  std::vector<RunningProcess> out;
  for (const auto& [pid, p] : procs_) out.push_back({p.job_id, p.attempt, pid});
  return out;
}

absl::StatusOr<std::string> JobRunner::ReadLog(const std::string& job_id,
                                               uint32_t attempt,
                                               size_t max_bytes,
                                               bool* truncated) const {
  std::ifstream in(LogPath(job_id, attempt), std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("no log for job ", job_id, " attempt ", attempt, " here"));
  }
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  std::streamoff from = 0;
  if (max_bytes > 0 && size > static_cast<std::streamoff>(max_bytes)) {
    from = size - static_cast<std::streamoff>(max_bytes);
  }
  *truncated = from > 0;
  in.seekg(from);
  std::string data(static_cast<size_t>(size - from), '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  return data;
}

void JobRunner::ReapLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !procs_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_ && procs_.empty()) return;
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == ECHILD) {
        absl::SleepFor(absl::Milliseconds(5));  // raced with Start
      }
      continue;
    }
    JobExit exit;
    {
      absl::MutexLock lock(&mu_);
      auto it = procs_.find(pid);
      if (it == procs_.end()) continue;  // not a job of ours
      const Proc& p = it->second;
      exit.job_id = p.job_id;
      exit.attempt = p.attempt;
      exit.start_time = p.start;
      exit.end_time = options_.clock->Now();
      exit.max_runtime_exceeded = p.runtime_exceeded;
      exit.stop_requested = p.stop_requested;
      procs_.erase(it);
    }
    // Whatever the leader left behind in its group goes too.
    ::kill(-pid, SIGKILL);
    if (WIFEXITED(status)) {
      exit.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      exit.signal = WTERMSIG(status);
      exit.exit_code = 128 + exit.signal;
    }
    if (options_.on_exit) options_.on_exit(exit);
  }
}

void JobRunner::TimerLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                               absl::Milliseconds(20))) {
        return;
      }
      const absl::Time now = options_.clock->Now();
      for (auto& [pid, p] : procs_) {
        if (now >= p.deadline && !p.runtime_exceeded) {
          p.runtime_exceeded = true;
          ::kill(-pid, SIGTERM);
          p.kill_at = std::min(p.kill_at, now + absl::Seconds(5));
        }
        if (now >= p.kill_at) {
          ::kill(-pid, SIGKILL);
          p.kill_at = absl::InfiniteFuture();
        }
      }
    }
  }
}

}  // namespace joule::agent
