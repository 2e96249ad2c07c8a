#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "metrics/registry.h"

namespace httplib {
class Server;
}

namespace joule::metrics {

// Serves GET /metrics (Prometheus text format) over HTTP on a loopback
// address, plus whatever routes `extra_routes` adds (jouled's dashboard).
// Owns the HTTP server and its thread; the registry (and what the routes
// use) is borrowed and must outlive it. Thread-safe: Stop() from any
// thread, more than once (the destructor calls it).
class MetricsServer {
 public:
  // INVALID_ARGUMENT for a listen address that is not HOST:PORT or not
  // loopback (the endpoint has no TLS or token check); UNAVAILABLE when it
  // cannot bind. `flag` names the option in messages.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, Registry* registry,
      std::function<void(httplib::Server*)> extra_routes = nullptr,
      const std::string& flag = "--metrics-listen");
  ~MetricsServer();
  void Stop();
  int port() const { return port_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace joule::metrics
