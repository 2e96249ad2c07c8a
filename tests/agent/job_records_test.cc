// What the agent's job records and cgroups say across a node's reboot, and
// which cgroups a job gets (agent/job_record.h, agent/cgroup.h): the rules
// that let the supervisor skip the .run record's fsync and the v1 dirs of
// a job without limits.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/job_record.h"
#include "agent/job_runner.h"
#include "gtest/gtest.h"
#include "tests/agent/slurp.h"

namespace joule::agent {
namespace {

namespace fs = std::filesystem;

using ::joule::agent_test::Slurp;

std::string ThisBoot() {
  std::string id = Slurp("/proc/sys/kernel/random/boot_id");
  while (!id.empty() && id.back() == '\n') id.pop_back();
  return id;
}

// A pid that is no process now (a child that was reaped).
pid_t DeadPid() {
  const pid_t p = fork();
  if (p == 0) _exit(0);
  waitpid(p, nullptr, 0);
  return p;
}

class JobRecordsTest : public ::testing::Test {
 protected:
  JobRecordsTest() {
    std::string tmpl = fs::temp_directory_path() / "joule-records-XXXXXX";
    dir_ = mkdtemp(tmpl.data());
    EXPECT_TRUE(MakePrivateDir(dir_ + "/state").ok());
  }
  ~JobRecordsTest() override {
    runner_.reset();
    fs::remove_all(dir_);
  }
  JobRunner::Options Options() {
    JobRunner::Options o;
    o.log_dir = dir_ + "/logs";
    o.state_dir = dir_ + "/state";
    const char* bin = getenv("JOULE_BIN_DIR");
    o.supervisor_path = absl::StrCat(
        bin != nullptr ? bin : JOULE_DEFAULT_BIN_DIR, "/joule-job-supervisor");
    o.clock = &RealClock::Get();
    o.on_exit = [this](const JobExit& e) {
      absl::MutexLock lock(&mu_);
      exits_.push_back(e);
    };
    return o;
  }
  // A .run record as a supervisor writes it, of a supervisor that is gone.
  void WriteRun(const std::string& job, const std::string& boot_id) {
    ASSERT_TRUE(WriteRecord(AttemptPath(dir_ + "/state", job, 1, ".run"),
                            {{"supervisor_pid", absl::StrCat(DeadPid())},
                             {"pgid", "0"},
                             {"start_ns", "1000"},
                             {"gpus", "3"},
                             {"boot_id", boot_id}})
                    .ok());
  }
  JobExit WaitExit() {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !exits_.empty();
    };
    EXPECT_TRUE(
        mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(20)));
    return exits_.empty() ? JobExit{} : exits_[0];
  }

  std::string dir_;
  absl::Mutex mu_;
  std::vector<JobExit> exits_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<JobRunner> runner_;
};

// A .run of an earlier boot without an .exit is the node's loss: the
// machine took the job down with it. The agent does not report it (the
// daemon settles it as lost), exactly as when the unsynced .run did not
// reach the disk. The same record of this boot is a supervisor that was
// killed: reported ended by SIGKILL, as before. A synced .exit is reported
// across a reboot with the job's own exit code.
TEST_F(JobRecordsTest, RunRecordOfAnEarlierBootIsTheNodesLossNotAnExit) {
  WriteRun("job-1", "an-earlier-boot");
  WriteRun("job-2", ThisBoot());
  WriteRun("job-3", "an-earlier-boot");
  ASSERT_TRUE(WriteRecord(AttemptPath(dir_ + "/state", "job-3", 1, ".exit"),
                          {{"exit_code", "4"},
                           {"signal", "0"},
                           {"start_ns", "1000"},
                           {"end_ns", "2000"}})
                  .ok());
  runner_ = std::make_unique<JobRunner>(Options());
  std::vector<JobExit> ended = runner_->TakeEndedAtStartup();
  std::map<std::string, JobExit> by_job;
  for (const JobExit& e : ended) by_job[e.job_id] = e;
  EXPECT_FALSE(by_job.contains("job-1")) << "an earlier boot's .run reported";
  ASSERT_TRUE(by_job.contains("job-2"));
  EXPECT_TRUE(by_job["job-2"].supervisor_lost);
  EXPECT_EQ(by_job["job-2"].signal, SIGKILL);
  ASSERT_TRUE(by_job.contains("job-3"));
  EXPECT_EQ(by_job["job-3"].exit_code, 4);
  EXPECT_FALSE(by_job["job-3"].supervisor_lost);
  EXPECT_EQ(ended.size(), 2u);
  EXPECT_TRUE(runner_->Running().empty());
  EXPECT_FALSE(fs::exists(dir_ + "/state/job-1.1.run"));
  // A second agent after it has nothing more to say about job-1.
  runner_.reset();
  runner_ = std::make_unique<JobRunner>(Options());
  for (const JobExit& e : runner_->TakeEndedAtStartup()) {
    EXPECT_NE(e.job_id, "job-1");
  }
}

// The .run record is written without fsync, the .exit record with it;
// either way a reader sees the whole record under its name and no temp
// file is left (temp file + rename).
TEST_F(JobRecordsTest, BothDurabilitiesWriteWholeRecords) {
  for (Durability d : {Durability::kSynced, Durability::kProcessCrashOnly}) {
    const std::string path = dir_ + "/state/r";
    ASSERT_TRUE(WriteRecord(path, {{"a", "1"}, {"b", "x y"}}, d).ok());
    auto rec = ReadRecord(path);
    ASSERT_TRUE(rec.ok());
    EXPECT_EQ((*rec)["a"], "1");
    EXPECT_EQ((*rec)["b"], "x y");
    EXPECT_EQ(Slurp(path), "a=1\nb=x y\n");
    EXPECT_EQ(std::distance(fs::directory_iterator(dir_ + "/state"),
                            fs::directory_iterator{}),
              1)
        << "a temp file was left behind";
  }
}

// On a hybrid host the v1 memory and cpu dirs only hold limits: a job
// without a limit gets none of them (its tracking and kill are the v2
// dir's). Fake v1 parents with their control files stand for the
// hierarchies; the job looks for its dirs while it runs.
TEST_F(JobRecordsTest, JobWithoutLimitsGetsNoV1Cgroups) {
  for (const auto& [sub, file] : {std::pair{"mem", "memory.limit_in_bytes"},
                                  {"cpu", "cpu.cfs_quota_us"}}) {
    fs::create_directories(absl::StrCat(dir_, "/", sub));
    std::ofstream(absl::StrCat(dir_, "/", sub, "/", file)) << "-1\n";
  }
  JobRunner::Options o = Options();
  o.cgroup_v1_roots = {dir_ + "/mem", dir_ + "/cpu"};
  runner_ = std::make_unique<JobRunner>(o);
  JobLaunch l;
  l.job_id = "job-9";
  l.attempt = 1;
  l.env = {"PATH=/usr/bin:/bin"};
  l.command = {"/bin/sh", "-c",
               absl::StrCat("for d in ", dir_, "/mem/job-9.1 ", dir_,
                            "/cpu/job-9.1; do test -e $d && echo made $d; "
                            "done; echo ran")};
  ASSERT_TRUE(runner_->Start(l).ok());
  EXPECT_EQ(WaitExit().exit_code, 0);
  const std::string log = Slurp(dir_ + "/logs/job-9.1.log");
  EXPECT_NE(log.find("ran"), std::string::npos) << log;
  EXPECT_EQ(log.find("made"), std::string::npos) << log;
}

}  // namespace
}  // namespace joule::agent
