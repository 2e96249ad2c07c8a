#include "tests/e2e/harness.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

extern char** environ;

namespace joule::e2e {

std::string Bin(const std::string& name) {
  const char* dir = std::getenv("JOULE_BIN_DIR");
  return absl::StrCat(dir != nullptr ? dir : JOULE_DEFAULT_BIN_DIR, "/", name);
}

std::string SharedData() {
  const char* dir = std::getenv("JOULE_SHARED_DATA");
  return dir != nullptr ? dir : JOULE_DEFAULT_SHARED_DATA;
}

std::string SourceDir() {
  const char* dir = std::getenv("JOULE_SOURCE_DIR");
  return dir != nullptr ? dir : JOULE_DEFAULT_SOURCE_DIR;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

bool WaitFor(const std::function<bool()>& pred, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (pred()) return true;
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

Process::Process(std::vector<std::string> argv, std::string log_path)
    : log_path_(std::move(log_path)) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  const int rc =
      posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    ADD_FAILURE() << "cannot spawn " << argv[0] << ": " << strerror(rc);
    pid_ = -1;
  }
}

Process::~Process() {
  if (Running()) {
    Signal(SIGKILL);
    Wait();
  }
}

bool Process::Running() {
  if (pid_ <= 0 || status_ != -1) return false;
  int st = 0;
  if (waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

void Process::Signal(int sig) {
  if (pid_ > 0 && status_ == -1) kill(pid_, sig);
}

int Process::Wait(absl::Duration timeout) {
  if (!WaitFor([this] { return !Running(); }, timeout)) return -1;
  return status_;
}

std::string Process::Log() const { return ReadFile(log_path_); }

Cluster::Cluster(Options options) : options_(std::move(options)) {
  std::string tmpl =
      std::filesystem::temp_directory_path() / "joule-e2e-XXXXXX";
  dir_ = mkdtemp(tmpl.data());
  port_ = FreePort();
  metrics_port_ = FreePort();
  if (!options_.insecure) MakeNodeCert("");
}

void Cluster::MakeNodeCert(const std::string& node) const {
  if (!node.empty() && std::filesystem::exists(pki() + "/" + node + ".crt")) {
    return;
  }
  std::vector<std::string> argv = {"/bin/bash",
                                   SourceDir() + "/scripts/dev-pki.sh", pki()};
  if (!node.empty()) argv.push_back(node);
  Process p(argv, dir_ + "/pki.log");
  ASSERT_EQ(p.Wait(), 0) << ReadFile(dir_ + "/pki.log");
}

namespace {

// Job processes a test left running: the agents keep their jobs when they
// stop (by design, so that an agent restart does not kill work), so the
// harness ends them itself. Only processes this cluster started: a
// supervisor's `.run` record under this cluster's own temp dir, without an
// `.exit` beside it, whose command line still names that dir (pid reuse).
void KillLeftoverJobs(const std::string& dir) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    const std::string path = it->path().string();
    if (!absl::EndsWith(path, ".run")) continue;
    const std::string stem = path.substr(0, path.size() - 4);
    if (std::filesystem::exists(stem + ".exit")) continue;
    pid_t pid = 0, pgid = 0;
    std::istringstream lines(ReadFile(path));
    for (std::string line; std::getline(lines, line);) {
      if (absl::StartsWith(line, "supervisor_pid="))
        pid = std::atoi(line.c_str() + 15);
      if (absl::StartsWith(line, "pgid=")) pgid = std::atoi(line.c_str() + 5);
    }
    if (pid <= 1) continue;
    std::string cmdline = ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
    if (!absl::StrContains(cmdline, dir)) continue;  // gone, or reused
    if (pgid > 1) kill(-pgid, SIGKILL);
    kill(pid, SIGKILL);
  }
}

}  // namespace

Cluster::~Cluster() {
  agents_.clear();
  KillLeftoverJobs(dir_);
  if (daemon_ != nullptr && daemon_->Running()) {
    daemon_->Signal(SIGTERM);
    if (daemon_->Wait(absl::Seconds(10)) < 0) daemon_.reset();
  }
  daemon_.reset();
  if (!::testing::Test::HasFailure()) std::filesystem::remove_all(dir_);
}

std::string Cluster::server() const {
  return absl::StrCat("127.0.0.1:", port_);
}

std::string Cluster::ServersFlag() const {
  return options_.servers.empty() ? server() : options_.servers;
}

void Cluster::StartDaemon() {
  std::vector<std::string> argv = {Bin("jouled"),
                                   "--listen",
                                   server(),
                                   "--data-dir",
                                   dir_ + "/data",
                                   "--heartbeat-timeout",
                                   options_.heartbeat_timeout,
                                   "--report-interval",
                                   options_.report_interval,
                                   "--metrics-listen",
                                   absl::StrCat("127.0.0.1:", metrics_port_)};
  if (!options_.config_text.empty()) {
    // Tests that do not test billing run unpriced jobs.
    WriteFile(
        dir_ + "/cluster.conf",
        options_.config_text + (options_.allow_unpriced
                                    ? "\nbilling { allow_unpriced: true }\n"
                                    : ""));
    argv.push_back("--config");
    argv.push_back(dir_ + "/cluster.conf");
  }
  if (options_.insecure) {
    argv.push_back("--insecure");
  } else {
    for (const char* f : {"--tls-cert", "server.crt", "--tls-key", "server.key",
                          "--tls-ca", "ca.crt"}) {
      argv.push_back(f[0] == '-' ? f : pki() + "/" + f);
    }
  }
  argv.insert(argv.end(), options_.daemon_flags.begin(),
              options_.daemon_flags.end());
  daemon_ = std::make_unique<Process>(
      argv, absl::StrCat(dir_, "/jouled.", ++daemon_starts_, ".log"));
  // Ready when it answers (the bootstrap token is written before it
  // serves).
  const std::string token_path = dir_ + "/data/operator.token";
  const bool up = WaitFor([&] {
    if (!daemon_->Running()) return false;
    if (operator_token_.empty()) {
      operator_token_ = std::string(absl::StripAsciiWhitespace(
          std::filesystem::exists(token_path) ? ReadFile(token_path) : ""));
      if (operator_token_.empty()) return false;
    }
    return Ctl({"tenant", "list"}).exit_code == 0;
  });
  ASSERT_TRUE(up) << "jouled did not come up: " << daemon_->Log();
}

void Cluster::KillDaemon(int sig) {
  daemon_->Signal(sig);
  EXPECT_GE(daemon_->Wait(), 0);
}

Process* Cluster::StartAgent(const std::string& name,
                             std::vector<std::string> extra) {
  std::vector<std::string> argv = {
      Bin("joule-agent"), "--server", ServersFlag(), "--node-name", name,
      "--report-interval", options_.report_interval, "--log-dir",
      dir_ + "/logs-" + name, "--state-dir", dir_ + "/state-" + name,
      // Tests run jobs that write into dir_;
      // tests of job users pass --job-user.
      "--allow-root-jobs"};
  const std::vector<std::string> creds = AgentCredentials(name);
  argv.insert(argv.end(), creds.begin(), creds.end());
  argv.insert(argv.end(), extra.begin(), extra.end());
  agents_[name] = std::make_unique<Process>(
      argv, absl::StrCat(dir_, "/agent-", name, ".log"));
  return agents_[name].get();
}

std::vector<std::string> Cluster::AgentCredentials(const std::string& name) {
  if (options_.insecure) {
    const std::string token_file = dir_ + "/agent-" + name + ".token";
    if (!std::filesystem::exists(token_file)) {
      WriteFile(token_file, CreateToken("agent", name, "agent " + name));
    }
    return {"--insecure", "--token-file", token_file};
  }
  MakeNodeCert(name);
  return {"--ca",       pki() + "/ca.crt",
          "--tls-cert", pki() + "/" + name + ".crt",
          "--tls-key",  pki() + "/" + name + ".key"};
}

void Cluster::KillAgent(const std::string& name, int sig) {
  agents_[name]->Signal(sig);
  agents_[name]->Wait();
}

std::shared_ptr<grpc::Channel> Cluster::Channel() const {
  if (options_.insecure) {
    return grpc::CreateChannel(server(), grpc::InsecureChannelCredentials());
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(pki() + "/ca.crt");
  return grpc::CreateChannel(server(), grpc::SslCredentials(ssl));
}

void Cluster::Authorize(grpc::ClientContext* ctx) const {
  Authorize(ctx, operator_token_);
}

void Cluster::Authorize(grpc::ClientContext* ctx, const std::string& token) {
  ctx->AddMetadata("authorization", "Bearer " + token);
}

std::string Cluster::CreateToken(const std::string& role,
                                 const std::string& bound,
                                 const std::string& name) const {
  std::vector<std::string> args = {"token", "create", "--role", role};
  if (role == "tenant") args.insert(args.end(), {"--tenant", bound});
  if (role == "agent") args.insert(args.end(), {"--node", bound});
  if (!name.empty()) args.insert(args.end(), {"--name", name});
  CtlResult r = Ctl(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return std::string(absl::StripAsciiWhitespace(r.out));
}

void Cluster::set_operator_token(const std::string& token) {
  operator_token_ = std::string(absl::StripAsciiWhitespace(token));
}

std::vector<std::string> Cluster::CtlCommand() const {
  std::vector<std::string> argv = {Bin("joulectl"), "--server", ServersFlag()};
  if (options_.insecure) {
    argv.push_back("--insecure");
  } else {
    argv.insert(argv.end(), {"--ca", pki() + "/ca.crt"});
  }
  argv.insert(argv.end(), {"--token", operator_token_});
  return argv;
}

CtlResult RunCaptured(std::vector<std::string> argv, char** envp,
                      const std::string& out, const std::string& err) {
  std::vector<char*> cargs;
  for (auto& a : argv) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT,
                                   0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT,
                                   0644);
  pid_t pid = 0;
  CtlResult r;
  if (posix_spawn(&pid, cargs[0], &fa, nullptr, cargs.data(), envp) == 0) {
    int st = 0;
    waitpid(pid, &st, 0);
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  posix_spawn_file_actions_destroy(&fa);
  r.out = ReadFile(out);
  r.err = ReadFile(err);
  return r;
}

CtlResult Cluster::Ctl(std::vector<std::string> args) const {
  static int n = 0;
  const std::string out = absl::StrCat(dir_, "/ctl.", ++n, ".out");
  const std::string err = absl::StrCat(dir_, "/ctl.", n, ".err");
  const bool own_token =
      std::find_if(args.begin(), args.end(), [](const std::string& a) {
        return absl::StartsWith(a, "--token");
      }) != args.end();
  std::vector<std::string> argv = CtlCommand();
  if (own_token) argv.resize(argv.size() - 2);  // drops "--token", operator's
  argv.insert(argv.end(), args.begin(), args.end());
  CtlResult r = RunCaptured(argv, environ, out, err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

void Cluster::CtlJson(std::vector<std::string> args,
                      google::protobuf::Message* msg) const {
  args.insert(args.begin(), {"-o", "json"});
  CtlResult r = Ctl(args);
  ASSERT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << ": " << r.err;
  google::protobuf::util::JsonParseOptions o;
  auto s = google::protobuf::util::JsonStringToMessage(r.out, msg, o);
  ASSERT_TRUE(s.ok()) << s.ToString() << "\n" << r.out;
}

}  // namespace joule::e2e
