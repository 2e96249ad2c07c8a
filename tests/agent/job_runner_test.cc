#include "agent/job_runner.h"

#include <filesystem>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace joule::agent {
namespace {

class JobRunnerTest : public ::testing::Test {
 protected:
  JobRunnerTest() {
    std::string tmpl =
        std::filesystem::temp_directory_path() / "joule-runner-XXXXXX";
    dir_ = mkdtemp(tmpl.data());
    JobRunner::Options o;
    o.log_dir = dir_;
    o.clock = &RealClock::Get();
    o.on_exit = [this](const JobExit& e) {
      absl::MutexLock lock(&mu_);
      exits_.push_back(e);
    };
    runner_ = std::make_unique<JobRunner>(o);
  }
  ~JobRunnerTest() override {
    runner_.reset();
    std::filesystem::remove_all(dir_);
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

  std::string dir_;
  absl::Mutex mu_;
  std::vector<JobExit> exits_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<JobRunner> runner_;
};

TEST_F(JobRunnerTest, RunsWithEnvAndLogsOutput) {
  JobLaunch l;
  l.job_id = "j1";
  l.attempt = 1;
  l.command = {"/bin/sh", "-c", "echo visible=$CUDA_VISIBLE_DEVICES; exit 3"};
  l.env = {{"CUDA_VISIBLE_DEVICES", "2,5"}};
  ASSERT_TRUE(runner_->Start(l).ok());
  JobExit e = WaitExit(1);
  EXPECT_EQ(e.job_id, "j1");
  EXPECT_EQ(e.exit_code, 3);
  EXPECT_EQ(e.signal, 0);
  bool truncated = true;
  auto log = runner_->ReadLog("j1", 1, 1 << 20, &truncated);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(*log, "visible=2,5\n");
  EXPECT_FALSE(truncated);
}

TEST_F(JobRunnerTest, StopSendsTermThenKill) {
  JobLaunch l;
  l.job_id = "j2";
  l.attempt = 1;
  // Ignores SIGTERM, so only the SIGKILL after the grace ends it.
  l.command = {"/bin/sh", "-c",
               "trap '' TERM; while true; do sleep 0.05; done"};
  ASSERT_TRUE(runner_->Start(l).ok());
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_TRUE(runner_->IsRunning("j2", 1));
  ASSERT_TRUE(runner_->Stop("j2", 1, absl::Milliseconds(300)).ok());
  JobExit e = WaitExit(1);
  EXPECT_EQ(e.signal, 9);
  EXPECT_TRUE(e.stop_requested);
  EXPECT_FALSE(runner_->IsRunning("j2", 1));
  EXPECT_EQ(runner_->Stop("j2", 1, absl::ZeroDuration()).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(JobRunnerTest, MaxRuntimeIsEnforced) {
  JobLaunch l;
  l.job_id = "j3";
  l.attempt = 2;
  l.command = {"sleep", "30"};
  l.max_runtime = absl::Milliseconds(200);
  ASSERT_TRUE(runner_->Start(l).ok());
  JobExit e = WaitExit(1);
  EXPECT_TRUE(e.max_runtime_exceeded);
  EXPECT_EQ(e.signal, 15);
  EXPECT_LT(e.end_time - e.start_time, absl::Seconds(10));
}

TEST_F(JobRunnerTest, UnknownProgramFailsToStart) {
  JobLaunch l;
  l.job_id = "j4";
  l.attempt = 1;
  l.command = {"/no/such/program"};
  absl::Status s = runner_->Start(l);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/no/such/program"), std::string::npos);
}

}  // namespace
}  // namespace joule::agent
