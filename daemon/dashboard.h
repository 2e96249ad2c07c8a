#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "daemon/power_history.h"

namespace httplib {
class Server;
}

namespace joule::daemon {

class ClusterManager;

// The live dashboard jouled serves on its metrics address: the page at `/`
// (daemon/dashboard/index.html, with Debian's Chart.js at /chart.js, both
// embedded at build time: the page loads nothing from elsewhere) and the
// JSON it polls every few seconds:
//   /api/power    the power tree: cap, committed, measured, headroom (W)
//   /api/history  an hour of each domain's power (PowerHistory)
//   /api/nodes    nodes and their GPUs: power, limit, utilisation
//   /api/queue    pending jobs and why they wait
//   /api/events   the latest throttle, restore, preempt and cap events
// Owns the history and the thread that samples the power tree into it every
// `step`. The manager and clock are borrowed. Thread-safe.
class Dashboard {
 public:
  Dashboard(ClusterManager* manager, const Clock* clock,
            absl::Duration step = absl::Seconds(5),
            absl::Duration span = absl::Hours(1));
  ~Dashboard();
  Dashboard(const Dashboard&) = delete;
  Dashboard& operator=(const Dashboard&) = delete;

  // Adds the routes to `server` (before it listens).
  void AddRoutes(httplib::Server* server);
  // Samples now and then every step until Stop().
  void Start();
  void Stop();

  // The JSON documents (also for tests).
  std::string PowerJson();
  std::string HistoryJson();
  std::string NodesJson();
  std::string QueueJson();
  std::string EventsJson();

 private:
  ClusterManager* const manager_;
  const Clock* const clock_;
  PowerHistory history_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Page and Chart.js, embedded by daemon/dashboard/embed.cmake.
extern const char kDashboardHtml[];
extern const char kChartJs[];

}  // namespace joule::daemon
