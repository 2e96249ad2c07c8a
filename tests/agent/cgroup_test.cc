// agent/cgroup.h: detection of v2 / hybrid / no hierarchy on fake trees,
// the limit files written per hierarchy, the per-GPU defaults, and, where
// this machine lets the test write cgroups, a real job under the memory
// and CPU limits it asked for (skipped with a message elsewhere).
#include "agent/cgroup.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "agent/job_runner.h"
#include "gtest/gtest.h"
#include "tests/agent/slurp.h"

namespace joule::agent {
namespace {

namespace fs = std::filesystem;

using ::joule::agent_test::Slurp;

void Touch(const std::string& path, const std::string& text = "") {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

class CgroupTest : public ::testing::Test {
 protected:
  CgroupTest() {
    std::string tmpl = fs::temp_directory_path() / "joule-cgroup-XXXXXX";
    dir_ = mkdtemp(tmpl.data());
  }
  ~CgroupTest() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(CgroupTest, HybridUsesUnifiedForTrackingAndV1ForLimits) {
  Touch(dir_ + "/unified/cgroup.controllers", "hugetlb\n");
  Touch(dir_ + "/memory/memory.limit_in_bytes");
  Touch(dir_ + "/cpu/cpu.cfs_quota_us");
  CgroupSetup s = DetectCgroups(dir_, "n1");
  EXPECT_EQ(s.kind, "hybrid");
  EXPECT_EQ(s.v2_dir, dir_ + "/unified/joule-agent-n1");
  EXPECT_EQ(s.v1_dirs,
            (std::vector<std::string>{dir_ + "/memory/joule-agent-n1",
                                      dir_ + "/cpu/joule-agent-n1"}));
  EXPECT_TRUE(s.memory);
  EXPECT_TRUE(s.cpu);
  for (const std::string& d : s.v1_dirs) EXPECT_TRUE(fs::is_directory(d));
  EXPECT_TRUE(fs::is_directory(s.v2_dir));
  EXPECT_NE(s.Describe().find("limits enforced: memory, cpu"),
            std::string::npos)
      << s.Describe();
}

TEST_F(CgroupTest, HybridWithoutV1ControllersTracksButCannotLimit) {
  Touch(dir_ + "/unified/cgroup.controllers", "");
  CgroupSetup s = DetectCgroups(dir_, "n1");
  EXPECT_EQ(s.kind, "hybrid");
  EXPECT_TRUE(s.v1_dirs.empty());
  EXPECT_FALSE(s.memory);
  EXPECT_FALSE(s.cpu);
  EXPECT_NE(s.Describe().find("limits enforced: NONE"), std::string::npos)
      << s.Describe();
}

TEST_F(CgroupTest, PureV2) {
  Touch(dir_ + "/cgroup.controllers", "cpu io memory\n");
  CgroupSetup s = DetectCgroups(dir_, "n1");
  EXPECT_EQ(s.kind, "v2");
  EXPECT_EQ(s.v2_dir, dir_ + "/joule-agent-n1");
  EXPECT_TRUE(s.v1_dirs.empty());
  // A plain directory is no kernel: subtree_control does not list what was
  // written to it as enabled, so no limit is claimed.
  EXPECT_FALSE(s.memory);
}

TEST_F(CgroupTest, NoHierarchySaysWhyLoudly) {
  CgroupSetup s = DetectCgroups(dir_, "n1");
  EXPECT_EQ(s.kind, "none");
  EXPECT_TRUE(s.v2_dir.empty());
  EXPECT_NE(s.why_none.find("no cgroup v2 hierarchy"), std::string::npos);
  EXPECT_NE(s.Describe().find("NOT enforced"), std::string::npos);
}

TEST_F(CgroupTest, LimitWritesPerHierarchy) {
  Touch(dir_ + "/v2/memory.max");
  Touch(dir_ + "/v2/cpu.max");
  Touch(dir_ + "/mem1/memory.limit_in_bytes");
  Touch(dir_ + "/cpu1/cpu.cfs_quota_us");
  // 64 MiB = 67108864 bytes; 0.5 CPU = 50,000 us per 100,000 us period.
  const JobLimits l{64 << 20, 500};
  bool m = false, c = false;
  using W = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(LimitWrites(dir_ + "/v2", l, &m, &c),
            (W{{dir_ + "/v2/memory.max", "67108864"},
               {dir_ + "/v2/cpu.max", "50000 100000"}}));
  EXPECT_TRUE(m && c);
  EXPECT_EQ(LimitWrites(dir_ + "/mem1", l, &m, &c),
            (W{{dir_ + "/mem1/memory.limit_in_bytes", "67108864"}}));
  EXPECT_TRUE(m);
  EXPECT_FALSE(c);
  // 16 CPUs = 1,600,000 us per 100,000 us period.
  EXPECT_EQ(LimitWrites(dir_ + "/cpu1", {0, 16000}, &m, &c),
            (W{{dir_ + "/cpu1/cpu.cfs_period_us", "100000"},
               {dir_ + "/cpu1/cpu.cfs_quota_us", "1600000"}}));
  EXPECT_FALSE(m);
  EXPECT_TRUE(c);
  EXPECT_TRUE(LimitWrites(dir_ + "/v2", {0, 0}, &m, &c).empty());
}

TEST(LimitsTest, EffectiveAndEnforceable) {
  struct Case {
    JobLimits requested, per_gpu;
    int64_t gpus;
    JobLimits want;
  } cases[] = {
      {{0, 0}, {0, 0}, 8, {0, 0}},                         // no limits anywhere
      {{1 << 30, 0}, {0, 0}, 8, {1 << 30, 0}},             // the job's own
      {{0, 0}, {8LL << 30, 4000}, 2, {16LL << 30, 8000}},  // 2 x 8 GiB, 2 x 4
      {{1 << 30, 0}, {8LL << 30, 4000}, 2, {1 << 30, 8000}},  // own wins
  };
  for (const Case& c : cases) {
    JobLimits e = EffectiveLimits(c.requested, c.per_gpu, c.gpus);
    EXPECT_EQ(e.memory_bytes, c.want.memory_bytes);
    EXPECT_EQ(e.cpu_millis, c.want.cpu_millis);
  }
  JobLimits enforced;
  EXPECT_EQ(EnforceableLimits({64LL << 30, 16000}, true, true, "x", &enforced),
            "");
  EXPECT_EQ(enforced.memory_bytes, 64LL << 30);
  EXPECT_EQ(EnforceableLimits({64LL << 30, 16000}, false, true, "no cgroup",
                              &enforced),
            "limits NOT enforced on this node: memory 64GiB (no cgroup)");
  EXPECT_EQ(enforced.memory_bytes, 0);
  EXPECT_EQ(enforced.cpu_millis, 16000);
}

// On this machine, when the test may write cgroups: a job asking for
// 64 MiB and 0.5 CPU runs inside cgroups that hold exactly those limits.
TEST(CgroupLiveTest, JobRunsUnderItsMemoryAndCpuLimits) {
  const std::string node = absl::StrCat("test-", getpid());
  CgroupSetup s = DetectCgroups("/sys/fs/cgroup", node);
  if (!s.memory || !s.cpu) {
    GTEST_SKIP() << "cannot write memory and cpu cgroups here (" << s.Describe()
                 << "): live limit test skipped";
  }
  std::string tmpl = fs::temp_directory_path() / "joule-cglive-XXXXXX";
  const std::string dir = mkdtemp(tmpl.data());
  absl::Mutex mu;
  std::vector<JobExit> exits;
  JobRunner::Options o;
  o.cgroup_root = s.v2_dir;
  o.cgroup_v1_roots = s.v1_dirs;
  o.log_dir = dir + "/logs";
  o.state_dir = dir + "/state";
  const char* bin = getenv("JOULE_BIN_DIR");
  o.supervisor_path = absl::StrCat(bin != nullptr ? bin : JOULE_DEFAULT_BIN_DIR,
                                   "/joule-job-supervisor");
  o.clock = &RealClock::Get();
  o.on_exit = [&](const JobExit& e) {
    absl::MutexLock lock(&mu);
    exits.push_back(e);
  };
  {
    JobRunner runner(o);
    JobLaunch l;
    l.job_id = "job-1";
    l.attempt = 1;
    l.env = {"PATH=/usr/bin:/bin"};
    l.memory_bytes = 64 << 20;
    l.cpu_millis = 500;
    // The job prints the limit files of its own cgroups.
    std::string script;
    for (const std::string& d : s.v1_dirs) {
      script += absl::StrCat("cat ", d, "/job-1.1/memory.limit_in_bytes ", d,
                             "/job-1.1/cpu.cfs_quota_us 2>/dev/null; ");
    }
    if (s.kind == "v2") {
      script += absl::StrCat("cat ", s.v2_dir, "/job-1.1/memory.max ", s.v2_dir,
                             "/job-1.1/cpu.max; ");
    }
    script +=
        absl::StrCat("grep -qx $$ ", s.kind == "v2" ? s.v2_dir : s.v1_dirs[0],
                     "/job-1.1/cgroup.procs && echo member");
    l.command = {"/bin/sh", "-c", script};
    absl::Status st = runner.Start(l);
    ASSERT_TRUE(st.ok()) << st;
    // On a hybrid host a job gets a v1 dir only for a limit it has: job-2
    // (memory only) no cpu dir, job-3 (no limit) none; both are in their
    // v2 dir all the same.
    const std::string v2 = s.kind == "hybrid" ? s.v2_dir : "";
    for (const auto& [id, memory] : {std::pair{"job-2", int64_t{64 << 20}},
                                     std::pair{"job-3", int64_t{0}}}) {
      if (v2.empty()) break;
      JobLaunch more = l;
      more.job_id = id;
      more.memory_bytes = memory;
      more.cpu_millis = 0;
      std::string check;
      for (const std::string& d : s.v1_dirs) {
        check +=
            absl::StrCat("test -d ", d, "/", id, ".1 && echo has ", d, "; ");
      }
      more.command = {"/bin/sh", "-c",
                      absl::StrCat(check, "grep -qx $$ ", v2, "/", id,
                                   ".1/cgroup.procs && echo member")};
      st = runner.Start(more);
      ASSERT_TRUE(st.ok()) << st;
    }
    absl::MutexLock lock(&mu);
    const size_t want = s.kind == "hybrid" ? 3 : 1;
    auto all_ended = [&] { return exits.size() >= want; };
    ASSERT_TRUE(
        mu.AwaitWithTimeout(absl::Condition(&all_ended), absl::Seconds(20)));
    for (const JobExit& e : exits) EXPECT_EQ(e.exit_code, 0) << e.job_id;
  }
  if (s.kind == "hybrid") {
    const std::string two = Slurp(dir + "/logs/job-2.1.log");
    const std::string three = Slurp(dir + "/logs/job-3.1.log");
    EXPECT_NE(two.find("has " + s.v1_dirs[0]), std::string::npos) << two;
    EXPECT_EQ(two.find("has " + s.v1_dirs[1]), std::string::npos) << two;
    EXPECT_NE(two.find("member"), std::string::npos) << two;
    EXPECT_EQ(three.find("has "), std::string::npos) << three;
    EXPECT_NE(three.find("member"), std::string::npos) << three;
  }
  const std::string out = Slurp(dir + "/logs/job-1.1.log");
  EXPECT_NE(out.find("67108864"), std::string::npos) << out;
  EXPECT_NE(out.find("50000"), std::string::npos) << out;
  EXPECT_NE(out.find("member"), std::string::npos) << out;
  // Removed with the job.
  for (const std::string& d : s.v1_dirs) {
    EXPECT_FALSE(fs::exists(d + "/job-1.1"));
    rmdir(d.c_str());
  }
  EXPECT_FALSE(fs::exists(s.v2_dir + "/job-1.1"));
  rmdir(s.v2_dir.c_str());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace joule::agent
