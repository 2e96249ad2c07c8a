#pragma once

// The forwarding half of joulectl's resident session (cli/session.h): a
// generic gRPC service that sends every call it gets on its Unix socket to
// jouled over the session's one TLS channel, with the session's bearer
// token. docs/cli.md "Sessions", docs/security.md "The session socket".

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/endpoints.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"
#include "transport/channel.h"

namespace joule::cli {

// Local methods the session answers itself (never forwarded). Their
// requests are empty; Status answers one line of text (not protobuf).
inline constexpr char kSessionStopMethod[] = "/joule.cli.Session/Stop";
inline constexpr char kSessionStatusMethod[] = "/joule.cli.Session/Status";

// The session's way to jouled: the --server list (failover as joulectl's
// own, common/endpoints.h), one TLS channel to the current endpoint, and
// the bearer token. Owns the channel; a token file is re-read when its
// mtime or size changes (a file that cannot be read then keeps the last
// token). Thread-safe.
class SessionUpstream {
 public:
  // `options` as every joulectl command builds them (server, CA, token or
  // token file); INVALID_ARGUMENT as transport::Client::Open.
  static absl::StatusOr<std::unique_ptr<SessionUpstream>> Open(
      const std::string& servers, transport::ClientOptions options);

  struct Target {
    std::shared_ptr<grpc::Channel> channel;
    std::string bearer;  // "Bearer jt_..." or empty
    std::string server;  // the endpoint the channel goes to
  };
  // What a new call (or a retry) uses.
  Target ForCall();
  // A call to `server` failed with `code`/`message`: true when it is the
  // kind that moves to another endpoint (EndpointFollower::OnFailure) and
  // there is another endpoint; later ForCall()s go there.
  bool OnFailure(const std::string& server, int code,
                 const std::string& message);
  // Whether a call that ended with `s` on `server`, nothing of it passed
  // on to the caller yet, is tried again (on the endpoint ForCall() gives
  // next): a failover kind (OnFailure), at most twice per endpoint in all
  // (`tries` counts them). One rule for both of the session's sockets.
  bool Retry(const std::string& server, const grpc::Status& s, size_t* tries);
  size_t endpoints() const { return follower_.size(); }
  std::string Current() const { return follower_.Current(); }

 private:
  explicit SessionUpstream(std::vector<std::string> endpoints,
                           transport::ClientOptions options);
  absl::Status Connect(const std::string& server)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshToken() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const transport::ClientOptions options_;  // token fields cleared
  const std::string token_file_;
  EndpointFollower follower_;
  absl::Mutex mu_;
  std::string server_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
  std::string bearer_ ABSL_GUARDED_BY(mu_);
  int64_t token_mtime_ns_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t token_size_ ABSL_GUARDED_BY(mu_) = -1;
};

// Reads a token file's secret ("jt_..."), or INVALID_ARGUMENT naming the
// flag as transport::Client::Open does.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// The most a token file may hold when read again (a token is ~50 bytes).
inline constexpr int64_t kMaxTokenFileBytes = 64 << 10;

// Reads a running session's token file again: the token, with the file's
// mtime (ns) and size as read (fstat of the open file), or
// INVALID_ARGUMENT, and then the session keeps its last token, when the
// file is not a regular file (a FIFO or device: never waited on), is
// empty or holds only whitespace (a writer that truncated it and has not
// written yet), is larger than kMaxTokenFileBytes, changed size while
// read, or holds a malformed token. Like the direct path, a symbolic link
// is followed and the file's mode is not checked.
absl::StatusOr<std::string> RereadTokenFile(const std::string& path,
                                            int64_t* mtime_ns, int64_t* size);

// Sets up `ctx` for a forwarded call to `target` until `deadline`: the
// session's authorization (a caller's own is never copied) and the
// caller's metadata `pairs` but what a proxy must not copy (HTTP/2's and
// gRPC's own, authorization, user-agent, host).
void PrepareUpstreamContext(
    grpc::ClientContext* ctx, const SessionUpstream::Target& target,
    std::chrono::system_clock::time_point deadline,
    const std::vector<std::pair<absl::string_view, absl::string_view>>& pairs);

// Whether the descriptors name `method` ("/pkg.S/M") client- or
// server-streaming; false for one they do not know.
bool ClientStreaming(const std::string& method);
bool ServerStreaming(const std::string& method);

// The generic service: every method but the two local ones is forwarded
// (unary and server-streaming; a client-streaming method is refused with
// UNIMPLEMENTED, joulectl has none). Deadlines and the caller's metadata
// pass through, except its authorization, which is replaced by the
// session's. `on_stop` runs once, when a Stop call arrives, before it is
// answered. Thread-safe; outlives the grpc::Server it is registered with.
class SessionService : public grpc::CallbackGenericService {
 public:
  // More than `max_calls` forwarded calls in flight (> 0): a new one is
  // refused with RESOURCE_EXHAUSTED (the check is not atomic with the
  // count: concurrent arrivals may pass it by a few).
  SessionService(SessionUpstream* upstream, std::string status_line,
                 std::function<void()> on_stop, int max_calls = 0);
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* ctx) override;

  SessionUpstream* upstream() const { return upstream_; }
  // RESOURCE_EXHAUSTED naming --max-calls when max_calls forwarded calls
  // are in flight, else OK (both sockets' calls count).
  grpc::Status CheckCapacity() const;
  void Stop();
  std::string StatusLine() const;
  void CountCall() { calls_.fetch_add(1, std::memory_order_relaxed); }
  // Forwarded calls not yet finished toward their caller (each holds its
  // upstream call until that has ended).
  void AddInFlight(int d) {
    in_flight_.fetch_add(d, std::memory_order_relaxed);
    Touch();
  }
  // Records activity now (any call, local ones too).
  void Touch() {
    last_active_ns_.store(absl::ToUnixNanos(absl::Now()),
                          std::memory_order_relaxed);
  }
  // No forwarded call in flight and none started or ended for `d`.
  bool IdleFor(absl::Duration d) const {
    return in_flight_.load(std::memory_order_relaxed) == 0 &&
           absl::Now() - absl::FromUnixNanos(
                             last_active_ns_.load(std::memory_order_relaxed)) >=
               d;
  }

 private:
  SessionUpstream* const upstream_;
  const std::string status_line_;
  const absl::Time started_ = absl::Now();
  std::function<void()> on_stop_;
  const int max_calls_;
  std::atomic<bool> stopped_{false};
  std::atomic<int64_t> calls_{0};
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> last_active_ns_{absl::ToUnixNanos(absl::Now())};
};

}  // namespace joule::cli
