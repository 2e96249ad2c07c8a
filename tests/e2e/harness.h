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

// Runs `argv` (argv[0] a path) with environment `envp`, stdin from
// /dev/null, stdout and stderr into the files `out` and `err` (kept);
// waits for it. exit_code is 128 + the signal for a killed process.
CtlResult RunCaptured(std::vector<std::string> argv, char** envp,
                      const std::string& out, const std::string& err);

// A temp dir with a jouled and agents, plus joulectl.
class Cluster {
 public:
  struct Options {
    std::string config_text;  // empty: jouled's default config
    std::string heartbeat_timeout = "2s";
    std::string report_interval = "200ms";
    // Plaintext on loopback (jouled --insecure; agents use node-bound agent
    // tokens). Default: TLS with the dev PKI, agents with certificates.
    bool insecure = false;
    // Appended to config_text as `billing { allow_unpriced: true }`.
    bool allow_unpriced = true;
    // --server of joulectl and the agents; empty: this cluster's jouled.
    // HA tests give several ("a,b") and start their jouleds themselves.
    std::string servers;
    // Appended to jouled's command line (e.g. --log-format json).
    std::vector<std::string> daemon_flags;
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

  // Runs joulectl as the operator (the bootstrap token), unless `args`
  // name a --token or --token-file of their own.
  CtlResult Ctl(std::vector<std::string> args) const;
  // joulectl's argv up to the command: binary, server, transport, operator
  // token (for tests that run joulectl as a Process of their own).
  std::vector<std::string> CtlCommand() const;
  // The credential flags an agent for `node` is started with.
  std::vector<std::string> AgentCredentials(const std::string& node);
  // Runs `joulectl -o json ARGS`, requires exit 0 and parses into `msg`.
  void CtlJson(std::vector<std::string> args,
               google::protobuf::Message* msg) const;

  // A channel to this cluster's jouled with the transport credentials it
  // expects. Raw gRPC clients in tests use this, never their own channel.
  std::shared_ptr<grpc::Channel> Channel() const;
  // Adds the operator's call credentials to a raw call's context.
  void Authorize(grpc::ClientContext* ctx) const;
  // Adds `token` (e.g. from CreateToken) as a raw call's credentials.
  static void Authorize(grpc::ClientContext* ctx, const std::string& token);

  // Creates a token (joulectl token create --role ROLE ...) and returns its
  // secret; `bound` is the tenant (role tenant) or node (role agent).
  std::string CreateToken(const std::string& role,
                          const std::string& bound = "",
                          const std::string& name = "") const;
  // The PKI (scripts/dev-pki.sh): ca.crt, server.*, NODE.crt/.key.
  std::string pki() const { return dir_ + "/pki"; }
  // Makes NODE.crt/.key (CN = node) in pki() if missing.
  void MakeNodeCert(const std::string& node) const;
  const std::string& operator_token() const { return operator_token_; }
  // For tests that start their own jouled (HA): the bootstrap token it
  // wrote.
  void set_operator_token(const std::string& token);

  const std::string& dir() const { return dir_; }
  std::string server() const;
  // What joulectl and agents get as --server (Options::servers or server()).
  std::string ServersFlag() const;
  int port() const { return port_; }
  // jouled's Prometheus endpoint (HTTP, loopback).
  int metrics_port() const { return metrics_port_; }

 private:
  Options options_;
  std::string dir_;
  int port_ = 0;
  int metrics_port_ = 0;
  int daemon_starts_ = 0;
  std::unique_ptr<Process> daemon_;
  std::map<std::string, std::unique_ptr<Process>> agents_;
  std::string operator_token_;
};

// Path of a built binary (JOULE_BIN_DIR, set by CTest).
std::string Bin(const std::string& name);
// Directory of the shared data sets (JOULE_SHARED_DATA).
std::string SharedData();
// The repository root (JOULE_SOURCE_DIR, set by CTest).
std::string SourceDir();
// A TCP port nobody listens on right now.
int FreePort();
// Polls `pred` every 50 ms until true or `timeout`; returns its last value.
bool WaitFor(const std::function<bool()>& pred,
             absl::Duration timeout = absl::Seconds(20));
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& text);

}  // namespace joule::e2e
