#pragma once

// joulectl's resident session: `session start|stop|status`, and what a
// command needs to go through one ($JOULE_SESSION). The session holds one
// TLS channel to jouled and the bearer token, and forwards the calls of
// joulectl processes that reach it on a Unix socket in a private
// directory (cli/session_proxy.h). docs/cli.md "Sessions".

#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "transport/channel.h"

namespace joule::cli {

// Registers `session start [--socket PATH] [--foreground] [--idle-exit
// DUR] [--max-calls N]`, `session stop` and `session status` on `app`.
// Not thread-safe (one per process).
class SessionCommands {
 public:
  explicit SessionCommands(CLI::App& app);
  // When a session command was parsed: runs it and returns its exit code
  // (start in the foreground returns when the session ends). `servers` and
  // `transport` are the global --server and credential options. Call
  // before anything else initializes gRPC (start forks). `argc`/`argv`
  // are main()'s: start overwrites a --token value in them (HideSecrets).
  std::optional<int> Run(const std::string& servers,
                         const transport::ClientOptions& transport, int argc,
                         char** argv);
  // Overwrites with 'x' every --token value in argv (before any "--"), so
  // that /proc/PID/cmdline, readable by every user, does not show it.
  static void HideSecrets(int argc, char** argv);
  // Whether the command line named --server, --token, --token-file, --ca
  // or --insecure (then $JOULE_SESSION is not used).
  static bool ExplicitTransport(const CLI::App& app);

 private:
  CLI::App* start_;
  CLI::App* stop_;
  CLI::App* status_;
  std::string socket_;
  bool foreground_ = false;
  std::string idle_exit_;
  int max_calls_ = 256;
};

// The one line (without "joulectl: ") for a call through the session at
// `session` that failed as unreachable with `why`: the session's socket
// cannot be reached (connect() is tried now), or jouled behind it.
std::string SessionUnreachable(const std::string& session,
                               const std::string& why);

}  // namespace joule::cli
