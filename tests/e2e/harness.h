#pragma once

// End-to-end test harness: real jouled, joule-agent and joulectl processes
// on loopback, each with its own output file in a temp dir.

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "grpcpp/grpcpp.h"

namespace joule::e2e {

// A child process with stdout+stderr in `log_path`. Killed (SIGKILL) on
// destruction if still running. Not thread-safe.
class Process {
 public:
  Process(std::vector<std::string> argv, std::string log_path);
  ~Process();
  bool Running();
  void Signal(int sig);
  // Waits for exit; returns the exit code (128+signal when killed), or -1 on
  // timeout.
  int Wait(absl::Duration timeout = absl::Seconds(30));
  std::string Log() const;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::string log_path_;
};

struct CtlResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// A temp dir with a jouled and agents, plus joulectl.
class Cluster {
 public:
  struct Options {
    std::string config_text;  // empty: jouled's default config
    std::string heartbeat_timeout = "2s";
    std::string report_interval = "200ms";
    // --server of joulectl and the agents; empty: this cluster's jouled.
    // HA tests give several ("a,b") and start their jouleds themselves.
    std::string servers;
  };
  explicit Cluster(Options options);
  Cluster() : Cluster(Options()) {}
  ~Cluster();

  void StartDaemon();
  Process* daemon() { return daemon_.get(); }
  void KillDaemon(int sig);  // and wait for it
  // Starts an agent named `name` with extra flags.
  Process* StartAgent(const std::string& name,
                      std::vector<std::string> extra = {});
  Process* agent(const std::string& name) { return agents_[name].get(); }
  void KillAgent(const std::string& name, int sig);

  CtlResult Ctl(std::vector<std::string> args) const;
  // Runs `joulectl -o json ARGS`, requires exit 0 and parses into `msg`.
  void CtlJson(std::vector<std::string> args,
               google::protobuf::Message* msg) const;

  // A channel to this cluster's jouled with the transport credentials it
  // expects. Raw gRPC clients in tests use this, never their own channel.
  std::shared_ptr<grpc::Channel> Channel() const;
  // Adds the operator's call credentials to a raw call's context.
  void Authorize(grpc::ClientContext* ctx) const;

  const std::string& dir() const { return dir_; }
  std::string server() const;
  // What joulectl and agents get as --server (Options::servers or server()).
  std::string ServersFlag() const;
  int port() const { return port_; }

 private:
  Options options_;
  std::string dir_;
  int port_ = 0;
  int daemon_starts_ = 0;
  std::unique_ptr<Process> daemon_;
  std::map<std::string, std::unique_ptr<Process>> agents_;
};

// Path of a built binary (JOULE_BIN_DIR, set by CTest).
std::string Bin(const std::string& name);
// Directory of the shared data sets (JOULE_SHARED_DATA).
std::string SharedData();
// A TCP port nobody listens on right now.
int FreePort();
// Polls `pred` every 50 ms until true or `timeout`; returns its last value.
bool WaitFor(const std::function<bool()>& pred,
             absl::Duration timeout = absl::Seconds(20));
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& text);

}  // namespace joule::e2e
