#include "agent/job_runner.h"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "agent/job_record.h"
#include "gtest/gtest.h"
#include "tests/agent/slurp.h"

namespace joule::agent {
namespace {

std::string Supervisor() {
  const char* dir = getenv("JOULE_BIN_DIR");
  return absl::StrCat(dir != nullptr ? dir : JOULE_DEFAULT_BIN_DIR,
                      "/joule-job-supervisor");
}

using ::joule::agent_test::Slurp;

class JobRunnerTest : public ::testing::Test {
 protected:
  JobRunnerTest() {
    std::string tmpl =
        std::filesystem::temp_directory_path() / "joule-runner-XXXXXX";
    dir_ = mkdtemp(tmpl.data());
    runner_ = MakeRunner();
  }
  ~JobRunnerTest() override {
    runner_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<JobRunner> MakeRunner(bool leave_running = false,
                                        std::string cgroup_root = "") {
    JobRunner::Options o;
    o.cgroup_root = cgroup_root;
    o.log_dir = dir_ + "/logs";
    o.state_dir = dir_ + "/state";
    o.supervisor_path = Supervisor();
    o.clock = &RealClock::Get();
    o.leave_running_on_destroy = leave_running;
    o.monitor_interval = monitor_interval_;
    o.on_exit = [this](const JobExit& e) {
      absl::MutexLock lock(&mu_);
      exits_.push_back(e);
    };
    return std::make_unique<JobRunner>(o);
  }
  // The launch an agent makes: env built for the agent's own user.
  JobLaunch Launch(std::string id, uint32_t attempt,
                   std::vector<std::string> cmd) {
    JobLaunch l;
    l.job_id = std::move(id);
    l.attempt = attempt;
    l.command = std::move(cmd);
    l.env = {"PATH=/usr/bin:/bin"};
    return l;
  }
  JobExit WaitExit(size_t n) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return exits_.size() >= n;
    };
    EXPECT_TRUE(
        mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(20)));
    return exits_.empty() ? JobExit{} : exits_[n - 1];
  }

  static bool WaitForFile(const std::string& path) {
    for (int i = 0; i < 500; ++i) {
      if (!Slurp(path).empty()) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  std::string dir_;
  absl::Duration monitor_interval_ = absl::Milliseconds(20);
  absl::Mutex mu_;
  std::vector<JobExit> exits_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<JobRunner> runner_;
};

TEST_F(JobRunnerTest, RunsWithEnvAndLogsOutput) {
  JobLaunch l =
      Launch("job-1", 1,
             {"/bin/sh", "-c", "echo visible=$CUDA_VISIBLE_DEVICES; exit 3"});
  l.env.push_back("CUDA_VISIBLE_DEVICES=2,5");
  ASSERT_TRUE(runner_->Start(l).ok());
  JobExit e = WaitExit(1);
  EXPECT_EQ(e.job_id, "job-1");
  EXPECT_EQ(e.exit_code, 3);
  EXPECT_EQ(e.signal, 0);
  bool truncated = true;
  auto log = runner_->ReadLog("job-1", 1, 1 << 20, &truncated);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(*log, "visible=2,5\n");
  EXPECT_FALSE(truncated);
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/logs/job-1.1.log").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640);
  ASSERT_EQ(stat((dir_ + "/state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700);
}

TEST_F(JobRunnerTest, StopSendsTermThenKill) {
  // Ignores SIGTERM, so only the SIGKILL after the grace ends it.
  JobLaunch l = Launch(
      "job-2", 1,
      {"/bin/sh", "-c", "trap '' TERM; while true; do sleep 0.05; done"});
  ASSERT_TRUE(runner_->Start(l).ok());
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_TRUE(runner_->IsRunning("job-2", 1));
  ASSERT_TRUE(runner_->Stop("job-2", 1, absl::Milliseconds(300)).ok());
  JobExit e = WaitExit(1);
  EXPECT_EQ(e.signal, 9);
  EXPECT_TRUE(e.stop_requested);
  EXPECT_FALSE(runner_->IsRunning("job-2", 1));
  EXPECT_EQ(runner_->Stop("job-2", 1, absl::ZeroDuration()).code(),
            absl::StatusCode::kNotFound);
}

// The preemption notice: the signal asked for (SIGUSR1), not SIGTERM,
// reaches the job's processes first; SIGKILL follows after the grace.
TEST_F(JobRunnerTest, StopSendsTheNoticeSignalThenKillAfterTheGrace) {
  const std::string seen = dir_ + "/seen";
  const std::string up = dir_ + "/up";
  JobLaunch l = Launch(
      "job-9", 1,
      {"/bin/sh", "-c",
       absl::StrCat("trap 'echo usr1 >> ", seen, "' USR1; trap 'echo term >> ",
                    seen, "' TERM; echo up > ", up,
                    "; while true; do sleep 0.05; done")});
  ASSERT_TRUE(runner_->Start(l).ok());
  ASSERT_TRUE(WaitForFile(up));
  ASSERT_TRUE(runner_->Stop("job-9", 1, absl::Milliseconds(500), SIGUSR1).ok());
  JobExit e = WaitExit(1);
  EXPECT_EQ(e.signal, SIGKILL);  // it ignored the notice: killed after 500 ms
  EXPECT_TRUE(e.stop_requested);
  EXPECT_EQ(Slurp(seen), "usr1\n");  // the notice, once; no SIGTERM
}

// A job that finishes its checkpoint within the grace exits by itself.
TEST_F(JobRunnerTest, JobThatExitsOnTheNoticeIsNotKilled) {
  const std::string up = dir_ + "/up";
  JobLaunch l = Launch("job-10", 1,
                       {"/bin/sh", "-c",
                        absl::StrCat("trap 'exit 0' USR2; echo up > ", up,
                                     "; while true; do sleep 0.05; done")});
  ASSERT_TRUE(runner_->Start(l).ok());
  ASSERT_TRUE(WaitForFile(up));
  ASSERT_TRUE(runner_->Stop("job-10", 1, absl::Seconds(30), SIGUSR2).ok());
  JobExit e = WaitExit(1);
  EXPECT_EQ(e.signal, 0);
  EXPECT_EQ(e.exit_code, 0);
  EXPECT_TRUE(e.stop_requested);
}

TEST_F(JobRunnerTest, MaxRuntimeIsEnforced) {
  JobLaunch l = Launch("job-3", 2, {"sleep", "30"});
  l.max_runtime = absl::Milliseconds(200);
  ASSERT_TRUE(runner_->Start(l).ok());
  JobExit e = WaitExit(1);
  EXPECT_TRUE(e.max_runtime_exceeded);
  EXPECT_EQ(e.signal, 15);
  EXPECT_LT(e.end_time - e.start_time, absl::Seconds(10));
}

TEST_F(JobRunnerTest, UnknownProgramFailsToStart) {
  JobLaunch l = Launch("job-4", 1, {"/no/such/program"});
  absl::Status s = runner_->Start(l);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/no/such/program"), std::string::npos) << s;
  EXPECT_FALSE(runner_->IsRunning("job-4", 1));
}

// The agent library driven directly, as a hostile daemon would: ids that
// would build paths outside the log and state dirs are refused before any
// file is touched.
TEST_F(JobRunnerTest, PathTraversalIdsAreRefused) {
  const std::string outside = dir_ + "/pwned";
  for (const std::string id :
       {"../../../../x/pwned", "../pwned", "job-1/../../pwned", "job-", "", ".",
        "..", "job-1x", "job-12345678901234567890", "/etc/passwd", "job-1_",
        "job-_1", "job-1_2_3", "job-1_../x", "job-1_12345678901"}) {
    SCOPED_TRACE(id);
    absl::Status s = runner_->Start(Launch(id, 1, {"/bin/true"}));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    bool truncated = false;
    EXPECT_EQ(runner_->ReadLog(id, 1, 100, &truncated).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(runner_->Stop(id, 1, absl::ZeroDuration()).code(),
              absl::StatusCode::kNotFound);
  }
  EXPECT_FALSE(std::filesystem::exists(outside));
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/logs"));
}

// A log planted as a symlink is neither followed for writing nor reading.
TEST_F(JobRunnerTest, SymlinkedLogIsNotFollowed) {
  const std::string target = dir_ + "/target";
  { std::ofstream(target) << "secret\n"; }
  ASSERT_EQ(symlink(target.c_str(), (dir_ + "/logs/job-5.1.log").c_str()), 0);
  absl::Status s = runner_->Start(Launch("job-5", 1, {"echo", "hi"}));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("log"), std::string::npos) << s;
  EXPECT_EQ(Slurp(target), "secret\n");
  bool truncated = false;
  EXPECT_EQ(runner_->ReadLog("job-5", 1, 100, &truncated).status().code(),
            absl::StatusCode::kNotFound);
}

// The job runs as the identity it is given, with exactly the environment
// built for it (nothing of the agent's own).
TEST_F(JobRunnerTest, RunsAsJobUserWithBuiltEnv) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  JobUserPolicy policy;  // root agent, no --job-user: nobody
  auto who = ResolveJobIdentity(policy, "acme");
  ASSERT_TRUE(who.ok()) << who.status();
  EXPECT_EQ(who->user, "nobody");
  setenv("AGENT_SECRET", "leak", 1);
  JobLaunch l = Launch("job-6", 1, {"/bin/sh", "-c", "id -u; id -g; env"});
  l.identity = *who;
  l.env = BuildJobEnv(*who, {{"LD_PRELOAD_X", "1"}, {"FOO", "bar"}},
                      {{"JOULE_JOB_ID", "job-6"}});
  ASSERT_TRUE(runner_->Start(l).ok());
  JobExit e = WaitExit(1);
  EXPECT_EQ(e.exit_code, 0);
  bool truncated = false;
  auto log = runner_->ReadLog("job-6", 1, 1 << 20, &truncated);
  ASSERT_TRUE(log.ok());
  EXPECT_NE(log->find(absl::StrCat(who->uid, "\n", who->gid, "\n")),
            std::string::npos)
      << *log;
  EXPECT_NE(log->find("FOO=bar"), std::string::npos);
  EXPECT_NE(log->find("USER=nobody"), std::string::npos);
  EXPECT_NE(log->find("JOULE_JOB_ID=job-6"), std::string::npos);
  EXPECT_EQ(log->find("AGENT_SECRET"), std::string::npos) << *log;
  unsetenv("AGENT_SECRET");
}

TEST(JobIdentityTest, RootOnlyWhenAllowed) {
  JobUserPolicy policy;
  policy.default_user = "root";
  EXPECT_EQ(ResolveJobIdentity(policy, "acme").status().code(),
            absl::StatusCode::kPermissionDenied);
  policy.tenant_users["acme"] = "no-such-user-joule";
  EXPECT_EQ(ResolveJobIdentity(policy, "acme").status().code(),
            absl::StatusCode::kFailedPrecondition);
  if (geteuid() == 0) {
    policy.tenant_users.clear();
    policy.allow_root = true;
    auto who = ResolveJobIdentity(policy, "acme");
    ASSERT_TRUE(who.ok());
    EXPECT_EQ(who->uid, 0);
  }
}

TEST(JobIdentityTest, TenantUserEntries) {
  std::map<std::string, std::string> m;
  EXPECT_TRUE(
      AddTenantUsers({"acme=alice", " # c", "globex = bob # x"}, "f", &m).ok());
  EXPECT_EQ(m["acme"], "alice");
  EXPECT_EQ(m["globex"], "bob");
  absl::Status s = AddTenantUsers({"ok=u", "broken"}, "map.txt", &m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("map.txt:2"), std::string::npos) << s;
}

// Joule's own variables always win over the job's; reserved or malformed
// names from the job are dropped.
TEST(JobEnvTest, JouleVariablesWin) {
  JobIdentity who;
  who.user = "alice";
  who.home = "/home/alice";
  const std::vector<std::string> env =
      BuildJobEnv(who,
                  {{"CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7"},
                   {"JOULE_JOB_ID", "job-9"},
                   {"A=B", "x"},
                   {"", "x"},
                   {"PATH", "/opt/bin"},
                   {"FOO", "bar"}},
                  {{"CUDA_VISIBLE_DEVICES", "3"}, {"JOULE_JOB_ID", "job-1"}});
  const std::vector<std::string> want = {
      "PATH=/opt/bin",          "HOME=/home/alice",  "USER=alice",
      "LOGNAME=alice",          "LANG=C.UTF-8",      "FOO=bar",
      "CUDA_VISIBLE_DEVICES=3", "JOULE_JOB_ID=job-1"};
  EXPECT_EQ(env, want);
}

// An agent that dies (here: a runner destroyed as if killed) leaves its
// jobs to their supervisors; the next one re-adopts those still running
// and reports the real end of those that ended meanwhile.
TEST_F(JobRunnerTest, RestartReadoptsAndReportsRealExits) {
  runner_ = MakeRunner(/*leave_running=*/true);
  JobLaunch quick = Launch("job-7", 1, {"/bin/sh", "-c", "sleep 0.3; exit 7"});
  quick.gpus = {0, 1};
  JobLaunch slow = Launch("job-8", 1, {"/bin/sh", "-c", "sleep 2; exit 5"});
  slow.gpus = {2};
  ASSERT_TRUE(runner_->Start(quick).ok());
  ASSERT_TRUE(runner_->Start(slow).ok());
  const absl::Time killed = absl::Now();
  runner_.reset();                   // "SIGKILL": the supervisors keep going
  absl::SleepFor(absl::Seconds(1));  // job-7 ends while nobody watches
  runner_ = MakeRunner();
  std::vector<JobExit> ended = runner_->TakeEndedAtStartup();
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].job_id, "job-7");
  EXPECT_EQ(ended[0].exit_code, 7);
  EXPECT_EQ(ended[0].gpus, (std::vector<uint32_t>{0, 1}));
  EXPECT_GT(ended[0].end_time, killed);  // its own end, not the restart
  std::vector<RunningProcess> running = runner_->Running();
  ASSERT_EQ(running.size(), 1u);
  EXPECT_EQ(running[0].job_id, "job-8");
  EXPECT_TRUE(running[0].adopted);
  EXPECT_EQ(running[0].gpus, (std::vector<uint32_t>{2}));
  JobExit e = WaitExit(1);
  EXPECT_EQ(e.job_id, "job-8");
  EXPECT_EQ(e.exit_code, 5);
}

// A graceful stop (SIGTERM to the agent) kills its jobs and waits for them;
// the next agent neither re-adopts nor reports them (the daemon settles
// them as lost, following its lost_job_policy).
TEST_F(JobRunnerTest, GracefulStopKillsAndForgets) {
  ASSERT_TRUE(runner_->Start(Launch("job-12", 1, {"sleep", "30"})).ok());
  runner_.reset();
  EXPECT_NE(WaitExit(1).signal, 0);  // SIGTERM, SIGKILL right after
  runner_ = MakeRunner();
  EXPECT_TRUE(runner_->TakeEndedAtStartup().empty());
  EXPECT_TRUE(runner_->Running().empty());
}

// A supervisor killed outright (no record): the job's group is killed and
// the end reported, never left running unknown.
TEST_F(JobRunnerTest, LostSupervisorKillsTheGroup) {
  const std::string pidfile = dir_ + "/pid";
  ASSERT_TRUE(runner_
                  ->Start(Launch(
                      "job-10", 1,
                      {"/bin/sh", "-c", "echo $$ > " + pidfile + "; sleep 30"}))
                  .ok());
  std::vector<RunningProcess> running = runner_->Running();
  ASSERT_EQ(running.size(), 1u);
  ASSERT_TRUE(WaitForFile(pidfile));
  const pid_t job = std::stoi(Slurp(pidfile));
  kill(running[0].pid, SIGKILL);
  JobExit e = WaitExit(1);
  EXPECT_TRUE(e.supervisor_lost);
  EXPECT_EQ(e.signal, SIGKILL);
  for (int i = 0; i < 100 && kill(job, 0) == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_NE(kill(job, 0), 0) << "the job outlived its supervisor";
}

// A process that leaves the job's process group (setsid) and outlives the
// leader is killed all the same, and, where a writable cgroup v2 hierarchy
// exists, the job runs in its own cgroup, removed once everything is gone.
TEST_F(JobRunnerTest, EscapedProcessesDieWithTheJobAndItsCgroup) {
  std::string v2;
  for (const char* root : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
    if (access(absl::StrCat(root, "/cgroup.controllers").c_str(), F_OK) == 0 &&
        access(root, W_OK) == 0) {
      v2 = root;
      break;
    }
  }
  std::string cgroup_root;
  if (!v2.empty()) {
    cgroup_root = absl::StrCat(v2, "/joule-test-", getpid());
    if (mkdir(cgroup_root.c_str(), 0755) != 0) cgroup_root.clear();
  }
  runner_ = MakeRunner(false, cgroup_root);
  const std::string pidfile = dir_ + "/escaped";
  ASSERT_TRUE(runner_
                  ->Start(Launch("job-11", 1,
                                 {"/bin/sh", "-c",
                                  "setsid sh -c 'echo $$ > " + pidfile +
                                      "; exec sleep 30' & sleep 0.5"}))
                  .ok());
  ASSERT_TRUE(WaitForFile(pidfile));
  const pid_t escaped = std::stoi(Slurp(pidfile));
  const std::string cg = cgroup_root + "/job-11.1";
  if (!cgroup_root.empty()) {
    EXPECT_NE(Slurp(cg + "/cgroup.procs").find(std::to_string(escaped)),
              std::string::npos);
  }
  JobExit e = WaitExit(1);
  EXPECT_EQ(e.exit_code, 0);
  EXPECT_NE(kill(escaped, 0), 0) << "an escaped process outlived its job";
  if (!cgroup_root.empty()) {
    EXPECT_FALSE(std::filesystem::exists(cg));
    rmdir(cgroup_root.c_str());
  } else {
    std::cerr << "no writable cgroup v2 hierarchy: cgroup part not tested\n";
  }
}

}  // namespace
}  // namespace joule::agent

namespace joule::agent {
namespace {

// A job's end is reported when its supervisor exits, not at the monitor's
// next look: with the fallback look an hour apart, two jobs in a row still
// end (the wait below gives up after 20 s, far below the hour).
TEST_F(JobRunnerTest, EndIsReportedWhenTheSupervisorExitsNotAtTheNextLook) {
  runner_.reset();
  monitor_interval_ = absl::Hours(1);
  runner_ = MakeRunner();
  ASSERT_TRUE(
      runner_->Start(Launch("job-7", 1, {"/bin/sh", "-c", "sleep 0.3"})).ok());
  EXPECT_EQ(WaitExit(1).job_id, "job-7");
  ASSERT_TRUE(
      runner_
          ->Start(Launch("job-8_3", 1, {"/bin/sh", "-c", "sleep 0.3; exit 4"}))
          .ok());
  const JobExit e = WaitExit(2);
  EXPECT_EQ(e.job_id, "job-8_3");
  EXPECT_EQ(e.exit_code, 4);
}

// A wake for one supervisor's exit looks only at the attempts whose pidfd
// fired: a job that keeps running through other jobs' ends is not lost and
// not reported early, and every attempt's end is reported exactly once.
TEST_F(JobRunnerTest, OtherJobsEndsNeitherLoseNorRepeatARunningOne) {
  runner_.reset();
  monitor_interval_ = absl::Hours(1);  // no look but the pidfds and wakes
  runner_ = MakeRunner();
  ASSERT_TRUE(
      runner_->Start(Launch("job-1", 1, {"/bin/sh", "-c", "sleep 1.2; exit 3"}))
          .ok());
  for (int i = 0; i < 3; ++i) {
    const std::string id = absl::StrCat("job-2_", i);
    ASSERT_TRUE(
        runner_->Start(Launch(id, 1, {"/bin/sh", "-c", "exit 0"})).ok());
    EXPECT_EQ(WaitExit(i + 1).job_id, id);
    EXPECT_TRUE(runner_->IsRunning("job-1", 1));
  }
  const JobExit e = WaitExit(4);
  EXPECT_EQ(e.job_id, "job-1");
  EXPECT_EQ(e.exit_code, 3);
  EXPECT_FALSE(runner_->IsRunning("job-1", 1));
  absl::SleepFor(absl::Milliseconds(300));  // nothing more comes
  absl::MutexLock lock(&mu_);
  EXPECT_EQ(exits_.size(), 4u);
}

TEST(ArrayTaskOfTest, SplitsTaskIds) {
  std::string array, index;
  EXPECT_TRUE(ArrayTaskOf("job-000042_17", &array, &index));
  EXPECT_EQ(array, "job-000042");
  EXPECT_EQ(index, "17");
  EXPECT_FALSE(ArrayTaskOf("job-000042", &array, &index));
  EXPECT_FALSE(ArrayTaskOf("job-1_x", &array, &index));
  EXPECT_TRUE(ValidJobId("job-000042_17"));
}

}  // namespace
}  // namespace joule::agent

namespace joule::agent {
namespace {

// A user of this machine that is a member of some group besides its own
// (from the group database), or empty.
std::string UserWithSupplementaryGroup() {
  std::string user;
  setgrent();
  while (struct group* g = getgrent()) {
    if (g->gr_mem != nullptr && g->gr_mem[0] != nullptr &&
        getpwnam(g->gr_mem[0]) != nullptr) {
      user = g->gr_mem[0];
      break;
    }
  }
  endgrent();
  return user;
}

// The job gets its user's supplementary groups, which the agent looks up
// and the supervisor sets (setgroups), as initgroups(3) would: `id -G` in
// the job lists exactly getgrouplist's groups, the primary group first.
// Fails if the supervisor drops the list (id -G would print the gid alone).
TEST_F(JobRunnerTest, JobGetsItsUsersSupplementaryGroups) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch users";
  const std::string user = UserWithSupplementaryGroup();
  if (user.empty()) GTEST_SKIP() << "no user with a supplementary group here";
  struct passwd* pw = getpwnam(user.c_str());
  ASSERT_NE(pw, nullptr);
  std::vector<gid_t> want(256);
  int n = static_cast<int>(want.size());
  ASSERT_GE(getgrouplist(user.c_str(), pw->pw_gid, want.data(), &n), 0);
  want.resize(n);
  ASSERT_GE(want.size(), 2u) << user;
  JobLaunch l = Launch("job-9", 1, {"/bin/sh", "-c", "id -G"});
  l.identity.uid = pw->pw_uid;
  l.identity.gid = pw->pw_gid;
  l.identity.user = user;
  ASSERT_TRUE(runner_->Start(l).ok());
  EXPECT_EQ(WaitExit(1).exit_code, 0);
  bool truncated = false;
  auto log = runner_->ReadLog("job-9", 1, 1 << 20, &truncated);
  ASSERT_TRUE(log.ok());
  std::vector<std::string> got =
      absl::StrSplit(absl::StripAsciiWhitespace(*log), ' ', absl::SkipEmpty());
  std::vector<std::string> expected;
  for (gid_t g : want) expected.push_back(absl::StrCat(g));
  std::sort(got.begin(), got.end());
  std::sort(expected.begin(), expected.end());
  expected.erase(std::unique(expected.begin(), expected.end()), expected.end());
  EXPECT_EQ(got, expected) << *log;
}

// Only the newest ended_records_kept .exit records stay: with 2 kept, after
// 4 jobs one after another the records of the last two are there, those of
// the first two are gone (4 - 2 = 2 pruned, oldest end first).
TEST_F(JobRunnerTest, KeepsOnlyTheNewestExitRecords) {
  runner_.reset();
  JobRunner::Options o;
  o.log_dir = dir_ + "/logs";
  o.state_dir = dir_ + "/state";
  o.supervisor_path = Supervisor();
  o.clock = &RealClock::Get();
  o.ended_records_kept = 2;
  o.on_exit = [this](const JobExit& e) {
    absl::MutexLock lock(&mu_);
    exits_.push_back(e);
  };
  runner_ = std::make_unique<JobRunner>(o);
  for (uint32_t i = 1; i <= 4; ++i) {
    ASSERT_TRUE(
        runner_->Start(Launch(absl::StrCat("job-", i), 1, {"/bin/true"})).ok());
    WaitExit(i);
  }
  auto exists = [&](int i) {
    return std::filesystem::exists(
        absl::StrCat(dir_, "/state/job-", i, ".1.exit"));
  };
  // The monitor prunes right after it reports an end: wait for that.
  for (int tries = 0; tries < 200 && exists(2); ++tries) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_FALSE(exists(1));
  EXPECT_FALSE(exists(2));
  EXPECT_TRUE(exists(3));
  EXPECT_TRUE(exists(4));
  // A new runner over the same dir lists them once and keeps the same two.
  runner_.reset();
  o.ended_records_kept = 1;
  runner_ = std::make_unique<JobRunner>(o);
  EXPECT_FALSE(exists(3));
  EXPECT_TRUE(exists(4));
}

}  // namespace
}  // namespace joule::agent

namespace joule::agent {
namespace {

// The supervisor of a running job sleeps until a signal or a deadline: over
// a 1 s job without a max runtime it wakes a few times (start, the job's
// end), not once per 50 ms tick (~20). Counted from the kernel's
// voluntary context switches of the supervisor, read just before the end.
TEST_F(JobRunnerTest, SupervisorOfARunningJobDoesNotTick) {
  ASSERT_TRUE(runner_->Start(Launch("job-11", 1, {"/bin/sleep", "1"})).ok());
  auto running = runner_->Running();
  ASSERT_EQ(running.size(), 1u);
  const std::string status = absl::StrCat("/proc/", running[0].pid, "/status");
  auto switches = [&] {
    std::ifstream in(status);
    std::string line;
    while (std::getline(in, line)) {
      if (absl::StartsWith(line, "voluntary_ctxt_switches:")) {
        int64_t n = -1;
        EXPECT_TRUE(absl::SimpleAtoi(
            absl::StripAsciiWhitespace(line.substr(line.find(':') + 1)), &n));
        return n;
      }
    }
    return int64_t{-1};
  };
  const int64_t before = switches();
  absl::SleepFor(absl::Milliseconds(800));
  const int64_t after = switches();
  ASSERT_GE(before, 0);
  EXPECT_LT(after - before, 5)
      << "the supervisor woke " << after - before << " times in 0.8 s";
  EXPECT_EQ(WaitExit(1).exit_code, 0);
}

}  // namespace
}  // namespace joule::agent
