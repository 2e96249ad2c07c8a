// The agent driven by a test that stands in for jouled (a hostile one): job
// ids that would build paths outside the log and state dirs are refused
// before any file is touched, FetchLogs reads nothing outside the log dir,
// and a valid job still runs afterwards.
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/agent.h"
#include "agent/sim_backend.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.grpc.pb.h"

namespace joule::agent {
namespace {

std::string Supervisor() {
  const char* dir = getenv("JOULE_BIN_DIR");
  return absl::StrCat(dir != nullptr ? dir : JOULE_DEFAULT_BIN_DIR,
                      "/joule-job-supervisor");
}

// A fake daemon: accepts the registration, then sends `commands` once the
// agent said hello and records everything the agent sends back.
class FakeDaemon final : public v1::AgentService::Service {
 public:
  explicit FakeDaemon(std::vector<v1::DaemonMessage> commands)
      : commands_(std::move(commands)) {}
  grpc::Status Register(grpc::ServerContext*, const v1::RegisterRequest* req,
                        v1::RegisterResponse* resp) override {
    resp->set_node_name(req->node_name());
    resp->set_session_id("s1");
    return grpc::Status::OK;
  }
  grpc::Status Connect(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<v1::DaemonMessage, v1::AgentMessage>* stream)
      override {
    v1::AgentMessage m;
    if (!stream->Read(&m) || !m.has_hello()) return grpc::Status::OK;
    for (const auto& c : commands_) stream->Write(c);
    while (stream->Read(&m)) {
      absl::MutexLock lock(&mu_);
      if (!m.has_report()) got_.push_back(m);
    }
    return grpc::Status::OK;
  }
  // Waits until `pred` holds over what the agent sent.
  bool WaitFor(std::function<bool(const std::vector<v1::AgentMessage>&)> pred) {
    absl::MutexLock lock(&mu_);
    auto cond = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pred(got_); };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), absl::Seconds(20));
  }
  std::vector<v1::AgentMessage> Got() {
    absl::MutexLock lock(&mu_);
    return got_;
  }

 private:
  const std::vector<v1::DaemonMessage> commands_;
  absl::Mutex mu_;
  std::vector<v1::AgentMessage> got_ ABSL_GUARDED_BY(mu_);
};

v1::DaemonMessage Start(uint64_t id, const std::string& job,
                        std::vector<std::string> cmd) {
  v1::DaemonMessage m;
  m.set_command_id(id);
  v1::StartJob* s = m.mutable_start_job();
  s->set_job_id(job);
  s->set_attempt(1);
  for (auto& c : cmd) s->add_command(c);
  s->add_gpu_indices(0);
  s->set_tenant("acme");
  return m;
}

TEST(AgentPathsTest, TraversalIdsAreRefusedByTheAgent) {
  std::string tmpl =
      std::filesystem::temp_directory_path() / "joule-agentpaths-XXXXXX";
  const std::string dir = mkdtemp(tmpl.data());
  const std::string secret = dir + "/secret";
  { std::ofstream(secret) << "do not read\n"; }
  const std::string pwned = "../../../../../../../../.." + dir + "/pwned";

  std::vector<v1::DaemonMessage> commands = {
      Start(1, pwned, {"/bin/sh", "-c", "echo pwned"}),
      Start(2, "job-1/../../x", {"/bin/true"}),
      Start(3, "..", {"/bin/true"}),
  };
  v1::DaemonMessage fetch;
  fetch.set_command_id(4);
  fetch.mutable_fetch_logs()->set_job_id("../secret");
  fetch.mutable_fetch_logs()->set_attempt(1);
  commands.push_back(fetch);
  v1::DaemonMessage stop;
  stop.set_command_id(5);
  stop.mutable_stop_job()->set_job_id("../../x");
  commands.push_back(stop);
  commands.push_back(Start(6, "job-7", {"/bin/sh", "-c", "echo hi"}));

  FakeDaemon daemon(commands);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&daemon);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);

  SimGpuOptions so;
  so.count = 1;
  so.node_name = "n1";
  SimGpuBackend backend(so, &RealClock::Get());
  AgentOptions o;
  o.server = absl::StrCat("127.0.0.1:", port);
  o.transport.insecure = true;  // the stand-in daemon is plaintext
  o.node_name = "n1";
  o.report_interval = absl::Milliseconds(100);
  o.report_interval_fixed = true;
  o.log_dir = dir + "/agent/logs";
  o.state_dir = dir + "/agent/jobs";
  o.supervisor_path = Supervisor();
  o.job_users.allow_root = true;  // the test's own user, whoever it is
  auto agent = std::make_unique<Agent>(o, &backend, &RealClock::Get());
  std::thread run([&] { agent->Run(); });

  const bool done = daemon.WaitFor([](const auto& got) {
    int results = 0;
    bool logs = false, exited = false;
    for (const auto& m : got) {
      results += m.has_command_result();
      logs = logs || m.has_log_chunk();
      exited = exited || (m.has_job_update() &&
                          m.job_update().phase() == v1::JOB_PHASE_EXITED);
    }
    return results >= 4 && logs && exited;
  });
  agent->Shutdown();
  run.join();
  agent.reset();
  server->Shutdown();
  ASSERT_TRUE(done);

  for (const auto& m : daemon.Got()) {
    if (m.has_command_result()) {
      const auto& r = m.command_result();
      EXPECT_FALSE(r.ok()) << r.command_id();
      if (r.command_id() <= 3) {
        EXPECT_NE(r.error().find("is not a job id"), std::string::npos)
            << r.error();
      }
    }
    if (m.has_log_chunk()) {
      EXPECT_TRUE(m.log_chunk().data().empty());
      EXPECT_NE(m.log_chunk().error().find("not a job id"), std::string::npos)
          << m.log_chunk().error();
    }
    if (m.has_job_update()) {
      // Only the valid job ever ran.
      EXPECT_EQ(m.job_update().job_id(), "job-7");
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/pwned.1.log"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/pwned"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/agent/logs/job-7.1.log"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace joule::agent
