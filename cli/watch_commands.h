#pragma once

// joulectl commands that follow the cluster over time: `job wait`,
// `events --watch` (both on the WatchEvents stream: no polling) and the
// `--watch` refresh of `job list`, `node list` and `power tree`. They get
// what they need of joulectl's connection as a WatchConnection, so they do
// not depend on main.cc's Client.

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "joule/v1/joule.grpc.pb.h"

namespace joule::cli {

struct WatchConnection {
  std::shared_ptr<grpc::Channel> channel;
  // Adds the call credentials (token, --as-tenant) to a context.
  std::function<void(grpc::ClientContext*)> authorize;
  std::string server;  // for "cannot reach jouled at ..."
  std::string session;  // $JOULE_SESSION in use, else empty (cli/session.h)
  absl::Duration call_timeout = absl::Seconds(30);  // each unary call
};

// Whether a job in state `s` has ended: succeeded, failed or cancelled
// (PREEMPTED is transient: the job is queued again).
bool JobEnded(v1::JobState s);

// Exit codes of `job wait` beyond joulectl's 0..3 (docs/cli.md).
inline constexpr int kWaitJobFailed = 4;
inline constexpr int kWaitJobCancelled = 5;
inline constexpr int kWaitTimedOut = 6;

// Waits until job `id` has ended: subscribes to its state changes, then
// reads its state once (a job that ended before is answered at once).
// `timeout` zero: no limit. Prints one line (`ID STATE: reason (exit code
// N)`), or the Job in -o json/yaml. Returns the exit code: 0 succeeded,
// kWaitJobFailed, kWaitJobCancelled, kWaitTimedOut, 1 the daemon refused
// (unknown job, not allowed), 3 unreachable.
int JobWait(const WatchConnection& c, const std::string& id,
            absl::Duration timeout);

// Streams new events (of `kind`, "" all) as they are recorded, one line
// each (TIME KIND SUBJECT MESSAGE), or one JSON/YAML/CSV record each. Runs
// until interrupted or the stream ends; returns the exit code (1 refused,
// 3 unreachable or jouled went away).
int FollowEvents(const WatchConnection& c, const std::string& kind);

// What a `--watch` redraw follows on the WatchEvents stream: events (of
// every kind the caller may see), job state changes, power-round ticks.
struct WatchTriggers {
  bool events = false;
  bool jobs = false;
  bool power = false;
};

// `--watch`: runs `render` (which prints a whole table) now, then again
// after each message of `triggers` pushed on one WatchEvents stream, never
// polling; at most once per `min_gap` (messages during the pause are
// coalesced into one redraw after it). Clears a terminal in between. Runs
// until interrupted; returns an exit code when the stream fails.
int WatchLoop(const WatchConnection& c, const std::function<void()>& render,
              absl::Duration min_gap, WatchTriggers triggers);

}  // namespace joule::cli
