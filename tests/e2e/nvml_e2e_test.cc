// Issue 5: the real joule-agent on the NVML backend, against a fake
// libnvidia-ml.so.1 (tests/agent/nvml/fake_nvml.c) scripted through
// FAKE_NVML_* variables, end to end through jouled and joulectl.
#include <signal.h>
#include <stdlib.h>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

class NvmlE2E : public ::testing::Test {
 protected:
  // The fake reads its script from the environment the agent inherits.
  void SetUp() override {
    Set("FAKE_NVML_GPUS", "4");
    Set("FAKE_NVML_POWER_MW", "390000");  // GPU i draws 390 W + i W
    Set("FAKE_NVML_MIN_MW", "100000");
    Set("FAKE_NVML_MAX_MW", "400000");
    Set("FAKE_NVML_DEFAULT_MW", "400000");
    Set("FAKE_NVML_TEMP_C", "55");
  }
  void TearDown() override {
    for (const auto& k : set_) unsetenv(k.c_str());
  }
  void Set(const std::string& k, const std::string& v) {
    setenv(k.c_str(), v.c_str(), 1);
    set_.push_back(k);
  }
  void StartCluster() {
    c_.StartDaemon();
    ASSERT_EQ(c_.Ctl({"tenant", "create", "acme"}).exit_code, 0);
    c_.StartAgent("gpu-node",
                  {"--gpu-backend", "nvml", "--nvml-library", FAKE_NVML_LIB});
    ASSERT_TRUE(WaitFor([&] {
      v1::Node n = Node();
      return n.state() == v1::NODE_STATE_READY && n.gpus_size() == 4 &&
             n.gpus(0).power_mw() > 0;
    })) << c_.agent("gpu-node")->Log();
  }
  v1::Node Node() {
    v1::Node n;
    CtlResult r = c_.Ctl({"-o", "json", "node", "show", "gpu-node"});
    if (r.exit_code == 0) c_.CtlJson({"node", "show", "gpu-node"}, &n);
    return n;
  }
  v1::Job Job(const std::string& id) {
    v1::Job j;
    c_.CtlJson({"job", "show", id}, &j);
    return j;
  }
  std::string Submit(std::vector<std::string> args) {
    args.insert(args.begin(), {"job", "submit", "--tenant", "acme"});
    CtlResult r = c_.Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::string(absl::StripAsciiWhitespace(r.out));
  }
  Cluster c_;
  std::vector<std::string> set_;
};

TEST_F(NvmlE2E, TelemetryFromTheDriverReachesJoulectl) {
  StartCluster();
  v1::Node first = Node();
  EXPECT_EQ(first.gpu_backend(), "nvml");
  for (int i = 0; i < 4; ++i) {
    const v1::GpuStatus& g = first.gpus(i);
    EXPECT_EQ(g.model(), "H100");  // "NVIDIA H100 80GB HBM3", canonical
    EXPECT_EQ(g.power_mw(), 390'000 + 1'000 * i);
    EXPECT_EQ(g.temperature_c(), 55 + i);
    EXPECT_EQ(g.power_limit_mw(), 400'000);
    EXPECT_TRUE(g.healthy());
    EXPECT_FALSE(g.uuid().empty());
  }
  // Node power = base 1.5 kW + 390 + 391 + 392 + 393 W.
  EXPECT_EQ(first.power_mw(), 1'500'000 + 1'566'000);
  ASSERT_TRUE(WaitFor(
      [&] { return Node().gpus(0).energy_mj() > first.gpus(0).energy_mj(); }));
  CtlResult table = c_.Ctl({"node", "show", "gpu-node"});
  EXPECT_TRUE(absl::StrContains(table.out, "391 W")) << table.out;
}

TEST_F(NvmlE2E, LimitIsClampedToTheDriversRange) {
  StartCluster();
  // The job asks for 700 W per GPU (H100 TDP); this driver allows 400 W at
  // most, so the agent clamps and the enforced 400 W is what is reported.
  const std::string id =
      Submit({"--gpus", "2", "--power", "700W", "--", "sleep", "30"});
  ASSERT_TRUE(
      WaitFor([&] { return Job(id).state() == v1::JOB_STATE_RUNNING; }));
  const v1::Node n = Node();
  int with_job = 0;
  for (const auto& g : n.gpus()) {
    if (g.job_id() != id) continue;
    ++with_job;
    EXPECT_EQ(g.power_limit_mw(), 400'000);
  }
  EXPECT_EQ(with_job, 2);
  ASSERT_EQ(c_.Ctl({"job", "cancel", id}).exit_code, 0);
}

TEST_F(NvmlE2E, RefusedLimitIsReportedWithNvmlsWords) {
  Set("FAKE_NVML_SET_LIMIT_ERROR", "4");  // NVML_ERROR_NO_PERMISSION
  StartCluster();
  const std::string id = Submit({"--gpus", "2", "--power", "400W",
                                 "--min-power", "200W", "--", "sleep", "30"});
  ASSERT_TRUE(
      WaitFor([&] { return Job(id).state() == v1::JOB_STATE_RUNNING; }));
  // Site cap below the measured 3.07 kW: the job is throttled, the driver
  // refuses, and the refusal comes back as an event.
  ASSERT_EQ(c_.Ctl({"power", "set-cap", "site", "2.9kW", "--yes"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] {
    v1::ListEventsResponse r;
    c_.CtlJson({"events", "--kind", "command"}, &r);
    for (const auto& e : r.events()) {
      if (absl::StrContains(e.message(), "Insufficient Permissions"))
        return true;
    }
    return false;
  })) << c_.agent("gpu-node")->Log();
  EXPECT_TRUE(c_.agent("gpu-node")->Running());  // no crash
}

TEST_F(NvmlE2E, LostGpuIsUnhealthyAndNotPlaced) {
  Set("FAKE_NVML_LOST_GPU", "1");
  Set("FAKE_NVML_LOST_AFTER", "3");  // falls off the bus after 3 good reads
  StartCluster();
  ASSERT_TRUE(WaitFor([&] { return !Node().gpus(1).healthy(); }));
  const v1::Node n = Node();
  EXPECT_TRUE(absl::StrContains(n.gpus(1).health_detail(), "GPU is lost"))
      << n.gpus(1).DebugString();
  EXPECT_TRUE(n.gpus(0).healthy());
  // Only three healthy GPUs: a 4-GPU job waits, a 3-GPU job avoids GPU 1.
  const std::string four = Submit({"--gpus", "4", "--", "sleep", "30"});
  const std::string three = Submit({"--gpus", "3", "--", "sleep", "30"});
  ASSERT_TRUE(
      WaitFor([&] { return Job(three).state() == v1::JOB_STATE_RUNNING; }));
  for (uint32_t g : Job(three).allocations(0).gpu_indices()) EXPECT_NE(g, 1u);
  EXPECT_EQ(Job(four).state(), v1::JOB_STATE_PENDING);
}

TEST_F(NvmlE2E, MissingSymbolOrLibraryStopsTheAgentWithAClearError) {
  c_.StartDaemon();
  std::vector<std::string> no_energy_argv = {
      Bin("joule-agent"), "--server",      c_.server(),
      "--node-name",      "x",             "--gpu-backend",
      "nvml",             "--nvml-library", FAKE_NVML_NO_ENERGY_LIB};
  for (auto& f : c_.AgentCredentials("x")) no_energy_argv.push_back(f);
  Process no_energy(no_energy_argv, c_.dir() + "/no-energy.log");
  EXPECT_NE(no_energy.Wait(), 0);
  EXPECT_TRUE(
      absl::StrContains(no_energy.Log(), "nvmlDeviceGetTotalEnergyConsumption"))
      << no_energy.Log();
  // auto never falls back to simulation.
  std::vector<std::string> missing_argv = {
      Bin("joule-agent"), "--server", c_.server(), "--node-name", "y",
      "--gpu-backend", "auto", "--nvml-library",
      "/nonexistent/libnvidia-ml.so.1"};
  for (auto& f : c_.AgentCredentials("y")) missing_argv.push_back(f);
  Process missing(missing_argv, c_.dir() + "/missing.log");
  EXPECT_NE(missing.Wait(), 0);
  EXPECT_TRUE(absl::StrContains(missing.Log(), "cannot load")) << missing.Log();
  v1::ListNodesResponse nodes;
  c_.CtlJson({"node", "list"}, &nodes);
  EXPECT_EQ(nodes.nodes_size(), 0);
}

}  // namespace
}  // namespace joule::e2e
