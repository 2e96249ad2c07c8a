// Issue 10, end to end: a job's memory and CPU limits (`job submit --memory
// --cpus`) are set in its cgroup on this machine's hierarchy (pure v2 or
// hybrid), or, where the agent has no cgroup with those controllers, the
// job's history says loudly that they are not enforced.
#include <unistd.h>

#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

TEST(IsolationE2E, JobMemoryAndCpuLimitsAreSetOrSaidNotEnforced) {
  Cluster::Options o;
  o.config_text = ConfigBuilder(/*hgx=*/false).Node("iso1", "site").Text();
  Cluster c(o);
  ASSERT_NO_FATAL_FAILURE(StartCluster(c, {"iso1"}));
  // The job prints the limits of the cgroups it is in: v1 memory and cpu
  // (hybrid), or the v2 files (pure v2).
  const std::string script =
      "m=$(grep ':memory:' /proc/self/cgroup | cut -d: -f3); "
      "[ -n \"$m\" ] && cat /sys/fs/cgroup/memory$m/memory.limit_in_bytes; "
      "p=$(grep -E ':cpu(,cpuacct)?:' /proc/self/cgroup | cut -d: -f3); "
      "[ -n \"$p\" ] && cat /sys/fs/cgroup/cpu$p/cpu.cfs_quota_us; "
      "u=$(grep '^0::' /proc/self/cgroup | cut -d: -f3); "
      "cat /sys/fs/cgroup$u/memory.max /sys/fs/cgroup$u/cpu.max 2>/dev/null; "
      "true";
  CtlResult r =
      c.Ctl({"job", "submit", "--tenant", "acme", "--gpus", "1", "--memory",
             "64MiB", "--cpus", "0.5", "--", "/bin/sh", "-c", script});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string id(absl::StripAsciiWhitespace(r.out));
  v1::Job j;
  ASSERT_TRUE(WaitFor([&] {
    c.CtlJson({"job", "show", id}, &j);
    return j.state() == v1::JOB_STATE_SUCCEEDED ||
           j.state() == v1::JOB_STATE_FAILED;
  })) << j.DebugString();
  EXPECT_EQ(j.spec().memory_bytes(), 64 << 20);
  EXPECT_EQ(j.spec().cpu_millis(), 500);
  ASSERT_EQ(j.state(), v1::JOB_STATE_SUCCEEDED) << j.DebugString();
  std::string running;
  for (const auto& t : j.history()) {
    if (t.state() == v1::JOB_STATE_RUNNING) running = t.reason();
  }
  if (absl::StrContains(running, "NOT enforced")) {
    // No cgroup with those controllers here: said, not silently dropped.
    EXPECT_TRUE(absl::StrContains(running, "memory 64MiB")) << running;
    std::cerr << "this machine gives the agent no memory/cpu cgroup ("
              << running << "): the limit values are not checked\n";
    return;
  }
  CtlResult logs = c.Ctl({"job", "logs", id});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  // 64 MiB = 67108864 bytes; 0.5 CPU = 50000 us per 100000 us period.
  EXPECT_TRUE(absl::StrContains(logs.out, "67108864")) << logs.out;
  EXPECT_TRUE(absl::StrContains(logs.out, "50000")) << logs.out;
}

}  // namespace
}  // namespace joule::e2e
