// The example clients of examples/clients/ (Python with Debian's
// python3-grpcio, Node with @grpc/grpc-js), written from the .proto alone,
// against a real jouled over TLS with a tenant token: each submits a job,
// follows it on WatchEvents to its end and reads the tenant's statement.
#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

class ClientsE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(StartCluster(c_, {"n1"}));
    token_file_ = c_.dir() + "/acme.token";
    WriteFile(token_file_, c_.CreateToken("tenant", "acme") + "\n");
  }

  // Runs a client; checks its JSON line.
  void RunClient(std::vector<std::string> argv, const std::string& name) {
    for (const std::string& a :
         {std::string("--server"), c_.server(), std::string("--ca"),
          c_.pki() + "/ca.crt", std::string("--token-file"), token_file_,
          std::string("--tenant"), std::string("acme"), std::string("--"),
          std::string("sh"), std::string("-c"),
          // Long enough to be subscribed before it ends.
          std::string("sleep 1; echo hi")}) {
      argv.push_back(a);
    }
    Process p(argv, c_.dir() + "/" + name + ".log");
    const int rc = p.Wait(absl::Seconds(120));
    const std::string out = p.Log();
    EXPECT_EQ(rc, 0) << out;
    EXPECT_TRUE(absl::StrContains(out, "\"state\": \"JOB_STATE_SUCCEEDED\"") ||
                absl::StrContains(out, "\"state\":\"JOB_STATE_SUCCEEDED\""))
        << out;
    // The running state came through the stream, not by polling.
    EXPECT_TRUE(absl::StrContains(out, "JOB_STATE_RUNNING")) << out;
    EXPECT_TRUE(absl::StrContains(out, "statement_period")) << out;
  }

  Cluster c_;
  std::string token_file_;
};

TEST_F(ClientsE2E, Python) {
  if (system("/usr/bin/python3 -c 'import grpc, grpc_tools' 2>/dev/null") !=
      0) {
    GTEST_SKIP() << "python3-grpcio / python3-grpc-tools not installed "
                    "(scripts/install-deps.sh)";
  }
  RunClient({"/usr/bin/python3",
             SourceDir() + "/examples/clients/python/joule_client.py",
             "--proto", SourceDir() + "/proto"},
            "python");
}

TEST_F(ClientsE2E, Node) {
  const std::string dir = SourceDir() + "/examples/clients/node";
  if (!Exists(dir + "/node_modules/@grpc/grpc-js") ||
      !Exists("/usr/bin/node")) {
    GTEST_SKIP() << "node or examples/clients/node/node_modules missing "
                    "(scripts/install-deps.sh runs npm install)";
  }
  RunClient({"/usr/bin/node", dir + "/joule_client.js", "--proto",
             SourceDir() + "/proto"},
            "node");
}

}  // namespace
}  // namespace joule::e2e
