// Issue 2: a real cluster on one machine: jouled, agents, joulectl, RocksDB.
#include <signal.h>

#include "absl/strings/match.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.grpc.pb.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

v1::ListNodesResponse Nodes(const Cluster& c) {
  v1::ListNodesResponse r;
  c.CtlJson({"node", "list"}, &r);
  return r;
}

int CountState(const v1::ListNodesResponse& r, v1::NodeState s) {
  int n = 0;
  for (const auto& node : r.nodes()) n += node.state() == s;
  return n;
}

TEST(FoundationE2E, AgentsReportLiveAndSurviveDaemonCrash) {
  Cluster c;
  c.StartDaemon();
  for (const char* n : {"n1", "n2", "n3"}) c.StartAgent(n);
  // Three ready nodes, 8 GPUs each, drawing power.
  ASSERT_TRUE(WaitFor([&] {
    auto r = Nodes(c);
    if (r.nodes_size() != 3 || CountState(r, v1::NODE_STATE_READY) != 3) {
      return false;
    }
    for (const auto& n : r.nodes()) {
      if (n.gpus_size() != 8 || n.power_mw() <= 0) return false;
      for (const auto& g : n.gpus()) {
        if (g.energy_mj() == 0 || g.power_limit_mw() != 700'000 ||
            g.uuid().empty() || g.min_power_limit_mw() != 200'000) {
          return false;
        }
      }
    }
    return true;
  })) << Nodes(c).DebugString();

  // The energy counter only grows.
  v1::Node before, after;
  c.CtlJson({"node", "show", "n1"}, &before);
  absl::SleepFor(absl::Milliseconds(600));
  c.CtlJson({"node", "show", "n1"}, &after);
  EXPECT_GT(after.gpus(0).energy_mj(), before.gpus(0).energy_mj());

  // An agent that dies becomes unreachable after the heartbeat timeout (2s).
  c.KillAgent("n3", SIGKILL);
  ASSERT_TRUE(WaitFor([&] {
    auto r = Nodes(c);
    return CountState(r, v1::NODE_STATE_UNREACHABLE) == 1 &&
           CountState(r, v1::NODE_STATE_READY) == 2;
  }));
  const v1::ListNodesResponse after_kill = Nodes(c);
  for (const auto& n : after_kill.nodes()) {
    if (n.name() == "n3") EXPECT_EQ(n.state(), v1::NODE_STATE_UNREACHABLE);
  }

  // jouled killed with SIGKILL and restarted on the same data dir: all three
  // nodes are back from RocksDB; the two live agents reconnect.
  c.KillDaemon(SIGKILL);
  CtlResult down = c.Ctl({"node", "list"});
  EXPECT_EQ(down.exit_code, 3);
  EXPECT_TRUE(
      absl::StrContains(down.err, "cannot reach jouled at " + c.server()))
      << down.err;
  EXPECT_EQ(std::count(down.err.begin(), down.err.end(), '\n'), 1) << down.err;
  c.StartDaemon();
  EXPECT_EQ(Nodes(c).nodes_size(), 3);
  ASSERT_TRUE(WaitFor([&] {
    auto r = Nodes(c);
    return r.nodes_size() == 3 && CountState(r, v1::NODE_STATE_READY) == 2;
  })) << Nodes(c).DebugString();

  // The table view names every node.
  CtlResult table = c.Ctl({"node", "list"});
  EXPECT_EQ(table.exit_code, 0);
  for (const char* n : {"n1", "n2", "n3"}) {
    EXPECT_TRUE(absl::StrContains(table.out, n));
  }
  EXPECT_TRUE(absl::StrContains(table.out, "unreachable"));

  // SIGTERM stops the daemon gracefully (exit 0).
  c.daemon()->Signal(SIGTERM);
  EXPECT_EQ(c.daemon()->Wait(), 0) << c.daemon()->Log();
}

std::string Bytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string bytes;
  for (const auto& sl : slices) {
    bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  }
  return bytes;
}

// Standard tools talk to jouled: the gRPC health service and server
// reflection answer. The messages are encoded by hand (no .proto needed):
// HealthCheckRequest{service: ""} is empty; HealthCheckResponse{status:
// SERVING} is field 1 = 1 (0x08 0x01); ServerReflectionRequest{list_services:
// ""} is field 7, empty string (0x3a 0x00).
TEST(FoundationE2E, HealthAndReflectionAnswer) {
  Cluster c;
  c.StartDaemon();
  auto channel = c.Channel();
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  void* tag = nullptr;
  bool ok = false;

  {
    grpc::ClientContext ctx;
    grpc::Slice empty("", 0);
    grpc::ByteBuffer req(&empty, 1), resp;
    auto call =
        stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", req, &cq);
    call->StartCall();
    grpc::Status status;
    call->Finish(&resp, &status, reinterpret_cast<void*>(1));
    ASSERT_TRUE(cq.Next(&tag, &ok));
    ASSERT_TRUE(status.ok()) << status.error_message();
    const std::string bytes = Bytes(resp);
    EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // SERVING
  }
  {
    grpc::ClientContext ctx;
    auto rw = stub.PrepareCall(
        &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        &cq);
    rw->StartCall(reinterpret_cast<void*>(1));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    const char list[] = {0x3a, 0x00};
    grpc::Slice s(list, 2);
    grpc::ByteBuffer req(&s, 1), resp;
    rw->Write(req, reinterpret_cast<void*>(2));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    rw->Read(&resp, reinterpret_cast<void*>(3));
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    const std::string bytes = Bytes(resp);
    for (const char* svc : {"joule.v1.AgentService", "joule.v1.JobService",
                            "joule.v1.AdminService", "joule.v1.BillingService",
                            "grpc.health.v1.Health"}) {
      EXPECT_TRUE(absl::StrContains(bytes, svc)) << svc;
    }
    ctx.TryCancel();
    grpc::Status status;
    rw->Finish(&status, reinterpret_cast<void*>(4));
    cq.Next(&tag, &ok);
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

class BadInputE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    c_.StartDaemon();
    c_.StartAgent("good");
    ASSERT_TRUE(WaitFor(
        [&] { return CountState(Nodes(c_), v1::NODE_STATE_READY) == 1; }));
    channel_ = c_.Channel();
    stub_ = v1::AgentService::NewStub(channel_);
    // A node-bound agent token: the agent API takes agent credentials only.
    liar_token_ = c_.CreateToken("agent", "liar");
  }
  Cluster c_;
  std::string liar_token_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AgentService::Stub> stub_;
};

TEST_F(BadInputE2E, EmptyNodeNameIsRefused) {
  v1::RegisterRequest req;
  req.add_gpus()->set_model("H100");
  v1::RegisterResponse resp;
  grpc::ClientContext ctx;
  Cluster::Authorize(&ctx, liar_token_);
  grpc::Status s = stub_->Register(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "node_name"))
      << s.error_message();
  EXPECT_EQ(Nodes(c_).nodes_size(), 1);  // nothing stored
}

TEST_F(BadInputE2E, ReportOfAnUnregisteredGpuIsRefused) {
  v1::RegisterRequest req;
  req.set_node_name("liar");
  for (uint32_t i = 0; i < 2; ++i) {
    v1::GpuInfo* g = req.add_gpus();
    g->set_index(i);
    g->set_model("H100");
    g->set_min_power_limit_mw(200'000);
    g->set_max_power_limit_mw(700'000);
    g->set_default_power_limit_mw(700'000);
  }
  v1::RegisterResponse reg;
  {
    grpc::ClientContext ctx;
    Cluster::Authorize(&ctx, liar_token_);
    ASSERT_TRUE(stub_->Register(&ctx, req, &reg).ok());
  }
  grpc::ClientContext ctx;
  Cluster::Authorize(&ctx, liar_token_);
  auto stream = stub_->Connect(&ctx);
  v1::AgentMessage hello;
  hello.mutable_hello()->set_node_name("liar");
  hello.mutable_hello()->set_session_id(reg.session_id());
  ASSERT_TRUE(stream->Write(hello));
  v1::AgentMessage report;
  report.mutable_report()->set_node_name("liar");
  v1::GpuStatus* g = report.mutable_report()->add_gpus();
  g->set_index(5);  // registered 0 and 1 only
  g->set_power_mw(999'000);
  g->set_healthy(true);
  stream->Write(report);
  stream->WritesDone();
  v1::DaemonMessage ignored;
  while (stream->Read(&ignored)) {
  }
  grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(s.error_message(), "gpus[0].index: GPU 5"))
      << s.error_message();
  // Nothing of the report was applied.
  v1::Node liar;
  c_.CtlJson({"node", "show", "liar"}, &liar);
  EXPECT_EQ(liar.gpus_size(), 2);
  EXPECT_EQ(liar.state(), v1::NODE_STATE_UNREACHABLE);
  EXPECT_EQ(liar.power_mw(), 0);
}

TEST(ConfigE2E, CycleInPowerTreeStopsDaemonWithLine) {
  Cluster::Options o;
  o.config_text =  // rowA and rackA are each other's parent
      "domain { name: \"site\" cap: \"1MW\" }\n"
      "domain { name: \"rowA\" parent: \"rackA\" cap: \"100kW\" }\n"
      "domain { name: \"rackA\" parent: \"rowA\" cap: \"40kW\" }\n";
  Cluster c(o);
  WriteFile(c.dir() + "/bad.conf", o.config_text);
  Process d2({Bin("jouled"), "--listen", c.server(), "--data-dir",
              c.dir() + "/data", "--config", c.dir() + "/bad.conf"},
             c.dir() + "/bad.log");
  EXPECT_EQ(d2.Wait(), 2);
  const std::string log = ReadFile(c.dir() + "/bad.log");
  EXPECT_TRUE(absl::StrContains(log, "bad.conf:2: domain[1].parent")) << log;
  EXPECT_TRUE(absl::StrContains(log, "cycle")) << log;
}

TEST(CtlE2E, NoDaemonIsOneClearLine) {
  Cluster c;  // no daemon started
  CtlResult r = c.Ctl({"node", "list"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.err, "joulectl: cannot reach jouled at " + c.server() +
                       ": connection refused\n");
  CtlResult bad = c.Ctl({"power", "set-cap", "rack1", "-5kW"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(bad.err, "must not be negative")) << bad.err;
}

}  // namespace
}  // namespace joule::e2e
