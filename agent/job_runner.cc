#include "agent/job_runner.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/cgroup.h"
#include "agent/job_record.h"
#include "common/status_macros.h"

namespace joule::agent {
namespace {

// The kernel's boot id, read once: it does not change while we run.
const std::string& BootId() {
  static const std::string* const id = [] {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    auto* s = new std::string;
    std::getline(in, *s);
    return s;
  }();
  return *id;
}

// The groups of `user` with `gid` (getgrouplist(3)); only `gid` for no
// user name.
absl::StatusOr<std::vector<gid_t>> UserGroups(const std::string& user,
                                              int64_t gid) {
  std::vector<gid_t> groups(64);
  if (user.empty()) return std::vector<gid_t>{static_cast<gid_t>(gid)};
  for (int tries = 0; tries < 4; ++tries) {
    int n = static_cast<int>(groups.size());
    if (::getgrouplist(user.c_str(), static_cast<gid_t>(gid), groups.data(),
                       &n) >= 0) {
      groups.resize(n);
      return groups;
    }
    groups.resize(std::max<size_t>(n, groups.size() * 2));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot list the groups of job user ", user));
}

std::vector<uint32_t> ParseGpus(const std::string& s) {
  std::vector<uint32_t> out;
  for (absl::string_view part : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    uint32_t g;
    if (absl::SimpleAtoi(part, &g)) out.push_back(g);
  }
  return out;
}

// "job-12.3.exit" -> ("job-12", 3) for a valid id and the given suffix.
bool ParseRecordName(absl::string_view name, absl::string_view suffix,
                     std::string* job_id, uint32_t* attempt) {
  if (!absl::ConsumeSuffix(&name, suffix)) return false;
  const size_t dot = name.rfind('.');
  if (dot == absl::string_view::npos) return false;
  if (!absl::SimpleAtoi(name.substr(dot + 1), attempt)) return false;
  *job_id = std::string(name.substr(0, dot));
  return ValidJobId(*job_id);
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = ::readdir(d)) out.push_back(e->d_name);
  ::closedir(d);
  return out;
}

}  // namespace

JobRunner::JobRunner(Options options)
    : options_(std::move(options)),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  MakePrivateDir(options_.state_dir).IgnoreError();
  MakePrivateDir(options_.log_dir).IgnoreError();
  Adopt();
  ListEnded();
  PruneEnded();
  monitor_ = std::thread([this] { MonitorLoop(); });
}

void JobRunner::Wake() {
  if (wake_fd_ < 0) return;
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

JobRunner::~JobRunner() {
  std::vector<std::string> killed;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (options_.leave_running_on_destroy) procs_.clear();
    for (auto& [key, p] : procs_) {
      union sigval v;
      v.sival_int = 0;
      ::sigqueue(p.pid, SIGTERM, v);
      killed.push_back(Prefix(p.job_id, p.attempt));
    }
  }
  Wake();
  monitor_.join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
  // Attempts this shutdown killed are not reported by the next agent as
  // exits of their own: the daemon settles them as lost (lost_job_policy).
  for (const std::string& prefix : killed) ::unlink((prefix + ".exit").c_str());
}

std::string JobRunner::Prefix(const std::string& job_id,
                              uint32_t attempt) const {
  return AttemptPath(options_.state_dir, job_id, attempt, "");
}

absl::StatusOr<std::string> JobRunner::LogPath(const std::string& job_id,
                                               uint32_t attempt) const {
  if (!ValidJobId(job_id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job_id: \"", job_id.substr(0, 64), "\" is not a job id (job-NNN)"));
  }
  return AttemptPath(options_.log_dir, job_id, attempt, ".log");
}

void JobRunner::Adopt() {
  absl::MutexLock lock(&mu_);
  const std::string boot = BootId();
  std::set<std::string> seen;
  for (const std::string& name : ListDir(options_.state_dir)) {
    std::string id;
    uint32_t attempt = 0;
    if (!ParseRecordName(name, ".run", &id, &attempt) &&
        !ParseRecordName(name, ".exit", &id, &attempt)) {
      continue;
    }
    const std::string prefix = Prefix(id, attempt);
    const std::string key = absl::StrCat(id, ".", attempt);
    if (!seen.insert(key).second) continue;
    // The agent's facts (GPUs, energy at start, boot id) are in the .run
    // record (the supervisor writes them, --note); an older agent kept them
    // in a .job record of their own.
    auto run = ReadRecord(prefix + ".run");
    auto job = ReadRecord(prefix + ".job");
    if (!job.ok() && run.ok()) job = run;
    Proc p;
    p.job_id = id;
    p.attempt = attempt;
    p.adopted = true;
    if (job.ok()) {
      p.gpus = ParseGpus((*job)["gpus"]);
      p.energy_at_start_mj = RecordInt(*job, "energy_at_start_mj");
    }
    if (run.ok()) {
      p.pid = static_cast<pid_t>(RecordInt(*run, "supervisor_pid"));
      p.pgid = static_cast<pid_t>(RecordInt(*run, "pgid"));
      p.cgroup = (*run)["cgroup"];
      p.cgroup_v1 = absl::StrSplit((*run)["cgroup_v1"], ',', absl::SkipEmpty());
      p.start = absl::FromUnixNanos(RecordInt(*run, "start_ns"));
    }
    const bool ended = ReadRecord(prefix + ".exit").ok();
    const bool same_boot = job.ok() && (*job)["boot_id"] == boot;
    if (!ended && same_boot && IsSupervisor(p.pid)) {
      procs_[key] = p;  // still running: watched from now on
      continue;
    }
    if (!ended && (!run.ok() || !same_boot)) {
      // Nothing started (the agent died before its supervisor wrote a
      // record), or the machine went down under the attempt (a .run of an
      // earlier boot, or one with no boot id: every process of it died with
      // the machine). The .run is not synced, so after a crash it may or
      // may not be on disk: either way the attempt is not reported and the
      // daemon settles it as lost (lost_job_policy), as for any attempt the
      // agent does not list. Only a synced .exit reports an end across a
      // reboot.
      ::unlink((prefix + ".run").c_str());
      ::unlink((prefix + ".job").c_str());
      continue;
    }
    ended_at_startup_.push_back(Collect(p, /*supervisor_gone=*/true));
    ended_at_startup_.back().while_away = true;
  }
}

JobExit JobRunner::Collect(const Proc& p, bool supervisor_gone) {
  const std::string prefix = Prefix(p.job_id, p.attempt);
  JobExit e;
  e.job_id = p.job_id;
  e.attempt = p.attempt;
  e.gpus = p.gpus;
  e.energy_at_start_mj = p.energy_at_start_mj;
  auto rec = ReadRecord(prefix + ".exit");
  if (rec.ok()) {
    e.exit_code = static_cast<int>(RecordInt(*rec, "exit_code"));
    e.signal = static_cast<int>(RecordInt(*rec, "signal"));
    e.stop_requested = RecordInt(*rec, "stop_requested") != 0;
    e.max_runtime_exceeded = RecordInt(*rec, "runtime_exceeded") != 0;
    e.start_time = absl::FromUnixNanos(RecordInt(*rec, "start_ns"));
    e.end_time = absl::FromUnixNanos(RecordInt(*rec, "end_ns"));
  } else {
    // The supervisor died without a record (killed, or the node rebooted):
    // whatever may be left of the job goes now.
    if (p.pgid > 0) ::kill(-p.pgid, SIGKILL);
    if (!p.cgroup.empty()) {
      std::ofstream kill_file(p.cgroup + "/cgroup.kill");
      if (kill_file) kill_file << "1";
      ::rmdir(p.cgroup.c_str());
    }
    for (const std::string& dir : p.cgroup_v1) {
      std::ifstream procs(dir + "/cgroup.procs");
      pid_t pid;
      while (procs >> pid) ::kill(pid, SIGKILL);
      ::rmdir(dir.c_str());
    }
    e.supervisor_lost = true;
    e.signal = SIGKILL;
    e.exit_code = 128 + SIGKILL;
    e.start_time = p.start;
    e.end_time = options_.clock->Now();
    WriteRecord(prefix + ".exit",
                {{"exit_code", absl::StrCat(e.exit_code)},
                 {"signal", absl::StrCat(e.signal)},
                 {"start_ns", absl::StrCat(absl::ToUnixNanos(e.start_time))},
                 {"end_ns", absl::StrCat(absl::ToUnixNanos(e.end_time))},
                 {"supervisor_lost", "1"}})
        .IgnoreError();
  }
  // The .exit record stays (pruned later), so that an agent that dies
  // before reporting this end reports it after its restart.
  ::unlink((prefix + ".run").c_str());
  // Only an older agent wrote .job records (its attempts are re-adopted).
  if (p.adopted) ::unlink((prefix + ".job").c_str());
  return e;
}

void JobRunner::ListEnded() {
  for (const std::string& name : ListDir(options_.state_dir)) {
    std::string id;
    uint32_t attempt;
    if (!ParseRecordName(name, ".exit", &id, &attempt)) continue;
    const std::string path = options_.state_dir + "/" + name;
    auto rec = ReadRecord(path);
    ended_.emplace_back(rec.ok() ? RecordInt(*rec, "end_ns") : 0, path);
  }
  std::sort(ended_.begin(), ended_.end());
}

void JobRunner::PruneEnded() {
  while (ended_.size() > options_.ended_records_kept) {
    ::unlink(ended_.front().second.c_str());
    ended_.pop_front();
  }
}

std::vector<JobExit> JobRunner::TakeEndedAtStartup() {
  absl::MutexLock lock(&mu_);
  return std::move(ended_at_startup_);
}

absl::Status JobRunner::Start(const JobLaunch& launch) {
  if (launch.command.empty()) {
    return absl::InvalidArgumentError("command: must not be empty");
  }
  auto log = LogPath(launch.job_id, launch.attempt);
  if (!log.ok()) return log.status();
  const std::string key = absl::StrCat(launch.job_id, ".", launch.attempt);
  const std::string prefix = Prefix(launch.job_id, launch.attempt);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("agent is shutting down");
    if (procs_.contains(key)) {
      return absl::AlreadyExistsError(absl::StrCat("job ", launch.job_id,
                                                   " attempt ", launch.attempt,
                                                   " already runs here"));
    }
  }
  ::unlink((prefix + ".exit").c_str());  // a stale record of this attempt

  // The agent's facts of the attempt go into the supervisor's .run record
  // (written before the job's first process goes on, agent/job_record.h).
  std::vector<std::string> args = {
      options_.supervisor_path,
      "--record",
      prefix,
      "--log",
      *log,
      "--note",
      absl::StrCat("gpus=", absl::StrJoin(launch.gpus, ",")),
      "--note",
      absl::StrCat("energy_at_start_mj=", launch.energy_at_start_mj),
      "--note",
      absl::StrCat("boot_id=", BootId())};
  if (launch.identity.uid >= 0) {
    // The user's groups are looked up here, in the resident agent, so the
    // supervisor (one process per attempt) does not load the NSS modules
    // that initgroups(3) would: it calls setgroups(2) with this list.
    auto groups = UserGroups(launch.identity.user, launch.identity.gid);
    if (!groups.ok()) return groups.status();
    args.insert(args.end(), {"--uid", absl::StrCat(launch.identity.uid),
                             "--gid", absl::StrCat(launch.identity.gid),
                             "--groups", absl::StrJoin(*groups, ",")});
  }
  if (launch.max_runtime > absl::ZeroDuration()) {
    args.insert(args.end(),
                {"--max-runtime-ms",
                 absl::StrCat(std::max<int64_t>(
                     1, absl::ToInt64Milliseconds(launch.max_runtime)))});
  }
  std::string cgroup;
  if (!options_.cgroup_root.empty()) {
    cgroup = absl::StrCat(options_.cgroup_root, "/", key);
    args.insert(args.end(), {"--cgroup", cgroup});
  }
  std::vector<std::string> cgroup_v1;
  for (const std::string& root : options_.cgroup_v1_roots) {
    // A v1 dir (hybrid hosts) only holds a limit: the v2 dir tracks and
    // kills the job. So one is made only for a job with a limit that its
    // controller holds (the agent's parent dir has the same control files
    // as its children); a job without one stays in the agent's own v1
    // cgroups there, and costs no memcg or cpu group to make and remove.
    bool holds_memory = false, holds_cpu = false;
    LimitWrites(root, {launch.memory_bytes, launch.cpu_millis}, &holds_memory,
                &holds_cpu);
    if (!holds_memory && !holds_cpu) continue;
    cgroup_v1.push_back(absl::StrCat(root, "/", key));
    args.insert(args.end(), {"--cgroup-v1", cgroup_v1.back()});
  }
  if (launch.memory_bytes > 0) {
    args.insert(args.end(),
                {"--memory-bytes", absl::StrCat(launch.memory_bytes)});
  }
  if (launch.cpu_millis > 0) {
    args.insert(args.end(), {"--cpu-millis", absl::StrCat(launch.cpu_millis)});
  }
  args.push_back("--");
  args.insert(args.end(), launch.command.begin(), launch.command.end());
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage = launch.env;
  std::vector<char*> envp;
  for (auto& s : env_storage) envp.push_back(s.data());
  envp.push_back(nullptr);

  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null",
                                   O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, ready[1], 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  pid_t pid = 0;
  const int rc =
      posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(ready[1]);
  if (rc != 0) {
    ::close(ready[0]);
    ::unlink((prefix + ".job").c_str());
    return absl::FailedPreconditionError(
        absl::StrCat("cannot start the job supervisor ",
                     options_.supervisor_path, ": ", std::strerror(rc)));
  }
  // The supervisor answers once the job runs (or could not be started).
  std::string answer;
  struct pollfd pfd = {ready[0], POLLIN, 0};
  char buf[512];
  while (answer.find('\n') == std::string::npos && ::poll(&pfd, 1, 10000) > 0) {
    const ssize_t n = ::read(ready[0], buf, sizeof(buf));
    if (n <= 0) break;
    answer.append(buf, n);
  }
  ::close(ready[0]);
  if (!absl::StartsWith(answer, "ok ")) {
    ::waitpid(pid, nullptr, 0);
    ::unlink((prefix + ".job").c_str());
    ::unlink((prefix + ".run").c_str());
    std::string why = answer.substr(0, answer.find('\n'));
    if (absl::StartsWith(why, "error: ")) why = why.substr(7);
    if (why.empty()) why = "the job supervisor exited before the job ran";
    return absl::FailedPreconditionError(why);
  }
  Proc p;
  p.job_id = launch.job_id;
  p.attempt = launch.attempt;
  p.pid = pid;
  absl::SimpleAtoi(absl::StripSuffix(answer.substr(3), "\n"), &p.pgid);
  p.cgroup = cgroup;
  p.cgroup_v1 = cgroup_v1;
  p.start = options_.clock->Now();
  p.gpus = launch.gpus;
  p.energy_at_start_mj = launch.energy_at_start_mj;
  {
    absl::MutexLock lock(&mu_);
    procs_[key] = p;
  }
  Wake();  // the monitor watches the new supervisor from now on
  return absl::OkStatus();
}

absl::Status JobRunner::Stop(const std::string& job_id, uint32_t attempt,
                             absl::Duration grace, int signo) {
  absl::MutexLock lock(&mu_);
  auto it = procs_.find(absl::StrCat(job_id, ".", attempt));
  if (it == procs_.end()) {
    return absl::NotFoundError(absl::StrCat("job ", job_id.substr(0, 64),
                                            " attempt ", attempt,
                                            " is not running here"));
  }
  // The supervisor's stop request (agent/supervisor_main.cc): SIGTERM
  // queued with the grace in ms in the low 32 bits of the value and the
  // signal for the job in the high 32 (0 = SIGTERM). A supervisor that
  // reads only sival_int gets the grace, as before.
  const uint64_t grace_ms = static_cast<uint64_t>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(grace), 0, INT_MAX));
  const uint64_t sig = signo == SIGTERM ? 0 : static_cast<uint32_t>(signo);
  union sigval v {};
  v.sival_ptr =
      reinterpret_cast<void*>(static_cast<uintptr_t>((sig << 32) | grace_ms));
  ::sigqueue(it->second.pid, SIGTERM, v);
  return absl::OkStatus();
}

bool JobRunner::IsRunning(const std::string& job_id, uint32_t attempt) const {
  absl::MutexLock lock(&mu_);
  return procs_.contains(absl::StrCat(job_id, ".", attempt));
}

std::vector<RunningProcess> JobRunner::Running() const {
  absl::MutexLock lock(&mu_);
  std::vector<RunningProcess> out;
  for (const auto& [key, p] : procs_) {
    out.push_back({p.job_id, p.attempt, p.pid, p.adopted, p.gpus});
  }
  return out;
}

absl::StatusOr<std::string> JobRunner::ReadLog(const std::string& job_id,
                                               uint32_t attempt,
                                               size_t max_bytes,
                                               bool* truncated) const {
  auto path = LogPath(job_id, attempt);
  if (!path.ok()) return path.status();
  const int fd = ::open(path->c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0) ::close(fd);
    return absl::NotFoundError(
        absl::StrCat("no log for job ", job_id, " attempt ", attempt, " here"));
  }
  const off_t size = st.st_size;
  off_t from = 0;
  if (max_bytes > 0 && size > static_cast<off_t>(max_bytes)) {
    from = size - static_cast<off_t>(max_bytes);
  }
  *truncated = from > 0;
  std::string data(static_cast<size_t>(size - from), '\0');
  size_t got = 0;
  while (got < data.size()) {
    const ssize_t n = ::pread(fd, data.data() + got, data.size() - got,
                              from + static_cast<off_t>(got));
    if (n <= 0) break;
    got += n;
  }
  ::close(fd);
  data.resize(got);
  return data;
}

void JobRunner::MonitorLoop() {
  const absl::Time give_up_after = absl::InfiniteFuture();
  absl::Time stop_deadline = give_up_after;
  while (true) {
    // Reap supervisors that were our children (their end is in .exit).
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    std::vector<std::pair<Proc, bool>> done;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_ && stop_deadline == give_up_after) {
        stop_deadline = absl::Now() + absl::Seconds(15);
      }
      if (stopping_ && (procs_.empty() || absl::Now() > stop_deadline)) {
        for (const auto& [key, fd] : pidfds_) ::close(fd);
        pidfds_.clear();
        return;
      }
      // The safety net: every attempt at least a second apart, however
      // often the pidfds and Wake() end the wait.
      const absl::Time now = absl::Now();
      if (stopping_ || now - last_full_look_ >= absl::Seconds(1)) {
        look_at_all_ = true;
      }
      if (look_at_all_) last_full_look_ = now;
      for (auto it = procs_.begin(); it != procs_.end();) {
        const Proc& p = it->second;
        // A supervisor watched by a pidfd that did not fire still runs:
        // nothing to look at (its .exit comes before its exit).
        if (!look_at_all_ && pidfds_.contains(it->first) &&
            !fired_.contains(it->first)) {
          ++it;
          continue;
        }
        const bool recorded =
            ::access((Prefix(p.job_id, p.attempt) + ".exit").c_str(), F_OK) ==
            0;
        const bool gone = !recorded && !IsSupervisor(p.pid);
        if (recorded || gone) {
          done.emplace_back(p, gone);
          if (auto fd = pidfds_.find(it->first); fd != pidfds_.end()) {
            ::close(fd->second);
            pidfds_.erase(fd);
          }
          it = procs_.erase(it);
        } else {
          ++it;
        }
      }
      fired_.clear();
      look_at_all_ = false;
    }
    bool any = false;
    for (auto& [p, gone] : done) {
      // The supervisor writes .exit before it exits: gone without one means
      // it died; look once more in case the record landed meanwhile.
      JobExit e = Collect(p, gone);
      ended_.emplace_back(absl::ToUnixNanos(e.end_time),
                          Prefix(p.job_id, p.attempt) + ".exit");
      if (options_.on_exit) options_.on_exit(e);
      any = true;
    }
    if (any) PruneEnded();
    WaitForAnExit();
  }
}

void JobRunner::WaitForAnExit() {
  // One pidfd per supervisor: poll() returns as soon as one exits (it has
  // written .exit by then) or Wake() is called (a new attempt, shutdown).
  // Only a supervisor without a pidfd (a kernel without pidfd_open) needs
  // the look every monitor_interval; else the look is a safety net, at
  // least a second apart, and an idle agent does not wake 50 times a second.
  // The pidfds stay open from one wait to the next (pidfds_).
  std::vector<struct pollfd> fds;
  std::vector<std::string> keys;
  bool all_watched = wake_fd_ >= 0;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, p] : procs_) {
      auto it = pidfds_.find(key);
      int fd = it != pidfds_.end() ? it->second : -1;
#ifdef SYS_pidfd_open
      if (fd < 0) fd = static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0));
#endif
      if (fd >= 0) {
        pidfds_[key] = fd;
        fds.push_back({fd, POLLIN, 0});
        keys.push_back(key);
      } else {
        all_watched = false;
      }
    }
  }
  const int64_t interval_ms =
      absl::ToInt64Milliseconds(options_.monitor_interval);
  const int timeout_ms = static_cast<int>(std::clamp<int64_t>(
      all_watched ? std::max<int64_t>(interval_ms, 1000) : interval_ms, 1,
      INT_MAX));
  const size_t pidfds = fds.size();
  if (wake_fd_ >= 0) fds.push_back({wake_fd_, POLLIN, 0});
  if (::poll(fds.data(), fds.size(), timeout_ms) <= 0) {
    look_at_all_ = true;  // the safety net: every attempt again
  }
  for (size_t i = 0; i < pidfds; ++i) {
    if (fds[i].revents != 0) fired_.insert(keys[i]);
  }
  if (wake_fd_ >= 0) {
    uint64_t n;
    (void)!::read(wake_fd_, &n, sizeof(n));
  }
}

}  // namespace joule::agent
