#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "daemon/cluster_manager.h"
#include "metrics/http_server.h"
#include "metrics/registry.h"
#include "storage/store.h"

namespace joule::daemon {

// The cluster as Prometheus gauges, read at scrape time from the manager's
// public views (power tree, nodes and GPUs, jobs): adds them to `e`.
void CollectClusterMetrics(ClusterManager* manager, metrics::Exposition* e);

// The loopback HTTP server of /metrics (and the dashboard's routes).
using MetricsServer = metrics::MetricsServer;

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
