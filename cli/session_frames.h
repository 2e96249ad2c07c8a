#pragma once

// The session's second socket (cli/session.h): unary calls in frames
// (cli/session_wire.h) from joulectl processes that do not start gRPC,
// forwarded to jouled through the same SessionService (its upstream,
// failover, in-flight count and --max-calls) as the gRPC socket's calls.
// docs/cli.md "Sessions", docs/security.md "The session socket".

#include <sys/types.h>

#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "cli/session_proxy.h"
#include "cli/session_wire.h"

namespace joule::cli {

// Whether the peer of a connected Unix socket runs as this process's
// effective uid or as root (SO_PEERCRED): who may use a session.
bool PeerMaySpeak(int fd);

// The next connection on `listen_fd` (accept4 with `flags`) of a peer
// that PeerMaySpeak; another peer's is closed unread. -1 once `listen_fd`
// is shut down. Too many open files: waits 50 ms and tries again.
int AcceptPeer(int listen_fd, int flags);

// The most connections served at once; more are closed unread.
inline constexpr int kMaxFrameConnections = 1024;

// Serves the frames socket: one thread accepts, one thread per
// connection reads a request, forwards it and writes the answer, until
// the caller closes or sends a frame that breaks the rules (answered with
// the error, then closed). A caller that goes away mid-call has its
// upstream call cancelled. Owns the threads; the listening fd and the
// service are the caller's and outlive Stop(). Thread-safe.
class FrameServer {
 public:
  FrameServer(SessionService* service, int listen_fd)
      : service_(service), listen_fd_(listen_fd) {}
  ~FrameServer() { Stop(); }
  void Start();
  // Stops accepting (shuts `listen_fd` down), lets calls in flight end
  // for up to 2 s, then ends every connection; returns when no thread of
  // this server runs. Idempotent.
  void Stop();

 private:
  void AcceptLoop();
  void Serve(int fd);
  // The answer to one decoded request (forwarded, or refused).
  WireResponse Forward(const WireRequest& r, int fd, int done_fd);
  void Finished(int fd);

  SessionService* const service_;
  const int listen_fd_;
  std::thread acceptor_;
  absl::Mutex mu_;
  // Each connection's fd: whether a call is in flight on it.
  absl::flat_hash_map<int, bool> conns_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace joule::cli
