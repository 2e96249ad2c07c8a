#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "daemon/cluster_manager.h"
#include "metrics/registry.h"
#include "storage/store.h"

namespace httplib {
class Server;
}

namespace joule::daemon {

// The cluster as Prometheus gauges, read at scrape time from the manager's
// public views (power tree, nodes and GPUs, jobs): adds them to `e`.
void CollectClusterMetrics(ClusterManager* manager, metrics::Exposition* e);

// Serves GET /metrics (Prometheus text format) over HTTP on a loopback
// address. Owns the HTTP server and its thread; the registry and manager
// are borrowed and must outlive it. Thread-safe: Stop() from any thread,
// once (the destructor calls it).
class MetricsServer {
 public:
  // INVALID_ARGUMENT for a listen address that is not loopback (the
  // endpoint has no TLS or token check yet); UNAVAILABLE when it cannot
  // bind.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, metrics::Registry* registry);
  ~MetricsServer();
  void Stop();
  int port() const { return port_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// A Store that times every write into joule_store_write_seconds{sync}.
// Thread-safe as `base` is.
class TimedStore final : public storage::ForwardingStore {
 public:
  TimedStore(storage::Store* base, metrics::Registry* registry);
  absl::Status Write(const storage::WriteBatch& batch,
                     const storage::WriteOptions& options) override;

 private:
  metrics::Histogram* const synced_;
  metrics::Histogram* const unsynced_;
  metrics::Counter* const failed_;
};

}  // namespace joule::daemon
