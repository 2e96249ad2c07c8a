// joule-job-supervisor: one per job attempt, started by joule-agent (see
// docs/security.md, "Node isolation"). It owns the job's process group (and
// cgroup, where it can make one), survives the agent, and records the job's end
// in the agent's state dir. Not meant to be run by hand.
//
//   joule-job-supervisor --record PREFIX --log PATH [--uid N --gid N
//       --groups G,...] [--max-runtime-ms N] [--cgroup DIR]
//       [--cgroup-v1 DIR]... [--memory-bytes N] [--cpu-millis N]
//       [--note KEY=VALUE]... -- PROGRAM ARGS...
//
// Each --note is written as it is into the .run record (the agent's facts
// of the attempt: GPUs, energy at start, boot id); KEY is [a-z_]+, VALUE
// has no newline.
//
// --groups is the job user's group list, looked up by the agent
// (getgrouplist), set with setgroups(2): no NSS modules are loaded here, so
// this binary links statically and starts without the dynamic loader.
// --cgroup is the job's cgroup v2 dir (made here, never an existing one;
// the job's first process is born in it, clone3 CLONE_INTO_CGROUP, where
// the kernel has it); --cgroup-v1 (hybrid hierarchies, repeatable; the
// agent passes one only for a limit its controller holds) a v1 memory or
// cpu dir made the same way, joined through cgroup.procs. --memory-bytes /
// --cpu-millis are written into whichever of them has the control file
// (agent/cgroup.h); a limit that no dir can hold fails the start ("error:
// ...").
//
// The job gets this process's environment (the agent builds it). fd 3, if
// open, is a pipe to the agent: "ok PGID\n" once the job runs, or
// "error: WHY\n" if it could not be started.
// Signals: SIGTERM stops the job: a signal to its group, SIGKILL after the
// grace. A queued SIGTERM's 64-bit value carries the grace in ms (low 32
// bits) and that first signal (high 32 bits; 0 = SIGTERM; only SIGTERM,
// SIGINT, SIGUSR1, SIGUSR2, SIGHUP and SIGQUIT: the preemption notice,
// common/preempt_signal.h); a plain SIGTERM means SIGTERM and 10 s.
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/cgroup.h"
#include "agent/job_record.h"

namespace {

using joule::agent::Record;
using joule::agent::WriteRecord;

int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// The first signal of a stop: the notice named in the request if it is on
// the allow-list, else SIGTERM (a value from an older agent, or garbage).
int NoticeSignal(int requested) {
  switch (requested) {
    case SIGINT:
    case SIGUSR1:
    case SIGUSR2:
    case SIGHUP:
    case SIGQUIT:
      return requested;
    default:
      return SIGTERM;
  }
}

int64_t MonoMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void Tell(int fd, const std::string& line) {
  if (fd < 0) return;
  const std::string l = line + "\n";
  (void)!::write(fd, l.data(), l.size());
}

// A fork whose child is born in the cgroup v2 dir `cgroup_fd` (clone3 with
// CLONE_INTO_CGROUP, Linux 5.7+): it never runs outside it, and no write to
// cgroup.procs moves it there afterwards. Sets `*in_cgroup`; falls back to
// a plain fork (`*in_cgroup` false: the child joins by cgroup.procs) where
// the kernel or the libc headers lack it. This process has one thread, so
// the child of the raw syscall finds no lock held; it only makes system
// calls, writes an error line and execs.
pid_t ForkInto(int cgroup_fd, bool* in_cgroup) {
  *in_cgroup = false;
#if defined(SYS_clone3) && defined(CLONE_INTO_CGROUP)
  if (cgroup_fd >= 0) {
    struct clone_args args;
    std::memset(&args, 0, sizeof(args));
    args.flags = CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = static_cast<uint64_t>(cgroup_fd);
    const long pid = ::syscall(SYS_clone3, &args, sizeof(args));
    if (pid >= 0) {
      *in_cgroup = true;
      return static_cast<pid_t>(pid);
    }
  }
#endif
  return ::fork();
}

// The v1 dirs (hybrid hierarchies) of this job; set once before the fork.
std::vector<std::string> g_v1_dirs;

// SIGKILLs every process of the cgroup (cgroup.kill where the kernel has
// it) and every direct child left (orphans reparent to us: subreaper).
void KillAll(pid_t pgid, const std::string& cgroup) {
  if (pgid > 0) ::kill(-pgid, SIGKILL);
  if (!cgroup.empty()) {
    std::ofstream kill_file(cgroup + "/cgroup.kill");
    if (kill_file) kill_file << "1";
    std::ifstream procs(cgroup + "/cgroup.procs");
    pid_t p;
    while (procs >> p) ::kill(p, SIGKILL);
  }
  for (const std::string& dir : g_v1_dirs) {
    std::ifstream procs(dir + "/cgroup.procs");
    pid_t p;
    while (procs >> p) ::kill(p, SIGKILL);
  }
  std::ifstream children(
      absl::StrCat("/proc/self/task/", getpid(), "/children"));
  pid_t c;
  while (children >> c) ::kill(c, SIGKILL);
}

}  // namespace

int main(int argc, char** argv) {
  std::string record, log, cgroup;
  std::vector<gid_t> groups;
  std::vector<std::pair<std::string, std::string>> notes;
  std::vector<std::string> v1_dirs;
  int64_t uid = -1, gid = -1, max_runtime_ms = 0;
  joule::agent::JobLimits limits;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "joule-job-supervisor: %s: missing value\n", a.c_str());
      return 2;
    }
    const std::string v = argv[++i];
    bool ok = true;
    if (a == "--record") {
      record = v;
    } else if (a == "--log") {
      log = v;
    } else if (a == "--note") {
      const size_t eq = v.find('=');
      ok = eq != std::string::npos && eq > 0 &&
           v.find('\n') == std::string::npos &&
           v.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") >= eq;
      if (ok) notes.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else if (a == "--groups") {
      for (absl::string_view g : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        uint32_t n = 0;
        ok = ok && absl::SimpleAtoi(g, &n);
        groups.push_back(static_cast<gid_t>(n));
      }
    } else if (a == "--cgroup") {
      cgroup = v;
    } else if (a == "--cgroup-v1") {
      v1_dirs.push_back(v);
    } else if (a == "--memory-bytes") {
      ok = absl::SimpleAtoi(v, &limits.memory_bytes) && limits.memory_bytes > 0;
    } else if (a == "--cpu-millis") {
      ok = absl::SimpleAtoi(v, &limits.cpu_millis) && limits.cpu_millis > 0;
    } else if (a == "--uid") {
      ok = absl::SimpleAtoi(v, &uid);
    } else if (a == "--gid") {
      ok = absl::SimpleAtoi(v, &gid);
    } else if (a == "--max-runtime-ms") {
      ok = absl::SimpleAtoi(v, &max_runtime_ms);
    } else {
      ok = false;
    }
    if (!ok) {
      fprintf(stderr, "joule-job-supervisor: bad argument %s %s\n", a.c_str(),
              v.c_str());
      return 2;
    }
  }
  if (record.empty() || log.empty() || i >= argc) {
    fprintf(stderr,
            "joule-job-supervisor: want --record PREFIX --log PATH -- "
            "PROGRAM...\n");
    return 2;
  }
  const int ready_fd = ::fcntl(3, F_GETFD) >= 0 ? 3 : -1;
  if (ready_fd >= 0) ::fcntl(ready_fd, F_SETFD, FD_CLOEXEC);

  // Out of the agent's session and process group: a signal to the agent's
  // group (a terminal's ^C, a service manager) does not reach the job.
  ::setsid();
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  ::signal(SIGHUP, SIG_IGN);
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t waited;
  sigemptyset(&waited);
  sigaddset(&waited, SIGTERM);
  sigaddset(&waited, SIGCHLD);
  sigprocmask(SIG_BLOCK, &waited, nullptr);

  const int log_fd =
      ::open(log.c_str(),
             O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0640);
  if (log_fd < 0) {
    Tell(ready_fd, absl::StrCat("error: cannot open log ", log, ": ",
                                std::strerror(errno)));
    return 1;
  }
  if (!cgroup.empty() && ::mkdir(cgroup.c_str(), 0755) != 0) {
    // No cgroup where we cannot make a new one; never join one that exists
    // (it may hold another agent's job of the same name).
    cgroup.clear();
  }
  for (const std::string& dir : v1_dirs) {
    if (::mkdir(dir.c_str(), 0755) == 0) g_v1_dirs.push_back(dir);
  }
  auto remove_cgroups = [&] {
    if (!cgroup.empty()) ::rmdir(cgroup.c_str());
    for (const std::string& dir : g_v1_dirs) ::rmdir(dir.c_str());
  };
  // The limits, before any process of the job exists.
  bool memory_set = false, cpu_set = false;
  std::vector<std::string> dirs = g_v1_dirs;
  if (!cgroup.empty()) dirs.insert(dirs.begin(), cgroup);
  for (const std::string& dir : dirs) {
    bool m = false, c = false;
    for (const auto& [file, value] :
         joule::agent::LimitWrites(dir, limits, &m, &c)) {
      std::ofstream f(file);
      f << value;
      f.flush();
      if (!f.good()) {
        remove_cgroups();
        Tell(ready_fd, absl::StrCat("error: cannot set ", file, " to ", value));
        return 1;
      }
    }
    memory_set = memory_set || m;
    cpu_set = cpu_set || c;
  }
  if ((limits.memory_bytes > 0 && !memory_set) ||
      (limits.cpu_millis > 0 && !cpu_set)) {
    remove_cgroups();
    Tell(ready_fd,
         absl::StrCat("error: the job's ",
                      limits.memory_bytes > 0 && !memory_set ? "memory" : "CPU",
                      " limit cannot be enforced: no cgroup with that "
                      "controller could be made"));
    return 1;
  }
  const int64_t start_ns = NowNs();
  // The job's first process waits on `go` until the .run record (with its
  // process group) is written: an agent that dies from then on finds it,
  // and no process of the job runs before it. The record is not synced
  // (agent/job_record.h): it has to outlive the agent, not the machine.
  int err_pipe[2], go_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    Tell(ready_fd, "error: pipe failed");
    return 1;
  }
  if (::pipe2(go_pipe, O_CLOEXEC) != 0) {
    Tell(ready_fd, "error: pipe failed");
    return 1;
  }
  std::vector<char*> job_argv(argv + i, argv + argc);
  job_argv.push_back(nullptr);
  const std::string home = getenv("HOME") != nullptr ? getenv("HOME") : "/";
  // Born in its v2 cgroup where the kernel can; an fd that cannot be opened
  // leaves the join to cgroup.procs, with the same rules.
  const int cgroup_fd =
      cgroup.empty()
          ? -1
          : ::open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  bool born_in_cgroup = false;
  const pid_t child = ForkInto(cgroup_fd, &born_in_cgroup);
  if (cgroup_fd >= 0) ::close(cgroup_fd);
  if (child == 0) {
    // The job: own process group, cgroup, the job user, then exec.
    ::close(err_pipe[0]);
    ::close(go_pipe[1]);
    ::setpgid(0, 0);
    char go = 0;
    // EOF (the supervisor died before the record was written) or an error:
    // the job never runs.
    if (::read(go_pipe[0], &go, 1) != 1) _exit(127);
    ::close(go_pipe[0]);
    auto fail = [&](const char* what) {
      const std::string m = absl::StrCat(what, ": ", std::strerror(errno));
      (void)!::write(err_pipe[1], m.data(), m.size());
      _exit(127);
    };
    for (const std::string& dir : dirs) {
      // Into each of its cgroups (v2, and v1 memory/cpu on hybrid hosts);
      // a limit that was set must hold the job.
      if (born_in_cgroup && dir == cgroup) continue;
      const std::string procs = dir + "/cgroup.procs";
      const int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
      const bool joined = fd >= 0 && ::write(fd, "0", 1) == 1;
      if (fd >= 0) ::close(fd);
      if (!joined && (memory_set || cpu_set)) fail("cannot join its cgroup");
    }
    const int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    if (gid >= 0) {
      if (::setgroups(groups.size(), groups.data()) != 0) fail("setgroups");
      if (::setgid(static_cast<gid_t>(gid)) != 0) fail("setgid");
    }
    if (uid >= 0) {
      if (::setuid(static_cast<uid_t>(uid)) != 0) fail("setuid");
      // A process that dropped root must not be able to get it back.
      if (uid != 0 && ::setuid(0) == 0) {
        errno = EPERM;
        fail("setuid: root could be regained");
      }
      if (::chdir(home.c_str()) != 0 && ::chdir("/") != 0) fail("chdir");
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s : {SIGHUP, SIGINT, SIGPIPE}) ::signal(s, SIG_DFL);
    ::execvp(job_argv[0], job_argv.data());
    fail(absl::StrCat("cannot start ", job_argv[0]).c_str());
  }
  ::close(err_pipe[1]);
  ::close(go_pipe[0]);
  if (child < 0) {
    Tell(ready_fd, absl::StrCat("error: fork: ", std::strerror(errno)));
    return 1;
  }
  ::setpgid(child, child);  // also here: no race with the child's own call
  const pid_t pgid = child;
  Record run = {{"supervisor_pid", absl::StrCat(getpid())},
                {"start_ns", absl::StrCat(start_ns)},
                {"cgroup", cgroup},
                {"cgroup_v1", absl::StrJoin(g_v1_dirs, ",")},
                {"pgid", absl::StrCat(pgid)}};
  for (const auto& [k, v] : notes) run.emplace(k, v);
  if (!WriteRecord(record + ".run", run,
                   joule::agent::Durability::kProcessCrashOnly)
           .ok()) {
    ::close(go_pipe[1]);  // the child reads EOF and exits unstarted
    ::waitpid(child, nullptr, 0);
    remove_cgroups();
    Tell(ready_fd, "error: cannot write the job record");
    return 1;
  }
  (void)!::write(go_pipe[1], "g", 1);
  ::close(go_pipe[1]);
  char buf[512];
  const ssize_t n = ::read(err_pipe[0], buf, sizeof(buf));
  ::close(err_pipe[0]);
  if (n > 0) {
    int st;
    ::waitpid(child, &st, 0);
    KillAll(child, cgroup);
    remove_cgroups();
    ::unlink((record + ".run").c_str());
    Tell(ready_fd, absl::StrCat("error: ", std::string(buf, n)));
    return 127;
  }
  Tell(ready_fd, absl::StrCat("ok ", pgid));
  if (ready_fd >= 0) ::close(ready_fd);

  const int64_t started_ms = MonoMs();
  int64_t kill_at_ms = -1;
  bool stop_requested = false, runtime_exceeded = false, leader_done = false;
  int status = 0;
  int64_t end_ns = 0;
  while (true) {
    // Every event is a signal (SIGCHLD, SIGTERM), so while the job runs the
    // wait lasts until the next deadline (the kill after a grace, the max
    // runtime), at most 10 s: a running job costs no wake-ups 20 times a
    // second. Once the leader is gone, 50 ms between kills of what is left.
    int64_t wait_ms = 50;
    if (!leader_done) {
      const int64_t at_ms = MonoMs();
      wait_ms = 10000;
      // Past the kill: 50 ms between SIGKILLs until the leader is reaped.
      if (kill_at_ms >= 0) {
        wait_ms =
            std::min(wait_ms, kill_at_ms > at_ms ? kill_at_ms - at_ms : 50);
      }
      if (max_runtime_ms > 0 && !runtime_exceeded) {
        wait_ms = std::min(wait_ms, started_ms + max_runtime_ms - at_ms);
      }
      wait_ms = std::max<int64_t>(wait_ms, 1);
    }
    struct timespec tick = {static_cast<time_t>(wait_ms / 1000),
                            static_cast<long>(wait_ms % 1000) * 1000000};
    siginfo_t info;
    const int sig = sigtimedwait(&waited, &info, &tick);
    const int64_t now_ms = MonoMs();
    if (sig == SIGTERM && !leader_done) {
      stop_requested = true;
      int64_t grace_ms = 10000;
      int first = SIGTERM;
      if (info.si_code == SI_QUEUE) {
        const uint64_t v = reinterpret_cast<uintptr_t>(info.si_value.sival_ptr);
        grace_ms = static_cast<int64_t>(v & 0x7fffffff);
        first = NoticeSignal(static_cast<int>(v >> 32));
      }
      ::kill(-pgid, first);
      const int64_t at = now_ms + std::max<int64_t>(0, grace_ms);
      kill_at_ms = kill_at_ms < 0 ? at : std::min(kill_at_ms, at);
    }
    if (max_runtime_ms > 0 && !runtime_exceeded && !leader_done &&
        now_ms - started_ms >= max_runtime_ms) {
      runtime_exceeded = true;
      ::kill(-pgid, SIGTERM);
      const int64_t at = now_ms + 5000;
      kill_at_ms = kill_at_ms < 0 ? at : std::min(kill_at_ms, at);
    }
    if (kill_at_ms >= 0 && now_ms >= kill_at_ms && !leader_done) {
      ::kill(-pgid, SIGKILL);
    }
    // Reap whatever ended: the leader, and orphans of the job.
    while (true) {
      int st = 0;
      const pid_t p = ::waitpid(-1, &st, WNOHANG);
      if (p <= 0) {
        if (p < 0 && errno == ECHILD && leader_done) goto all_gone;
        break;
      }
      if (p == pgid) {
        status = st;
        leader_done = true;
        end_ns = NowNs();
      }
    }
    // Whatever the leader left behind goes too.
    if (leader_done) KillAll(pgid, cgroup);
  }
all_gone:
  if (!cgroup.empty()) {
    // The cgroup is empty once every process is reaped; rmdir confirms it.
    for (int tries = 0; tries < 100 && ::rmdir(cgroup.c_str()) != 0; ++tries) {
      KillAll(pgid, cgroup);
      usleep(10000);
    }
  }
  for (const std::string& dir : g_v1_dirs) {
    for (int tries = 0; tries < 100 && ::rmdir(dir.c_str()) != 0; ++tries) {
      KillAll(pgid, cgroup);
      usleep(10000);
    }
  }
  Record exit_rec = {
      {"start_ns", absl::StrCat(start_ns)},
      {"end_ns", absl::StrCat(end_ns)},
      {"exit_code", absl::StrCat(WIFEXITED(status) ? WEXITSTATUS(status)
                                                   : 128 + WTERMSIG(status))},
      {"signal", absl::StrCat(WIFSIGNALED(status) ? WTERMSIG(status) : 0)},
      {"stop_requested", stop_requested ? "1" : "0"},
      {"runtime_exceeded", runtime_exceeded ? "1" : "0"},
  };
  if (!WriteRecord(record + ".exit", exit_rec).ok()) return 1;
  return 0;
}
