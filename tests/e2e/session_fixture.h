#pragma once

// What the joulectl session end-to-end tests share (session_e2e_test.cc,
// session_guard_e2e_test.cc): joulectl run with a clean environment and
// a cluster with tenants and a private socket directory.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

extern char** environ;

namespace joule::e2e {

// Runs joulectl ARGS with this test's environment, less every JOULE_*
// variable, plus `env` ("NAME=VALUE"): no --server, --ca or --token.
inline CtlResult RunCtl(const Cluster& c, const std::vector<std::string>& args,
                        const std::vector<std::string>& env) {
  static int n = 0;
  const std::string out = absl::StrCat(c.dir(), "/srun.", ++n, ".out");
  const std::string err = absl::StrCat(c.dir(), "/srun.", n, ".err");
  std::vector<std::string> argv = {Bin("joulectl")};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> envs = env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!absl::StartsWith(*e, "JOULE_")) envs.push_back(*e);
  }
  std::vector<char*> cenv;
  for (auto& e : envs) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  return RunCaptured(argv, cenv.data(), out, err);
}

inline bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// A cluster with one ready agent, tenants acme and other, and a tenant
// token for acme; sessions live in a 0700 dir of the cluster's.
class SessionE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    Cluster::Options o;
    o.config_text = ConfigBuilder(/*hgx=*/false).Node("s1", "site").Text();
    c_ = std::make_unique<Cluster>(o);
    c_->StartDaemon();
    c_->StartAgent("s1");
    ASSERT_TRUE(WaitForReadyNodes(*c_, 1));
    ASSERT_EQ(c_->Ctl({"tenant", "create", "acme"}).exit_code, 0);
    ASSERT_EQ(c_->Ctl({"tenant", "create", "other"}).exit_code, 0);
    acme_token_ = c_->CreateToken("tenant", "acme");
    dir_ = c_->dir() + "/sess";
    ASSERT_EQ(mkdir(dir_.c_str(), 0700), 0);
    sock_ = dir_ + "/s.sock";
  }

  // joulectl --server ... --ca ... [EXTRA] --token TOKEN session start
  // --socket sock_ --foreground [START_FLAGS], as a process of this test;
  // waits until it answers (a failure to is reported, and the test can
  // ASSERT_FALSE(HasFailure()) on it).
  std::unique_ptr<Process> StartSession(
      const std::string& token, std::vector<std::string> extra = {},
      std::vector<std::string> start_flags = {}) {
    std::vector<std::string> argv = c_->CtlCommand();
    argv.resize(argv.size() - 2);  // the operator's --token
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (!token.empty()) argv.insert(argv.end(), {"--token", token});
    argv.insert(argv.end(),
                {"session", "start", "--socket", sock_, "--foreground"});
    argv.insert(argv.end(), start_flags.begin(), start_flags.end());
    auto p = std::make_unique<Process>(argv, c_->dir() + "/session.log");
    EXPECT_TRUE(WaitFor([&] { return SessionStatus().exit_code == 0; }))
        << p->Log();
    return p;
  }
  // `joulectl session status --socket sock_`.
  CtlResult SessionStatus() {
    return RunCtl(*c_, {"session", "status", "--socket", sock_}, {});
  }
  // `joulectl events --watch` through the session (a stream in flight
  // until it is killed), logging to `log_name` in the cluster's dir.
  std::unique_ptr<Process> WatchViaSession(const std::string& log_name) {
    EXPECT_EQ(setenv("JOULE_SESSION", sock_.c_str(), 1), 0);
    auto watch = std::make_unique<Process>(
        std::vector<std::string>{Bin("joulectl"), "events", "--watch"},
        c_->dir() + "/" + log_name);
    unsetenv("JOULE_SESSION");
    return watch;
  }

  // The command line of a foreground session on sock_ to `server` with
  // the cluster's CA and acme's token.
  std::vector<std::string> SessionTo(const std::string& server) {
    return {Bin("joulectl"),
            "--server",
            server,
            "--ca",
            c_->pki() + "/ca.crt",
            "--token",
            acme_token_,
            "session",
            "start",
            "--socket",
            sock_,
            "--foreground"};
  }

  CtlResult ViaSession(const std::vector<std::string>& args) {
    return RunCtl(*c_, args, {"JOULE_SESSION=" + sock_});
  }
  // `path` is a socket only its owner may use (mode 0600 or stricter).
  static void ExpectPrivateSocket(const std::string& path) {
    struct stat st;
    ASSERT_EQ(lstat(path.c_str(), &st), 0) << path;
    EXPECT_TRUE(S_ISSOCK(st.st_mode)) << path;
    EXPECT_EQ(st.st_mode & 077, 0u) << path;
  }
  // `args` fail through the session as they do directly with acme's
  // token: the same exit code (not 0) and the same one line on stderr.
  void ExpectSameFailureAsDirect(const std::vector<std::string>& args) {
    CtlResult via = ViaSession(args);
    std::vector<std::string> direct_args = {"--token", acme_token_};
    direct_args.insert(direct_args.end(), args.begin(), args.end());
    CtlResult direct = c_->Ctl(direct_args);
    EXPECT_NE(direct.exit_code, 0) << args[0] << " " << args[1];
    EXPECT_EQ(via.exit_code, direct.exit_code) << via.err;
    EXPECT_EQ(via.err, direct.err);
    EXPECT_EQ(std::count(via.err.begin(), via.err.end(), '\n'), 1) << via.err;
  }
  // Through the session: whoami is acme, and `job submit --gpus 1 -- true`
  // succeeds; its job id (empty after a failure, which is reported).
  std::string WhoamiAndSubmit() {
    CtlResult who = ViaSession({"whoami"});
    EXPECT_EQ(who.exit_code, 0) << who.err;
    EXPECT_TRUE(absl::StrContains(who.out, "tenant acme")) << who.out;
    CtlResult sub = ViaSession({"job", "submit", "--gpus", "1", "--", "true"});
    EXPECT_EQ(sub.exit_code, 0) << sub.err;
    const std::string id(absl::StripAsciiWhitespace(sub.out));
    if (!absl::StartsWith(id, "job-")) {
      ADD_FAILURE() << "no job id: " << sub.out << sub.err;
      return "";
    }
    return id;
  }

  std::unique_ptr<Cluster> c_;
  std::string acme_token_;
  std::string dir_;
  std::string sock_;
};

}  // namespace joule::e2e
